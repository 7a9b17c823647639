//! Business cards over HTTP, mail and the simulator: malformed cards refused with the field
//! named (nothing stored), a vCard mailed in reaching an IM user as a valid card, a card to
//! a phone as MMS (vCard part) and as a compact SMS, friends-only cards, and address books
//! (added once, updated the second time).
//!
//! The card XML is checked against `schemas/card.xsd` with `xmllint` (installed by
//! `scripts/test.sh`).

mod common;
mod mail_peers;

use common::*;
use mail_peers::Smtp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const NS: &str = "urn:switchboard:card:1";

/// alice and bob (IM, through the webhook; friends), carol (IM; not alice's friend), pat (a
/// phone; alice's friend).
fn seed() -> Value {
    json!({
        "users": {
            "alice": {"name": "Alice Liu", "addresses": ["im:alice@im.example.org", "sms:+8613800000061"], "friends": ["bob", "pat"]},
            "bob": {"name": "Bob", "addresses": ["im:bob@im.example.org"], "friends": ["alice"]},
            "carol": {"name": "Carol", "addresses": ["im:carol@im.example.org"]},
            "pat": {"name": "Pat", "addresses": ["sms:+8613800000062"], "friends": ["alice"]}
        }
    })
}

async fn start(tweak: impl FnOnce(&mut switchboard::Config)) -> Harness {
    Harness::start(|cfg, _| {
        seed_directory(cfg, seed());
        cfg.mail.listen = "127.0.0.1:0".into();
        cfg.mail.hostname = "gw.example.org".into();
        tweak(cfg);
    })
    .await
}

async fn call(
    h: &Harness,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = h
        .http
        .request(method, format!("{}{path}", h.base))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A series' value on a metrics page (0 when absent). The recorder is shared by the tests
/// of this file, so only series one test moves are compared exactly.
fn metric(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .map(|v| v.trim().parse().unwrap_or(0.0))
        })
        .unwrap_or(0.0)
}

/// Alice's own card, every field given.
fn alice_card(quotation: &str) -> String {
    format!(
        "<card xmlns='{NS}'><portrait url='https://example.org/alice.png'/><name>Alice Liu</name>\
         <nickname>Ali</nickname><gender>female</gender><age>30</age><birthdate>1994-03-21</birthdate>\
         <zodiac>aries</zodiac><location>Beijing, Chaoyang</location><quotation>{quotation}</quotation>\
         <address>im:alice@im.example.org</address><address>sms:+8613800000061</address></card>"
    )
}

#[tokio::test]
async fn malformed_cards_are_refused_with_the_field_named_and_nothing_stored() {
    let h = start(|_| {}).await;
    let before = h.stored_messages();
    let cases = [
        (
            format!("<card xmlns='{NS}'><nickname>x</nickname></card>"),
            "name",
        ),
        (
            format!("<card xmlns='{NS}'><name>A</name><birthdate>1994-13-01</birthdate></card>"),
            "birthdate",
        ),
        (
            format!(
                "<!DOCTYPE card [<!ENTITY x 'boom'>]><card xmlns='{NS}'><name>&x;</name></card>"
            ),
            "card",
        ),
        (
            format!("<card xmlns='{NS}'><name>A</name><age>-1</age></card>"),
            "age",
        ),
        ("<card><name>A</name></card>".to_string(), "card"),
    ];
    for (xml, field) in &cases {
        // The schema agrees that each is invalid.
        assert!(
            xsd_check(xml).is_err() || *field == "card",
            "xmllint took {xml}"
        );
        let (status, v) = call(
            &h,
            TOKEN,
            Method::POST,
            "/v1/cards",
            Some(json!({"from": "im:alice@im.example.org", "to": ["im:bob@im.example.org"], "card": xml})),
        )
        .await;
        assert_eq!(status, 400, "{xml}: {v}");
        assert_eq!(v["code"], "invalid_card", "{v}");
        assert_eq!(v["field"], *field, "{xml}: {v}");
        assert!(v["message"].as_str().unwrap().contains(field), "{v}");
    }
    let (status, v) = call(
        &h,
        TOKEN,
        Method::POST,
        "/v1/cards",
        Some(json!({"from": "im:alice@im.example.org", "to": ["im:bob@im.example.org"]})),
    )
    .await;
    assert_eq!(
        (status.as_u16(), v["code"].as_str()),
        (400, Some("invalid_card"))
    );
    // No token, the admin token: not a sender.
    let r = h
        .http
        .post(format!("{}/v1/cards", h.base))
        .json(&json!({"from": "im:alice@im.example.org", "to": ["im:bob@im.example.org"], "card": alice_card("hi")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (status, _) = call(
        &h,
        ADMIN_TOKEN,
        Method::POST,
        "/v1/cards",
        Some(json!({"from": "im:alice@im.example.org", "to": ["im:bob@im.example.org"], "card": alice_card("hi")})),
    )
    .await;
    assert_eq!(status, 403);
    // A client may not send as someone it does not speak for.
    let (status, v) = call(
        &h,
        OTHER_TOKEN,
        Method::POST,
        "/v1/cards",
        Some(json!({"from": "im:alice@im.example.org", "to": ["im:bob@im.example.org"], "card": alice_card("hi")})),
    )
    .await;
    assert_eq!(
        (status.as_u16(), v["code"].as_str()),
        (403, Some("sender_not_allowed"))
    );
    // A user's directory card only from that user.
    let (status, v) = call(
        &h,
        TOKEN,
        Method::POST,
        "/v1/cards",
        Some(json!({"from": "im:carol@im.example.org", "to": ["im:carol@im.example.org"], "user": "alice"})),
    )
    .await;
    assert_eq!(
        (status.as_u16(), v["code"].as_str()),
        (403, Some("not_your_user")),
        "{v}"
    );
    assert_eq!(h.stored_messages(), before, "nothing stored");
    let m = h.metrics().await;
    assert!(
        m.contains(
            "switchboard_messages_refused_total{stage=\"receive\",reason=\"invalid_card\"} 6"
        ),
        "{m}"
    );
}

/// Sends alice's card to `to`; the message id.
async fn send_card(h: &Harness, to: &[&str], quotation: &str) -> String {
    let (status, v) = call(
        h,
        TOKEN,
        Method::POST,
        "/v1/cards",
        Some(json!({"from": "im:alice@im.example.org", "to": to, "card": alice_card(quotation)})),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_card_reaches_an_im_user_as_a_valid_card_and_the_address_book_keeps_one_contact() {
    let h = start(|_| {}).await;
    let first = send_card(&h, &["im:bob@im.example.org"], "Stay hungry").await;
    let got = h
        .hooks
        .wait("im", "the card at bob's webhook", |v| {
            v["to"] == "im:bob@im.example.org" && v["card"].is_string()
        })
        .await;
    let xml = got["card"].as_str().unwrap();
    xsd_check(xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert!(xml.contains("owner=\"alice\""), "alice's own card: {xml}");
    let text = got["text"].as_str().unwrap();
    assert!(text.starts_with("Card: Alice Liu\n"), "{text}");
    assert!(text.contains("Tel: +8613800000061"), "{text}");
    let parts = got["parts"].as_array().unwrap();
    assert_eq!(parts[0]["content_type"], "text/vcard", "{got}");

    // Bob adds it, then gets an updated card and adds that: one contact, updated.
    let (status, c) = call(
        &h,
        TOKEN,
        Method::POST,
        "/v1/users/bob/contacts",
        Some(json!({"card_id": first})),
    )
    .await;
    assert_eq!(status, 201, "{c}");
    assert_eq!(c["id"], "user:alice");
    let second = send_card(&h, &["im:bob@im.example.org"], "Stay foolish").await;
    h.hooks
        .wait("im", "the second card", |v| {
            v["card"]
                .as_str()
                .is_some_and(|c| c.contains("Stay foolish"))
        })
        .await;
    let (status, c) = call(
        &h,
        TOKEN,
        Method::POST,
        "/v1/users/bob/contacts",
        Some(json!({"card_id": second})),
    )
    .await;
    assert_eq!(status, 200, "{c}");
    let (status, book) = call(&h, TOKEN, Method::GET, "/v1/users/bob/contacts", None).await;
    assert_eq!(status, 200);
    let contacts = book["contacts"].as_array().unwrap();
    assert_eq!(contacts.len(), 1, "{book}");
    assert_eq!(contacts[0]["card"]["quotation"], "Stay foolish", "{book}");
    assert_eq!(contacts[0]["from_message"], second.as_str());
    xsd_check(contacts[0]["xml"].as_str().unwrap()).unwrap();

    // Carol did not receive it: answered like a missing card. Another client may not read
    // bob's book.
    let (status, _) = call(
        &h,
        ADMIN_TOKEN,
        Method::POST,
        "/v1/users/carol/contacts",
        Some(json!({"card_id": second})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, v) = call(&h, OTHER_TOKEN, Method::GET, "/v1/users/bob/contacts", None).await;
    assert_eq!(
        (status.as_u16(), v["code"].as_str()),
        (403, Some("not_your_user"))
    );
    let r = h
        .http
        .get(format!("{}/v1/users/bob/contacts", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_friends_only_card_reaches_friends_only() {
    let h = start(|cfg| cfg.cards.friends_only = true).await;
    // Carol is not alice's friend: refused at once, nothing stored.
    let before = h.stored_messages();
    let (status, v) = call(
        &h,
        TOKEN,
        Method::POST,
        "/v1/cards",
        Some(json!({"from": "im:alice@im.example.org", "to": ["im:carol@im.example.org"], "card": alice_card("hi")})),
    )
    .await;
    assert_eq!(
        (status.as_u16(), v["code"].as_str()),
        (403, Some("card_restricted")),
        "{v}"
    );
    assert_eq!(h.stored_messages(), before);
    // Bob is: it reaches him.
    send_card(&h, &["im:bob@im.example.org"], "for friends").await;
    h.hooks
        .wait("im", "the card at bob's", |v| v["card"].is_string())
        .await;
    // A card whose owner the gateway cannot vouch for (bob sends a card claiming alice)
    // has no owner, so a restricted one reaches nobody.
    let (status, v) = call(
        &h,
        TOKEN,
        Method::POST,
        "/v1/cards",
        Some(
            json!({"from": "im:bob@im.example.org", "to": ["im:alice@im.example.org"],
            "card": format!("<card xmlns='{NS}' owner='alice'><name>Alice Liu</name></card>")}),
        ),
    )
    .await;
    assert_eq!(
        (status.as_u16(), v["code"].as_str()),
        (403, Some("card_restricted")),
        "{v}"
    );
}

#[tokio::test]
async fn a_vcard_mailed_in_reaches_an_im_user_as_a_valid_card() {
    let h = start(|_| {}).await;
    let vcard = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Zoë Müller\\, PhD\r\nNICKNAME:Zo\r\nGENDER:F\r\n\
                 BDAY:19900102\r\nTEL;VALUE=uri:tel:+8613800000063\r\nEMAIL:zoe@example.com\r\n\
                 NOTE:Line one\\nline two\\; with a semicolon\r\nX-ZODIAC:capricorn\r\nEND:VCARD\r\n";
    let b64 = switchboard::message::b64::encode(vcard.as_bytes());
    let mail = format!(
        "From: zoe@example.com\r\nTo: bob@im.example.org\r\nSubject: my card\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Here is my card.\r\n--b1\r\nContent-Type: text/vcard; charset=utf-8\r\n\
         Content-Disposition: attachment; filename=\"zoe.vcf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b1--"
    );
    let (mut c, _) = Smtp::connect(h.smtp.unwrap()).await;
    c.cmd("EHLO client.example.com").await;
    let r = c
        .mail("zoe@example.com", &["bob@im.example.org"], &mail)
        .await;
    assert!(r.starts_with("250"), "{r}");
    let got = h
        .hooks
        .wait("im", "the card at bob's webhook", |v| {
            v["to"] == "im:bob@im.example.org"
        })
        .await;
    let xml = got["card"]
        .as_str()
        .unwrap_or_else(|| panic!("no card: {got}"));
    xsd_check(xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    for want in [
        "<name>Zoë Müller, PhD</name>",
        "<nickname>Zo</nickname>",
        "<gender>female</gender>",
        "<birthdate>1990-01-02</birthdate>",
        "<zodiac>capricorn</zodiac>",
        "<quotation>Line one\nline two; with a semicolon</quotation>",
        "<address>sms:+8613800000063</address>",
        "<address>mail:zoe@example.com</address>",
    ] {
        assert!(xml.contains(want), "{want} in {xml}");
    }
    assert!(
        !xml.contains("owner="),
        "a stranger's card has no owner: {xml}"
    );
    let text = got["text"].as_str().unwrap();
    assert!(text.contains("Here is my card."), "{text}");
    assert!(text.contains("Card: Zoë Müller, PhD"), "{text}");
}

#[tokio::test]
async fn a_card_to_a_phone_goes_as_an_mms_vcard_or_a_compact_sms() {
    // MMS off: the compact text.
    let h = start(|_| {}).await;
    let id = send_card(&h, &["sms:+8613800000062"], "Stay hungry").await;
    let sms = h.sent_sms(&id).await;
    let lines: Vec<&str> = sms.message.lines().collect();
    assert_eq!(lines[0], "Card: Alice Liu", "{}", sms.message);
    assert!(lines.contains(&"Tel: +8613800000061"), "{}", sms.message);
    assert!(lines.contains(&"Quote: Stay hungry"), "{}", sms.message);
    let info = h.message(&id).await;
    assert!(
        info["recipients"][0]["sms_parts"].as_u64().unwrap() <= h.cfg.content.sms.max_parts as u64,
        "{info}"
    );
    h.stop().await;

    // MMS on: a vCard part.
    let (mms, url) = mms_sim().await;
    let h = start(move |cfg| cfg.content.mms.send_message_url = url).await;
    let id = send_card(&h, &["sms:+8613800000062"], "Stay hungry").await;
    let got = received_mms(&h.cfg.store.path, &mms, &id).await;
    let vcard = got
        .parts
        .iter()
        .find(|p| p.content_type.starts_with("text/vcard"))
        .unwrap_or_else(|| panic!("no vCard part: {got:?}"));
    let text = String::from_utf8(vcard.bytes.clone()).unwrap();
    assert!(text.contains("FN:Alice Liu"), "{text}");
    assert!(text.contains("TEL:tel:+8613800000061"), "{text}");
    assert!(h.sim.sim.messages().is_empty(), "no SMS besides the MMS");
}

#[tokio::test]
async fn a_users_own_card_comes_from_the_directory() {
    let h = start(|_| {}).await;
    let mut alice = seed()["users"]["alice"].clone();
    alice["card"] = json!({"nickname": "Ali", "zodiac": "dragon"});
    let (status, v) = call(
        &h,
        ADMIN_TOKEN,
        Method::PUT,
        "/v1/users/alice",
        Some(alice.clone()),
    )
    .await;
    assert_eq!(
        (status.as_u16(), v["code"].as_str()),
        (400, Some("invalid_card")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("zodiac"), "{v}");
    alice["card"] =
        json!({"nickname": "Ali", "zodiac": "aries", "portrait_url": "https://example.org/a.png"});
    let (status, v) = call(&h, ADMIN_TOKEN, Method::PUT, "/v1/users/alice", Some(alice)).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = call(
        &h,
        TOKEN,
        Method::POST,
        "/v1/cards",
        Some(json!({"from": "im:alice@im.example.org", "to": ["im:bob@im.example.org"], "user": "alice", "text": "my card"})),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let got = h
        .hooks
        .wait("im", "alice's card at bob's", |v| v["card"].is_string())
        .await;
    let xml = got["card"].as_str().unwrap();
    xsd_check(xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    for want in [
        "owner=\"alice\"",
        "<portrait url=\"https://example.org/a.png\"/>",
        "<name>Alice Liu</name>",
        "<nickname>Ali</nickname>",
        "<zodiac>aries</zodiac>",
        "<address>im:alice@im.example.org</address>",
        "<address>sms:+8613800000061</address>",
    ] {
        assert!(xml.contains(want), "{want} in {xml}");
    }
    assert!(
        got["text"]
            .as_str()
            .unwrap()
            .starts_with("my card\n\nCard: Alice Liu"),
        "{got}"
    );
    let after = metric(&h.metrics().await, "switchboard_cards_total{door=\"api\"}");
    assert!(after >= 1.0, "counted");
}

#[tokio::test]
async fn oversized_bodies_are_refused_before_they_are_read_as_cards() {
    let h = start(|_| {}).await;
    let big = "x".repeat(h.cfg.http.max_body_bytes + 1);
    for path in ["/v1/cards", "/v1/users/bob/contacts"] {
        let r = h
            .http
            .post(format!("{}{path}", h.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 413, "{path}");
    }
}
