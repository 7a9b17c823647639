//! Members speaking as a group, against real peers: an XMPP user on Prosody (slixmpp), a
//! mail user behind Postfix's smtp-sink (replying with swaks), phones at the simulator.
//! Every network shows the group as the sender, with the member beside it, and a reply to
//! the group from any network reaches every other member.
//!
//! Prosody, slixmpp, smtp-sink and swaks are installed by `scripts/test.sh`. Without them
//! these tests fail under `CI=true` and are skipped with a loud message otherwise.

mod common;
mod mail_peers;
#[path = "xmpp/support.rs"]
mod support;

use std::net::SocketAddr;

use common::*;
use mail_parser::MessageParser;
use mail_peers::{Smtp, SmtpSink, swaks, swaks_bin};
use serde_json::{Value, json};
use support::{Prosody, User, peers_present, xmpp_config};
use switchboard::address::Network;
use switchboard::connectors::xmpp::{ComponentConfig, XmppConfig};

const SMS_SECRET: &str = "sms-component-secret";
const GROUP_SECRET: &str = "group-component-secret";
const PAT: &str = "+8613800000031";
const QUINN: &str = "+8613800000032";
const GROUP_JID: &str = "team42@groups.localhost";
const GROUP_MAIL: &str = "team42@groups.example.org";
const BOB: &str = "bob@example.org";

/// The directory: alice, carol (XMPP), bob (mail), pat (phone) and dave (XMPP, in no group);
/// `team42` holds alice, carol and the group `inner`, which holds bob, pat and a phone with
/// no user.
fn seed() -> Value {
    json!({
        "users": {
            "alice": {"name": "Alice", "addresses": ["im:alice@localhost"]},
            "carol": {"name": "Carol", "addresses": ["im:carol@localhost"]},
            "dave": {"name": "Dave", "addresses": ["im:dave@localhost"]},
            "bob": {"name": "Bob", "addresses": [format!("mail:{BOB}")]},
            "pat": {"name": "Pat", "addresses": [format!("sms:{PAT}")]},
        },
        "groups": {
            "team42": {"name": "Team 42", "members": [
                {"user": "alice"}, {"user": "carol"}, {"group": "inner"}
            ]},
            "inner": {"name": "Inner", "members": [
                {"user": "bob"}, {"user": "pat"}, {"address": format!("sms:{QUINN}")}
            ]},
        },
    })
}

/// Everything one test needs: Prosody with the SMS and group components, alice, carol and
/// dave online, smtp-sink as the smarthost, and the gateway with its SMTP server.
struct World {
    _prosody: Prosody,
    _seed: tempfile::TempDir,
    sink: SmtpSink,
    h: Harness,
    smtp: SocketAddr,
    alice: User,
    carol: User,
    dave: User,
}

/// `None` (skipped, or failed under `CI=true`) when a peer is missing.
async fn world() -> Option<World> {
    if !peers_present() {
        return None;
    }
    let sink = SmtpSink::start(&[]).await?;
    swaks_bin()?;
    let p = Prosody::start(
        &[
            ("sms.localhost", SMS_SECRET),
            ("groups.localhost", GROUP_SECRET),
        ],
        &[
            ("alice", "alicepw"),
            ("carol", "carolpw"),
            ("dave", "davepw"),
        ],
    )
    .await;
    let seed_dir = tempfile::tempdir().unwrap();
    let seed_file = seed_dir.path().join("directory.json");
    std::fs::write(&seed_file, seed().to_string()).unwrap();
    let x = xmpp_config(
        &p,
        &[
            ("sms.localhost", Network::Sms, SMS_SECRET),
            ("groups.localhost", Network::Group, GROUP_SECRET),
        ],
    );
    let smarthost = sink.addr.to_string();
    // The harness waits for /readyz, which waits for both component links.
    let h = Harness::start(move |cfg, _| {
        cfg.xmpp = Some(x);
        cfg.im.domains = vec!["localhost".into()];
        cfg.mail.listen = "127.0.0.1:0".into();
        cfg.mail.hostname = "gw.example.org".into();
        cfg.mail.smarthost = smarthost;
        cfg.directory.file = Some(seed_file);
        // A phone's reply to a group may reach phones: relaying is off by default.
        cfg.mo.relay_to_phones = true;
        cfg.mo.relay_networks = vec!["+86".into()];
    })
    .await;
    let smtp = h.smtp.expect("the SMTP server's address");
    let alice = User::login(&p, "alice", "alicepw").await;
    let carol = User::login(&p, "carol", "carolpw").await;
    let dave = User::login(&p, "dave", "davepw").await;
    Some(World {
        _prosody: p,
        _seed: seed_dir,
        sink,
        h,
        smtp,
        alice,
        carol,
        dave,
    })
}

/// The mail smtp-sink received for bob that contains `text`, parsed: (raw, From name,
/// From address, Reply-To address).
async fn mail_to_bob(sink: &SmtpSink, text: &str) -> (String, String, String, String) {
    let raw = sink
        .wait_mail(&format!("a mail to bob with {text:?}"), |m| {
            m.contains(&format!("X-Rcpt-Args: <{BOB}>")) && m.contains(text)
        })
        .await;
    let parsed = MessageParser::default().parse(raw.as_bytes()).unwrap();
    let from = parsed.from().and_then(|f| f.first()).expect("a From");
    let reply_to = parsed
        .reply_to()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .unwrap_or_default()
        .to_string();
    (
        raw.clone(),
        from.name().unwrap_or_default().to_string(),
        from.address().unwrap_or_default().to_string(),
        reply_to,
    )
}

/// Whether an XMPP user has seen a message with `body`.
fn saw(u: &User, body: &str) -> bool {
    u.events()
        .iter()
        .any(|e| e["event"] == "message" && e["body"].as_str().is_some_and(|b| b.contains(body)))
}

#[tokio::test]
async fn a_member_speaking_from_xmpp_reaches_every_network_as_the_group() {
    let Some(mut w) = world().await else {
        return;
    };
    w.alice
        .cmd(json!({"cmd": "send", "to": GROUP_JID, "body": "Meeting at 10", "id": "a-1"}));

    // Phones: the group and the speaker before the text, from the group's reply route.
    let pat = sms_to(&w.h, PAT, |t| t.contains("Meeting at 10")).await;
    assert_eq!(pat.message, "Team 42 / Alice: Meeting at 10");
    let quinn = sms_to(&w.h, QUINN, |t| t.contains("Meeting at 10")).await;
    assert_eq!(quinn.message, "Team 42 / Alice: Meeting at 10");
    assert!(pat.sender_name.is_some(), "a reply sub-address");
    assert_eq!(pat.sender_name, quinn.sender_name, "one route: the group's");

    // Mail: from the group, the speaker named beside it, replies to the group.
    let (raw, name, from, reply_to) = mail_to_bob(&w.sink, "Meeting at 10").await;
    assert_eq!(name, "Team 42 (Alice)", "{raw}");
    assert_eq!(from, GROUP_MAIL, "{raw}");
    assert_eq!(reply_to, GROUP_MAIL, "{raw}");
    assert!(
        raw.contains(&format!("X-Mail-Args: <{GROUP_MAIL}>")),
        "{raw}"
    );

    // XMPP: from the group's JID, the speaker as the resource; the text as written.
    let got = w
        .carol
        .wait("message", |e| e["body"] == "Meeting at 10")
        .await;
    assert_eq!(got["from"], format!("{GROUP_JID}/Alice"));

    // The speaker is not sent her own message.
    let m =
        w.h.message(&w.h.message_of(pat.correlator.as_deref().unwrap()).unwrap())
            .await;
    assert_eq!(m["from"], "group:team42", "{m}");
    let to: Vec<&str> = m["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert_eq!(to.len(), 4, "{m}");
    assert!(!to.contains(&"im:alice@localhost"), "{m}");
    assert!(!saw(&w.alice, "Meeting at 10"));
    w.h.stop().await;
}

#[tokio::test]
async fn a_phone_reply_to_the_group_route_reaches_every_other_member() {
    let Some(mut w) = world().await else {
        return;
    };
    w.alice
        .cmd(json!({"cmd": "send", "to": GROUP_JID, "body": "Who brings cake?", "id": "a-2"}));
    let pat = sms_to(&w.h, PAT, |t| t.contains("Who brings cake?")).await;
    let route = pat.sender_name.expect("a reply sub-address");

    // Pat answers the sub-address the group's message came from: spoken as the group.
    assert_eq!(w.h.sim.mo(PAT, &route, "I do").await, 200);
    let quinn = sms_to(&w.h, QUINN, |t| t.contains("I do")).await;
    assert_eq!(quinn.message, "Team 42 / Pat: I do");
    assert_eq!(quinn.sender_name.as_deref(), Some(route.as_str()));
    for u in [&w.alice, &w.carol] {
        let got = u.wait("message", |e| e["body"] == "I do").await;
        assert_eq!(got["from"], format!("{GROUP_JID}/Pat"));
    }
    let (raw, name, from, _) = mail_to_bob(&w.sink, "I do").await;
    assert_eq!(name, "Team 42 (Pat)", "{raw}");
    assert_eq!(from, GROUP_MAIL, "{raw}");
    // Not back to Pat.
    assert!(
        !w.h.sim
            .sim
            .messages()
            .iter()
            .any(|m| m.addresses == [format!("tel:{PAT}")] && m.message.contains("I do"))
    );
    w.h.stop().await;
}

#[tokio::test]
async fn a_mail_reply_to_the_group_address_reaches_every_other_member() {
    let Some(w) = world().await else {
        return;
    };
    let (code, out) = swaks(
        w.smtp,
        &[
            "--from",
            BOB,
            "--to",
            GROUP_MAIL,
            "--header",
            "Subject: Re: plans",
            "--body",
            "Count me in",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    for number in [PAT, QUINN] {
        let sms = sms_to(&w.h, number, |t| t.contains("Count me in")).await;
        assert!(
            sms.message.starts_with("Team 42 / Bob: "),
            "{}",
            sms.message
        );
    }
    for u in [&w.alice, &w.carol] {
        let got = u
            .wait("message", |e| {
                e["body"]
                    .as_str()
                    .is_some_and(|b| b.contains("Count me in"))
            })
            .await;
        assert_eq!(got["from"], format!("{GROUP_JID}/Bob"));
    }
    // Not back to bob.
    assert!(
        !w.sink
            .mails()
            .iter()
            .any(|m| m.contains(&format!("X-Rcpt-Args: <{BOB}>")) && m.contains("Count me in"))
    );
    w.h.stop().await;
}

#[tokio::test]
async fn non_members_are_refused_at_the_door() {
    let Some(mut w) = world().await else {
        return;
    };
    // Mail from somebody outside the group: refused at RCPT.
    let (mut c, _) = Smtp::connect(w.smtp).await;
    c.cmd("EHLO client.example.com").await;
    let r = c
        .mail(
            "eve@example.org",
            &[GROUP_MAIL],
            "Subject: hi\r\n\r\nlet me in",
        )
        .await;
    assert!(r.starts_with("550"), "{r}");
    c.cmd("QUIT").await;

    // XMPP from a directory user outside the group: an error stanza, forbidden.
    w.dave
        .cmd(json!({"cmd": "send", "to": GROUP_JID, "body": "let me in", "id": "d-1"}));
    let e = w.dave.wait("error", |e| e["id"] == "d-1").await;
    assert_eq!(e["condition"], "forbidden", "{e}");

    // Nothing reached anybody.
    let members_got = saw(&w.alice, "let me in")
        || saw(&w.carol, "let me in")
        || w.h
            .sim
            .sim
            .messages()
            .iter()
            .any(|m| m.message.contains("let me in"))
        || w.sink.mails().iter().any(|m| m.contains("let me in"));
    assert!(!members_got);
    w.h.stop().await;
}

#[tokio::test]
async fn an_api_client_speaking_as_the_group_names_the_speaker_to_the_im_webhook() {
    // No peers: the IM webhook of the harness and the simulator.
    let seed_dir = tempfile::tempdir().unwrap();
    let seed_file = seed_dir.path().join("directory.json");
    std::fs::write(
        &seed_file,
        json!({
            "users": {
                "web1": {"name": "Web One", "addresses": ["im:web1@im.example.org"]},
                "web2": {"name": "Web Two", "addresses": ["im:web2@im.example.org"]},
            },
            "groups": {
                "team42": {"name": "Team 42", "members": [
                    {"user": "web1"}, {"user": "web2"}, {"address": format!("sms:{PAT}")}
                ]},
            },
        })
        .to_string(),
    )
    .unwrap();
    let h = Harness::start(move |cfg, _| cfg.directory.file = Some(seed_file)).await;
    h.submit_ok(json!({
        "from": "im:web1@im.example.org",
        "as": "group:team42",
        "text": "hello all",
    }))
    .await;
    let posted = h
        .hooks
        .wait("im", "the message at the IM webhook", |v| {
            v["text"] == "hello all"
        })
        .await;
    assert_eq!(posted["from"], "group:team42", "{posted}");
    assert_eq!(posted["speaker"], "im:web1@im.example.org", "{posted}");
    assert_eq!(posted["to"], "im:web2@im.example.org", "{posted}");
    let sms = sms_to(&h, PAT, |t| t.contains("hello all")).await;
    assert_eq!(sms.message, "Team 42 / Web One: hello all");

    // A message not spoken as a group carries no speaker.
    h.submit_ok(json!({
        "from": "app:desk",
        "to": ["im:web2@im.example.org"],
        "text": "plain",
    }))
    .await;
    let posted = h
        .hooks
        .wait("im", "the plain message", |v| v["text"] == "plain")
        .await;
    assert!(posted.get("speaker").is_none(), "{posted}");
    h.stop().await;
}

#[tokio::test]
async fn without_a_group_component_xmpp_users_get_the_group_in_the_text() {
    if !peers_present() {
        return;
    }
    let p = Prosody::start(&[("sms.localhost", SMS_SECRET)], &[("alice", "alicepw")]).await;
    let seed_dir = tempfile::tempdir().unwrap();
    let seed_file = seed_dir.path().join("directory.json");
    std::fs::write(&seed_file, seed().to_string()).unwrap();
    let x = XmppConfig {
        server: p.component_server(),
        components: vec![ComponentConfig {
            domain: "sms.localhost".into(),
            network: Network::Sms,
            secret: SMS_SECRET.into(),
            name: None,
        }],
        reconnect_initial_ms: 100,
        reconnect_max_ms: 1000,
        link_down_retry_ms: 200,
        ..XmppConfig::default()
    };
    let h = Harness::start(move |cfg, _| {
        cfg.xmpp = Some(x);
        cfg.im.domains = vec!["localhost".into()];
        cfg.directory.file = Some(seed_file);
    })
    .await;
    let alice = User::login(&p, "alice", "alicepw").await;
    h.submit_ok(json!({
        "from": "im:carol@localhost",
        "as": "group:team42",
        "text": "No component here",
    }))
    .await;
    let got = alice
        .wait("message", |e| {
            e["body"]
                .as_str()
                .is_some_and(|b| b.contains("No component here"))
        })
        .await;
    assert_eq!(got["body"], "Team 42 / Carol: No component here");
    assert_eq!(got["from"], "sms.localhost");
    let sms = sms_to(&h, PAT, |t| t.contains("No component here")).await;
    assert_eq!(sms.message, "Team 42 / Carol: No component here");
    h.stop().await;
}

/// An outsider (an API client, as `app:news`) writes to `team42`, which holds `inner` as one
/// member: every person of both reaches it once, on their own network, and the members list
/// shows `inner` as one entry.
#[tokio::test]
async fn a_message_to_a_nested_group_reaches_everybody_once_on_their_networks() {
    let Some(w) = world().await else {
        return;
    };
    let (status, v) =
        w.h.submit(json!({"from": "app:news", "to": ["group:team42"], "text": "Fire drill at 3"}))
            .await;
    assert_eq!(status, 202, "{v}");
    let mut to: Vec<&str> = v["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    to.sort();
    let bob = format!("mail:{BOB}");
    let (pat, quinn) = (format!("sms:{PAT}"), format!("sms:{QUINN}"));
    let mut want = vec![
        "im:alice@localhost",
        "im:carol@localhost",
        bob.as_str(),
        pat.as_str(),
        quinn.as_str(),
    ];
    want.sort();
    assert_eq!(to, want, "each person once: {v}");

    for phone in [PAT, QUINN] {
        let m = sms_to(&w.h, phone, |t| t.contains("Fire drill at 3")).await;
        assert_eq!(
            m.message, "Fire drill at 3",
            "not spoken as the group: no prefix"
        );
    }
    // An app has no JID of its own: it comes from the gateway's domain, named in the text.
    for u in [&w.alice, &w.carol] {
        u.wait("message", |e| e["body"] == "app:news: Fire drill at 3")
            .await;
    }
    let (raw, _, _, _) = mail_to_bob(&w.sink, "Fire drill at 3").await;
    assert!(raw.contains("Fire drill at 3"));
    let sent: usize =
        w.h.sim
            .sim
            .messages()
            .iter()
            .filter(|m| m.message == "Fire drill at 3")
            .count();
    assert_eq!(sent, 2, "one SMS per phone");
    let mails = w
        .sink
        .mails()
        .iter()
        .filter(|m| m.contains("Fire drill at 3"))
        .count();
    assert_eq!(mails, 1, "one mail for bob");

    let members: Value =
        w.h.http
            .get(format!("{}/v1/groups/team42/members", w.h.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        members["members"],
        json!([
            {"kind": "user", "id": "alice", "name": "Alice"},
            {"kind": "user", "id": "carol", "name": "Carol"},
            {"kind": "group", "id": "inner", "name": "Inner"}
        ])
    );
    w.h.stop().await;
}
