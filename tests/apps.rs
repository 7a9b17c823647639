//! The app platform over HTTP: the registry (admin only), signed pushes and every way to
//! get them refused (nothing stored, each counted), fan-out to a user, a user's friends and
//! a group, message stacks, app lists, recommendations, signed delivery reports to the
//! app, and pulls (a failing app backed off without holding up another).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxStatus, Uri};
use axum::routing::get;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard::apps::sign;
use tokio::net::TcpListener;

const PUSH_PATH: &str = "/v1/apps/weather/messages";

/// alice and bob (IM, through the webhook), carol (IM), pat (a phone); alice's friends are
/// bob, carol and pat; `team` holds bob and carol.
fn seed() -> Value {
    json!({
        "users": {
            "alice": {"name": "Alice", "addresses": ["im:alice@im.example.org"], "friends": ["bob", "carol", "pat"]},
            "bob": {"name": "Bob", "addresses": ["im:bob@im.example.org"], "friends": ["alice"]},
            "carol": {"name": "Carol", "addresses": ["im:carol@im.example.org"], "friends": ["alice"]},
            "pat": {"name": "Pat", "addresses": ["sms:+8613800000051"], "friends": ["alice"]},
            "dan": {"name": "Dan", "addresses": ["im:dan@other.example.net"]}
        },
        "groups": {
            "team": {"name": "Team", "members": [{"user": "bob"}, {"user": "carol"}]}
        }
    })
}

async fn start(tweak: impl FnOnce(&mut switchboard::Config)) -> Harness {
    Harness::start(|cfg, _| {
        seed_directory(cfg, seed());
        tweak(cfg);
    })
    .await
}

async fn call_as(
    h: &Harness,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = h.http.request(method, format!("{}{path}", h.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn admin(
    h: &Harness,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    call_as(h, Some(ADMIN_TOKEN), method, path, body).await
}

/// Registers `weather` (users, friends and groups; phones as given); its secret.
async fn register(h: &Harness, extra: Value) -> String {
    let mut body = json!({"name": "Weather", "icon_url": "https://example.com/w.png",
        "may_target": ["user", "friends", "group"], "rate_per_minute": 600});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (status, app) = admin(h, Method::PUT, "/v1/apps/weather", Some(body)).await;
    assert_eq!(status, 201, "{app}");
    let secret = app["secret"]
        .as_str()
        .expect("a made secret is shown once")
        .to_string();
    assert_eq!(secret.len(), 64);
    secret
}

async fn install(h: &Harness, user: &str, app: &str) {
    let (status, v) = admin(
        h,
        Method::PUT,
        &format!("/v1/users/{user}/apps/{app}"),
        None,
    )
    .await;
    assert!(status == 201 || status == 200, "{status} {v}");
}

/// A signed push request: `ts` and `nonce` as given.
struct Push<'a> {
    secret: &'a str,
    path: &'a str,
    ts: i64,
    nonce: String,
    body: Vec<u8>,
    /// Signature to send instead of the right one.
    forged: Option<String>,
}

impl<'a> Push<'a> {
    fn new(secret: &'a str, body: Value) -> Push<'a> {
        Push {
            secret,
            path: PUSH_PATH,
            ts: now_secs(),
            nonce: sign::new_nonce(),
            body: body.to_string().into_bytes(),
            forged: None,
        }
    }

    async fn send(&self, h: &Harness) -> (StatusCode, Value) {
        let sig = self.forged.clone().unwrap_or_else(|| {
            sign::sign(
                self.secret,
                "POST",
                self.path,
                self.ts,
                &self.nonce,
                &self.body,
            )
        });
        let r = h
            .http
            .post(format!("{}{}", h.base, self.path))
            .header("content-type", "application/json")
            .header("x-app-timestamp", self.ts.to_string())
            .header("x-app-nonce", &self.nonce)
            .header("x-app-signature", sig)
            .body(self.body.clone())
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn now_secs() -> i64 {
    switchboard::message::now_ms() / 1000
}

fn weather(target: Value, text: &str) -> Value {
    json!({"target": target, "mode": "popup",
        "content": format!("<weather city='Paris'><t>{text}</t></weather>"), "text": text})
}

/// A counter's value on the metrics page (0 when absent).
fn counter(metrics: &str, name_and_labels: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Asserts that an answer is a refusal with this status and code; the answer.
#[track_caller]
fn refused_with(got: (StatusCode, Value), status: StatusCode, code: &str) -> Value {
    assert_eq!(
        (got.0, got.1["code"].as_str()),
        (status, Some(code)),
        "{}",
        got.1
    );
    got.1
}

fn stack_rows(h: &Harness) -> i64 {
    count_rows(&h.cfg.store.path, "app_messages")
}

#[tokio::test]
async fn bad_pushes_are_refused_counted_and_store_nothing() {
    let h = start(|_| {}).await;
    let secret = register(&h, json!({})).await;
    install(&h, "bob", "weather").await;
    let body = weather(json!({"user": "bob"}), "3");
    let (messages, stacks) = (h.stored_messages(), stack_rows(&h));

    let mut cases: Vec<(&str, Push)> = Vec::new();
    let mut p = Push::new(&secret, body.clone());
    p.forged = Some(sign::sign(
        "not-the-secret-at-all",
        "POST",
        PUSH_PATH,
        p.ts,
        &p.nonce,
        &p.body,
    ));
    cases.push(("bad_signature", p));
    let mut p = Push::new(&secret, body.clone());
    p.forged = Some("zz".into());
    cases.push(("bad_signature", p));
    let mut p = Push::new(&secret, body.clone());
    p.ts -= 301;
    cases.push(("stale_timestamp", p));
    let mut p = Push::new(&secret, body.clone());
    p.ts += 301;
    cases.push(("stale_timestamp", p));
    let mut p = Push::new(&secret, body.clone());
    p.path = "/v1/apps/nosuch/messages";
    cases.push(("unknown_app", p));
    for (code, p) in &cases {
        let (status, v) = p.send(&h).await;
        assert_eq!(status, 403, "{code}: {v}");
        assert_eq!(v["code"], *code, "{v}");
    }
    // No signature at all, and a body signed for another one.
    let r = h
        .http
        .post(format!("{}{PUSH_PATH}", h.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "bad_signature");
    let mut p = Push::new(&secret, body.clone());
    p.forged = Some(sign::sign(
        &secret, "POST", PUSH_PATH, p.ts, &p.nonce, b"{}",
    ));
    assert_eq!(p.send(&h).await.1["code"], "bad_signature");

    // A replayed nonce: the first is taken, the same request again is refused.
    let p = Push::new(&secret, body.clone());
    assert_eq!(p.send(&h).await.0, 202);
    let (status, v) = p.send(&h).await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("replayed_nonce"))
    );
    let (messages, stacks) = (messages + 1, stacks + 1);
    assert_eq!((h.stored_messages(), stack_rows(&h)), (messages, stacks));

    // Disabled: every push stops at once, well signed or not.
    let (status, _) = admin(
        &h,
        Method::PUT,
        "/v1/apps/weather",
        Some(json!({"name": "Weather",
        "may_target": ["user", "friends", "group"], "rate_per_minute": 600, "enabled": false})),
    )
    .await;
    assert_eq!(status, 200);
    refused_with(
        Push::new(&secret, body.clone()).send(&h).await,
        StatusCode::FORBIDDEN,
        "app_disabled",
    );

    // Oversized and malformed bodies.
    let r = h
        .http
        .post(format!("{}{PUSH_PATH}", h.base))
        .body(vec![b'x'; h.cfg.http.max_body_bytes + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(
        (h.stored_messages(), stack_rows(&h)),
        (messages, stacks),
        "nothing stored"
    );

    let m = h.metrics().await;
    for (reason, n) in [
        ("bad_signature", 4.0),
        ("stale_timestamp", 2.0),
        ("replayed_nonce", 1.0),
        ("app_disabled", 1.0),
    ] {
        let got = counter(
            &m,
            &format!("switchboard_app_refused_total{{app=\"weather\",reason=\"{reason}\"}}"),
        );
        assert_eq!(got, n, "{reason}\n{m}");
    }
    assert_eq!(
        counter(
            &m,
            "switchboard_app_refused_total{app=\"unknown\",reason=\"unknown_app\"}"
        ),
        1.0
    );
    h.stop().await;
}

#[tokio::test]
async fn content_targets_and_limits_are_checked() {
    let h = start(|cfg| {
        cfg.apps.max_content_bytes = 200;
        cfg.apps.max_recipients_per_push = 2;
    })
    .await;
    let secret = register(&h, json!({"may_target": ["user", "friends"]})).await;
    install(&h, "alice", "weather").await;
    install(&h, "bob", "weather").await;
    let before = h.stored_messages();
    for (content, problem) in [
        ("<w>", "not closed"),
        ("<!DOCTYPE w [<!ENTITY x 'boom'>]><w>&x;</w>", "DTD"),
        ("<w>&x;</w>", "entity reference"),
        ("plain text", "outside the root"),
        ("<a/><b/>", "more than one root"),
    ] {
        let body = json!({"target": {"user": "bob"}, "mode": "tip", "content": content});
        let v = refused_with(
            Push::new(&secret, body).send(&h).await,
            StatusCode::BAD_REQUEST,
            "invalid_content",
        );
        assert!(
            v["message"].as_str().unwrap().contains(problem),
            "{content}: {v}"
        );
    }
    let big = format!("<w>{}</w>", "x".repeat(300));
    refused_with(
        Push::new(
            &secret,
            json!({"target": {"user": "bob"}, "mode": "tip", "content": big}),
        )
        .send(&h)
        .await,
        StatusCode::BAD_REQUEST,
        "content_too_large",
    );
    refused_with(
        Push::new(
            &secret,
            json!({"target": {"user": "bob"}, "mode": "loud", "content": "<w/>"}),
        )
        .send(&h)
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_json",
    );
    // A group is not among its targets; three friends are over the limit of two.
    refused_with(
        Push::new(&secret, weather(json!({"group": "team"}), "x"))
            .send(&h)
            .await,
        StatusCode::FORBIDDEN,
        "target_not_allowed",
    );
    refused_with(
        Push::new(&secret, weather(json!({"friends_of": "alice"}), "x"))
            .send(&h)
            .await,
        StatusCode::BAD_REQUEST,
        "too_many_recipients",
    );
    refused_with(
        Push::new(&secret, weather(json!({"user": "nobody"}), "x"))
            .send(&h)
            .await,
        StatusCode::BAD_REQUEST,
        "unknown_user",
    );
    assert_eq!(h.stored_messages(), before, "nothing stored");
    h.stop().await;
}

#[tokio::test]
async fn the_rate_per_minute_holds() {
    let h = start(|_| {}).await;
    let secret = register(&h, json!({"rate_per_minute": 3})).await;
    install(&h, "bob", "weather").await;
    for _ in 0..3 {
        assert_eq!(
            Push::new(&secret, weather(json!({"user": "bob"}), "x"))
                .send(&h)
                .await
                .0,
            202
        );
    }
    let r = {
        let p = Push::new(&secret, weather(json!({"user": "bob"}), "x"));
        let sig = sign::sign(&secret, "POST", PUSH_PATH, p.ts, &p.nonce, &p.body);
        h.http
            .post(format!("{}{PUSH_PATH}", h.base))
            .header("x-app-timestamp", p.ts.to_string())
            .header("x-app-nonce", &p.nonce)
            .header("x-app-signature", sig)
            .body(p.body.clone())
            .send()
            .await
            .unwrap()
    };
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "rate_limited");
    h.stop().await;
}

#[tokio::test]
async fn a_push_to_friends_reaches_each_friend_and_never_the_user() {
    let h = start(|_| {}).await;
    let secret = register(&h, json!({"phones": true})).await;
    // Alice has not installed it: refused.
    refused_with(
        Push::new(&secret, weather(json!({"friends_of": "alice"}), "Sunny"))
            .send(&h)
            .await,
        StatusCode::FORBIDDEN,
        "not_installed",
    );
    install(&h, "alice", "weather").await;
    let (status, v) = Push::new(&secret, weather(json!({"friends_of": "alice"}), "Sunny"))
        .send(&h)
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(
        (v["users"].as_u64(), v["recipients"].as_u64()),
        (Some(3), Some(3)),
        "{v}"
    );
    let id = v["id"].as_str().unwrap().to_string();
    for to in ["im:bob@im.example.org", "im:carol@im.example.org"] {
        let got = h
            .hooks
            .wait("im", &format!("the push at {to}"), |b| {
                b["to"] == to && b["app"]["id"] == id.as_str()
            })
            .await;
        assert_eq!(got["from"], "app:weather");
        assert_eq!(got["text"], "Sunny");
        assert_eq!(got["app"]["app"], "weather");
        assert_eq!(got["app"]["mode"], "popup");
        assert_eq!(got["app"]["kind"], "push");
        assert_eq!(
            got["app"]["content"],
            "<weather city='Paris'><t>Sunny</t></weather>"
        );
    }
    let sms = sms_to(&h, "+8613800000051", |t| t.contains("Sunny")).await;
    assert!(sms.message.contains("Sunny"));
    let stored = admin(&h, Method::GET, &format!("/admin/v1/messages/{id}"), None)
        .await
        .1;
    let to: Vec<&str> = stored["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert!(!to.iter().any(|a| a.contains("alice")), "{to:?}");
    assert!(
        h.hooks
            .posted("im")
            .iter()
            .all(|b| b["to"] != "im:alice@im.example.org")
    );

    // Without `phones`, the phone friend is skipped (but keeps it on her stack).
    let (status, _) = admin(
        &h,
        Method::PUT,
        "/v1/apps/weather",
        Some(json!({"name": "Weather",
        "may_target": ["user", "friends", "group"], "rate_per_minute": 600, "phones": false})),
    )
    .await;
    assert_eq!(status, 200);
    let (status, v) = Push::new(&secret, weather(json!({"friends_of": "alice"}), "Rain"))
        .send(&h)
        .await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(
        (v["recipients"].as_u64(), v["unreachable"].as_u64()),
        (Some(2), Some(1)),
        "{v}"
    );
    let (_, stack) = admin(&h, Method::GET, "/v1/users/pat/app-messages", None).await;
    let texts: Vec<&str> = stack["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Sunny", "Rain"]);

    // A group target: every person inside it.
    let (status, v) = Push::new(&secret, weather(json!({"group": "team"}), "Wind"))
        .send(&h)
        .await;
    assert_eq!(
        (status, v["users"].as_u64()),
        (StatusCode::ACCEPTED, Some(2)),
        "{v}"
    );
    h.hooks
        .wait("im", "the group push", |b| {
            b["to"] == "im:carol@im.example.org" && b["text"] == "Wind"
        })
        .await;
    h.stop().await;
}

#[tokio::test]
async fn the_stack_keeps_the_newest_and_since_returns_what_was_missed() {
    const N: usize = 10;
    let h = start(|cfg| cfg.apps.stack_size = N).await;
    let secret = register(&h, json!({})).await;
    install(&h, "bob", "weather").await;
    // Bob reads once, then is away for N + 5 pushes.
    assert_eq!(
        Push::new(&secret, weather(json!({"user": "bob"}), "seen"))
            .send(&h)
            .await
            .0,
        202
    );
    let (_, read) = call_as(
        &h,
        Some(TOKEN),
        Method::GET,
        "/v1/users/bob/app-messages",
        None,
    )
    .await;
    assert_eq!(read["messages"].as_array().unwrap().len(), 1);
    let since = read["next"].as_str().unwrap().to_string();
    let evicted_before = counter(&h.metrics().await, "switchboard_app_stack_evicted_total");
    let mut ids = Vec::new();
    for i in 0..N + 5 {
        let (status, v) = Push::new(&secret, weather(json!({"user": "bob"}), &format!("n{i}")))
            .send(&h)
            .await;
        assert_eq!(status, 202, "{v}");
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    let (status, got) = call_as(
        &h,
        Some(TOKEN),
        Method::GET,
        &format!("/v1/users/bob/app-messages?since={since}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{got}");
    let got_ids: Vec<&str> = got["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got_ids,
        ids[5..].iter().map(String::as_str).collect::<Vec<_>>(),
        "the newest N, oldest first"
    );
    let first = &got["messages"][0];
    assert_eq!(
        (
            first["app"].as_str(),
            first["mode"].as_str(),
            first["kind"].as_str()
        ),
        (Some("weather"), Some("popup"), Some("push"))
    );
    assert_eq!(
        first["content"],
        "<weather city='Paris'><t>n5</t></weather>"
    );
    let evicted =
        counter(&h.metrics().await, "switchboard_app_stack_evicted_total") - evicted_before;
    assert_eq!(evicted, 6.0, "the one seen and the five oldest missed");
    // Paging: `limit`, then `next`.
    let (_, page) = call_as(
        &h,
        Some(TOKEN),
        Method::GET,
        &format!("/v1/users/bob/app-messages?since={since}&limit=4"),
        None,
    )
    .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 4);
    let (_, rest) = call_as(
        &h,
        Some(TOKEN),
        Method::GET,
        &format!(
            "/v1/users/bob/app-messages?since={}",
            page["next"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(rest["messages"].as_array().unwrap().len(), N - 4);
    let (status, v) = call_as(
        &h,
        Some(TOKEN),
        Method::GET,
        "/v1/users/bob/app-messages?limit=0",
        None,
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_query"))
    );
    // Only a token acting for bob: the other client's is refused, and no token at all.
    let (status, v) = call_as(
        &h,
        Some(OTHER_TOKEN),
        Method::GET,
        "/v1/users/bob/app-messages",
        None,
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_your_user"))
    );
    let (status, _) = call_as(&h, None, Method::GET, "/v1/users/bob/app-messages", None).await;
    assert_eq!(status, 401);
    // A user the other client does not act for, and one nobody has.
    let (status, _) = call_as(
        &h,
        Some(OTHER_TOKEN),
        Method::GET,
        "/v1/users/dan/apps",
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, v) = call_as(
        &h,
        Some(OTHER_TOKEN),
        Method::GET,
        "/v1/users/nobody/apps",
        None,
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_your_user"))
    );
    h.stop().await;
}

#[tokio::test]
async fn app_lists_install_list_uninstall() {
    let h = start(|_| {}).await;
    let secret = register(&h, json!({"audience": ["bob", "carol"]})).await;
    let (status, v) = call_as(
        &h,
        Some(TOKEN),
        Method::PUT,
        "/v1/users/bob/apps/weather",
        None,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let (status, _) = call_as(
        &h,
        Some(TOKEN),
        Method::PUT,
        "/v1/users/bob/apps/weather",
        None,
    )
    .await;
    assert_eq!(status, 200, "installing again keeps it");
    let (_, list) = call_as(&h, Some(TOKEN), Method::GET, "/v1/users/bob/apps", None).await;
    let apps = list["apps"].as_array().unwrap();
    assert_eq!(apps.len(), 1);
    assert_eq!(
        (
            apps[0]["app"].as_str(),
            apps[0]["name"].as_str(),
            apps[0]["icon_url"].as_str()
        ),
        (
            Some("weather"),
            Some("Weather"),
            Some("https://example.com/w.png")
        )
    );
    assert!(apps[0]["installed_at"].as_i64().unwrap() > 0);
    assert_eq!(
        Push::new(&secret, weather(json!({"user": "bob"}), "x"))
            .send(&h)
            .await
            .0,
        202
    );
    // Outside the audience, unknown app, another tenant's token.
    refused_with(
        admin(&h, Method::PUT, "/v1/users/alice/apps/weather", None).await,
        StatusCode::FORBIDDEN,
        "not_allowed",
    );
    refused_with(
        admin(&h, Method::PUT, "/v1/users/bob/apps/nosuch", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    refused_with(
        call_as(
            &h,
            Some(OTHER_TOKEN),
            Method::PUT,
            "/v1/users/carol/apps/weather",
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
        "not_your_user",
    );
    // Uninstalled: pushes to bob are refused.
    let (status, _) = call_as(
        &h,
        Some(TOKEN),
        Method::DELETE,
        "/v1/users/bob/apps/weather",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, list) = call_as(&h, Some(TOKEN), Method::GET, "/v1/users/bob/apps", None).await;
    assert_eq!(list["apps"], json!([]));
    refused_with(
        Push::new(&secret, weather(json!({"user": "bob"}), "x"))
            .send(&h)
            .await,
        StatusCode::FORBIDDEN,
        "not_installed",
    );
    // A disabled app cannot be installed.
    admin(
        &h,
        Method::PUT,
        "/v1/apps/weather",
        Some(json!({"name": "Weather", "enabled": false})),
    )
    .await;
    refused_with(
        call_as(
            &h,
            Some(TOKEN),
            Method::PUT,
            "/v1/users/carol/apps/weather",
            None,
        )
        .await,
        StatusCode::FORBIDDEN,
        "app_disabled",
    );
    h.stop().await;
}

#[tokio::test]
async fn a_recommendation_reaches_a_friend_only() {
    let h = start(|_| {}).await;
    register(&h, json!({})).await;
    let (status, v) = call_as(
        &h,
        Some(TOKEN),
        Method::POST,
        "/v1/users/alice/recommendations",
        Some(json!({"appid": "weather", "to": "bob", "comment": "handy <b>"})),
    )
    .await;
    assert_eq!(status, 202, "{v}");
    let got = h
        .hooks
        .wait("im", "the recommendation", |b| {
            b["to"] == "im:bob@im.example.org"
        })
        .await;
    assert_eq!(got["app"]["kind"], "recommendation");
    assert_eq!(got["app"]["by"], "alice");
    assert_eq!(got["text"], "Alice recommends Weather: handy <b>");
    assert!(
        got["app"]["content"]
            .as_str()
            .unwrap()
            .contains("<comment>handy &lt;b&gt;</comment>"),
        "{got}"
    );
    let (_, stack) = admin(&h, Method::GET, "/v1/users/bob/app-messages", None).await;
    assert_eq!(stack["messages"][0]["kind"], "recommendation");
    // Dan is nobody's friend; bob is not carol's friend either.
    refused_with(
        call_as(
            &h,
            Some(TOKEN),
            Method::POST,
            "/v1/users/alice/recommendations",
            Some(json!({"appid": "weather", "to": "dan"})),
        )
        .await,
        StatusCode::FORBIDDEN,
        "not_a_friend",
    );
    refused_with(
        call_as(
            &h,
            Some(TOKEN),
            Method::POST,
            "/v1/users/carol/recommendations",
            Some(json!({"appid": "weather", "to": "bob"})),
        )
        .await,
        StatusCode::FORBIDDEN,
        "not_a_friend",
    );
    refused_with(
        call_as(
            &h,
            Some(OTHER_TOKEN),
            Method::POST,
            "/v1/users/alice/recommendations",
            Some(json!({"appid": "weather", "to": "bob"})),
        )
        .await,
        StatusCode::FORBIDDEN,
        "not_your_user",
    );
    h.stop().await;
}

#[tokio::test]
async fn the_registry_is_admin_only_and_never_shows_a_secret_again() {
    let h = start(|_| {}).await;
    let body = json!({"name": "Weather"});
    let (status, _) = call_as(
        &h,
        None,
        Method::PUT,
        "/v1/apps/weather",
        Some(body.clone()),
    )
    .await;
    assert_eq!(status, 401);
    let (status, v) = call_as(
        &h,
        Some(TOKEN),
        Method::PUT,
        "/v1/apps/weather",
        Some(body.clone()),
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("admin_only"))
    );
    let secret = register(&h, json!({})).await;
    let (status, got) = admin(&h, Method::GET, "/v1/apps/weather", None).await;
    assert_eq!(status, 200);
    assert!(got.get("secret").is_none(), "{got}");
    assert_eq!(got["may_target"], json!(["user", "friends", "group"]));
    // Replaced without a secret: the old one still signs.
    let (status, v) = admin(
        &h,
        Method::PUT,
        "/v1/apps/weather",
        Some(json!({"name": "Weather 2", "may_target": ["user"]})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(v.get("secret").is_none(), "{v}");
    install(&h, "bob", "weather").await;
    assert_eq!(
        Push::new(&secret, weather(json!({"user": "bob"}), "x"))
            .send(&h)
            .await
            .0,
        202
    );
    for (body, code) in [
        (json!({"name": "W", "secret": "short"}), "invalid_secret"),
        (
            json!({"name": "W", "callback_url": "ftp://x"}),
            "invalid_url",
        ),
        (json!({"name": "W", "rate_per_minute": 0}), "invalid_rate"),
        (json!({"name": "W", "pull_every_secs": 60}), "invalid_pull"),
        (json!({"name": "W", "audience": ["nobody"]}), "unknown_user"),
        (json!({"name": "W", "bogus": 1}), "invalid_json"),
    ] {
        refused_with(
            admin(&h, Method::PUT, "/v1/apps/other", Some(body.clone())).await,
            StatusCode::BAD_REQUEST,
            code,
        );
    }
    refused_with(
        admin(
            &h,
            Method::PUT,
            "/v1/apps/bad%20id",
            Some(json!({"name": "W"})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_id",
    );
    // A bearer token may not speak as a registered app.
    refused_with(
        h.submit(json!({"from": "app:weather", "to": ["sms:+8613800000051"], "text": "fake"}))
            .await,
        StatusCode::FORBIDDEN,
        "app_signed_only",
    );
    // Deleted: it leaves bob's list, and its pushes are refused.
    assert_eq!(
        admin(&h, Method::DELETE, "/v1/apps/weather", None).await.0,
        204
    );
    let (_, list) = admin(&h, Method::GET, "/v1/users/bob/apps", None).await;
    assert_eq!(list["apps"], json!([]));
    let (status, v) = Push::new(&secret, weather(json!({"user": "bob"}), "x"))
        .send(&h)
        .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("unknown_app"))
    );
    h.stop().await;
}

/// A test app: its callback answers pulls (`/good` once with two pushes, `/bad` with 500,
/// `/slow` never in time) and records the reports POSTed to it with their headers.
#[derive(Clone, Default)]
struct AppServer {
    secrets: Arc<Mutex<std::collections::HashMap<String, String>>>,
    pulls: Arc<Mutex<Vec<(String, bool)>>>,
    reports: Arc<Mutex<Vec<(bool, Value)>>>,
    good_served: Arc<Mutex<bool>>,
}

impl AppServer {
    async fn start(&self) -> String {
        async fn good(
            State(s): State<AppServer>,
            uri: Uri,
            headers: HeaderMap,
        ) -> (AxStatus, String) {
            s.record_pull("good", "good", &uri, &headers, b"");
            let mut served = s.good_served.lock().unwrap();
            let pushes = if *served {
                json!({"pushes": []})
            } else {
                *served = true;
                json!({"pushes": [
                    weather(json!({"user": "bob"}), "pulled one"),
                    weather(json!({"user": "carol"}), "pulled two"),
                ]})
            };
            (AxStatus::OK, pushes.to_string())
        }
        async fn bad(State(s): State<AppServer>, uri: Uri, headers: HeaderMap) -> AxStatus {
            s.record_pull("bad", "bad", &uri, &headers, b"");
            AxStatus::INTERNAL_SERVER_ERROR
        }
        async fn slow(State(s): State<AppServer>, uri: Uri, headers: HeaderMap) -> AxStatus {
            s.record_pull("slow", "slow", &uri, &headers, b"");
            // Holds the pull past the gateway's time limit.
            tokio::time::sleep(Duration::from_secs(30)).await;
            AxStatus::OK
        }
        async fn report(
            State(s): State<AppServer>,
            uri: Uri,
            headers: HeaderMap,
            body: axum::body::Bytes,
        ) -> AxStatus {
            let ok = s.signed_by("weather", "POST", &uri, &headers, &body);
            s.reports
                .lock()
                .unwrap()
                .push((ok, serde_json::from_slice(&body).unwrap_or(Value::Null)));
            AxStatus::OK
        }
        let app = axum::Router::new()
            .route("/good", get(good))
            .route("/bad", get(bad))
            .route("/slow", get(slow))
            .route("/reports", axum::routing::post(report))
            .with_state(self.clone());
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        format!("http://{addr}")
    }

    fn signed_by(&self, app: &str, method: &str, uri: &Uri, h: &HeaderMap, body: &[u8]) -> bool {
        let Some(secret) = self.secrets.lock().unwrap().get(app).cloned() else {
            return false;
        };
        let get = |n: &str| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let ts: i64 = get("x-app-timestamp").parse().unwrap_or(0);
        let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
        (now_secs() - ts).abs() < 60
            && sign::verify(
                &secret,
                method,
                path,
                ts,
                &get("x-app-nonce"),
                body,
                &get("x-app-signature"),
            )
    }

    fn record_pull(&self, app: &str, name: &str, uri: &Uri, h: &HeaderMap, body: &[u8]) {
        let ok = self.signed_by(app, "GET", uri, h, body);
        self.pulls.lock().unwrap().push((name.to_string(), ok));
    }

    fn pulls_of(&self, name: &str) -> Vec<bool> {
        self.pulls
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, ok)| *ok)
            .collect()
    }
}

#[tokio::test]
async fn pulls_distribute_and_a_failing_app_is_backed_off_alone() {
    let server = AppServer::default();
    let base = server.start().await;
    let h = start(|cfg| cfg.apps.pull_timeout_ms = 1000).await;
    // The failing ones first, so they are pulled before the good one.
    for (id, path) in [("slow", "/slow"), ("bad", "/bad"), ("good", "/good")] {
        let (status, v) = admin(
            &h,
            Method::PUT,
            &format!("/v1/apps/{id}"),
            Some(json!({
            "name": id, "callback_url": format!("{base}{path}"), "pull_every_secs": 5,
            "rate_per_minute": 600})),
        )
        .await;
        assert_eq!(status, 201, "{v}");
        server
            .secrets
            .lock()
            .unwrap()
            .insert(id.to_string(), v["secret"].as_str().unwrap().to_string());
        install(&h, "bob", id).await;
        install(&h, "carol", id).await;
    }
    for (to, text) in [
        ("im:bob@im.example.org", "pulled one"),
        ("im:carol@im.example.org", "pulled two"),
    ] {
        let got = h
            .hooks
            .wait("im", text, |b| b["to"] == to && b["text"] == text)
            .await;
        assert_eq!(got["from"], "app:good");
    }
    assert!(
        server.pulls_of("good").iter().all(|ok| *ok),
        "pulls are signed"
    );
    // The 500 app failed and waits longer each time: after its first failures it is not
    // asked on every round.
    let m = wait_for(
        Duration::from_secs(20),
        "two failed pulls of the bad app",
        || {
            let h = &h;
            async move {
                let m = h.metrics().await;
                (counter(
                    &m,
                    "switchboard_app_pulls_total{app=\"bad\",result=\"failed\"}",
                ) >= 2.0)
                    .then_some(m)
            }
        },
    )
    .await;
    assert!(
        counter(
            &m,
            "switchboard_app_pulls_total{app=\"good\",result=\"ok\"}"
        ) >= 1.0,
        "{m}"
    );
    let bad = server.pulls_of("bad").len();
    assert!(
        (2..=3).contains(&bad),
        "backed off: 5 s, then 10 s, … ({bad} pulls)"
    );
    h.stop().await;
}

#[tokio::test]
async fn reports_go_to_the_app_signed() {
    let server = AppServer::default();
    let base = server.start().await;
    let h = start(|_| {}).await;
    let (status, v) = admin(
        &h,
        Method::PUT,
        "/v1/apps/weather",
        Some(json!({
        "name": "Weather", "callback_url": format!("{base}/reports"), "phones": true})),
    )
    .await;
    assert_eq!(status, 201);
    let secret = v["secret"].as_str().unwrap().to_string();
    server
        .secrets
        .lock()
        .unwrap()
        .insert("weather".into(), secret.clone());
    install(&h, "pat", "weather").await;
    let mut body = weather(json!({"user": "pat"}), "report me");
    body["report"] = json!(true);
    let (status, v) = Push::new(&secret, body).send(&h).await;
    assert_eq!(status, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    let (ok, report) = wait_for(
        Duration::from_secs(20),
        "a delivered report at the app",
        || {
            let found = server
                .reports
                .lock()
                .unwrap()
                .iter()
                .find(|(_, r)| r["message_id"] == id.as_str() && r["state"] == "delivered")
                .cloned();
            async move { found }
        },
    )
    .await;
    assert!(ok, "the report is signed with the app's secret: {report}");
    assert_eq!(report["type"], "report");
    assert_eq!(report["recipient"], "sms:+8613800000051");
    h.stop().await;
}
