//! The HTTP server: the submit API (`/v1/messages`), the SDP's Parlay X SmsNotification and
//! MessageNotification endpoints, signed media links (`/media`), `/metrics`, `/healthz` and
//! `/readyz`.
//!
//! Every body is read with the configured size limit; API errors are JSON
//! `{code, message}` with a stable `code`; SOAP errors are SOAP 1.1 faults.

pub mod admin;
mod api;
pub mod auth;
pub mod listener;
mod media;
mod mms;
mod soap;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pipeline::{Depths, Intake};

pub use soap::NOTIFY_PATH;

/// What the handlers share.
pub struct AppState {
    pub cfg: Arc<Config>,
    pub intake: Intake,
    pub depths: Depths,
    /// The API clients and the admin token.
    pub callers: auth::Callers,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    pub shutdown: CancellationToken,
    /// Links `/readyz` waits for besides the store (XMPP component links).
    pub ready: Vec<ReadySource>,
    /// Fetches received MMS content from the SDP (`content.mms.receive_message_url`).
    pub mms_receive: Option<crate::connectors::sdp::mms::ReceiveClient>,
    /// Checks the links under `/media`.
    pub media: Arc<crate::content::media::MediaLinks>,
}

/// A link that must be up for the gateway to be ready.
#[derive(Clone)]
pub struct ReadySource {
    /// Named in `/readyz` when down (`xmpp sms.example.org`).
    pub name: String,
    pub up: Arc<std::sync::atomic::AtomicBool>,
}

/// The router with every endpoint.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.cfg.http.max_body_bytes;
    Router::new()
        .route("/v1/messages", post(api::submit))
        .route("/v1/messages/{id}", get(api::get_message))
        .route("/admin/v1/erase", post(admin::erase))
        .route(NOTIFY_PATH, post(soap::notification))
        .route(
            crate::connectors::sdp::mms::MMS_NOTIFY_PATH,
            post(mms::notification),
        )
        // The same endpoints under a secret path segment (`[sdp.callbacks] secret_path`).
        .route(
            "/parlayx/SmsNotification/{secret}",
            post(soap::notification),
        )
        .route(
            "/parlayx/MessageNotification/{secret}",
            post(mms::notification),
        )
        .route("/media/{msg}/{part}/{name}", get(media::part))
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// An API error: HTTP status, stable code, human message.
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "message": self.message });
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

async fn metrics_page(State(st): State<Arc<AppState>>) -> Response {
    for (queue, depth) in st.depths.read() {
        metrics::gauge!("switchboard_queue_depth", "queue" => queue).set(depth as f64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    let mut problems = Vec::new();
    if st.shutdown.is_cancelled() {
        problems.push("shutting down".to_string());
    }
    if let Err(e) = st.intake.ctx().store.reply_party(0).await {
        problems.push(format!("store: {e}"));
    }
    for r in &st.ready {
        if !r.up.load(std::sync::atomic::Ordering::Acquire) {
            problems.push(format!("{}: not connected", r.name));
        }
    }
    if problems.is_empty() {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"ready": true})),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"ready": false, "problems": problems})),
        )
            .into_response()
    }
}
