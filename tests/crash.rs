//! Crash: under load, `kill -9` the gateway and restart it on the same store. Every message
//! that got a `202` reaches the SDP (at-least-once: duplicates are allowed and counted, none
//! is missing).

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use switchboard::connectors::sdp::NOTIFY_PATH;
use switchboard::sim::SimConfig;
use tokio::sync::Notify;

/// Messages offered in total (bounded), by this many concurrent clients.
const MESSAGES: usize = 3000;
const CLIENTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sim = Sim::start(SimConfig {
        notify_url: Some(format!("http://127.0.0.1:{port}{NOTIFY_PATH}")),
        receipt_delay_ms: 10,
        send_receipts: true,
        // Some sendSms fail for a while, so that at the kill there is work in every
        // state: queued, waiting for a retry, in flight at the SDP, sent.
        transient_error_rate: 0.2,
        // Room for every message twice: each one at least once, plus the re-sent ones.
        keep_messages: 2 * MESSAGES,
        callbacks: sim_callbacks(),
        ..SimConfig::default()
    })
    .await;
    let mut cfg = test_config(dir.path());
    cfg.http.listen = format!("127.0.0.1:{port}");
    cfg.sdp.send_sms_url = sim.send_sms_url();
    cfg.store.synchronous = "full".into();
    let mut gw = ChildGateway::spawn(&cfg).await;
    let base = gw.base.clone();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let half_acked = Arc::new(Notify::new());
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (http, base) = (http.clone(), base.clone());
        let (next, acks, acked, half_acked) = (
            next.clone(),
            acks.clone(),
            acked.clone(),
            half_acked.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut refused = 0usize;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= MESSAGES {
                    return refused;
                }
                let body = json!({
                    "from": "im:alice@im.example.org",
                    "to": [format!("sms:+86138{n:08}")],
                    "text": format!("crash test message {n}"),
                });
                let r = http
                    .post(format!("{base}/v1/messages"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await;
                // Connection errors (after the kill) and a body lost with the connection
                // are not acknowledgements: the client would retry, and so may the gateway.
                let Ok(r) = r else {
                    refused += 1;
                    continue;
                };
                if r.status() != reqwest::StatusCode::ACCEPTED {
                    refused += 1;
                    continue;
                }
                let Ok(v) = r.json::<Value>().await else {
                    refused += 1;
                    continue;
                };
                let id = v["id"].as_str().expect("202 without an id").to_string();
                acked.lock().unwrap().push(id);
                if acks.fetch_add(1, Ordering::Relaxed) + 1 == MESSAGES / 2 {
                    half_acked.notify_one();
                }
            }
        }));
    }

    // The kill comes when half of the messages are acknowledged, not after some time.
    tokio::time::timeout(Duration::from_secs(30), half_acked.notified())
        .await
        .expect("half of the messages were not acknowledged in time");
    gw.kill9();
    let mut refused = 0;
    for c in clients {
        refused += c.await.unwrap();
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert_eq!(acked.len() + refused, MESSAGES);
    assert!(acked.len() >= MESSAGES / 2, "{} acked", acked.len());
    let unique: HashSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "the gateway gave one id twice");
    let at_kill = sim.sim.stats();
    eprintln!(
        "acked {} of {MESSAGES}, {refused} not acknowledged; the SDP had {} when the load ended",
        acked.len(),
        at_kill.unique_correlators
    );
    sim.control(json!({"transient_error_rate": 0.0})).await;

    let gw = ChildGateway::spawn(&cfg).await;
    let by_message = correlators_by_message(&cfg.store.path);
    let wanted: HashSet<String> = acked
        .iter()
        .flat_map(|id| by_message.get(id).cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        wanted.len(),
        acked.len(),
        "an acknowledged message without a correlator"
    );
    wait_for(
        Duration::from_secs(25),
        "every acknowledged message to reach the SDP",
        || {
            let seen: HashSet<String> = sim
                .sim
                .messages()
                .into_iter()
                .filter_map(|m| m.correlator)
                .collect();
            let missing = wanted.iter().filter(|c| !seen.contains(*c)).count();
            async move { (missing == 0).then_some(()) }
        },
    )
    .await;

    // The counters agree with what the SDP recorded: each correlator once, the rest are
    // re-sends of work that was in flight at the kill. A re-send may still be arriving, so
    // the record is read when it holds still: the same counts before and after it.
    let (messages, stats) = wait_for(
        Duration::from_secs(10),
        "the SDP's record and counters to agree",
        || {
            let count =
                |s: switchboard::sim::SimStats| (s.received, s.unique_correlators, s.duplicates);
            let before = sim.sim.stats();
            let messages = sim.sim.messages();
            let after = sim.sim.stats();
            let still = count(before) == count(after)
                && (after.unique_correlators + after.duplicates) as usize == messages.len();
            async move { still.then_some((messages, after)) }
        },
    )
    .await;
    let seen: HashSet<String> = messages
        .iter()
        .filter_map(|m| m.correlator.clone())
        .collect();
    assert!(
        messages.len() < 2 * MESSAGES,
        "the SDP's record may have dropped some"
    );
    assert_eq!(stats.unique_correlators as usize, seen.len(), "{stats:?}");
    assert_eq!(
        stats.duplicates as usize,
        messages.len() - seen.len(),
        "{stats:?}"
    );
    assert_eq!(stats.received, stats.unique_correlators + stats.duplicates);
    eprintln!(
        "after the restart: {} unique at the SDP ({} beyond the acked ones), {} duplicates",
        seen.len(),
        seen.len() - acked.len(),
        stats.duplicates
    );

    // The restarted gateway knows them as sent (or delivered, once the receipt came).
    let http = reqwest::Client::new();
    for id in acked.iter().step_by(97) {
        wait_for(
            Duration::from_secs(10),
            &format!("message {id} to be sent"),
            || {
                let (http, url) = (http.clone(), format!("{}/v1/messages/{id}", gw.base));
                async move {
                    let r = http.get(url).bearer_auth(TOKEN).send().await.ok()?;
                    assert!(r.status().is_success(), "GET {id}: {}", r.status());
                    let v: Value = r.json().await.ok()?;
                    let state = v["recipients"][0]["state"].as_str()?.to_string();
                    assert!(
                        matches!(
                            state.as_str(),
                            "queued" | "retry" | "sending" | "sent" | "delivered"
                        ),
                        "message {id}: {v}"
                    );
                    matches!(state.as_str(), "sent" | "delivered").then_some(())
                }
            },
        )
        .await;
    }
}

/// The directory and a group's fan-out that was in flight survive `kill -9`: groups put in
/// by the start-up file are still there after a restart without it, and every person of a
/// nested group gets the message that was acknowledged before the kill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_keeps_the_directory_and_a_fan_out_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // The SDP fails every sendSms until told otherwise: at the kill, the fan-out waits.
    let sim = Sim::start(SimConfig {
        notify_url: Some(format!("http://127.0.0.1:{port}{NOTIFY_PATH}")),
        send_receipts: false,
        transient_error_rate: 1.0,
        callbacks: sim_callbacks(),
        ..SimConfig::default()
    })
    .await;
    let mut cfg = test_config(dir.path());
    cfg.http.listen = format!("127.0.0.1:{port}");
    cfg.sdp.send_sms_url = sim.send_sms_url();
    cfg.store.synchronous = "full".into();
    seed_directory(
        &mut cfg,
        json!({
            "users": {
                "al": {"name": "Al", "addresses": ["sms:+8613900000001"]},
                "bo": {"name": "Bo", "addresses": ["sms:+8613900000002", "mail:bo@example.com"]}
            },
            "groups": {
                "inner": {"name": "Inner", "members": [{"user": "al"}, {"user": "bo"}]},
                "outer": {"name": "Outer", "members": [{"group": "inner"}, {"address": "sms:+8613900000003"}, {"user": "al"}]}
            }
        }),
    );
    let mut gw = ChildGateway::spawn(&cfg).await;
    let http = reqwest::Client::new();
    let submit = |base: String, text: &'static str| {
        let http = http.clone();
        async move {
            http.post(format!("{base}/v1/messages"))
                .bearer_auth(TOKEN)
                .json(&json!({"from": "app:news", "to": ["group:outer"], "text": text}))
                .send()
                .await
                .unwrap()
        }
    };
    let r = submit(gw.base.clone(), "before the kill").await;
    assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
    let v: Value = r.json().await.unwrap();
    let to: Vec<&str> = v["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    // Each person once (al is in both groups), at their first address.
    assert_eq!(
        to,
        [
            "sms:+8613900000001",
            "sms:+8613900000002",
            "sms:+8613900000003"
        ]
    );
    // The SDP has been tried (and failed) before the kill.
    wait_for(Duration::from_secs(10), "a failed sendSms", || {
        let n = sim.sim.stats().transient_errors;
        async move { (n > 0).then_some(()) }
    })
    .await;
    gw.kill9();

    // Restart without the start-up file: the directory comes from the store.
    cfg.directory.file = None;
    sim.control(json!({"transient_error_rate": 0.0})).await;
    let gw = ChildGateway::spawn(&cfg).await;
    let r = submit(gw.base.clone(), "after the restart").await;
    assert_eq!(
        r.status(),
        reqwest::StatusCode::ACCEPTED,
        "the group is still known"
    );
    for text in ["before the kill", "after the restart"] {
        let got = wait_for(Duration::from_secs(20), text, || {
            let mut to: Vec<String> = sim
                .sim
                .messages()
                .into_iter()
                .filter(|m| m.message == text)
                .flat_map(|m| m.addresses)
                .collect();
            to.sort();
            to.dedup();
            async move { (to.len() == 3).then_some(to) }
        })
        .await;
        assert_eq!(
            got,
            [
                "tel:+8613900000001",
                "tel:+8613900000002",
                "tel:+8613900000003"
            ],
            "{text}"
        );
    }
    drop(gw);
}
