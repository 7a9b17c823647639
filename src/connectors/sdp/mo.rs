//! Mobile-originated SMS: routed to the Internet side.
//!
//! Routing order: (1) reply routing — the number the phone wrote to is the service number
//! plus an extension that names an Internet-side party; (2) an address written as the first
//! word of the text (`bob@example.org hello`, `im:alice@x.org hi`); (3) the configured default
//! route. An MO that none of these place is stored with a note and counted, never dropped.
//! A route to a group is taken only when the directory knows the group; the group is
//! expanded into its members when the MO is stored.
//!
//! No relay: a route that reaches a phone (or a group, which may hold phones) is taken only
//! with `[mo] relay_to_phones = true`, and then only to numbers under `[mo] relay_networks`;
//! otherwise it is skipped (counted in `switchboard_mo_relay_refused_total{route}`), so a
//! forged or paid-for MO never makes the gateway send an SMS.

use std::sync::Arc;

use super::MoConfig;
use super::inbound::Inbound;
use crate::address::{Address, parse_sdp_number};
use crate::directory::Door;
use crate::message::{Content, Envelope, Kind};
use crate::pipeline::{Draft, Refused, SubmitError};

/// Why an MO was refused (the SDP gets a fault and may retry).
#[derive(Debug, thiserror::Error)]
pub enum MoError {
    #[error("bad sender address {0:?}")]
    BadSender(String),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The directory refused it: the route names a group it does not know
    /// (`unknown_group`), the phone is not in the directory while MO is for known users
    /// (`unknown_sender`), or the phone is no member of the group it writes to.
    #[error(transparent)]
    Refused(#[from] Refused),
}

/// How an MO was routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Reply,
    FirstWord,
    Default,
    Unroutable,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Reply => "reply",
            Route::FirstWord => "first_word",
            Route::Default => "default",
            Route::Unroutable => "unroutable",
        }
    }
}

/// Routes and commits one MO SMS. Returns once it is stored.
pub async fn receive(
    inbound: &Inbound,
    sender: &str,
    activation_number: &str,
    text: &str,
) -> Result<(Arc<Envelope>, Route), MoError> {
    let content = Content {
        text: text.to_string(),
        ..Content::default()
    };
    receive_content(inbound, sender, activation_number, content, "sms", None).await
}

/// Routes and commits one MO of any kind (`kind`: `sms` or `mms`, for the metric): the
/// text is routed like an SMS's; the subject and parts travel with it; `note` is kept with
/// the message. Returns once it is stored.
pub async fn receive_content(
    inbound: &Inbound,
    sender: &str,
    activation_number: &str,
    mut content: Content,
    kind: &'static str,
    note: Option<String>,
) -> Result<(Arc<Envelope>, Route), MoError> {
    let text = std::mem::take(&mut content.text);
    let text = text.as_str();
    let intake = &inbound.intake;
    let cfg = &inbound.mo;
    let phone = parse_sdp_number(sender).ok_or_else(|| MoError::BadSender(sender.to_string()))?;
    let dialled = activation_number
        .trim()
        .trim_start_matches("tel:")
        .trim_start_matches('+');
    let mut target = None;
    let mut body = text.to_string();
    let mut refused = false;
    if let Some(ext) = dialled.strip_prefix(cfg.service_number.as_str())
        && !ext.is_empty()
        && let Ok(ext) = ext.parse::<u32>()
    {
        match intake.reply_route(ext).await {
            Ok(Some(party)) => {
                target = Address::parse_stored(&party)
                    .ok()
                    .filter(|a| relay_allowed(&cfg.mo, a, Route::Reply, &mut refused))
                    .map(|a| (a, Route::Reply));
            }
            Ok(None) => {}
            Err(e) => return Err(MoError::Submit(SubmitError::Store(e))),
        }
    }
    if target.is_none() {
        let trimmed = text.trim_start();
        let (word, rest) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        if let Some(addr) = Address::parse_mo_target(word, &cfg.im_domains)
            .filter(|a| known(inbound, a))
            .filter(|a| relay_allowed(&cfg.mo, a, Route::FirstWord, &mut refused))
        {
            body = rest.trim_start().to_string();
            target = Some((addr, Route::FirstWord));
        }
    }
    if target.is_none()
        && let Some(def) = &cfg.mo.default_route
        && let Ok(addr) = Address::parse_user(def)
        && known(inbound, &addr)
        && relay_allowed(&cfg.mo, &addr, Route::Default, &mut refused)
    {
        target = Some((addr, Route::Default));
    }
    let route = target
        .as_ref()
        .map(|(_, r)| *r)
        .unwrap_or(Route::Unroutable);
    let draft = Draft {
        kind: Kind::Message,
        origin: Address::Sms(phone),
        client: "sdp".into(),
        client_ref: None,
        report_to: None,
        to: target.map(|(a, _)| vec![a]).unwrap_or_default(),
        content: Content {
            text: body,
            ..content
        },
        note: match (route == Route::Unroutable, note) {
            (true, note) => Some(format!(
                "unroutable: {dialled:?} is no reply route, the text names no address, and no default route is configured{}{}",
                if refused {
                    "; relaying to phones is not allowed ([mo] relay_to_phones, relay_networks)"
                } else {
                    ""
                },
                note.map(|n| format!("; {n}")).unwrap_or_default()
            )),
            (false, note) => note,
        },
        door: Door::Sdp,
        speak_as: None,
    };
    let env = intake.submit(intake.envelope(draft)?).await?;
    metrics::counter!("switchboard_mo_received_total", "route" => route.as_str(), "kind" => kind)
        .increment(1);
    if route == Route::Unroutable {
        tracing::warn!(message = %env.id, from = %env.origin, to = dialled, "unroutable MO stored");
    }
    Ok((env, route))
}

/// A route to a group is taken only when the directory knows the group (else the next rule
/// decides).
fn known(inbound: &Inbound, addr: &Address) -> bool {
    match addr {
        Address::Group(name) => inbound.intake.directory().has_group(name),
        _ => true,
    }
}

/// Whether an MO may go to `addr`: anything but a phone, or a phone when relaying is on and
/// the number is under one of the relay networks. Counts and notes a refusal.
fn relay_allowed(cfg: &MoConfig, addr: &Address, route: Route, refused: &mut bool) -> bool {
    let ok = match addr {
        Address::Sms(n) => {
            cfg.relay_to_phones
                && cfg
                    .relay_networks
                    .iter()
                    .any(|p| !p.is_empty() && n.starts_with(p.as_str()))
        }
        // A phone writing to a group speaks as that group, which the directory allows its
        // members only (`Intake::resolve`); members are the group's to reach.
        Address::Group(_) => true,
        _ => true,
    };
    if !ok {
        *refused = true;
        metrics::counter!("switchboard_mo_relay_refused_total", "route" => route.as_str())
            .increment(1);
        tracing::info!(
            route = route.as_str(),
            "MO route to a phone refused: relaying is not allowed"
        );
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_reached_only_when_allowed() {
        let phone = Address::Sms("+8613911112222".into());
        let us = Address::Sms("+12025550100".into());
        let mail = Address::Mail("bob@example.org".into());
        let mut refused = false;
        let off = MoConfig::default();
        assert!(!relay_allowed(&off, &phone, Route::FirstWord, &mut refused));
        assert!(refused);
        assert!(relay_allowed(
            &off,
            &Address::Group("all".into()),
            Route::FirstWord,
            &mut refused
        ));
        let mut fine = false;
        assert!(relay_allowed(&off, &mail, Route::FirstWord, &mut fine));
        assert!(!fine);
        let on = MoConfig {
            relay_to_phones: true,
            relay_networks: vec!["+86".into()],
            ..MoConfig::default()
        };
        assert!(relay_allowed(&on, &phone, Route::FirstWord, &mut fine));
        assert!(!relay_allowed(&on, &us, Route::Default, &mut fine));
        let no_networks = MoConfig {
            relay_to_phones: true,
            ..MoConfig::default()
        };
        assert!(!relay_allowed(
            &no_networks,
            &phone,
            Route::FirstWord,
            &mut fine
        ));
    }
}
