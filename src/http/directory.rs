//! The directory on the admin API (admin token only): users, groups and join requests.
//!
//! - `PUT /v1/users/{id}` `{name, addresses: ["sms:+86…", "im:…", "mail:…"], friends: [ids],
//!   friends_only?}`: adds (`201`) or replaces (`200`) a user; answers with the user stored.
//!   `If-None-Match: *` only adds: an id already taken is `409 duplicate_id`.
//! - `GET /v1/users/{id}`: the user, or `404 not_found`.
//! - `DELETE /v1/users/{id}`: `204`; `404 not_found`; `409 in_use` while a group names the
//!   user (as member, creator or admin).
//! - `PUT`, `GET`, `DELETE /v1/groups/{id}` `{name, creator?, admins: [ids], members:
//!   [{"user": id} | {"group": id} | {"address": "sms:+86…"}], limit}`: the same, for groups;
//!   deleting a group that is a member of another is `409 in_use`.
//! - `GET /v1/groups/{id}/members`: the direct members, `{"members": [{"kind": "user", "id",
//!   "name"}, {"kind": "group", "id", "name"}, {"kind": "address", "address"}]}`; a group
//!   inside is one entry.
//! - `POST /v1/groups/{id}/join-requests` `{"user": id}` (the user asks) or `{"group": id,
//!   "by": id}` (a creator or admin of that group asks for it): `201` with the request
//!   `{id, group, member, by, state: "pending", created_at}`; the group's creator and admins
//!   are told. Neither or both of `user` and `group`, or a group with no `by`, is
//!   `400 invalid_request`.
//! - `POST /v1/groups/{id}/join-requests/{rid}/approve` and `…/refuse` (no body, or `{}`):
//!   `200` with the request decided; the requester is told, and when a group joins, every
//!   person inside it. `404 not_found`; `409 already_decided`.
//!
//! A change is checked whole before anything is written: a refused one stores nothing.
//! Refusals are `400` with the directory's code (`unknown_member`, `invalid_member`,
//! `address_taken`, `cycle`, `already_member`, `already_requested`, `not_an_admin`, `over_limit` (its message
//! gives the limit), …), except `404 not_found` and `409` for conflicts with what is stored
//! (`duplicate_id`, `in_use`, `already_decided`). A body that is not JSON, or has fields
//! these records do not have, is `400 invalid_json`; one over `http.max_body_bytes` is
//! `413 payload_too_large`; a store that cannot take the change is `503 store_unavailable`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::directory::ops::Plan;
use crate::directory::{DirError, Group, JoinRequest, Member, Snapshot, User};
use crate::message::now_ms;
use crate::pipeline::ChangeError;

/// Counts a refusal of the admin API by its code, and passes it on.
pub(super) fn refused(e: ApiError) -> ApiError {
    metrics::counter!("switchboard_admin_refused_total", "reason" => e.code).increment(1);
    e
}

/// The admin token, or the caller's `401` / `403`.
pub(super) fn admin(st: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    st.callers.admin(headers).map_err(refused)
}

/// The body, within `http.max_body_bytes`.
pub(super) fn read_body(
    st: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        refused(if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "the body is larger than {} bytes",
                    st.cfg.http.max_body_bytes
                ),
            )
        } else {
            ApiError::new(e.status(), "invalid_body", e.body_text())
        })
    })
}

pub(super) fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        refused(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            e.to_string(),
        ))
    })
}

/// Reads a JSON body of type `T`.
pub(super) fn json_body<T: DeserializeOwned>(
    st: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    parse(&read_body(st, body)?)
}

/// The status a refused change is answered with.
fn dir_status(e: &DirError) -> StatusCode {
    if e.is_not_found() {
        StatusCode::NOT_FOUND
    } else if e.is_conflict() {
        StatusCode::CONFLICT
    } else if matches!(e.code, "app_disabled" | "not_allowed") {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::BAD_REQUEST
    }
}

pub(super) fn dir_error(e: DirError) -> ApiError {
    refused(ApiError::new(dir_status(&e), e.code, e.message))
}

pub(super) fn not_found(what: &str, id: &str) -> ApiError {
    refused(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no {what} {id:?}"),
    ))
}

/// Checks and commits a change.
pub(super) async fn change<F>(st: &AppState, decide: F) -> Result<Plan, ApiError>
where
    F: FnOnce(&Snapshot) -> Result<Plan, DirError>,
{
    st.intake
        .change_directory(decide)
        .await
        .map_err(|e| match e {
            ChangeError::Refused(e) => dir_error(e),
            ChangeError::Store(e) => {
                tracing::error!(error = %e, "cannot write the directory");
                refused(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store could not be changed; try again later",
                ))
            }
        })
}

/// `If-None-Match: *`: only create. Other values are not understood, and refused rather
/// than ignored.
pub(super) fn create_only(headers: &HeaderMap) -> Result<bool, ApiError> {
    match headers.get(header::IF_NONE_MATCH) {
        None => Ok(false),
        Some(v) if v.to_str().is_ok_and(|v| v.trim() == "*") => Ok(true),
        Some(_) => Err(refused(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_precondition",
            "If-None-Match: only \"*\" (create, never replace) is understood",
        ))),
    }
}

pub(super) fn put_status(existed: bool) -> StatusCode {
    if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    }
}

/// `PUT /v1/users/{id}`.
pub(super) async fn put_user(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    let only_create = create_only(&headers)?;
    let user: User = json_body(&st, body)?;
    let mut existed = false;
    let plan = change(&st, |snap| {
        existed = snap.users.contains_key(&id);
        snap.put_user(&id, user, only_create)
    })
    .await?;
    tracing::info!(user = %id, created = !existed, "directory: user put");
    let stored = plan.snap.users.get(&id).cloned();
    Ok((put_status(existed), axum::Json(stored)).into_response())
}

/// `GET /v1/users/{id}`.
pub(super) async fn get_user(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    let snap = st.intake.directory().snapshot();
    let user = snap.users.get(&id).ok_or_else(|| not_found("user", &id))?;
    Ok(axum::Json(user).into_response())
}

/// `DELETE /v1/users/{id}`.
pub(super) async fn delete_user(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    change(&st, |snap| snap.delete_user(&id)).await?;
    tracing::info!(user = %id, "directory: user deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT /v1/groups/{id}`.
pub(super) async fn put_group(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    let only_create = create_only(&headers)?;
    let group: Group = json_body(&st, body)?;
    let mut existed = false;
    let plan = change(&st, |snap| {
        existed = snap.groups.contains_key(&id);
        snap.put_group(&id, group, only_create)
    })
    .await?;
    let stored = plan.snap.groups.get(&id).cloned();
    tracing::info!(
        group = %id,
        created = !existed,
        members = stored.as_ref().map_or(0, |g| g.members.len()),
        "directory: group put"
    );
    Ok((put_status(existed), axum::Json(stored)).into_response())
}

/// `GET /v1/groups/{id}`.
pub(super) async fn get_group(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    let snap = st.intake.directory().snapshot();
    let group = snap
        .groups
        .get(&id)
        .ok_or_else(|| not_found("group", &id))?;
    Ok(axum::Json(group).into_response())
}

/// `DELETE /v1/groups/{id}`.
pub(super) async fn delete_group(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    change(&st, |snap| snap.delete_group(&id)).await?;
    tracing::info!(group = %id, "directory: group deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// One direct member as `GET …/members` lists it.
fn member_entry(snap: &Snapshot, m: &Member) -> Value {
    match m {
        Member::User(id) => {
            let name = snap.users.get(id).map(|u| u.name.as_str());
            json!({"kind": "user", "id": id, "name": name})
        }
        Member::Group(id) => {
            let name = snap.groups.get(id).map(|g| g.name.as_str());
            json!({"kind": "group", "id": id, "name": name})
        }
        Member::Address(a) => json!({"kind": "address", "address": a.to_string()}),
    }
}

/// `GET /v1/groups/{id}/members`.
pub(super) async fn members(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    let snap = st.intake.directory().snapshot();
    let group = snap
        .groups
        .get(&id)
        .ok_or_else(|| not_found("group", &id))?;
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|m| member_entry(&snap, m))
        .collect();
    Ok(axum::Json(json!({ "members": members })).into_response())
}

/// A join request as asked: a user for itself, or an admin for a group.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinBody {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    group: Option<String>,
    /// Who asks: for a group, one of its creator or admins; for a user, the user (the
    /// default).
    #[serde(default)]
    by: Option<String>,
}

impl JoinBody {
    fn member(self) -> Result<(Member, String), ApiError> {
        let invalid = |message: &str| {
            refused(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                message,
            ))
        };
        match (self.user, self.group, self.by) {
            (Some(u), None, by) => {
                let by = by.unwrap_or_else(|| u.clone());
                Ok((Member::User(u), by))
            }
            (None, Some(g), Some(by)) => Ok((Member::Group(g), by)),
            (None, Some(_), None) => Err(invalid(
                "by: give the user (creator or admin of the group) who asks",
            )),
            _ => Err(invalid("give either \"user\" or \"group\" (with \"by\")")),
        }
    }
}

/// A fresh request id: 16 lowercase hex digits, not taken yet.
fn request_id(snap: &Snapshot) -> String {
    loop {
        let rid = format!("{:016x}", rand::random::<u64>());
        if !snap.requests.contains_key(&rid) {
            return rid;
        }
    }
}

fn request_body(req: Option<JoinRequest>) -> Response {
    axum::Json(req).into_response()
}

/// `POST /v1/groups/{id}/join-requests`.
pub(super) async fn request_join(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(group): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    admin(&st, &headers)?;
    let (member, by) = json_body::<JoinBody>(&st, body)?.member()?;
    let plan = change(&st, |snap| {
        let rid = request_id(snap);
        snap.request_join(&group, member, &by, &rid, now_ms())
    })
    .await?;
    if let Some(r) = &plan.request {
        tracing::info!(
            group = %group,
            request = %r.id,
            member = r.member.kind(),
            by = %r.by,
            told = plan.notices.len(),
            "directory: join request made"
        );
    }
    Ok((StatusCode::CREATED, request_body(plan.request)).into_response())
}

/// A decision's body: nothing, or `{}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {}

async fn decide(
    st: &AppState,
    headers: &HeaderMap,
    group: String,
    rid: String,
    body: Result<Bytes, BytesRejection>,
    approve: bool,
) -> Result<Response, ApiError> {
    admin(st, headers)?;
    let body = read_body(st, body)?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        parse::<DecideBody>(&body)?;
    }
    let plan = change(st, |snap| snap.decide(&group, &rid, approve)).await?;
    tracing::info!(
        group = %group,
        request = %rid,
        approved = approve,
        told = plan.notices.len(),
        "directory: join request decided"
    );
    Ok(request_body(plan.request))
}

/// `POST /v1/groups/{id}/join-requests/{rid}/approve`.
pub(super) async fn approve(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((group, rid)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    decide(&st, &headers, group, rid, body, true).await
}

/// `POST /v1/groups/{id}/join-requests/{rid}/refuse`.
pub(super) async fn refuse(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((group, rid)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    decide(&st, &headers, group, rid, body, false).await
}
