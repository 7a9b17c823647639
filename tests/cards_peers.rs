//! One business card from an IM user to an XMPP user on Prosody (slixmpp), a mail user
//! behind Postfix's smtp-sink and a phone (the simulator, MMS on): each gets its network's
//! form. The XMPP payload validates against `schemas/card.xsd`; the mail's vCard is read by
//! Python's vobject as vCard 4.0 with every field as sent. A card sent over XMPP reaches a
//! phone; a malformed one is answered with an error naming the field.
//!
//! Prosody, slixmpp, vobject and smtp-sink are installed by `scripts/test.sh`. Without them
//! these tests fail under `CI=true` and are skipped with a loud message otherwise.

mod common;
mod mail_peers;
#[path = "xmpp/support.rs"]
mod support;

use std::io::Write;
use std::time::Duration;

use common::*;
use mail_parser::{MessageParser, MimeHeaders};
use mail_peers::SmtpSink;
use serde_json::{Value, json};
use support::{Prosody, User, peers_present, xmpp_config};
use switchboard::address::Network;

const SMS_SECRET: &str = "sms-component-secret";
const NS: &str = "urn:switchboard:card:1";
const BOB: &str = "bob@example.org";
const PAT: &str = "+8613800000071";
const QUOTE: &str = "Stay hungry, stay foolish; always\nand a second line";

fn seed() -> Value {
    json!({
        "users": {
            "alice": {"name": "Alice Liu", "addresses": ["im:alice@localhost", "sms:+8613800000070"]},
            "carol": {"name": "Carol", "addresses": ["im:carol@localhost"]},
            "bob": {"name": "Bob", "addresses": [format!("mail:{BOB}")]},
            "pat": {"name": "Pat", "addresses": [format!("sms:{PAT}")]},
        },
    })
}

/// Alice's card, every field given (the portrait by URL).
fn card() -> String {
    let quote = QUOTE.replace('\n', "&#10;");
    format!(
        "<card xmlns='{NS}'><portrait url='https://example.org/alice.png'/><name>Alice Liu, Ph.D.; Zoë</name>\
         <nickname>Ali</nickname><gender>female</gender><age>30</age><birthdate>1994-03-21</birthdate>\
         <zodiac>aries</zodiac><location>北京, Chaoyang; CN</location><quotation>{quote}</quotation>\
         <address>im:alice@localhost</address><address>sms:+8613800000070</address></card>"
    )
}

struct World {
    _prosody: Prosody,
    sink: SmtpSink,
    mms: Sim,
    h: Harness,
    alice: User,
    carol: User,
}

async fn world() -> Option<World> {
    if !peers_present() {
        return None;
    }
    if std::process::Command::new("python3")
        .args(["-c", "import vobject"])
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        assert!(std::env::var("CI").is_err(), "vobject is missing under CI");
        eprintln!("SKIPPED: Python's vobject is missing (scripts/test.sh installs it)");
        return None;
    }
    let sink = SmtpSink::start(&[]).await?;
    let (mms, mms_url) = mms_sim().await;
    let p = Prosody::start(
        &[("sms.localhost", SMS_SECRET)],
        &[("alice", "alicepw"), ("carol", "carolpw")],
    )
    .await;
    let x = xmpp_config(&p, &[("sms.localhost", Network::Sms, SMS_SECRET)]);
    let smarthost = sink.addr.to_string();
    let h = Harness::start(move |cfg, _| {
        cfg.xmpp = Some(x);
        cfg.im.domains = vec!["localhost".into()];
        cfg.mail.listen = "127.0.0.1:0".into();
        cfg.mail.hostname = "gw.example.org".into();
        cfg.mail.smarthost = smarthost;
        cfg.content.mms.send_message_url = mms_url;
        seed_directory(cfg, seed());
    })
    .await;
    let alice = User::login(&p, "alice", "alicepw").await;
    let carol = User::login(&p, "carol", "carolpw").await;
    Some(World {
        _prosody: p,
        sink,
        mms,
        h,
        alice,
        carol,
    })
}

/// vobject's reading of a vCard: `{property: [values]}`.
fn vobject_read(vcard: &str) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mail_peers/vcard.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(vcard.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "vobject refused the vCard: {}\n{vcard}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn one_card_reaches_xmpp_mail_and_a_phone_each_in_its_form() {
    let Some(w) = world().await else {
        return;
    };
    let r =
        w.h.http
            .post(format!("{}/v1/cards", w.h.base))
            .bearer_auth(TOKEN)
            .json(&json!({
                "from": "im:alice@localhost",
                "to": ["im:carol@localhost", format!("mail:{BOB}"), format!("sms:{PAT}")],
                "card": card(),
            }))
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // XMPP: the card element (valid against the schema), its vCard4 form, a readable body.
    let got = w.carol.wait("message", |e| e["card_xml"].is_string()).await;
    let xml = got["card_xml"].as_str().unwrap();
    xsd_check(xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert!(xml.contains("北京, Chaoyang; CN"), "{xml}");
    assert!(
        xml.contains("owner=\"alice\"") || xml.contains("owner='alice'"),
        "{xml}"
    );
    let vcard4 = got["vcard_xml"].as_str().expect("the XEP-0292 form");
    assert!(
        vcard4.contains("urn:ietf:params:xml:ns:vcard-4.0"),
        "{vcard4}"
    );
    assert!(
        vcard4.contains("<fn><text>Alice Liu, Ph.D.; Zoë</text></fn>"),
        "{vcard4}"
    );
    assert!(vcard4.contains("<uri>tel:+8613800000070</uri>"), "{vcard4}");
    let body = got["body"].as_str().unwrap();
    assert!(body.starts_with("Card: Alice Liu, Ph.D.; Zoë\n"), "{body}");
    assert_eq!(got["type"], "chat");

    // Mail: a readable body and a text/vcard vCard 4.0 that vobject reads field by field.
    let raw = w
        .sink
        .wait_mail("a mail to bob with the card", |m| {
            m.contains(&format!("X-Rcpt-Args: <{BOB}>"))
        })
        .await;
    let parsed = MessageParser::default().parse(raw.as_bytes()).unwrap();
    let text = parsed.body_text(0).expect("a readable body");
    assert!(text.contains("Card: Alice Liu, Ph.D.; Zoë"), "{raw}");
    let part = parsed
        .attachments()
        .find(|a| {
            a.content_type()
                .is_some_and(|t| t.ctype() == "text" && t.subtype() == Some("vcard"))
        })
        .unwrap_or_else(|| panic!("no text/vcard attachment: {raw}"));
    let vcard = String::from_utf8(part.contents().to_vec()).unwrap();
    let v = vobject_read(&vcard);
    assert_eq!(v["version"], "4.0", "{v}");
    let one = |k: &str| v[k][0].clone();
    assert_eq!(one("fn"), "Alice Liu, Ph.D.; Zoë", "{v}\n{vcard}");
    assert_eq!(one("nickname"), "Ali", "{v}");
    assert_eq!(one("gender"), "F", "{v}");
    assert_eq!(one("bday"), "19940321", "{v}");
    assert_eq!(one("note"), QUOTE, "{v}\n{vcard}");
    assert_eq!(one("photo"), "https://example.org/alice.png", "{v}");
    assert_eq!(one("x-age"), "30", "{v}");
    assert_eq!(one("x-zodiac"), "aries", "{v}");
    assert_eq!(one("x-location"), "北京, Chaoyang; CN", "{v}\n{vcard}");
    assert_eq!(one("tel"), "tel:+8613800000070", "{v}");
    assert_eq!(one("impp"), "xmpp:alice@localhost", "{v}");

    // A phone, MMS on: the vCard as a part of the MMS, beside the compact text.
    let m = received_mms(&w.h.cfg.store.path, &w.mms, &id).await;
    let vc = m
        .parts
        .iter()
        .find(|p| p.content_type.starts_with("text/vcard"))
        .unwrap_or_else(|| panic!("no vCard part: {m:?}"));
    let v = vobject_read(std::str::from_utf8(&vc.bytes).unwrap());
    assert_eq!(v["fn"][0], "Alice Liu, Ph.D.; Zoë", "{v}");
    assert!(w.h.sim.sim.messages().is_empty(), "no SMS beside the MMS");
    w.h.stop().await;
}

#[tokio::test]
async fn a_card_sent_over_xmpp_reaches_a_phone_and_a_bad_one_is_answered() {
    let Some(mut w) = world().await else {
        return;
    };
    let phone = format!("{PAT}@sms.localhost");
    w.alice
        .cmd(json!({"cmd": "send", "to": phone, "body": "My card", "id": "c-1", "xml": card()}));
    let sent = wait_for(Duration::from_secs(15), "the card's MMS", || {
        let found = w.mms.sim.mms_messages().into_iter().next();
        async move { found }
    })
    .await;
    let vc = sent
        .parts
        .iter()
        .find(|p| p.content_type.starts_with("text/vcard"))
        .unwrap_or_else(|| panic!("no vCard part: {sent:?}"));
    let v = vobject_read(std::str::from_utf8(&vc.bytes).unwrap());
    assert_eq!(v["note"][0], QUOTE, "{v}");

    let bad =
        format!("<card xmlns='{NS}'><name>Alice</name><birthdate>1994-02-30</birthdate></card>");
    w.alice
        .cmd(json!({"cmd": "send", "to": phone, "body": "Bad card", "id": "c-2", "xml": bad}));
    let e = w.alice.wait("error", |e| e["id"] == "c-2").await;
    assert_eq!(e["condition"], "not-acceptable", "{e}");
    assert!(e["text"].as_str().unwrap().contains("birthdate"), "{e}");
    // Nothing of it stored: the only message from alice is the good card.
    let c = rusqlite::Connection::open(&w.h.cfg.store.path).unwrap();
    let from_alice: i64 = c
        .query_row(
            "SELECT count(*) FROM messages WHERE kind = 'message' AND origin = 'im:alice@localhost'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(from_alice, 1, "nothing stored");
    w.h.stop().await;
}
