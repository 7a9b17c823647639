//! The app platform on HTTP.
//!
//! The registry, on the admin API (admin token only):
//! - `PUT /v1/apps/{appid}` `{name, icon_url?, secret?, callback_url?, enabled, may_target:
//!   ["user", "friends", "group"], rate_per_minute, phones?, pull_every_secs?, audience?}`:
//!   `201` (made) or `200` (replaced) with the app; a secret made because none was given is
//!   in the answer as `secret`, the only time it is shown. `If-None-Match: *` only adds.
//! - `GET /v1/apps/{appid}` (never with the secret); `DELETE /v1/apps/{appid}` (`204`; the
//!   app leaves every app list).
//!
//! The open push API, signed by the app (see `apps::sign`), no bearer token:
//! - `POST /v1/apps/{appid}/messages` `{target: {"user": id} | {"friends_of": id} |
//!   {"group": id}, mode: "popup" | "tip" | "silent", content: "<xml…>", text?, report?}`:
//!   `202 {id, users, recipients, unreachable}` once committed. Refused with `403`
//!   (`unknown_app`, `bad_signature`, `stale_timestamp`, `replayed_nonce`, `app_disabled`,
//!   `target_not_allowed`, `not_installed`), `400` (`invalid_json`, `invalid_content`,
//!   `content_too_large`, `text_too_long`, `too_many_recipients`, `unknown_user`,
//!   `unknown_group`), `429 rate_limited`, `413` over `http.max_body_bytes`, `503` when
//!   the gateway cannot take it; nothing is stored on a refusal.
//!
//! A user's app list, message stack and recommendations: the admin token, or an API client
//! acting for the user (one of the user's addresses matches the client's `senders`: the
//! IM server's token for its users); any other caller gets `403 not_your_user`.
//! - `PUT /v1/users/{id}/apps/{appid}` installs (`201`, or `200` when it was there);
//!   `DELETE` uninstalls (`204`); `GET /v1/users/{id}/apps` lists `{apps: [{app, name,
//!   icon_url, enabled, installed_at}]}`.
//! - `GET /v1/users/{id}/app-messages?since=<id>&limit=<n>`: `{messages: [...], next}` —
//!   what arrived after `since` (16 hex digits; none: from the oldest kept), oldest first,
//!   `limit` (1-500, default 50) at most; `next` is the `since` of the following call.
//! - `POST /v1/users/{id}/recommendations` `{appid, to: friend id, comment?}`: `202`; only
//!   to friends (`403 not_a_friend`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::directory::{
    admin, change, create_only, json_body, not_found, put_status, read_body, refused,
};
use super::{ApiError, AppState};
use crate::apps::push::PushBody;
use crate::apps::{AppError, Pushed, Signed, registry};
use crate::directory::App;
use crate::message::{MsgId, now_ms};

/// Most app messages one stack read returns.
pub const MAX_LIMIT: usize = 500;

/// The status an app platform refusal is answered with.
fn status(code: &str) -> StatusCode {
    match code {
        "unknown_app" | "bad_signature" | "stale_timestamp" | "replayed_nonce" | "app_disabled"
        | "target_not_allowed" | "not_installed" | "not_a_friend" | "not_allowed"
        | "not_your_user" => StatusCode::FORBIDDEN,
        "not_found" => StatusCode::NOT_FOUND,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "queue_full" | "busy" | "store_unavailable" | "shutting_down" => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

fn app_error(e: AppError) -> ApiError {
    ApiError {
        status: status(e.code),
        code: e.code,
        message: e.message,
        retry_after: e.retry_after,
        field: None,
    }
}

/// An app as the API shows it: without its secret.
fn shown(app: &App) -> Value {
    let mut v = serde_json::to_value(app).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("secret");
    }
    v
}

/// `PUT /v1/apps/{appid}`.
pub(super) async fn put_app(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    let only_create = create_only(&headers)?;
    let app: App = json_body(&st, body)?;
    let mut existed = false;
    let mut made = None;
    let plan = change(&st, |snap| {
        existed = snap.apps.apps.contains_key(&id);
        let (plan, secret) = registry::put_app(snap, &id, app, only_create)?;
        made = secret;
        Ok(plan)
    })
    .await?;
    let Some(app) = plan.snap.apps.apps.get(&id) else {
        return Err(not_found("app", &id));
    };
    tracing::info!(
        app = %id,
        created = !existed,
        enabled = app.enabled,
        secret_made = made.is_some(),
        "app registry: app put"
    );
    let mut v = shown(app);
    if let (Some(secret), Some(o)) = (made, v.as_object_mut()) {
        o.insert("secret".into(), Value::String(secret));
    }
    Ok((put_status(existed), axum::Json(v)).into_response())
}

/// `GET /v1/apps/{appid}`.
pub(super) async fn get_app(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    let snap = st.intake.directory().snapshot();
    let app = snap
        .apps
        .apps
        .get(&id)
        .ok_or_else(|| not_found("app", &id))?;
    Ok(axum::Json(shown(app)).into_response())
}

/// `DELETE /v1/apps/{appid}`.
pub(super) async fn delete_app(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    change(&st, |snap| registry::delete_app(snap, &id)).await?;
    tracing::info!(app = %id, "app registry: app deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /v1/apps/{appid}/messages`.
pub(super) async fn push(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    Path(appid): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let apps = &st.apps;
    let body = body.map_err(|e| {
        let too_large = e.status() == StatusCode::PAYLOAD_TOO_LARGE;
        let err = AppError::new(
            if too_large {
                "payload_too_large"
            } else {
                "invalid_body"
            },
            if too_large {
                format!(
                    "the body is larger than {} bytes",
                    st.cfg.http.max_body_bytes
                )
            } else {
                e.body_text()
            },
        );
        let err = apps.refused(&appid, err);
        ApiError::new(e.status(), err.code, err.message)
    })?;
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let signed = Signed {
        timestamp: header(&headers, crate::apps::sign::TIMESTAMP),
        nonce: header(&headers, crate::apps::sign::NONCE),
        signature: header(&headers, crate::apps::sign::SIGNATURE),
    };
    let app = apps
        .authenticate(&appid, "POST", path, &signed, &body)
        .map_err(app_error)?;
    let push: PushBody = serde_json::from_slice(&body).map_err(|e| {
        app_error(apps.refused(&appid, AppError::new("invalid_json", e.to_string())))
    })?;
    let pushed = apps.push(&app, push, "api").await.map_err(app_error)?;
    Ok(accepted(&pushed))
}

fn accepted(p: &Pushed) -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "id": p.id.to_string(),
            "users": p.users,
            "recipients": p.recipients,
            "unreachable": p.unreachable,
        })),
    )
        .into_response()
}

/// The admin, or an API client acting for `user` (one of the user's addresses is a
/// sender it may use); else `401` / `403 not_your_user`.
pub(super) fn for_user(st: &AppState, headers: &HeaderMap, user: &str) -> Result<Caller, ApiError> {
    let caller = st.callers.caller(headers).map_err(refused)?;
    match &caller {
        Caller::Admin => {
            if !st.intake.directory().snapshot().users.contains_key(user) {
                return Err(not_found("user", user));
            }
        }
        Caller::Client(c) => {
            let snap = st.intake.directory().snapshot();
            let mine = snap
                .users
                .get(user)
                .is_some_and(|u| u.addresses.iter().any(|a| c.may_send_as(a)));
            if !mine {
                return Err(refused(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "not_your_user",
                    format!("this token does not act for user {user:?}"),
                )));
            }
        }
    }
    Ok(caller)
}

/// `GET /v1/users/{id}/apps`.
pub(super) async fn list_installs(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    for_user(&st, &headers, &user)?;
    let snap = st.intake.directory().snapshot();
    let apps: Vec<Value> = snap
        .apps
        .installs_of(&user)
        .map(|i| {
            let app = snap.apps.apps.get(&i.app);
            json!({
                "app": i.app,
                "name": app.map(|a| a.name.as_str()),
                "icon_url": app.and_then(|a| a.icon_url.as_deref()),
                "enabled": app.is_some_and(|a| a.enabled),
                "installed_at": i.installed_at,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "apps": apps })).into_response())
}

/// `PUT /v1/users/{id}/apps/{appid}`.
pub(super) async fn install(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((user, appid)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    for_user(&st, &headers, &user)?;
    read_body(&st, body)?;
    let mut was = false;
    let plan = change(&st, |snap| {
        let (plan, existed) = registry::install(snap, &user, &appid, now_ms())?;
        was = existed;
        Ok(plan)
    })
    .await?;
    if !was {
        tracing::info!(user = %user, app = %appid, "app installed");
    }
    let i = plan
        .snap
        .apps
        .installs
        .get(&(user.clone(), appid.clone()))
        .cloned();
    Ok((put_status(was), axum::Json(i)).into_response())
}

/// `DELETE /v1/users/{id}/apps/{appid}`.
pub(super) async fn uninstall(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((user, appid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    for_user(&st, &headers, &user)?;
    change(&st, |snap| registry::uninstall(snap, &user, &appid)).await?;
    tracing::info!(user = %user, app = %appid, "app uninstalled");
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StackQuery {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/users/{id}/app-messages`.
pub(super) async fn stack(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    q: Result<Query<StackQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    for_user(&st, &headers, &user)?;
    let bad = |m: String| refused(ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", m));
    let Query(q) = q.map_err(|e| bad(e.body_text()))?;
    let since = match q.since.as_deref() {
        None | Some("") | Some("0") => 0,
        Some(s) => {
            MsgId::parse(s)
                .ok_or_else(|| bad(format!("since: {s:?} is not an id (16 hex digits)")))?
                .0
        }
    };
    let limit = q.limit.unwrap_or(50);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad(format!("limit: 1-{MAX_LIMIT}")));
    }
    let messages = st
        .intake
        .ctx()
        .store
        .app_messages(&user, since, limit)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "cannot read a message stack");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the store could not be read; try again later",
            )
        })?;
    let next = messages
        .last()
        .map(|m| m.id.clone())
        .unwrap_or_else(|| q.since.clone().unwrap_or_default());
    Ok(axum::Json(json!({ "messages": messages, "next": next })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecommendBody {
    appid: String,
    to: String,
    #[serde(default)]
    comment: String,
}

/// `POST /v1/users/{id}/recommendations`.
pub(super) async fn recommend(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = for_user(&st, &headers, &user)?;
    if let Caller::Client(c) = &caller
        && let Err(wait) = c.take_submit()
    {
        let mut e = refused(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests; slow down",
        ));
        e.retry_after = Some(wait);
        return Err(e);
    }
    let b: RecommendBody = json_body(&st, body)?;
    let pushed = st
        .apps
        .recommend(&user, &b.appid, &b.to, &b.comment)
        .await
        .map_err(app_error)?;
    Ok(accepted(&pushed))
}
