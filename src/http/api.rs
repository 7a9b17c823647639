//! `POST /v1/messages` and `GET /v1/messages/{id}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{Caller, Client, refused};
use super::{ApiError, AppState};
use crate::address::Address;
use crate::directory::Door;
use crate::message::{Content, Kind, MsgId, Part, RecipientId};
use crate::pipeline::{Draft, Refused, SubmitError};

const MAX_CLIENT_REF: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmitBody {
    pub from: String,
    /// Speak as this group (`group:ID`): `from` must be a member; the group's people are
    /// the recipients (besides any in `to`).
    #[serde(default, rename = "as")]
    pub as_group: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub parts: Vec<Part>,
    /// Subject of a mail, first line of an IM message.
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub client_ref: Option<String>,
    #[serde(default)]
    pub report_url: Option<String>,
}

pub(super) fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => code)
        .increment(1);
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

pub(super) async fn submit(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (client, body) = admit(&st, &headers, body)?;
    let req: SubmitBody =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_json", e.to_string()))?;
    accept(&st, &client, req, None).await
}

/// A submission's caller (an API client within its rate) and its body (within the size
/// limit).
pub(super) fn admit(
    st: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Arc<Client>, Bytes), ApiError> {
    let client = match st.callers.caller(headers)? {
        Caller::Client(c) => c,
        Caller::Admin => {
            refused("sender_not_allowed");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "sender_not_allowed",
                "the admin token does not submit messages; use a client's token",
            ));
        }
    };
    if let Err(wait) = client.take_submit() {
        refused("rate_limited");
        return Err(ApiError {
            retry_after: Some(wait),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "client {:?} may submit {} messages per second",
                    client.cfg.name, client.cfg.submit_rate
                ),
            )
        });
    }
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => "payload_too_large")
                .increment(1);
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {} bytes", st.cfg.http.max_body_bytes),
            )
        } else {
            bad("invalid_body", e.body_text())
        }
    })?;
    Ok((client, body))
}

/// Checks a submission, commits it and answers `202`. `card`: a business card it carries
/// (checked already).
pub(super) async fn accept(
    st: &AppState,
    client: &Client,
    req: SubmitBody,
    card: Option<crate::cards::Card>,
) -> Result<Response, ApiError> {
    let from = Address::parse_user(&req.from).map_err(|e| bad(e.code(), format!("from: {e}")))?;
    if !client.may_send_as(&from) {
        refused("sender_not_allowed");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "sender_not_allowed",
            format!("client {:?} may not send as {from}", client.cfg.name),
        ));
    }
    // A registered app speaks only through its signed push API: no bearer token may send
    // as it.
    if let Address::App(appid) = &from
        && st
            .intake
            .directory()
            .snapshot()
            .apps
            .apps
            .contains_key(appid)
    {
        refused("app_signed_only");
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "app_signed_only",
            format!(
                "{from} is a registered app: it pushes through POST /v1/apps/{appid}/messages, signed with its secret"
            ),
        ));
    }
    let max_recipients = client.max_recipients();
    let speak_as = match req.as_group.as_deref().map(Address::parse_user) {
        None => None,
        Some(Ok(Address::Group(g))) => Some(g),
        Some(_) => return Err(bad("invalid_address", "as: give a group, group:ID")),
    };
    if req.to.is_empty() && speak_as.is_none() {
        return Err(bad("no_recipients", "to: give at least one recipient"));
    }
    if req.to.len() > max_recipients {
        return Err(bad(
            "too_many_recipients",
            format!("to: at most {max_recipients} recipients per submission for this client"),
        ));
    }
    if req.text.is_empty() && req.parts.is_empty() && card.is_none() {
        return Err(bad("empty_message", "give a text or parts"));
    }
    if let Some(s) = &req.subject
        && (s.len() > 998 || s.contains(['\r', '\n']))
    {
        return Err(bad("bad_subject", "subject: one line of at most 998 bytes"));
    }
    if req
        .client_ref
        .as_ref()
        .is_some_and(|r| r.len() > MAX_CLIENT_REF)
    {
        return Err(bad(
            "invalid_client_ref",
            format!("client_ref: at most {MAX_CLIENT_REF} bytes"),
        ));
    }
    let report_to = match &req.report_url {
        Some(url) => Some(
            Address::parse_url(url)
                .map_err(|e| bad("invalid_report_url", format!("report_url: {e}")))?,
        ),
        None => None,
    };
    let mut given: Vec<Address> = Vec::with_capacity(req.to.len());
    for (i, to) in req.to.iter().enumerate() {
        given.push(Address::parse_user(to).map_err(|e| bad(e.code(), format!("to[{i}]: {e}")))?);
    }
    // Groups are expanded before the commit, so the stored recipients are the real ones
    // and a later change of the group does not alter accepted work.
    let resolved = st
        .intake
        .resolve(&from, &given, Door::Api, speak_as.as_deref())
        .map_err(|e| match e {
            Refused::UnknownGroup(g) if g.index < given.len() => bad(
                "unknown_group",
                format!("to[{}]: no group {:?}", g.index, g.name),
            ),
            Refused::UnknownGroup(g) => bad("unknown_group", format!("as: no group {:?}", g.name)),
            Refused::Sender(s) => ApiError::new(StatusCode::FORBIDDEN, s.code(), s.to_string()),
        })?;
    let addrs: Vec<&Address> = resolved.to.iter().map(|(a, _)| a).collect();
    if addrs.is_empty() {
        return Err(bad("no_recipients", "nobody is left to send to"));
    }
    if addrs.len() > max_recipients {
        return Err(bad(
            "too_many_recipients",
            format!("at most {max_recipients} recipients after group expansion"),
        ));
    }
    // The destination policy is applied again by the auth stage to every message; here it
    // refuses at once, before anything is stored.
    for a in addrs {
        if let Err(why) = st.cfg.limits.check_destination(a) {
            refused("destination_denied");
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "destination_denied",
                format!("{a}: {}", why.trim_start_matches("destination_denied: ")),
            ));
        }
    }
    let mut content = Content {
        text: req.text,
        subject: req.subject,
        parts: req.parts,
        report: None,
        mail: None,
        app: None,
        card: None,
    };
    if let Some(card) = card {
        crate::cards::attach(&mut content, card);
    }
    let env = st.intake.stamp(
        Draft {
            kind: Kind::Message,
            origin: from,
            client: client.cfg.name.clone(),
            client_ref: req.client_ref,
            report_to,
            to: given,
            content,
            note: None,
            door: Door::Api,
            speak_as,
        },
        resolved,
    );
    let env = st.intake.submit(env).await.map_err(|e| match e {
        SubmitError::QueueFull => ApiError {
            retry_after: Some(st.cfg.http.retry_after_secs),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_full",
                "the gateway is at capacity; try again later",
            )
        },
        SubmitError::ShuttingDown => ApiError {
            retry_after: Some(st.cfg.http.retry_after_secs),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the gateway is shutting down",
            )
        },
        SubmitError::Store(e) => {
            tracing::error!(error = %e, "cannot commit a submission");
            ApiError {
                retry_after: Some(st.cfg.http.retry_after_secs),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the message could not be stored; try again later",
                )
            }
        }
    })?;
    let recipients: Vec<_> = env
        .recipients
        .iter()
        .map(|r| serde_json::json!({"address": r.address.to_string(), "state": r.state}))
        .collect();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "id": env.id.to_string(), "recipients": recipients })),
    )
        .into_response())
}

pub(super) async fn get_message(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = st.callers.caller(&headers)?;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no message {id:?}"),
        )
    };
    // A message id, or a recipient's id (as the IM webhook gives it).
    let msg = MsgId::parse(&id)
        .or_else(|| RecipientId::parse(&id).map(|r| r.msg))
        .ok_or_else(not_found)?;
    let store = &st.intake.ctx().store;
    let unavailable = |e: crate::store::StoreError| {
        tracing::error!(error = %e, "cannot read a message");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        )
    };
    let env = store
        .load(msg)
        .await
        .map_err(unavailable)?
        .ok_or_else(not_found)?;
    // A client sees only what it submitted; what connectors received (MO, mail, XMPP)
    // and the reports the gateway made are for the admin token. Someone else's message
    // is answered exactly like a missing one.
    let allowed = match &caller {
        Caller::Admin => true,
        Caller::Client(c) => env.client == c.cfg.name && env.kind == Kind::Message,
    };
    if !allowed {
        return Err(not_found());
    }
    let reports = store.reports(msg).await.map_err(unavailable)?;
    let recipients: Vec<_> = env
        .recipients
        .iter()
        .map(|r| {
            serde_json::json!({
                "address": r.address.to_string(),
                "channel": r.channel().as_str(),
                "state": r.state,
                "attempts": r.attempts,
                "last_error": r.last_error,
                "remote_id": r.remote_id,
                "sms_encoding": r.sms.map(|i| i.encoding.as_str()),
                "sms_parts": r.sms.map(|i| i.parts),
            })
        })
        .collect();
    let reports: Vec<_> = reports
        .iter()
        .map(|s| {
            serde_json::json!({
                "recipient": env.recipient(s.recipient).map(|r| r.address.to_string()),
                "status": s.status,
                "state": s.state,
                "received_at": s.received_at,
            })
        })
        .collect();
    Ok(axum::Json(serde_json::json!({
        "id": env.id.to_string(),
        "kind": env.kind.as_str(),
        "from": env.origin.to_string(),
        "client_ref": env.client_ref,
        "text": env.content.text,
        "created_at": env.created_at,
        "expires_at": env.expires_at,
        "note": env.note,
        "recipients": recipients,
        "reports": reports,
    }))
    .into_response())
}
