//! The HTTP server: the submit API (`/v1/messages`), signed media links (`/media`), the
//! admin API (erasure, any message, the directory: users, groups, join requests, and the
//! app registry), the app platform ([`apps`]: signed pushes, app lists, message stacks),
//! `/metrics`, `/healthz` and `/readyz`, with the connectors' callback routes (the SDP's
//! notifications) merged in; the callbacks and the admin API optionally on listeners of
//! their own ([`routers`]). Connections, timeouts and TLS: [`listener`].
//!
//! Every body is read with the configured size limit; API errors are JSON
//! `{code, message}` with a stable `code`; SOAP errors are SOAP 1.1 faults.

pub mod admin;
mod api;
mod apps;
pub mod auth;
mod cards;
pub mod config;
mod directory;
pub mod listener;
mod media;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
pub use crate::connectors::ReadySource;
use crate::pipeline::{Depths, Intake};

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
    /// Checks the links under `/media`.
    pub media: Arc<crate::content::media::MediaLinks>,
    /// The app platform.
    pub apps: Arc<crate::apps::Platform>,
}

/// The routers of the HTTP listeners: the main one (API, media, `/metrics`, health), and
/// the SDP callbacks and the admin API, each on the main listener or on one of its own.
pub struct Routers {
    pub main: Router,
    /// Set when the SDP callbacks have a listener of their own.
    pub callbacks: Option<Router>,
    /// Set when the admin API has a listener of their own.
    pub admin: Option<Router>,
}

/// Builds the routers; `callbacks` are the connectors' callback routes (already given
/// their state). `callbacks_apart` / `admin_apart` put the callbacks and the admin API on
/// routers of their own instead of the main one. Every router has `/healthz`, and every
/// body is read with `http.max_body_bytes`.
pub fn routers(
    state: Arc<AppState>,
    callbacks: Vec<Router>,
    callbacks_apart: bool,
    admin_apart: bool,
) -> Routers {
    let limit = state.cfg.http.max_body_bytes;
    let finish = |r: Router| {
        r.route("/healthz", get(|| async { "ok\n" }))
            .layer(DefaultBodyLimit::max(limit))
    };
    let callback_routes = callbacks.into_iter().fold(Router::new(), Router::merge);
    let mut main = api_routes()
        .merge(service_routes())
        .with_state(state.clone());
    let callbacks = if callbacks_apart {
        Some(finish(callback_routes))
    } else {
        main = main.merge(callback_routes);
        None
    };
    let admin = if admin_apart {
        Some(finish(admin_routes().with_state(state.clone())))
    } else {
        main = main.merge(admin_routes().with_state(state.clone()));
        None
    };
    Routers {
        main: finish(main),
        callbacks,
        admin,
    }
}

/// One router with every endpoint.
pub fn router(state: Arc<AppState>, callbacks: Vec<Router>) -> Router {
    routers(state, callbacks, false, false).main
}

/// The submit API and the media links.
pub fn api_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/messages", post(api::submit))
        .route("/v1/messages/{id}", get(api::get_message))
        .route("/media/{msg}/{part}/{name}", get(media::part))
        .route("/v1/apps/{appid}/messages", post(apps::push))
        .route("/v1/users/{id}/apps", get(apps::list_installs))
        .route(
            "/v1/users/{id}/apps/{appid}",
            axum::routing::put(apps::install).delete(apps::uninstall),
        )
        .route("/v1/users/{id}/app-messages", get(apps::stack))
        .route("/v1/users/{id}/recommendations", post(apps::recommend))
        .route("/v1/cards", post(cards::send))
        .route("/v1/users/{id}/contacts", get(cards::list).post(cards::add))
}

/// The admin API (its own token; optionally its own listener, `http.admin_listen`): the
/// erasure and message reads of [`admin`], and the directory (users, groups, join requests).
pub fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/erase", post(admin::erase))
        .route("/admin/v1/messages/{id}", get(admin::get_message))
        .route(
            "/v1/users/{id}",
            get(directory::get_user)
                .put(directory::put_user)
                .delete(directory::delete_user),
        )
        .route(
            "/v1/groups/{id}",
            get(directory::get_group)
                .put(directory::put_group)
                .delete(directory::delete_group),
        )
        .route(
            "/v1/apps/{appid}",
            get(apps::get_app)
                .put(apps::put_app)
                .delete(apps::delete_app),
        )
        .route("/v1/groups/{id}/members", get(directory::members))
        .route(
            "/v1/groups/{id}/join-requests",
            post(directory::request_join),
        )
        .route(
            "/v1/groups/{id}/join-requests/{rid}/approve",
            post(directory::approve),
        )
        .route(
            "/v1/groups/{id}/join-requests/{rid}/refuse",
            post(directory::refuse),
        )
}

/// `/metrics` (limited to `http.metrics_allow` or `http.metrics_token`) and `/readyz`.
fn service_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/readyz", get(readyz))
}

/// An API error: HTTP status, stable code, human message.
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
    /// The field of the request at fault, where one is (`field` in the answer).
    pub field: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({ "code": self.code, "message": self.message });
        if let Some(f) = self.field {
            body["field"] = serde_json::json!(f);
        }
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

async fn metrics_page(State(st): State<Arc<AppState>>, req: axum::extract::Request) -> Response {
    if !metrics_allowed(&st.cfg.http, &req) {
        metrics::counter!("switchboard_http_refused_total", "listener" => "api", "reason" => "metrics_forbidden")
            .increment(1);
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_default();
        tracing::debug!(peer, "/metrics refused");
        return (StatusCode::FORBIDDEN, "forbidden\n").into_response();
    }
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

/// A scraper may read `/metrics` from an address in `metrics_allow`, or anywhere with
/// `Authorization: Bearer <metrics_token>`.
fn metrics_allowed(cfg: &config::HttpConfig, req: &axum::extract::Request) -> bool {
    if let Some(token) = cfg.metrics_token.as_deref().filter(|t| !t.is_empty())
        && let Some(given) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
        && constant_time_eq(given.as_bytes(), token.as_bytes())
    {
        return true;
    }
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return false;
    };
    let nets: Vec<_> = cfg
        .metrics_allow
        .iter()
        .filter_map(|n| crate::cidr::parse_cidr(n))
        .collect();
    crate::cidr::allowed(&nets, peer.ip())
}

/// Compares two secrets without leaking where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
