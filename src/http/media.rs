//! `GET /media/<message>/<part>/<name>?e=<expiry>&s=<signature>`: one media part of a
//! stored message, for a link the gateway signed (`content::media`). A bad signature gets
//! 403, an expired link 410, a part that is not there 404; the answer carries the part's
//! own content type when it is an image, audio or video (else it is a download), and
//! `nosniff` so that a browser does not reinterpret it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::content::media::LinkError;

fn refused(outcome: &'static str, e: ApiError) -> Response {
    metrics::counter!("switchboard_media_requests_total", "outcome" => outcome).increment(1);
    e.into_response()
}

pub(super) async fn part(
    State(st): State<Arc<AppState>>,
    Path((msg, part, _name)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let now = u64::try_from(crate::message::now_ms() / 1000).unwrap_or(0);
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    let (id, idx) = match st.media.verify(&msg, &part, get("e"), get("s"), now) {
        Ok(v) => v,
        Err(LinkError::Invalid) => {
            return refused(
                "invalid",
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "invalid_link",
                    "the link is not valid",
                ),
            );
        }
        Err(LinkError::Expired) => {
            return refused(
                "expired",
                ApiError::new(StatusCode::GONE, "link_expired", "the link has expired"),
            );
        }
    };
    let env = match st.intake.ctx().store.load(id).await {
        Ok(env) => env,
        Err(e) => {
            tracing::error!(error = %e, "cannot read a message for a media link");
            return refused(
                "store",
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "try again later",
                ),
            );
        }
    };
    let Some(p) = env.and_then(|e| e.content.parts.into_iter().nth(idx)) else {
        return refused(
            "not_found",
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such part"),
        );
    };
    metrics::counter!("switchboard_media_requests_total", "outcome" => "served").increment(1);
    // Media are shown in place; anything else is offered as a download, never rendered
    // as a page of the gateway's origin.
    let (ct, disposition) = if crate::content::mms::is_media(&p.content_type) {
        (
            HeaderValue::from_str(&p.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            "inline",
        )
    } else {
        (
            HeaderValue::from_static("application/octet-stream"),
            "attachment",
        )
    };
    (
        [
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static(disposition),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("sandbox"),
            ),
            (header::CONTENT_TYPE, ct),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=3600"),
            ),
        ],
        p.bytes,
    )
        .into_response()
}
