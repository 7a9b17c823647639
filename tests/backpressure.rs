//! Back-pressure: with tiny queues and a stalled SDP, submits get `503` + `Retry-After`,
//! nothing refused is stored, and the process's memory stays bounded; once the SDP answers
//! again, every accepted message goes out.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use switchboard::connectors::sdp::NOTIFY_PATH;
use switchboard::sim::SimConfig;

/// Submissions offered in total (bounded), by this many concurrent clients.
const SUBMITS: usize = 20_000;
const CLIENTS: usize = 4;
const QUEUE: usize = 4;
const SDP_CONCURRENCY: usize = 2;
/// Each body carries this much text, so that keeping refused submissions anywhere would
/// show in the resident memory (20,000 × 4 KiB ≈ 80 MiB).
const TEXT_BYTES: usize = 4096;

#[derive(Default)]
struct Tally {
    accepted: AtomicUsize,
    refused: AtomicUsize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queues_refuse_with_503_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sim = Sim::start(SimConfig {
        notify_url: Some(format!("http://127.0.0.1:{port}{NOTIFY_PATH}")),
        receipt_delay_ms: 10,
        keep_messages: 1000,
        callbacks: sim_callbacks(),
        ..SimConfig::default()
    })
    .await;
    sim.control(json!({"stall": true})).await;
    let mut cfg = test_config(dir.path());
    cfg.http.listen = format!("127.0.0.1:{port}");
    cfg.http.retry_after_secs = 3;
    cfg.sdp.send_sms_url = sim.send_sms_url();
    cfg.sdp.concurrency = SDP_CONCURRENCY;
    // Long enough that the stalled requests hang for the whole burst.
    cfg.sdp.timeout_ms = 120_000;
    cfg.queues.auth = QUEUE;
    cfg.queues.process = QUEUE;
    cfg.queues.dispatch = QUEUE;
    let gw = ChildGateway::spawn(&cfg).await;
    let rss_start = gw.rss_kib();

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let text = "x".repeat(TEXT_BYTES);
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (http, base, text) = (http.clone(), gw.base.clone(), text.clone());
        let (next, tally) = (next.clone(), tally.clone());
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
                        "text": text,
                    }))
                    .send()
                    .await
                    .expect("the gateway must answer every submission");
                let status = r.status();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string());
                let body: Value = r.json().await.unwrap();
                match status.as_u16() {
                    202 => {
                        tally.accepted.fetch_add(1, Ordering::Relaxed);
                        ids.push(body["id"].as_str().unwrap().to_string());
                    }
                    503 => {
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                        assert_eq!(body["code"], "queue_full", "{body}");
                        assert_eq!(retry_after.as_deref(), Some("3"), "503 without Retry-After");
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
    let rss_after = gw.rss_kib();
    let accepted = tally.accepted.load(Ordering::Relaxed);
    let refused = tally.refused.load(Ordering::Relaxed);
    eprintln!(
        "{accepted} accepted, {refused} refused; RSS {rss_start} KiB at start, {rss_after} KiB after the burst; {} sendSms held by the SDP",
        sim.sim.stalled_requests()
    );
    assert_eq!(accepted + refused, SUBMITS);
    assert_eq!(acked.len(), accepted);
    assert!(refused > 0, "no submission was refused");
    // What the pipeline can hold: each queue, one job in the hands of the auth and process
    // stages each, and the requests waiting on the SDP. Nothing else may be accepted while
    // the SDP does not answer.
    let capacity = 3 * QUEUE + 2 + SDP_CONCURRENCY;
    assert!(
        accepted <= capacity,
        "{accepted} accepted with room for {capacity}"
    );
    // And the queues do fill up before anything is refused for good.
    assert!(accepted >= 3 * QUEUE, "only {accepted} accepted");
    // Every refusal is counted, and the full queues show in the depth gauges.
    let metrics = reqwest::get(format!("{}/metrics", gw.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let sample = |name: &str, labels: &[&str]| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{metrics}"))
    };
    assert_eq!(
        sample(
            "switchboard_messages_refused_total",
            &["stage=\"receive\"", "reason=\"queue_full\""]
        ),
        refused as f64
    );
    assert_eq!(
        sample("switchboard_queue_depth", &["queue=\"auth\""]),
        QUEUE as f64
    );
    // Refused submissions are not stored; accepted ones are.
    assert_eq!(count_rows(&cfg.store.path, "messages"), accepted as i64);
    // The resident memory after the burst: a few MiB of SQLite cache, buffers and
    // allocator slack over the start. Keeping even a quarter of the refused bodies
    // (about 20 MiB) would cross this line.
    assert!(
        rss_after < rss_start + 16 * 1024,
        "RSS grew from {rss_start} KiB to {rss_after} KiB"
    );

    sim.control(json!({"stall": false})).await;
    wait_for(
        Duration::from_secs(20),
        "every accepted message to reach the SDP",
        || {
            let n = sim.sim.stats().unique_correlators;
            async move { (n as usize == accepted).then_some(()) }
        },
    )
    .await;
    let seen: std::collections::HashSet<String> = sim
        .sim
        .messages()
        .into_iter()
        .filter_map(|m| m.correlator)
        .collect();
    let by_message = correlators_by_message(&cfg.store.path);
    for id in &acked {
        let c = by_message.get(id).and_then(|c| c.first());
        assert!(
            c.is_some_and(|c| seen.contains(c)),
            "{id} did not reach the SDP"
        );
    }
}
