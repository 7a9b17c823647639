//! What the gateway says on a component link, without any I/O: how an inbound stanza is
//! understood (a message for the pipeline, a receipt, a bounce, a query answered at once)
//! and how outbound messages, receipts and failure notices are written.
//!
//! Every inbound stanza gets a decision; nothing from the network can make it panic. Error
//! replies always carry a human-readable `<text/>`.

use xmpp_parsers::disco::{DiscoInfoResult, DiscoItemsResult, Identity};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::message::{Id, Lang, Message, MessageType};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::ns;
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::receipts::{Received, Request};
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use crate::address::{Address, Network, from_gateway_node, gateway_node};
use crate::message::RecipientId;

/// XEP-0100's namespace (not covered by xmpp-parsers).
pub const NS_GATEWAY: &str = "jabber:iq:gateway";

/// The component domain a link serves.
#[derive(Clone, Debug)]
pub struct Domain {
    pub domain: String,
    pub network: Network,
    /// Shown in service discovery.
    pub name: String,
}

/// What to do with one inbound stanza.
#[derive(Debug)]
pub enum Inbound {
    /// A message from an IM user for the pipeline.
    Submit(Submission),
    /// An IM user's client confirmed a message the gateway delivered (XEP-0184).
    Receipt { rid: RecipientId, from: BareJid },
    /// The IM server bounced a message the gateway delivered.
    Bounce {
        rid: RecipientId,
        from: BareJid,
        condition: String,
    },
    /// Answer right away.
    Reply(Vec<Stanza>),
    /// Nothing to do (why, for the debug log).
    Ignore(&'static str),
}

/// A message from an IM user, understood.
#[derive(Debug)]
pub struct Submission {
    /// `im:` + the sender's bare JID.
    pub origin: Address,
    /// The address the JID written to stands for.
    pub recipient: Address,
    pub text: String,
    /// A business card element carried with it (`urn:switchboard:card:1`), as XML.
    pub card: Option<String>,
    /// The stanza id, when the sender asked for a receipt (XEP-0184).
    pub client_ref: Option<String>,
    /// `im:` + the sender's full JID: where receipts and failure notices go.
    pub report_to: Address,
    /// The stanza's addresses and id, to answer with an error if it is refused.
    pub user: Jid,
    pub gateway_jid: Jid,
    pub id: Option<String>,
}

/// How a refusal is told to the IM user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The recipient cannot be reached through this gateway (a bad address).
    NotAcceptable,
    /// Busy: try again later.
    Busy,
    /// Stopping: try again later.
    Unavailable,
    /// The gateway could not store the message.
    Internal,
    /// The sender may not send this (not in the directory, not a member of the group).
    Forbidden,
}

impl Domain {
    fn identity(&self) -> Identity {
        let kind = match self.network {
            Network::Mail => "smtp",
            Network::Sms | Network::Group => "sms",
        };
        Identity {
            category: "gateway".into(),
            type_: kind.into(),
            lang: None,
            name: Some(self.name.clone()),
        }
    }

    fn prompt(&self) -> (&'static str, &'static str) {
        match self.network {
            Network::Sms => (
                "Enter the phone number in international format, such as +8613800000000.",
                "Phone number",
            ),
            Network::Mail => (
                "Enter the mail address, such as bob@example.com.",
                "Mail address",
            ),
            Network::Group => ("Enter the name of the group.", "Group"),
        }
    }

    /// The JID that stands for `addr` at this domain.
    pub fn jid_for(&self, addr: &Address) -> Option<Jid> {
        let (net, node) = gateway_node(addr)?;
        if net != self.network {
            return None;
        }
        Jid::new(&format!("{node}@{}", self.domain)).ok()
    }

    /// The domain's own JID.
    pub fn jid(&self) -> Option<Jid> {
        Jid::new(&self.domain).ok()
    }
}

/// Decides what an inbound stanza means for a link serving `dom`.
pub fn classify(dom: &Domain, stanza: Stanza, max_body: usize) -> Inbound {
    match stanza {
        Stanza::Message(m) => message(dom, m, max_body),
        Stanza::Iq(iq) => Inbound::Reply(iq_reply(dom, iq).into_iter().collect()),
        Stanza::Presence(p) => Inbound::Reply(presence_reply(dom, p)),
    }
}

fn message(dom: &Domain, m: Message, max_body: usize) -> Inbound {
    let (Some(from), Some(to)) = (m.from.clone(), m.to.clone()) else {
        return Inbound::Ignore("message without from or to");
    };
    let id = m.id.as_ref().map(|i| i.0.clone());
    let rid = id.as_deref().and_then(RecipientId::parse);
    if m.type_ == MessageType::Error {
        let Some(rid) = rid else {
            return Inbound::Ignore("error for a message the gateway did not send");
        };
        let condition = m
            .payloads
            .iter()
            .find(|p| p.is("error", ns::DEFAULT_NS))
            .and_then(|e| {
                e.children()
                    .find(|c| c.ns() == ns::XMPP_STANZAS && c.name() != "text")
            })
            .map(|c| c.name().to_string())
            .unwrap_or_else(|| "undefined-condition".into());
        return Inbound::Bounce {
            rid,
            from: from.to_bare(),
            condition,
        };
    }
    if let Some(received) = m.payloads.iter().find(|p| p.is("received", ns::RECEIPTS)) {
        let of = received.attr("id").and_then(RecipientId::parse).or(rid);
        return match of {
            Some(rid) => Inbound::Receipt {
                rid,
                from: from.to_bare(),
            },
            None => Inbound::Ignore("receipt for a message the gateway did not send"),
        };
    }
    if matches!(m.type_, MessageType::Groupchat | MessageType::Headline) {
        return Inbound::Ignore("groupchat or headline message");
    }
    let Some((_, body)) = m.get_best_body(Vec::new()) else {
        return Inbound::Ignore("message without a body (chat state, marker)");
    };
    if body.trim().is_empty() {
        return Inbound::Ignore("empty body");
    }
    let refuse = |text: String| {
        Inbound::Reply(vec![error_message(
            &from,
            &to,
            id.clone(),
            Refusal::NotAcceptable,
            &text,
        )])
    };
    if body.len() > max_body {
        return refuse(format!(
            "The message is too long for this gateway ({} bytes; at most {max_body}).",
            body.len()
        ));
    }
    let Some(node) = to.node() else {
        let (desc, _) = dom.prompt();
        return refuse(format!(
            "This is the {} gateway; write to a contact at it instead. {desc}",
            dom.domain
        ));
    };
    let recipient = match from_gateway_node(dom.network, node.as_str()) {
        Ok(a) => a,
        Err(e) => return refuse(format!("No such recipient here: {e}.")),
    };
    let bare = from.to_bare();
    let (Ok(origin), Ok(report_to)) = (
        Address::parse_user(&format!("im:{bare}")),
        Address::parse_user(&format!("im:{from}")),
    ) else {
        return refuse(format!("Your address {from} cannot be used as a sender."));
    };
    let wants_receipt = m.payloads.iter().any(|p| p.is("request", ns::RECEIPTS));
    let card = m
        .payloads
        .iter()
        .find(|p| p.is("card", crate::cards::NS))
        .map(String::from);
    Inbound::Submit(Submission {
        origin,
        recipient,
        text: body.clone(),
        card,
        client_ref: if wants_receipt { id.clone() } else { None },
        report_to,
        user: from,
        gateway_jid: to,
        id,
    })
}

fn iq_reply(dom: &Domain, iq: Iq) -> Option<Stanza> {
    let (from, to, id, payload, is_set) = match iq {
        Iq::Get {
            from,
            to,
            id,
            payload,
        } => (from, to, id, payload, false),
        Iq::Set {
            from,
            to,
            id,
            payload,
        } => (from, to, id, payload, true),
        // Answers to the gateway's own pings, or errors for them: nothing to say back.
        Iq::Result { .. } | Iq::Error { .. } => return None,
    };
    let (Some(from), Some(to)) = (from, to) else {
        return None;
    };
    let answer = |payload: Option<Element>| {
        Some(Stanza::Iq(Iq::Result {
            from: Some(to.clone()),
            to: Some(from.clone()),
            id: id.clone(),
            payload,
        }))
    };
    let fail = |cond: DefinedCondition, kind: ErrorType, text: &str| {
        Some(Stanza::Iq(Iq::Error {
            from: Some(to.clone()),
            to: Some(from.clone()),
            id: id.clone(),
            error: StanzaError::new(kind, cond, "en", text),
            payload: None,
        }))
    };
    // A JID at this domain must stand for something.
    if let Some(node) = to.node()
        && from_gateway_node(dom.network, node.as_str()).is_err()
    {
        return fail(
            DefinedCondition::ItemNotFound,
            ErrorType::Cancel,
            "No such contact at this gateway.",
        );
    }
    let at_domain = to.node().is_none();
    if payload.is("ping", ns::PING) && !is_set {
        return answer(None);
    }
    if payload.is("query", ns::DISCO_INFO) && !is_set {
        let mut features = std::collections::BTreeSet::new();
        features.insert(ns::DISCO_INFO.to_string());
        features.insert(ns::RECEIPTS.to_string());
        features.insert(ns::PING.to_string());
        let identities = if at_domain {
            features.insert(ns::DISCO_ITEMS.to_string());
            features.insert(NS_GATEWAY.to_string());
            vec![dom.identity()]
        } else {
            let kind = match dom.network {
                Network::Mail => "pc",
                Network::Sms | Network::Group => "sms",
            };
            vec![Identity::new_anonymous::<_, _, String, String>(
                "client", kind,
            )]
        };
        let result = DiscoInfoResult {
            node: payload.attr("node").map(str::to_string),
            identities,
            features,
            extensions: Vec::new(),
        };
        return answer(Some(result.into()));
    }
    if payload.is("query", ns::DISCO_ITEMS) && !is_set {
        let result = DiscoItemsResult {
            node: payload.attr("node").map(str::to_string),
            items: Vec::new(),
            rsm: None,
        };
        return answer(Some(result.into()));
    }
    if payload.is("query", NS_GATEWAY) && at_domain {
        if !is_set {
            let (desc, prompt) = dom.prompt();
            let q = Element::builder("query", NS_GATEWAY)
                .append(Element::builder("desc", NS_GATEWAY).append(desc))
                .append(Element::builder("prompt", NS_GATEWAY).append(prompt))
                .build();
            return answer(Some(q));
        }
        let input = payload
            .get_child("prompt", NS_GATEWAY)
            .map(|p| p.text())
            .unwrap_or_default();
        return match legacy_to_jid(dom, input.trim()) {
            Some(jid) => {
                let q = Element::builder("query", NS_GATEWAY)
                    .append(Element::builder("jid", NS_GATEWAY).append(jid.to_string()))
                    .append(Element::builder("prompt", NS_GATEWAY).append(jid.to_string()))
                    .build();
                answer(Some(q))
            }
            None => fail(
                DefinedCondition::NotAcceptable,
                ErrorType::Modify,
                dom.prompt().0,
            ),
        };
    }
    fail(
        DefinedCondition::ServiceUnavailable,
        ErrorType::Cancel,
        "This gateway does not offer that service.",
    )
}

/// XEP-0100: a phone number / mail address / group name as typed by a user → its JID here.
pub fn legacy_to_jid(dom: &Domain, input: &str) -> Option<Jid> {
    let addr = match dom.network {
        Network::Mail => Address::parse_user(&format!("mail:{input}")).ok()?,
        net => from_gateway_node(net, input).ok()?,
    };
    dom.jid_for(&addr)
}

fn presence_reply(dom: &Domain, p: Presence) -> Vec<Stanza> {
    let (Some(from), Some(to)) = (p.from, p.to) else {
        return Vec::new();
    };
    if let Some(node) = to.node()
        && from_gateway_node(dom.network, node.as_str()).is_err()
    {
        if p.type_ == PresenceType::Subscribe {
            let mut err = Presence::new(PresenceType::Error)
                .with_from(to.to_bare())
                .with_to(from.to_bare());
            err.payloads.push(
                StanzaError::new(
                    ErrorType::Cancel,
                    DefinedCondition::ItemNotFound,
                    "en",
                    "No such contact at this gateway.",
                )
                .into(),
            );
            return vec![err.into()];
        }
        return Vec::new();
    }
    let me = to.to_bare();
    let user = from.to_bare();
    let available = || -> Stanza {
        Presence::available()
            .with_from(me.clone())
            .with_to(user.clone())
            .into()
    };
    match p.type_ {
        PresenceType::Subscribe => vec![
            Presence::subscribed()
                .with_from(me.clone())
                .with_to(user.clone())
                .into(),
            available(),
        ],
        PresenceType::Probe => vec![available()],
        PresenceType::Unsubscribe => vec![
            Presence::new(PresenceType::Unsubscribed)
                .with_from(me.clone())
                .with_to(user.clone())
                .into(),
        ],
        _ => Vec::new(),
    }
}

/// An error answer to a message a user sent (`id` is the user's stanza id).
pub fn error_message(
    user: &Jid,
    gateway_jid: &Jid,
    id: Option<String>,
    refusal: Refusal,
    text: &str,
) -> Stanza {
    let (kind, cond) = match refusal {
        Refusal::NotAcceptable => (ErrorType::Modify, DefinedCondition::NotAcceptable),
        Refusal::Busy => (ErrorType::Wait, DefinedCondition::ResourceConstraint),
        Refusal::Unavailable => (ErrorType::Wait, DefinedCondition::ServiceUnavailable),
        Refusal::Internal => (ErrorType::Wait, DefinedCondition::InternalServerError),
        Refusal::Forbidden => (ErrorType::Auth, DefinedCondition::Forbidden),
    };
    let mut m = Message::error(Some(user.clone()));
    m.from = Some(gateway_jid.clone());
    m.id = id.map(Id);
    m.payloads
        .push(StanzaError::new(kind, cond, "en", text).into());
    m.into()
}

/// A message to an IM user, asking for a receipt; its id is the recipient id, so the
/// receipt (or a bounce) maps back to the recipient.
pub fn chat_message(from: Jid, to: Jid, id: String, text: &str) -> Stanza {
    chat_message_with_links(from, to, id, text, Vec::new())
}

/// A chat message carrying out-of-band links (XEP-0066 `jabber:x:oob`), one `<x/>` per
/// `(url, description)`.
pub fn chat_message_with_links(
    from: Jid,
    to: Jid,
    id: String,
    text: &str,
    links: Vec<(String, String)>,
) -> Stanza {
    let mut m = Message::chat(Some(to));
    m.from = Some(from);
    m.id = Some(Id(id));
    m.bodies.insert(Lang::default(), text.to_string());
    m.payloads.push(Request.into());
    for (url, desc) in links {
        m.payloads.push(
            xmpp_parsers::oob::Oob {
                url,
                desc: Some(desc),
            }
            .into(),
        );
    }
    m.into()
}

/// A business card: a `chat` message with the readable card as its body, the card element
/// (`urn:switchboard:card:1`) and its XEP-0292 vCard4 form.
pub fn card_message(
    from: Jid,
    to: Jid,
    id: String,
    text: &str,
    card: &crate::cards::Card,
) -> Option<Stanza> {
    let mut m = Message::chat(Some(to));
    m.from = Some(from);
    m.id = Some(Id(id));
    m.bodies.insert(Lang::default(), text.to_string());
    m.payloads.push(Request.into());
    m.payloads
        .push(crate::cards::xml::to_xml(card).parse::<Element>().ok()?);
    m.payloads
        .push(crate::cards::xml::to_vcard4(card).parse::<Element>().ok()?);
    Some(m.into())
}

/// The namespace of the app platform's payload element.
pub const APP_NS: &str = "urn:switchboard:app:1";

/// An app message: a `headline` with a readable body and the app's payload inside
/// `<app xmlns='urn:switchboard:app:1' id app name kind mode [by]>…</app>`. The payload was
/// checked as one well-formed element when pushed; `None` if it still does not read.
pub fn app_message(
    from: Jid,
    to: Jid,
    id: String,
    text: &str,
    app: &crate::message::AppMessage,
    msg_id: &str,
) -> Option<Stanza> {
    use quick_xml::escape::escape;
    let by = app
        .by
        .as_deref()
        .map(|b| format!(" by='{}'", escape(b)))
        .unwrap_or_default();
    let wrapped = format!(
        "<app xmlns='{APP_NS}' id='{}' app='{}' name='{}' kind='{}' mode='{}'{by}>{}</app>",
        escape(msg_id),
        escape(app.app.as_str()),
        escape(app.name.as_str()),
        app.kind.as_str(),
        app.mode.as_str(),
        app.content,
    );
    let payload: Element = wrapped.parse().ok()?;
    let mut m = Message::new(Some(to));
    m.type_ = MessageType::Headline;
    m.from = Some(from);
    m.id = Some(Id(id));
    m.bodies.insert(Lang::default(), text.to_string());
    m.payloads.push(payload);
    Some(m.into())
}

/// A delivery receipt (XEP-0184) for the user's message `of`.
pub fn receipt(from: Jid, to: Jid, id: String, of: String) -> Stanza {
    let mut m = Message::normal(Some(to));
    m.from = Some(from);
    m.id = Some(Id(id));
    m.payloads.push(Received { id: of }.into());
    m.into()
}

/// A failure notice for the user's message `of` (when known): an error message with
/// `<recipient-unavailable/>` and a human text.
pub fn failure_notice(from: Jid, to: Jid, of: Option<String>, text: &str) -> Stanza {
    let mut m = Message::error(Some(to));
    m.from = Some(from);
    m.id = of.map(Id);
    m.payloads.push(
        StanzaError::new(
            ErrorType::Cancel,
            DefinedCondition::RecipientUnavailable,
            "en",
            text,
        )
        .into(),
    );
    m.into()
}

/// A ping (XEP-0199) from the component to itself through the server: keeps the link
/// busy and proves both directions work.
pub fn self_ping(dom: &Domain, id: String) -> Option<Stanza> {
    let jid = dom.jid()?;
    Some(Stanza::Iq(Iq::Get {
        from: Some(jid.clone()),
        to: Some(jid),
        id,
        payload: Element::builder("ping", ns::PING).build(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms_domain() -> Domain {
        Domain {
            domain: "sms.localhost".into(),
            network: Network::Sms,
            name: "SMS".into(),
        }
    }

    fn jid(s: &str) -> Jid {
        Jid::new(s).unwrap()
    }

    fn msg(to: &str, body: &str, receipt: bool) -> Stanza {
        let mut m = Message::chat(Some(jid(to)));
        m.from = Some(jid("alice@localhost/phone"));
        m.id = Some(Id("m1".into()));
        m.bodies.insert(Lang::default(), body.into());
        if receipt {
            m.payloads.push(Request.into());
        }
        m.into()
    }

    #[test]
    fn a_message_to_a_phone_is_submitted_with_its_receipt_request() {
        let Inbound::Submit(s) = classify(
            &sms_domain(),
            msg("+8613800000000@sms.localhost", "hi", true),
            100,
        ) else {
            panic!("not submitted");
        };
        assert_eq!(s.origin.to_string(), "im:alice@localhost");
        assert_eq!(s.recipient.to_string(), "sms:+8613800000000");
        assert_eq!(s.report_to.to_string(), "im:alice@localhost/phone");
        assert_eq!(s.client_ref.as_deref(), Some("m1"));
        let Inbound::Submit(s) = classify(
            &sms_domain(),
            msg("+8613800000000@sms.localhost", "hi", false),
            100,
        ) else {
            panic!("not submitted");
        };
        assert_eq!(s.client_ref, None);
    }

    #[test]
    fn bad_recipients_and_long_bodies_are_refused_with_a_text() {
        for (to, body) in [
            ("hello@sms.localhost", "hi"),
            ("sms.localhost", "hi"),
            ("+8613800000000@sms.localhost", "x".repeat(200).as_str()),
        ] {
            let Inbound::Reply(r) = classify(&sms_domain(), msg(to, body, false), 100) else {
                panic!("{to}: not refused");
            };
            let Stanza::Message(m) = &r[0] else {
                panic!("not a message")
            };
            assert_eq!(m.type_, MessageType::Error);
            assert_eq!(m.id.as_ref().map(|i| i.0.as_str()), Some("m1"));
            let e = StanzaError::try_from(m.payloads[0].clone()).unwrap();
            assert_eq!(e.defined_condition, DefinedCondition::NotAcceptable);
            assert!(!e.texts.values().next().unwrap().is_empty());
        }
    }

    #[test]
    fn receipts_and_bounces_map_to_recipient_ids() {
        let rid = "0123456789abcdef0001";
        let mut m = Message::normal(Some(jid("+8613800000000@sms.localhost")));
        m.from = Some(jid("alice@localhost/phone"));
        m.payloads.push(Received { id: rid.into() }.into());
        let Inbound::Receipt { rid: got, from } = classify(&sms_domain(), m.into(), 100) else {
            panic!("not a receipt");
        };
        assert_eq!(got.to_string(), rid);
        assert_eq!(from.to_string(), "alice@localhost");

        let mut m = Message::error(Some(jid("+8613800000000@sms.localhost")));
        m.from = Some(jid("nobody@localhost"));
        m.id = Some(Id(rid.into()));
        m.payloads.push(
            StanzaError::new(
                ErrorType::Cancel,
                DefinedCondition::ServiceUnavailable,
                "en",
                "x",
            )
            .into(),
        );
        let Inbound::Bounce { condition, .. } = classify(&sms_domain(), m.into(), 100) else {
            panic!("not a bounce");
        };
        assert_eq!(condition, "service-unavailable");
    }

    #[test]
    fn gateway_queries_are_answered() {
        let dom = sms_domain();
        assert_eq!(
            legacy_to_jid(&dom, "+86 138 0000 0000")
                .unwrap()
                .to_string(),
            "+8613800000000@sms.localhost"
        );
        assert!(legacy_to_jid(&dom, "not a number").is_none());
        let mail = Domain {
            domain: "mail.localhost".into(),
            network: Network::Mail,
            name: "Mail".into(),
        };
        assert_eq!(
            legacy_to_jid(&mail, "bob@example.com").unwrap().to_string(),
            "bob\\40example.com@mail.localhost"
        );
        let iq = Iq::Get {
            from: Some(jid("alice@localhost/phone")),
            to: Some(jid("sms.localhost")),
            id: "q1".into(),
            payload: Element::builder("query", ns::DISCO_INFO).build(),
        };
        let Inbound::Reply(r) = classify(&dom, iq.into(), 100) else {
            panic!()
        };
        let Stanza::Iq(Iq::Result {
            payload: Some(p), ..
        }) = &r[0]
        else {
            panic!("{r:?}")
        };
        let info = DiscoInfoResult::try_from(p.clone()).unwrap();
        assert_eq!(info.identities[0].category, "gateway");
        assert_eq!(info.identities[0].type_, "sms");
        assert!(info.features.contains(NS_GATEWAY));
    }

    #[test]
    fn subscriptions_are_approved() {
        let p = Presence::subscribe()
            .with_from(jid("alice@localhost"))
            .with_to(jid("+8613800000000@sms.localhost"));
        let Inbound::Reply(r) = classify(&sms_domain(), p.into(), 100) else {
            panic!()
        };
        assert!(
            matches!(&r[0], Stanza::Presence(p) if p.type_ == PresenceType::Subscribed),
            "{r:?}"
        );
    }
}
