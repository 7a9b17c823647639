//! An app's push to a user's friends, against real peers: an XMPP friend on Prosody
//! (slixmpp) gets a headline carrying the app's payload, a mail friend behind Postfix's
//! smtp-sink gets a readable mail, a phone friend gets the text by SMS at the simulator
//! when the app may reach phones — and the user the push is about gets nothing.
//!
//! Prosody, slixmpp and smtp-sink are installed by `scripts/test.sh`. Without them these
//! tests fail under `CI=true` and are skipped with a loud message otherwise.

mod common;
mod mail_peers;
#[path = "xmpp/support.rs"]
mod support;

use std::time::Duration;

use common::*;
use mail_parser::MessageParser;
use mail_peers::SmtpSink;
use serde_json::{Value, json};
use support::{Prosody, User, peers_present, xmpp_config};
use switchboard::address::Network;
use switchboard::apps::sign;

const SMS_SECRET: &str = "sms-component-secret";
const APP: &str = "weather";
const APP_NS: &str = "urn:switchboard:app:1";
const PAT: &str = "+8613800000041";
const BOB: &str = "bob@example.org";
const PUSH_PATH: &str = "/v1/apps/weather/messages";
const PAYLOAD: &str = "<weather city='Paris'><t>3</t></weather>";
const TEXT: &str = "Paris: 3 C";

/// Alice (XMPP) and her friends carol (XMPP), bob (mail) and pat (phone).
fn alice_record() -> Value {
    json!({
        "name": "Alice",
        "addresses": ["im:alice@localhost"],
        "friends": ["bob", "carol", "pat"],
    })
}

/// The directory at start: alice's friends are named once they are all there (the seed
/// puts users in id order, and a friend must exist).
fn seed() -> Value {
    let mut alice = alice_record();
    alice["friends"] = json!([]);
    json!({
        "users": {
            "alice": alice,
            "carol": {"name": "Carol", "addresses": ["im:carol@localhost"]},
            "bob": {"name": "Bob", "addresses": [format!("mail:{BOB}")]},
            "pat": {"name": "Pat", "addresses": [format!("sms:{PAT}")]},
        },
    })
}

/// Prosody with the SMS component, alice and carol online, smtp-sink as the smarthost,
/// the gateway, and the app `weather` registered (`phones` as given) and installed by
/// alice.
struct World {
    _prosody: Prosody,
    sink: SmtpSink,
    h: Harness,
    alice: User,
    carol: User,
    secret: String,
}

/// `None` (skipped, or failed under `CI=true`) when a peer is missing.
async fn world(phones: bool) -> Option<World> {
    if !peers_present() {
        return None;
    }
    let sink = SmtpSink::start(&[]).await?;
    let p = Prosody::start(
        &[("sms.localhost", SMS_SECRET)],
        &[("alice", "alicepw"), ("carol", "carolpw")],
    )
    .await;
    let x = xmpp_config(&p, &[("sms.localhost", Network::Sms, SMS_SECRET)]);
    let smarthost = sink.addr.to_string();
    // The harness waits for /readyz, which waits for the component link.
    let h = Harness::start(move |cfg, _| {
        cfg.xmpp = Some(x);
        cfg.im.domains = vec!["localhost".into()];
        cfg.mail.listen = "127.0.0.1:0".into();
        cfg.mail.hostname = "gw.example.org".into();
        cfg.mail.smarthost = smarthost;
        seed_directory(cfg, seed());
    })
    .await;
    let alice = User::login(&p, "alice", "alicepw").await;
    let carol = User::login(&p, "carol", "carolpw").await;

    let r = h
        .http
        .put(format!("{}/v1/users/alice", h.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&alice_record())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "alice's friends");
    let r = h
        .http
        .put(format!("{}/v1/apps/{APP}", h.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({
            "name": "Weather",
            "may_target": ["user", "friends", "group"],
            "rate_per_minute": 600,
            "phones": phones,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let app: Value = r.json().await.unwrap();
    let secret = app["secret"].as_str().expect("a secret made").to_string();
    let r = h
        .http
        .put(format!("{}/v1/users/alice/apps/{APP}", h.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    Some(World {
        _prosody: p,
        sink,
        h,
        alice,
        carol,
        secret,
    })
}

impl World {
    /// A push signed with the app's secret: its answer (status, body).
    async fn push(&self, body: Value, nonce: &str) -> (reqwest::StatusCode, Value) {
        let bytes = body.to_string().into_bytes();
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let sig = sign::sign(&self.secret, "POST", PUSH_PATH, ts, nonce, &bytes);
        let r = self
            .h
            .http
            .post(format!("{}{PUSH_PATH}", self.h.base))
            .header("content-type", "application/json")
            .header("X-App-Timestamp", ts.to_string())
            .header("X-App-Nonce", nonce)
            .header("X-App-Signature", sig)
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /admin/v1/messages/{id}`.
    async fn stored(&self, id: &str) -> Value {
        let r = self
            .h
            .http
            .get(format!("{}/admin/v1/messages/{id}", self.h.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET /admin/v1/messages/{id}");
        r.json().await.unwrap()
    }

    /// Waits until every recipient of message `id` has reached its network (or failed);
    /// returns the message.
    async fn settled(&self, id: &str) -> Value {
        wait_for(
            Duration::from_secs(20),
            &format!("every recipient of {id} to be settled"),
            || async move {
                let m = self.stored(id).await;
                m["recipients"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|r| {
                        matches!(
                            r["state"].as_str(),
                            Some("sent" | "delivered" | "failed" | "expired")
                        )
                    })
                    .then_some(m)
            },
        )
        .await
    }
}

/// The push to alice's friends.
fn to_friends() -> Value {
    json!({
        "target": {"friends_of": "alice"},
        "mode": "popup",
        "content": PAYLOAD,
        "text": TEXT,
    })
}

/// The recipients' addresses of a stored message, sorted.
fn addresses(m: &Value) -> Vec<String> {
    let mut to: Vec<String> = m["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect();
    to.sort();
    to
}

/// Carol's headline for push `id`: from the gateway's component, the readable text as
/// its body, the payload inside `<app xmlns='urn:switchboard:app:1'>`.
async fn carol_gets_the_headline(w: &World, id: &str) {
    let got = w
        .carol
        .wait("message", |e| e["type"] == "headline" && e["body"] == TEXT)
        .await;
    assert_eq!(got["from"], "sms.localhost", "{got}");
    let app = &got["app"];
    assert_eq!(app["id"], id, "{got}");
    assert_eq!(app["app"], APP, "{got}");
    assert_eq!(app["name"], "Weather", "{got}");
    assert_eq!(app["kind"], "push", "{got}");
    assert_eq!(app["mode"], "popup", "{got}");
    let xml = got["app_xml"].as_str().expect("the payload's XML");
    assert!(xml.contains(APP_NS), "{xml}");
    assert!(xml.contains("<weather"), "{xml}");
    assert!(
        xml.contains("city=\"Paris\"") || xml.contains("city='Paris'"),
        "{xml}"
    );
    assert!(xml.contains("<t>3</t>"), "{xml}");
}

/// Bob's mail: named for the app, the readable text as its body.
async fn bob_gets_the_mail(w: &World) {
    let raw = w
        .sink
        .wait_mail("a mail to bob with the weather", |m| {
            m.contains(&format!("X-Rcpt-Args: <{BOB}>")) && m.contains(TEXT)
        })
        .await;
    let parsed = MessageParser::default().parse(raw.as_bytes()).unwrap();
    let subject = parsed.subject().unwrap_or_default();
    let from = parsed.from().and_then(|f| f.first()).expect("a From");
    let from_name = from.name().unwrap_or_default();
    assert_eq!(subject, "Weather", "{raw}");
    assert_eq!(from_name, "Weather", "{raw}");
    assert_eq!(from.address(), Some("noreply@gw.example.org"), "{raw}");
    let to = parsed
        .to()
        .and_then(|t| t.first())
        .and_then(|a| a.address());
    assert_eq!(to, Some(BOB), "{raw}");
    let body = parsed.body_text(0).expect("a text body");
    assert_eq!(body.trim(), TEXT, "{raw}");
}

/// Alice saw no headline with the text. A push to alice herself, waited for, comes after
/// anything of the earlier push on the same link.
async fn alice_got_nothing(w: &World) {
    let (status, v) = w
        .push(
            json!({
                "target": {"user": "alice"},
                "mode": "tip",
                "content": "<note>just for you</note>",
                "text": "Just for you",
            }),
            "nonce-alice-1",
        )
        .await;
    assert_eq!(status, 202, "{v}");
    w.alice
        .wait("message", |e| e["body"] == "Just for you")
        .await;
    let seen: Vec<Value> = w
        .alice
        .events()
        .into_iter()
        .filter(|e| {
            e["event"] == "message"
                && (e["body"].as_str().is_some_and(|b| b.contains(TEXT))
                    || e["app_xml"]
                        .as_str()
                        .is_some_and(|x| x.contains("<weather")))
        })
        .collect();
    assert!(
        seen.is_empty(),
        "alice was sent her friends' push: {seen:?}"
    );
}

#[tokio::test]
async fn a_push_to_alices_friends_reaches_each_on_their_network_and_not_alice() {
    let Some(w) = world(true).await else {
        return;
    };
    let (status, v) = w.push(to_friends(), "nonce-friends-1").await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().expect("an id").to_string();
    assert_eq!(v["users"], 3, "{v}");
    assert_eq!(v["recipients"], 3, "{v}");
    assert_eq!(v["unreachable"], 0, "{v}");

    carol_gets_the_headline(&w, &id).await;
    bob_gets_the_mail(&w).await;
    let sms = sms_to(&w.h, PAT, |t| t.contains(TEXT)).await;
    assert!(sms.message.contains(TEXT), "{}", sms.message);

    // One message from the app, one recipient per friend, each at their first address.
    let m = w.settled(&id).await;
    assert_eq!(m["from"], "app:weather", "{m}");
    assert_eq!(
        addresses(&m),
        vec![
            "im:carol@localhost".to_string(),
            format!("mail:{BOB}"),
            format!("sms:{PAT}"),
        ],
        "{m}"
    );
    for r in m["recipients"].as_array().unwrap() {
        assert!(
            matches!(r["state"].as_str(), Some("sent" | "delivered")),
            "{m}"
        );
    }
    alice_got_nothing(&w).await;

    // One of each: nobody got it twice.
    let sent =
        w.h.sim
            .sim
            .messages()
            .iter()
            .filter(|m| m.message.contains(TEXT))
            .count();
    assert_eq!(sent, 1, "one SMS, for pat");
    let mails = w.sink.mails().iter().filter(|m| m.contains(TEXT)).count();
    assert_eq!(mails, 1, "one mail, for bob");
    let headlines = w
        .carol
        .events()
        .iter()
        .filter(|e| e["event"] == "message" && e["body"] == TEXT)
        .count();
    assert_eq!(headlines, 1, "one headline, for carol");
    w.h.stop().await;
}

#[tokio::test]
async fn an_app_without_phones_skips_the_phone_friend_but_keeps_it_on_her_stack() {
    let Some(w) = world(false).await else {
        return;
    };
    let (status, v) = w.push(to_friends(), "nonce-friends-2").await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().expect("an id").to_string();
    assert_eq!(v["users"], 3, "{v}");
    assert_eq!(v["recipients"], 2, "{v}");
    assert_eq!(v["unreachable"], 1, "{v}");

    carol_gets_the_headline(&w, &id).await;
    bob_gets_the_mail(&w).await;
    let m = w.settled(&id).await;
    assert_eq!(
        addresses(&m),
        vec!["im:carol@localhost".to_string(), format!("mail:{BOB}")],
        "{m}"
    );
    alice_got_nothing(&w).await;
    // Everything of the push has been delivered, and no SMS was sent at all.
    assert!(
        w.h.sim.sim.messages().is_empty(),
        "{:?}",
        w.h.sim.sim.messages()
    );

    // Pat reads it from her stack.
    let r =
        w.h.http
            .get(format!("{}/v1/users/pat/app-messages", w.h.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
    assert_eq!(r.status(), 200);
    let stack: Value = r.json().await.unwrap();
    let msgs = stack["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 1, "{stack}");
    let e = &msgs[0];
    assert_eq!(e["id"], id.as_str(), "{stack}");
    assert_eq!(e["app"], APP, "{stack}");
    assert_eq!(e["name"], "Weather", "{stack}");
    assert_eq!(e["kind"], "push", "{stack}");
    assert_eq!(e["mode"], "popup", "{stack}");
    assert_eq!(e["text"], TEXT, "{stack}");
    assert!(
        e["content"].as_str().is_some_and(|c| c.contains("<weather")
            && c.contains("Paris")
            && c.contains("<t>3</t>")),
        "{stack}"
    );
    assert_eq!(stack["next"], id.as_str(), "{stack}");
    // Alice is not on the push's stacks either.
    let r =
        w.h.http
            .get(format!("{}/v1/users/alice/app-messages", w.h.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
    let alice_stack: Value = r.json().await.unwrap();
    assert!(
        alice_stack["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["id"] != id.as_str()),
        "{alice_stack}"
    );
    w.h.stop().await;
}
