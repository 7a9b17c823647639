//! The submit API and the admin API, tried as an attacker would: reading what is not
//! yours, sending as someone you are not, bombing one phone, spending the byte budget,
//! and data that outlives its time.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use switchboard::config::ClientConfig;
use switchboard::connectors::sdp::NOTIFY_PATH;
use switchboard::sim::SimConfig;

async fn get(h: &Harness, token: &str, id: &str) -> (u16, Value) {
    let r = h
        .http
        .get(format!("{}/v1/messages/{id}", h.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn erase(h: &Harness, token: &str, address: &str) -> (u16, Value) {
    let r = h
        .http
        .post(format!("{}/admin/v1/erase", h.base))
        .bearer_auth(token)
        .json(&json!({ "address": address }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Rows of `table` matching `filter` (SQL) in the harness's store.
fn rows(h: &Harness, table: &str, filter: &str) -> i64 {
    let c = rusqlite::Connection::open(&h.cfg.store.path).unwrap();
    c.query_row(
        &format!("SELECT COUNT(*) FROM {table} WHERE {filter}"),
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[tokio::test]
async fn a_client_reads_only_what_it_submitted_and_connector_messages_need_the_admin_token() {
    let h = Harness::start(|cfg, _| {
        cfg.mo.default_route = Some("im:operator@im.example.org".into());
    })
    .await;
    let id = h
        .submit_ok(
            json!({"from": "app:other-but-mine", "to": ["sms:+8613800000001"], "text": "mine"}),
        )
        .await;
    // Another client: the same answer as for an id that does not exist.
    let (status, body) = get(&h, OTHER_TOKEN, &id).await;
    assert_eq!(status, 404, "{body}");
    let (_, missing) = get(&h, OTHER_TOKEN, "0000000000000001").await;
    assert_eq!(body["code"], missing["code"]);
    assert_eq!((get(&h, TOKEN, &id).await).0, 200);

    // An MO from a phone: the connector's message, read by no client, only the admin.
    assert_eq!(
        h.sim.mo("+8613900000009", "10658000", "PIN 4711").await,
        200
    );
    let mo = wait_for(Duration::from_secs(10), "the MO to be stored", || async {
        let c = rusqlite::Connection::open(&h.cfg.store.path).unwrap();
        c.query_row(
            "SELECT printf('%016x', id) FROM messages WHERE client = 'sdp'",
            [],
            |r| r.get::<_, String>(0),
        )
        .ok()
    })
    .await;
    for token in [TOKEN, OTHER_TOKEN] {
        let (status, body) = get(&h, token, &mo).await;
        assert_eq!(status, 404, "a client read an MO: {body}");
        assert!(!body.to_string().contains("4711"));
    }
    let (status, body) = get(&h, ADMIN_TOKEN, &mo).await;
    assert_eq!(status, 200);
    assert_eq!(body["text"], "PIN 4711");
    // The IM webhook names a recipient (message id + index): the admin reads it so too.
    let (status, body) = get(&h, ADMIN_TOKEN, &format!("{mo}0000")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], mo);
    // A wrong token is 401; the admin token does not submit.
    assert_eq!((get(&h, "wrong-token-123", &mo).await).0, 401);
    let (status, _) = h
        .submit_as(
            ADMIN_TOKEN,
            json!({"from": "app:x", "to": ["sms:+8613800000001"], "text": "x"}),
        )
        .await;
    assert_eq!(status, 403);
    h.stop().await;
}

#[tokio::test]
async fn a_resource_or_a_percent_cannot_widen_a_sender_pattern() {
    let h = Harness::start(|cfg, _| {
        cfg.http.clients[0].senders = vec!["im:*@im.example.org".into()];
    })
    .await;
    for from in [
        "im:mallory@evil.org/x@im.example.org",
        "im:mallory%evil.org@im.example.org",
        "im:im.example.org",
        "im:alice@im.example.org.evil.org",
    ] {
        let (status, body) = h
            .submit(json!({"from": from, "to": ["sms:+8613800000001"], "text": "hi"}))
            .await;
        assert_eq!(status, 403, "{from}: {body}");
        assert_eq!(body["code"], "sender_not_allowed");
    }
    let (status, body) = h
        .submit(json!({"from": "im:alice@im.example.org/phone", "to": ["sms:+8613800000001"], "text": "hi"}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(h.stored_messages(), 1);
    h.stop().await;
}

#[tokio::test]
async fn abuse_limits_refuse_with_their_codes() {
    let h = Harness::start(|cfg, _| {
        cfg.limits.recipient_daily_max = 3;
        cfg.http.clients.push(ClientConfig {
            name: "slow".into(),
            token: "slow-token-0003".into(),
            senders: vec!["app:slow".into()],
            max_recipients: 2,
            submit_rate: 1,
            submit_burst: 2,
            ..ClientConfig::default()
        });
    })
    .await;
    // The daily cap: the fourth SMS to one phone fails, naming the cap; another phone and
    // other channels are not held back.
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(
            h.submit_ok(
                json!({"from": "app:a", "to": ["sms:+8613800000042"], "text": format!("n{i}")}),
            )
            .await,
        );
    }
    for id in &ids[..3] {
        h.wait_state(id, 0, "delivered").await;
    }
    let m = h.wait_state(&ids[3], 0, "failed").await;
    let err = m["recipients"][0]["last_error"].as_str().unwrap();
    assert!(err.starts_with("recipient_daily_cap"), "{err}");
    assert!(err.contains("has had 3 messages today"), "{err}");
    assert_eq!(
        h.sim
            .sim
            .messages()
            .iter()
            .filter(|m| m.addresses.iter().any(|a| a.contains("8613800000042")))
            .count(),
        3
    );
    let other = h
        .submit_ok(json!({"from": "app:a", "to": ["sms:+8613800000043"], "text": "other"}))
        .await;
    h.wait_state(&other, 0, "delivered").await;
    assert!(h.metrics().await.contains("reason=\"recipient_daily_cap\""));

    // Premium-rate ranges are denied at once, and nothing is stored.
    let before = h.stored_messages();
    let (status, body) = h
        .submit(json!({"from": "app:a", "to": ["sms:+19005550100"], "text": "win"}))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "destination_denied");
    assert_eq!(h.stored_messages(), before);

    // Recipients per submission, per client.
    let (status, body) = h
        .submit_as(
            "slow-token-0003",
            json!({"from": "app:slow", "to": ["sms:+8613800000051", "sms:+8613800000052", "sms:+8613800000053"], "text": "x"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "too_many_recipients");
    // The per-token rate: a burst of 2, then 429 with Retry-After (the refused one above
    // took a token too).
    let mut codes = Vec::new();
    for _ in 0..3 {
        let r = h
            .http
            .post(format!("{}/v1/messages", h.base))
            .bearer_auth("slow-token-0003")
            .json(&json!({"from": "app:slow", "to": ["sms:+8613800000051"], "text": "x"}))
            .send()
            .await
            .unwrap();
        codes.push((
            r.status().as_u16(),
            r.headers().get("retry-after").is_some(),
        ));
    }
    assert_eq!(codes.last(), Some(&(429, true)), "{codes:?}");
    h.stop().await;
}

#[tokio::test]
async fn the_admin_api_is_closed_without_its_token() {
    let h = Harness::start(|cfg, _| cfg.admin.token.clear()).await;
    for token in [TOKEN, ADMIN_TOKEN, ""] {
        let (status, _) = erase(&h, token, "sms:+8613800000001").await;
        assert!(status == 401 || status == 403, "{token}: {status}");
    }
    h.stop().await;
    let h = Harness::start(|_, _| {}).await;
    assert_eq!(erase(&h, TOKEN, "sms:+8613800000001").await.0, 403);
    assert_eq!(erase(&h, ADMIN_TOKEN, "not-an-address").await.0, 400);
    // A body over the limit is refused before it is read whole.
    let big = "x".repeat(h.cfg.http.max_body_bytes + 1);
    assert_eq!(erase(&h, ADMIN_TOKEN, &big).await.0, 413);
    // The admin read: no token 401, a forged one 401, a client's token 403, even for the
    // client's own message; the admin token 200.
    let id = h
        .submit_ok(json!({"from": "app:own", "to": ["sms:+8613800000001"], "text": "own"}))
        .await;
    let url = format!("{}/admin/v1/messages/{id}", h.base);
    assert_eq!(h.http.get(&url).send().await.unwrap().status(), 401);
    for (token, want) in [
        ("forged-admin-token-0001", 401),
        (TOKEN, 403),
        (ADMIN_TOKEN, 200),
    ] {
        let r = h.http.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status().as_u16(), want, "{token}");
    }
    h.stop().await;
}

#[tokio::test]
async fn erase_removes_an_address_everywhere_and_nothing_else() {
    let h = Harness::start(|cfg, _| {
        cfg.mail.smarthost.clear();
    })
    .await;
    const X: &str = "+8613800000077";
    const Y: &str = "+8613800000078";
    let only_x = h
        .submit_ok(
            json!({"from": "im:alice@im.example.org", "to": [format!("sms:{X}")], "text": "to x"}),
        )
        .await;
    let both = h
        .submit_ok(json!({"from": "im:alice@im.example.org", "to": [format!("sms:{X}"), format!("sms:{Y}")], "text": "to both"}))
        .await;
    h.wait_state(&only_x, 0, "delivered").await;
    h.wait_state(&both, 1, "delivered").await;
    // X answers alice through her reply route.
    let sender = h
        .sim
        .sim
        .messages()
        .into_iter()
        .find(|m| m.message == "to x")
        .and_then(|m| m.sender_name)
        .expect("the SMS to x");
    assert_eq!(h.sim.mo(X, &sender, "from x").await, 200);
    wait_for(Duration::from_secs(10), "the MO from x", || async {
        (rows(
            &h,
            "messages",
            &format!("origin = 'sms:{X}' AND kind = 'message'"),
        ) == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        rows(&h, "reply_routes", "party = 'im:alice@im.example.org'"),
        1
    );

    let (status, body) = erase(&h, ADMIN_TOKEN, &format!("sms:{X}")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["messages"].as_u64().unwrap() >= 2, "{body}");
    // Nothing about X is left anywhere.
    for (table, filter) in [
        ("messages", format!("origin = 'sms:{X}'")),
        ("messages", format!("content LIKE '%{}%'", &X[1..])),
        ("recipients", format!("address = 'sms:{X}'")),
        ("reply_routes", format!("party = 'sms:{X}'")),
    ] {
        assert_eq!(rows(&h, table, &filter), 0, "{table} where {filter}");
    }
    assert_eq!(get(&h, ADMIN_TOKEN, &only_x).await.0, 404);
    // The message shared with Y keeps Y's recipient and its report.
    let (status, m) = get(&h, ADMIN_TOKEN, &both).await;
    assert_eq!(status, 200);
    let rcpts = m["recipients"].as_array().unwrap();
    assert_eq!(rcpts.len(), 1, "{m}");
    assert_eq!(rcpts[0]["address"], format!("sms:{Y}"));
    assert_eq!(
        rows(&h, "reply_routes", "party = 'im:alice@im.example.org'"),
        1
    );
    h.stop().await;
}

#[tokio::test]
async fn the_cli_erases_an_address_in_the_store() {
    let mut h = Harness::start(|_, _| {}).await;
    let id = h
        .submit_ok(
            json!({"from": "im:bob@im.example.org", "to": ["sms:+8613800000088"], "text": "bye"}),
        )
        .await;
    h.wait_state(&id, 0, "delivered").await;
    let cfg = h.cfg.clone();
    // The store outlives the gateway: the CLI works on it after the stop.
    let _dir = std::mem::replace(&mut h.dir, tempfile::tempdir().unwrap());
    h.stop().await;
    let config = cfg.store.path.with_file_name("erase.toml");
    std::fs::write(&config, toml::to_string(&cfg).unwrap()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["erase", "sms:+8613800000088", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("erased sms:+8613800000088: 1 message(s)"),
        "{stdout}"
    );
    assert_eq!(count_rows(&cfg.store.path, "messages"), 0);
    assert_eq!(count_rows(&cfg.store.path, "recipients"), 0);
    // A bad address is refused with a message, and changes nothing.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["erase", "fax:123", "-c"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn retention_deletes_finished_messages_and_idle_routes_and_keeps_the_rest() {
    let h = Harness::start(|cfg, _| {
        cfg.mail.smarthost.clear();
        cfg.retention.finished_after_secs = 2;
        cfg.retention.reply_route_idle_secs = 2;
        cfg.retention.interval_secs = 1;
        cfg.retention.batch = 2;
    })
    .await;
    // Held for ever (no smarthost): not finished, never deleted.
    let held = h
        .submit_ok(json!({"from": "im:carol@im.example.org", "to": ["mail:dave@example.com"], "text": "held"}))
        .await;
    h.wait_state(&held, 0, "held").await;
    // Finished: delivered, with a receipt and a report to its report_url.
    let mut done = Vec::new();
    for i in 0..5 {
        let id = h
            .submit_ok(json!({"from": "im:carol@im.example.org", "to": [format!("sms:+861380000010{i}")], "text": format!("done {i}")}))
            .await;
        done.push(id);
    }
    h.wait_state(&done[0], 0, "delivered").await;
    let ext_before = {
        let c = rusqlite::Connection::open(&h.cfg.store.path).unwrap();
        c.query_row(
            "SELECT ext FROM reply_routes WHERE party = 'im:carol@im.example.org'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    // Gone means finished first: an unfinished message is never deleted.
    wait_for(
        Duration::from_secs(20),
        "the finished messages and the idle route to be deleted",
        || async {
            let gone = done
                .iter()
                .all(|id| rows(&h, "messages", &format!("printf('%016x', id) = '{id}'")) == 0);
            (gone && rows(&h, "reply_routes", "1") == 0).then_some(())
        },
    )
    .await;
    assert_eq!(rows(&h, "reports", "1"), 0);
    assert_eq!(rows(&h, "recipients", "state = 'delivered'"), 0);
    // The held one is still there, whole.
    let (status, m) = get(&h, ADMIN_TOKEN, &held).await;
    assert_eq!(status, 200);
    assert_eq!(m["recipients"][0]["state"], "held");
    assert_eq!(m["text"], "held");
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("switchboard_retention_deleted_total{what=\"messages\"}"),
        "{metrics}"
    );
    // A new conversation gets a new extension, never the deleted one.
    let id = h
        .submit_ok(json!({"from": "im:carol@im.example.org", "to": ["sms:+8613800000109"], "text": "again"}))
        .await;
    h.wait_state(&id, 0, "delivered").await;
    let c = rusqlite::Connection::open(&h.cfg.store.path).unwrap();
    let ext_after: i64 = c
        .query_row(
            "SELECT ext FROM reply_routes WHERE party = 'im:carol@im.example.org'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(ext_after > ext_before, "{ext_after} reused {ext_before}");
    h.stop().await;
}

/// What one stalled SDP may not do to the gateway's memory: 3,000 submissions of 900 KB
/// offered while nothing goes out. The byte budget holds the content inside the stages to
/// `max_bytes`; the rest is refused with 503 before it is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_submissions_against_a_stalled_sdp_stay_within_the_byte_budget() {
    const SUBMITS: usize = 3000;
    const CLIENTS: usize = 4;
    const BODY_BYTES: usize = 900 * 1024;
    const BUDGET: usize = 48 * 1024 * 1024;
    // Above the budget: the store's caches, the HTTP bodies being read and parsed
    // (CLIENTS × about three copies of one body), the runtime and allocator slack.
    const OVERHEAD: u64 = 64 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sim = Sim::start(SimConfig {
        notify_url: Some(format!("http://127.0.0.1:{port}{NOTIFY_PATH}")),
        send_receipts: false,
        keep_messages: 1000,
        ..SimConfig::default()
    })
    .await;
    sim.control(json!({"stall": true})).await;
    let mut cfg = test_config(dir.path());
    cfg.http.listen = format!("127.0.0.1:{port}");
    cfg.http.retry_after_secs = 2;
    cfg.sdp.send_sms_url = sim.send_sms_url();
    cfg.sdp.concurrency = 4;
    cfg.sdp.timeout_ms = 120_000;
    cfg.queues.max_bytes = BUDGET;
    cfg.store.synchronous = "normal".into();
    let gw = ChildGateway::spawn(&cfg).await;
    let rss_start = gw.rss_kib();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let text: Arc<String> = Arc::new("y".repeat(BODY_BYTES));
    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (http, base, text) = (http.clone(), gw.base.clone(), text.clone());
        let (next, refused) = (next.clone(), refused.clone());
        clients.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= SUBMITS {
                    return ids;
                }
                let r = http
                    .post(format!("{base}/v1/messages"))
                    .bearer_auth(TOKEN)
                    .json(&json!({
                        "from": "im:alice@im.example.org",
                        "to": [format!("sms:+86139{n:08}")],
                        "text": *text,
                    }))
                    .send()
                    .await
                    .expect("the gateway must answer every submission");
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap();
                match status {
                    202 => ids.push(body["id"].as_str().unwrap().to_string()),
                    503 => {
                        assert_eq!(body["code"], "queue_full", "{body}");
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    other => panic!("unexpected {other}: {body}"),
                }
            }
        }));
    }
    let mut acked = Vec::new();
    for c in clients {
        acked.extend(c.await.unwrap());
    }
    let peak = gw.peak_rss_kib();
    let refused = refused.load(Ordering::Relaxed);
    eprintln!(
        "{} accepted, {refused} refused; RSS {rss_start} KiB at start, peak {peak} KiB; budget {} KiB",
        acked.len(),
        BUDGET / 1024
    );
    assert_eq!(acked.len() + refused, SUBMITS);
    assert!(refused > 0, "nothing was refused");
    // No more accepted than the budget holds (each costs its text and a little more).
    assert!(
        acked.len() <= BUDGET / BODY_BYTES,
        "{} accepted with room for {}",
        acked.len(),
        BUDGET / BODY_BYTES
    );
    assert!(
        peak < rss_start + (BUDGET / 1024) as u64 + OVERHEAD,
        "peak RSS {peak} KiB over {rss_start} KiB + budget {} KiB + {OVERHEAD} KiB",
        BUDGET / 1024
    );
    assert_eq!(count_rows(&cfg.store.path, "messages"), acked.len() as i64);
    let metrics = reqwest::get(format!("{}/metrics", gw.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("reason=\"queue_bytes\""), "{metrics}");

    // Nothing accepted is lost: once the SDP answers, every one goes out.
    sim.control(json!({"stall": false})).await;
    wait_for(
        Duration::from_secs(60),
        "every accepted message to reach the SDP",
        || {
            let n = sim.sim.stats().unique_correlators as usize;
            let want = acked.len();
            async move { (n >= want).then_some(()) }
        },
    )
    .await;
    drop(gw);
}
