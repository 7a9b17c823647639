//! The XMPP component against a real Prosody and real XMPP users (slixmpp): messages to
//! phones with receipts, SMS back to IM users, mail addresses in JIDs, discovery, refusals,
//! a server restart mid-test, and a wrong component secret.
//!
//! Prosody and slixmpp are installed by `scripts/test.sh`. Without them these tests fail
//! under `CI=true` and are skipped with a loud message otherwise.

mod common;
#[path = "xmpp/support.rs"]
mod support;

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::*;
use serde_json::json;
use support::{Prosody, User, metric, peers_present, xmpp_config};
use switchboard::address::Network;
use switchboard::config::Config;
use switchboard::connectors::xmpp::XmppConfig;
use switchboard::gateway::{self, Listeners};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "sms-component-secret";
const MAIL_SECRET: &str = "mail-component-secret";
const PHONE: &str = "+8613800000000";
const PHONE_JID: &str = "+8613800000000@sms.localhost";

/// Log lines of the gateways in this test binary, to check what an operator would read.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogBuf;
impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("warn,switchboard=info")
            .with_ansi(false)
            .with_writer(|| LogBuf)
            .try_init();
    });
}

fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap()).into_owned()
}

/// Prosody with the SMS and mail components, alice registered, a gateway linked to it and
/// alice online.
async fn setup(tweak: impl FnOnce(&mut Config)) -> Option<(Prosody, Harness, User)> {
    if !peers_present() {
        return None;
    }
    capture_logs();
    let p = Prosody::start(
        &[("sms.localhost", SECRET), ("mail.localhost", MAIL_SECRET)],
        &[
            ("alice", "alicepw"),
            ("carol", "carolpw"),
            ("mallory", "mallorypw"),
        ],
    )
    .await;
    let x = xmpp_config(
        &p,
        &[
            ("sms.localhost", Network::Sms, SECRET),
            ("mail.localhost", Network::Mail, MAIL_SECRET),
        ],
    );
    // The harness waits for /readyz, which waits for both component links.
    let h = Harness::start(|cfg, _| {
        cfg.xmpp = Some(x);
        cfg.im.domains = vec!["localhost".into()];
        // XMPP senders must be directory users; mallory is registered on the server only.
        seed_directory(
            cfg,
            json!({"users": {
                "alice": {"name": "Alice", "addresses": ["im:alice@localhost"]},
                "carol": {"name": "Carol", "addresses": ["im:carol@localhost"]},
            }}),
        );
        tweak(cfg);
    })
    .await;
    let alice = User::login(&p, "alice", "alicepw").await;
    Some((p, h, alice))
}

/// Recipients in the store with this address: (message id, state, last error).
fn stored_recipients(h: &Harness, address: &str) -> Vec<(String, String, Option<String>)> {
    let c = rusqlite::Connection::open_with_flags(
        &h.cfg.store.path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut st = c
        .prepare("SELECT msg_id, state, last_error FROM recipients WHERE address = ?1")
        .unwrap();
    st.query_map([address], |r| {
        Ok((
            format!("{:016x}", r.get::<_, i64>(0)? as u64),
            r.get(1)?,
            r.get(2)?,
        ))
    })
    .unwrap()
    .map(|r| r.unwrap())
    .collect()
}

#[tokio::test]
async fn a_message_to_a_phone_is_sent_and_the_receipt_follows_the_sms_receipt() {
    let Some((_p, h, mut alice)) = setup(|_| {}).await else {
        return;
    };
    alice.cmd(json!({"cmd": "send", "to": PHONE_JID, "body": "Dinner at 8? <ok> & \"wine\"", "id": "m-1", "receipt": true}));
    let sms = wait_for(Duration::from_secs(15), "the SMS at the simulator", || {
        let found = h
            .sim
            .sim
            .messages()
            .into_iter()
            .find(|m| m.message == "Dinner at 8? <ok> & \"wine\"");
        async move { found }
    })
    .await;
    assert_eq!(sms.addresses, vec![format!("tel:{PHONE}")]);
    // The receipt comes from the phone's JID, for alice's stanza id, once the SDP said
    // DeliveredToTerminal.
    let r = alice.wait("receipt", |e| e["id"] == "m-1").await;
    assert_eq!(r["from"], PHONE_JID);
    let id = &h
        .message_of(sms.correlator.as_deref().unwrap())
        .expect("the SMS's message");
    let m = h.wait_state(id, 0, "delivered").await;
    assert_eq!(m["from"], "im:alice@localhost");
    assert_eq!(m["client_ref"], "m-1");
    assert_eq!(m["reports"][0]["status"], "DeliveredToTerminal");

    // The phone answers the sub-address it saw: reply routing brings it back to alice, from
    // the phone's JID.
    let sender = sms.sender_name.expect("a sender sub-address");
    let status = h.sim.mo(PHONE, &sender, "See you there").await;
    assert!(status.is_success(), "{status}");
    let got = alice
        .wait("message", |e| e["body"] == "See you there")
        .await;
    assert_eq!(got["from"], PHONE_JID);
    assert_eq!(got["type"], "chat");
    h.stop().await;
}

#[tokio::test]
async fn an_im_user_not_in_the_directory_is_refused_with_an_error_stanza() {
    let Some((p, h, _alice)) = setup(|_| {}).await else {
        return;
    };
    let mut mallory = User::login(&p, "mallory", "mallorypw").await;
    mallory.cmd(json!({"cmd": "send", "to": PHONE_JID, "body": "free SMS?", "id": "x-1"}));
    let err = mallory.wait("error", |e| e["id"] == "x-1").await;
    assert_eq!(err["condition"], "forbidden", "{err}");
    assert_eq!(
        h.stored_messages(),
        0,
        "nothing is stored for a refused sender"
    );
    let page = h.metrics().await;
    assert_eq!(
        metric(
            &page,
            r#"switchboard_messages_refused_total{stage="auth",reason="unknown_sender"}"#
        ),
        Some(1.0),
        "{page}"
    );
    assert!(
        h.sim
            .sim
            .messages()
            .iter()
            .all(|m| m.message != "free SMS?"),
        "no SMS went out"
    );
    h.stop().await;
}

#[tokio::test]
async fn an_sms_reaches_the_im_user_from_the_phone_jid_and_her_receipt_is_recorded() {
    let Some((_p, h, alice)) = setup(|_| {}).await else {
        return;
    };
    let status = h
        .sim
        .mo(PHONE, "10658000", "alice@localhost Hello from the phone")
        .await;
    assert!(status.is_success(), "{status}");
    let got = alice
        .wait("message", |e| e["body"] == "Hello from the phone")
        .await;
    assert_eq!(got["from"], PHONE_JID);
    assert_eq!(got["receipt_requested"], true);
    // The stanza id is the recipient id; alice's client acknowledged it (XEP-0184), and
    // that is recorded as the recipient's status report.
    let rid = got["id"].as_str().unwrap();
    assert_eq!(rid.len(), 20, "{got}");
    let m = h.wait_state(&rid[..16], 0, "delivered").await;
    assert_eq!(m["from"], format!("sms:{PHONE}"));
    assert_eq!(m["recipients"][0]["address"], "im:alice@localhost");
    assert_eq!(m["reports"][0]["status"], "xmpp:received");
    h.stop().await;
}

#[tokio::test]
async fn a_message_to_a_mail_address_in_a_jid_is_queued_for_mail() {
    let Some((_p, h, mut alice)) = setup(|_| {}).await else {
        return;
    };
    alice.cmd(json!({"cmd": "send", "to": "bob\\40example.com@mail.localhost", "body": "Hi Bob", "id": "m-3"}));
    let (id, state, _) = wait_for(
        Duration::from_secs(15),
        "the message for mail:bob@example.com in the store",
        || {
            let found = stored_recipients(&h, "mail:bob@example.com")
                .into_iter()
                .next();
            async move { found }
        },
    )
    .await;
    let m = h.message(&id).await;
    assert_eq!(m["from"], "im:alice@localhost");
    assert_eq!(m["text"], "Hi Bob");
    // Held until a mail connector carries it, or on its way if one does.
    assert!(
        ["queued", "held", "retry", "sent", "delivered"].contains(&state.as_str()),
        "{state}"
    );
    h.stop().await;
}

#[tokio::test]
async fn discovery_gateway_lookup_ping_and_subscriptions_are_answered() {
    let Some((_p, h, mut alice)) = setup(|_| {}).await else {
        return;
    };
    alice.cmd(json!({"cmd": "disco", "to": "sms.localhost"}));
    let d = alice.wait("disco", |_| true).await;
    assert_eq!(d["identities"][0], json!(["gateway", "sms"]), "{d}");
    let features: Vec<&str> = d["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    for f in ["jabber:iq:gateway", "urn:xmpp:receipts", "urn:xmpp:ping"] {
        assert!(features.contains(&f), "{f} missing in {d}");
    }
    alice.cmd(json!({"cmd": "disco", "to": "mail.localhost"}));
    alice
        .wait("disco", |e| {
            e["identities"][0] == json!(["gateway", "smtp"])
        })
        .await;

    alice.cmd(json!({"cmd": "gateway", "to": "sms.localhost", "prompt": "+86 138 0000 0000"}));
    let g = alice.wait("gateway", |_| true).await;
    assert_eq!(g["jid"], PHONE_JID);
    alice.cmd(json!({"cmd": "gateway", "to": "mail.localhost", "prompt": "bob@example.com"}));
    alice
        .wait("gateway", |e| {
            e["jid"] == "bob\\40example.com@mail.localhost"
        })
        .await;
    alice.cmd(json!({"cmd": "gateway", "to": "sms.localhost", "prompt": "call me"}));
    let e = alice.wait("iq_error", |e| e["cmd"] == "gateway").await;
    assert_eq!(e["condition"], "not-acceptable");

    alice.cmd(json!({"cmd": "ping", "to": "sms.localhost"}));
    alice.wait("ping", |e| e["ok"] == true).await;

    alice.cmd(json!({"cmd": "subscribe", "to": PHONE_JID}));
    alice
        .wait("presence", |e| {
            e["from"] == PHONE_JID && e["type"] == "subscribed"
        })
        .await;
    h.stop().await;
}

#[tokio::test]
async fn refusals_and_failed_deliveries_come_back_as_error_stanzas_with_a_text() {
    let Some((_p, h, mut alice)) = setup(|_| {}).await else {
        return;
    };
    // Not a phone number: refused at once.
    alice.cmd(json!({"cmd": "send", "to": "hello@sms.localhost", "body": "hi", "id": "bad-1"}));
    let e = alice.wait("error", |e| e["id"] == "bad-1").await;
    assert_eq!(e["condition"], "not-acceptable");
    assert!(!e["text"].as_str().unwrap_or("").is_empty(), "{e}");

    // The network cannot deliver it: an error message instead of a receipt.
    h.sim.control(json!({"impossible_rate": 1.0})).await;
    alice.cmd(
        json!({"cmd": "send", "to": PHONE_JID, "body": "this fails", "id": "m-5", "receipt": true}),
    );
    let e = alice.wait("error", |e| e["id"] == "m-5").await;
    assert_eq!(e["from"], PHONE_JID);
    assert_eq!(e["condition"], "recipient-unavailable");
    let text = e["text"].as_str().unwrap_or("");
    assert!(
        text.contains(PHONE) && text.contains("DeliveryImpossible"),
        "{e}"
    );
    assert!(
        !alice
            .events()
            .iter()
            .any(|e| e["event"] == "receipt" && e["id"] == "m-5"),
        "a failed message must not get a receipt"
    );
    h.stop().await;
}

#[tokio::test]
async fn the_gateway_reconnects_after_a_server_restart_and_delivers_what_waited() {
    let Some((mut p, h, alice)) = setup(|_| {}).await else {
        return;
    };
    let ready = |h: &Harness| {
        let (http, url) = (h.http.clone(), format!("{}/readyz", h.base));
        async move { http.get(url).send().await.map(|r| r.status().as_u16()).ok() }
    };
    drop(alice);
    p.kill();
    // The link is down: not ready, and the gauge says so.
    wait_for(
        Duration::from_secs(15),
        "/readyz to report the link down",
        || {
            let f = ready(&h);
            async move { (f.await == Some(503)).then_some(()) }
        },
    )
    .await;
    let page = h.metrics().await;
    assert_eq!(
        metric(
            &page,
            r#"switchboard_xmpp_connected{domain="sms.localhost"}"#
        ),
        Some(0.0)
    );

    // An SMS for alice arrives while the link is down: it waits in the store.
    let status = h
        .sim
        .mo(
            PHONE,
            "10658000",
            "alice@localhost sent while you were away",
        )
        .await;
    assert!(status.is_success(), "{status}");
    let (id, _, err) = wait_for(
        Duration::from_secs(15),
        "the message for alice to wait in the store",
        || {
            let found = stored_recipients(&h, "im:alice@localhost")
                .into_iter()
                .find(|(_, state, _)| state == "retry");
            async move { found }
        },
    )
    .await;
    assert!(
        err.as_deref().unwrap_or("").contains("xmpp link down"),
        "{err:?}"
    );
    let m = h.message(&id).await;
    assert_eq!(
        m["recipients"][0]["attempts"], 0,
        "waiting for the link must not spend attempts: {m}"
    );

    // The server comes back: the gateway reconnects by itself and hands the message over.
    p.spawn().await;
    h.wait_ready().await;
    let alice = User::login(&p, "alice", "alicepw").await;
    let got = alice
        .wait("message", |e| e["body"] == "sent while you were away")
        .await;
    assert_eq!(got["from"], PHONE_JID);
    h.wait_state(&id, 0, "delivered").await;
    let page = h.metrics().await;
    assert_eq!(
        metric(
            &page,
            r#"switchboard_xmpp_connected{domain="sms.localhost"}"#
        ),
        Some(1.0)
    );
    assert!(logs().contains("XMPP component link lost"), "{}", logs());
    h.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_is_logged_leaves_the_gateway_not_ready_and_is_retried_slowly() {
    if !peers_present() {
        return;
    }
    capture_logs();
    // A domain of its own, so the metrics of other tests in this process do not mix in.
    let domain = "wrongsecret.localhost";
    let p = Prosody::start(&[(domain, "the-right-secret")], &[]).await;
    let mut x = xmpp_config(&p, &[(domain, Network::Sms, "a-wrong-secret")]);
    x.reconnect_initial_ms = 200;
    x.reconnect_max_ms = 1000;
    let (base, stop, task, _dir) = bare_gateway(x).await;
    let http = reqwest::Client::new();
    let attempts = || {
        let (http, url) = (http.clone(), format!("{base}/metrics"));
        async move {
            let page = http.get(url).send().await.ok()?.text().await.ok()?;
            metric(
                &page,
                r#"switchboard_xmpp_connect_attempts_total{domain="wrongsecret.localhost"}"#,
            )
        }
    };
    // It does try again…
    wait_for(
        Duration::from_secs(15),
        "a second connection attempt",
        || {
            let f = attempts();
            async move { f.await.filter(|n| *n >= 2.0) }
        },
    )
    .await;
    // …says clearly what is wrong…
    let log = logs();
    assert!(
        log.contains("refused the component handshake")
            && log.contains("xmpp.components[0].secret")
            && log.contains("not-authorized"),
        "{log}"
    );
    // …is not ready…
    let r = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("xmpp wrongsecret.localhost: not connected"),
        "{body}"
    );
    // …and does not flood the server: over a 3 s window, with waits of 0.5-1 s between
    // attempts, at most 8 attempts (a crash loop would make thousands).
    let before = attempts().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = attempts().await.unwrap() - before;
    assert!(
        (1.0..=8.0).contains(&during),
        "{during} connection attempts in 3 s"
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the gateway did not stop")
        .unwrap()
        .unwrap();
}

/// A gateway started by hand against `p` with the given components (for tests that need
/// a gateway that may never become ready).
async fn bare_gateway(
    x: XmppConfig,
) -> (
    String,
    CancellationToken,
    tokio::task::JoinHandle<Result<(), gateway::RunError>>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.xmpp = Some(x);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let task = tokio::spawn(gateway::run(
        cfg,
        Listeners {
            http: listener,
            callbacks: None,
            admin: None,
            sim: None,
            smtp: None,
        },
        stop.clone(),
    ));
    (base, stop, task, dir)
}

async fn metrics_page(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_second_link_for_a_served_domain_is_refused_as_conflict_and_retried() {
    if !peers_present() {
        return;
    }
    capture_logs();
    let domain = "conflict.localhost";
    let p = Prosody::start(&[(domain, SECRET)], &[]).await;
    let x = xmpp_config(&p, &[(domain, Network::Sms, SECRET)]);
    let (first, stop1, task1, _d1) = bare_gateway(x.clone()).await;
    let series = r#"switchboard_xmpp_connected{domain="conflict.localhost"}"#;
    wait_for(Duration::from_secs(15), "the first link to be up", || {
        let first = first.clone();
        async move {
            let page = metrics_page(&first).await;
            (metric(&page, series) == Some(1.0)).then_some(())
        }
    })
    .await;
    // Both gateways share this process's metrics, so the second is watched through its
    // /readyz and the log.
    let (second, stop2, task2, _d2) = bare_gateway(x).await;
    wait_for(
        Duration::from_secs(15),
        "the conflict to be logged",
        || async {
            logs()
                .contains("the server still holds an earlier link for this domain")
                .then_some(())
        },
    )
    .await;
    let r = reqwest::get(format!("{second}/readyz")).await.unwrap();
    assert_eq!(r.status(), 503);
    // The first gateway goes away: the second one takes the domain over by itself.
    stop1.cancel();
    task1.await.unwrap().unwrap();
    wait_for(
        Duration::from_secs(15),
        "the second gateway to be ready",
        || {
            let url = format!("{second}/readyz");
            async move {
                let r = reqwest::get(url).await.ok()?;
                r.status().is_success().then_some(())
            }
        },
    )
    .await;
    stop2.cancel();
    task2.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_quiet_link_is_kept_alive_by_pings() {
    if !peers_present() {
        return;
    }
    let domain = "quiet.localhost";
    let p = Prosody::start(&[(domain, SECRET)], &[]).await;
    let mut x = xmpp_config(&p, &[(domain, Network::Sms, SECRET)]);
    x.keepalive_secs = 1;
    let (base, stop, task, _d) = bare_gateway(x).await;
    let up = r#"switchboard_xmpp_connected{domain="quiet.localhost"}"#;
    let attempts = r#"switchboard_xmpp_connect_attempts_total{domain="quiet.localhost"}"#;
    wait_for(Duration::from_secs(15), "the link to be up", || {
        let base = base.clone();
        async move { (metric(&metrics_page(&base).await, up) == Some(1.0)).then_some(()) }
    })
    .await;
    // Several keepalive periods without any traffic: the link stays the same one.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let page = metrics_page(&base).await;
    assert_eq!(metric(&page, up), Some(1.0), "{page}");
    assert_eq!(metric(&page, attempts), Some(1.0), "{page}");
    stop.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_mms_from_a_phone_reaches_the_im_user_as_out_of_band_links_that_expire() {
    let Some((_p, h, alice)) = setup(|cfg| {
        cfg.content.media.secret = "xmpp-media-secret-0123456789".into();
        cfg.content.media.link_ttl_secs = 3600;
    })
    .await
    else {
        return;
    };
    let mut photo = b"\x89PNG\r\n\x1a\n".to_vec();
    photo.extend((0..30_000).map(|i| (i * 31 % 256) as u8));
    let (status, resp) = h
        .sim
        .mo_mms(&switchboard::sim::MmsMoRequest {
            from: PHONE.into(),
            to: "10658000".into(),
            subject: Some("Snow".into()),
            text: "alice@localhost Fresh snow today".into(),
            parts: vec![switchboard::message::Part {
                content_type: "image/png".into(),
                name: Some("snow.png".into()),
                bytes: photo.clone(),
            }],
            inline: false,
            notify_url: None,
        })
        .await;
    assert_eq!(status, 200, "{resp}");
    let got = alice
        .wait("message", |e| {
            e["body"]
                .as_str()
                .is_some_and(|b| b.contains("Fresh snow today"))
        })
        .await;
    assert_eq!(got["from"], PHONE_JID);
    let oob = got["oob"].as_array().expect("oob links");
    assert_eq!(oob.len(), 1, "{got}");
    assert_eq!(oob[0]["desc"], "snow.png");
    let url = oob[0]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{}/media/", h.base)), "{url}");
    assert!(url.contains("/0/snow.png?e="), "{url}");
    // The link is in the text too, for clients that do not show XEP-0066 data.
    let body = got["body"].as_str().unwrap();
    assert!(body.starts_with("Snow\nFresh snow today\n"), "{body}");
    assert!(body.contains(url), "{body}");

    // The link serves the image; its expiry lies within the configured hour.
    let r = h.http.get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().await.unwrap().to_vec(), photo);
    let expires: i64 = url
        .split("?e=")
        .nth(1)
        .and_then(|q| q.split('&').next())
        .and_then(|e| e.parse().ok())
        .unwrap();
    let now = switchboard::message::now_ms() / 1000;
    assert!(expires > now && expires <= now + 3600, "{expires} vs {now}");
    // A link whose expiry is changed no longer matches its signature.
    let moved = url.replace(&format!("e={expires}"), &format!("e={}", expires + 86_400));
    assert_eq!(h.http.get(moved).send().await.unwrap().status(), 403);
    h.stop().await;
}
