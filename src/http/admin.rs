//! The admin API: the operator's door, opened only by the admin token (`[admin] token` or
//! `token_file`); without one configured every call is refused.
//!
//! - `GET /v1/messages/{id}` with the admin token reads any message (also those that
//!   connectors received: MO, mail, XMPP, and the gateway's reports).
//! - `POST /admin/v1/erase` `{"address": "sms:+86…"}` removes everything about one address:
//!   the messages it sent, its recipient rows (a message it alone received goes whole),
//!   their reports and its reply route. The same as `switchboard erase <address>`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{ApiError, AppState};
use crate::address::Address;

/// `[admin]`: the operator's token.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// The admin bearer token (16+ characters). Empty (and no `token_file`): the admin API
    /// is closed.
    pub token: String,
    /// A file holding the admin token (its first line), instead of `token`.
    pub token_file: Option<PathBuf>,
}

impl AdminConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !self.token.is_empty() && self.token.len() < 16 {
            e.push("admin.token: must be at least 16 characters".into());
        }
        e
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseBody {
    address: String,
}

/// `GET /admin/v1/messages/{id}`: any message, for the admin token only (a client's token
/// gets `403` here, even for its own messages).
pub(super) async fn get_message(
    state: State<Arc<AppState>>,
    headers: HeaderMap,
    id: axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    state.callers.admin(&headers)?;
    super::api::get_message(state, headers, id).await
}

/// `POST /admin/v1/erase`.
pub(super) async fn erase(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    st.callers.admin(&headers)?;
    let body = body.map_err(|e| {
        let code = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "invalid_body"
        };
        ApiError::new(e.status(), code, e.body_text())
    })?;
    let req: EraseBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.to_string()))?;
    let addr = Address::parse_user(&req.address)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let ctx = st.intake.ctx();
    let erased = ctx.store.erase(&addr).await.map_err(|e| {
        tracing::error!(error = %e, "cannot erase an address");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the store could not be changed; try again later",
        )
    })?;
    ctx.forget_reply_route(&addr);
    tracing::info!(
        messages = erased.messages,
        recipients = erased.recipients,
        reports = erased.reports,
        reply_routes = erased.reply_routes,
        "erased an address on the admin API"
    );
    Ok((StatusCode::OK, axum::Json(erased)).into_response())
}
