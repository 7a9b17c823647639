//! Business cards on HTTP.
//!
//! - `POST /v1/cards` `{from, to: […], card: "<card …>" | user: id, text?, client_ref?,
//!   report_url?}`: sends a card like any message (same token, sender, rate and recipient
//!   checks; `202 {id, recipients}`). `card` is a card element (`schemas/card.xsd`),
//!   refused with `400 invalid_card` and the `field` at fault; `user` sends that user's own
//!   card from the directory, only as that user (`403 not_your_user`). A card restricted to
//!   friends is refused for a recipient who is not one (`403 card_restricted`).
//! - `GET /v1/users/{id}/contacts`: the user's address book.
//! - `POST /v1/users/{id}/contacts` `{card_id}`: adds the card of a message the user
//!   received (`201`), or updates the contact with the same owner (`200`). A message the
//!   user did not receive is `404`; a card the user may not see `403 card_restricted`; a
//!   full book `409 address_book_full`.
//!
//! Address books take the admin token, or an API client acting for the user (as app lists).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{SubmitBody, accept, admit, bad};
use super::apps::for_user;
use super::directory::{json_body, not_found, refused};
use super::{ApiError, AppState};
use crate::address::Address;
use crate::cards::{self, Card, CardError};
use crate::directory::BookEntry;
use crate::message::{MsgId, RecipientId, now_ms};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CardBody {
    from: String,
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    card: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    text: String,
    #[serde(default)]
    client_ref: Option<String>,
    #[serde(default)]
    report_url: Option<String>,
}

fn invalid(e: CardError) -> ApiError {
    let mut err = bad("invalid_card", e.to_string());
    err.field = Some(e.field);
    err
}

fn restricted(to: &str) -> ApiError {
    refused(ApiError::new(
        StatusCode::FORBIDDEN,
        "card_restricted",
        format!("{to}: the card's owner shows it to friends only"),
    ))
}

fn unavailable(e: crate::store::StoreError) -> ApiError {
    tracing::error!(error = %e, "cannot read or write an address book");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        e.to_string(),
    )
}

/// `POST /v1/cards`.
pub(super) async fn send(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (client, body) = admit(&st, &headers, body)?;
    let req: CardBody =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_json", e.to_string()))?;
    let from = Address::parse_user(&req.from).map_err(|e| bad(e.code(), format!("from: {e}")))?;
    let snap = st.intake.directory().snapshot();
    let cfg = &st.cfg.cards;
    let mut card: Card = match (&req.card, &req.user) {
        (Some(xml), None) => cards::xml::parse(xml, cfg).map_err(invalid)?,
        (None, Some(id)) => {
            let user = snap.users.get(id).ok_or_else(|| not_found("user", id))?;
            if snap.user_of(&from).is_none_or(|u| u.id != *id) {
                return Err(refused(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "not_your_user",
                    format!("{from} is not user {id:?}: a user's card is sent by that user"),
                )));
            }
            let card = Card::of_user(user);
            card.validate(cfg).map_err(invalid)?;
            card
        }
        _ => {
            return Err(bad(
                "invalid_card",
                "give the card (card: \"<card …>\") or a user id (user), one of them",
            ));
        }
    };
    card.vouch(&snap, &from);
    // The auth stage refuses each restricted recipient again (and the people of a group);
    // here the ones named are refused at once, before anything is stored.
    for to in &req.to {
        if let Ok(a) = Address::parse_user(to)
            && !matches!(a, Address::Group(_))
            && !cards::may_see(&snap, cfg, &card, &a)
        {
            return Err(restricted(to));
        }
    }
    let sub = SubmitBody {
        from: req.from,
        as_group: None,
        to: req.to,
        text: req.text,
        parts: Vec::new(),
        subject: None,
        client_ref: req.client_ref,
        report_url: req.report_url,
    };
    accept(&st, &client, sub, Some(card)).await
}

fn contact(e: &BookEntry) -> Value {
    let mut v = e.entry.clone();
    v["id"] = json!(e.id);
    if let Some(card) = e
        .entry
        .get("card")
        .and_then(|c| serde_json::from_value::<Card>(c.clone()).ok())
    {
        v["xml"] = json!(cards::xml::to_xml(&card));
    }
    v
}

/// `GET /v1/users/{id}/contacts`.
pub(super) async fn list(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    for_user(&st, &headers, &user)?;
    let book = st
        .intake
        .ctx()
        .store
        .address_book(&user)
        .await
        .map_err(unavailable)?;
    let contacts: Vec<Value> = book.iter().map(contact).collect();
    Ok(axum::Json(json!({ "contacts": contacts })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    card_id: String,
}

/// `POST /v1/users/{id}/contacts`.
pub(super) async fn add(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    for_user(&st, &headers, &user)?;
    let req: AddBody = json_body(&st, body)?;
    let missing = || not_found("card", &req.card_id);
    let id = MsgId::parse(&req.card_id)
        .or_else(|| RecipientId::parse(&req.card_id).map(|r| r.msg))
        .ok_or_else(missing)?;
    let store = &st.intake.ctx().store;
    let env = store
        .load(id)
        .await
        .map_err(unavailable)?
        .ok_or_else(missing)?;
    let snap = st.intake.directory().snapshot();
    // Only a card the user received: another user's message is answered like a missing one.
    let received = env
        .recipients
        .iter()
        .find(|r| snap.user_of(&r.address).is_some_and(|u| u.id == user));
    let (Some(card), Some(rcpt)) = (env.content.card.as_ref(), received) else {
        return Err(missing());
    };
    if !cards::may_see(&snap, &st.cfg.cards, card, &rcpt.address) {
        return Err(restricted(&rcpt.address.to_string()));
    }
    let key = card.contact_key();
    let book = store.address_book(&user).await.map_err(unavailable)?;
    let known = book.iter().find(|e| e.id == key);
    if known.is_none() && book.len() >= st.cfg.cards.max_contacts {
        return Err(refused(ApiError::new(
            StatusCode::CONFLICT,
            "address_book_full",
            format!(
                "user {user:?} has {} contacts, the most kept",
                st.cfg.cards.max_contacts
            ),
        )));
    }
    let now = now_ms();
    let added_at = known
        .and_then(|e| e.entry.get("added_at").cloned())
        .unwrap_or(json!(now));
    let entry = BookEntry {
        owner: user.clone(),
        id: key,
        entry: json!({
            "card": card,
            "from_message": env.id.to_string(),
            "from": env.origin.to_string(),
            "added_at": added_at,
            "updated_at": now,
        }),
    };
    let existed = store
        .put_book_entry(entry.clone())
        .await
        .map_err(unavailable)?;
    metrics::counter!("switchboard_contacts_total", "change" => if existed { "updated" } else { "added" })
        .increment(1);
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, axum::Json(contact(&entry))).into_response())
}
