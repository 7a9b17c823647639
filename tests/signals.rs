//! Signals: SIGTERM and SIGINT stop accepting, drain the stages within the drain deadline,
//! and exit with status 0; what was accepted and not sent goes out after the next start.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use switchboard::config::Config;
use switchboard::connectors::sdp::NOTIFY_PATH;
use switchboard::sim::SimConfig;
use tokio::sync::Notify;

/// Messages accepted before the signal.
const MESSAGES: usize = 200;

/// Submits `n` messages one after the other; every one must be accepted. Their ids.
async fn submit_all(base: &str, n: usize) -> Vec<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let r = http
            .post(format!("{base}/v1/messages"))
            .bearer_auth(TOKEN)
            .json(&json!({
                "from": "im:alice@im.example.org",
                "to": [format!("sms:+86137{i:08}")],
                "text": format!("signal test message {i}"),
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED);
        let v: Value = r.json().await.unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    ids
}

/// A stalled simulator and a child gateway pointed at it (logging at `info`).
async fn setup(dir: &std::path::Path) -> (Sim, Config) {
    let port = free_port();
    let sim = Sim::start(SimConfig {
        notify_url: Some(format!("http://127.0.0.1:{port}{NOTIFY_PATH}")),
        receipt_delay_ms: 10,
        keep_messages: 2 * LOAD,
        callbacks: sim_callbacks(),
        ..SimConfig::default()
    })
    .await;
    sim.control(json!({"stall": true})).await;
    let mut cfg = test_config(dir);
    cfg.http.listen = format!("127.0.0.1:{port}");
    cfg.sdp.send_sms_url = sim.send_sms_url();
    cfg.sdp.concurrency = 16;
    cfg.log.level = "info".into();
    (sim, cfg)
}

/// Waits until the simulator has seen every one of `ids` (recipient 0).
async fn wait_all_at_sdp(sim: &Sim, db: &std::path::Path, ids: &[String]) {
    let by_message = correlators_by_message(db);
    let wanted: HashSet<String> = ids
        .iter()
        .flat_map(|id| by_message.get(id).cloned().unwrap_or_default())
        .collect();
    assert!(wanted.len() >= ids.len(), "a message without a correlator");
    wait_for(
        Duration::from_secs(20),
        "every accepted message to reach the SDP",
        || {
            let seen: HashSet<String> = sim
                .sim
                .messages()
                .into_iter()
                .filter_map(|m| m.correlator)
                .collect();
            let done = wanted.iter().all(|c| seen.contains(c));
            async move { done.then_some(()) }
        },
    )
    .await;
}

/// Accepts work while the SDP is stalled, then sends `signal`. With `release` the SDP
/// answers again just before the signal, so the drain has work to finish; without, the
/// work is still stuck at the drain deadline.
async fn drain_on(signal: &str, release: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (sim, cfg) = setup(dir.path()).await;
    let mut gw = ChildGateway::spawn(&cfg).await;
    let ids = submit_all(&gw.base, MESSAGES).await;
    // Wait until the dispatch stage is blocked on the SDP: the work is really in flight.
    wait_for(Duration::from_secs(10), "sendSms requests held", || {
        let n = sim.sim.stalled_requests();
        async move { (n >= cfg.sdp.concurrency).then_some(()) }
    })
    .await;
    if release {
        sim.control(json!({"stall": false})).await;
    }
    let started = Instant::now();
    gw.signal(signal);
    let deadline = Duration::from_secs(cfg.drain_timeout_secs);
    let status = gw.wait_exit(deadline + Duration::from_secs(10)).await;
    let took = started.elapsed();
    let log = strip_ansi(&gw.log());
    eprintln!(
        "SIG{signal} (SDP released: {release}): exited {status} after {took:?}; the SDP had {} of {MESSAGES}",
        sim.sim.stats().unique_correlators
    );
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(log.contains(&format!("SIG{signal} received")), "{log}");
    assert!(log.contains("stopping: no new work is accepted"), "{log}");
    let stopped = log
        .lines()
        .find(|l| l.contains(" stopped "))
        .unwrap_or_else(|| panic!("no \"stopped\" line in the log:\n{log}"));
    if release {
        assert!(stopped.contains("drained=true"), "{stopped}");
    } else {
        assert!(stopped.contains("drained=false"), "{stopped}");
        assert!(log.contains("drain deadline passed"), "{log}");
    }

    // Restart on the same store: whatever did not go out goes out now.
    sim.control(json!({"stall": false})).await;
    let mut gw = ChildGateway::spawn(&cfg).await;
    wait_all_at_sdp(&sim, &cfg.store.path, &ids).await;
    let stats = sim.sim.stats();
    eprintln!("after the restart: {stats:?}");
    assert!(stats.unique_correlators as usize >= MESSAGES, "{stats:?}");
    gw.signal("TERM");
    let status = gw.wait_exit(deadline + Duration::from_secs(10)).await;
    assert!(status.success(), "restarted gateway: exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_work() {
    drain_on("TERM", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_drains_in_flight_work() {
    drain_on("INT", true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_stuck_sdp_exits_at_the_drain_deadline() {
    drain_on("TERM", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, cfg) = setup(dir.path()).await;
    let mut gw = ChildGateway::spawn(&cfg).await;
    let ids = submit_all(&gw.base, MESSAGES / 4).await;
    wait_for(Duration::from_secs(10), "sendSms requests held", || {
        let n = sim.sim.stalled_requests();
        async move { (n >= cfg.sdp.concurrency).then_some(()) }
    })
    .await;
    gw.signal("TERM");
    wait_for(Duration::from_secs(10), "the drain to begin", || {
        let began = strip_ansi(&gw.log()).contains("stopping: no new work is accepted");
        async move { began.then_some(()) }
    })
    .await;
    let started = Instant::now();
    gw.signal("INT");
    // Well before the drain deadline (5 s), which the stuck SDP would otherwise make it wait.
    let status = gw.wait_exit(Duration::from_secs(4)).await;
    let log = strip_ansi(&gw.log());
    eprintln!(
        "second signal: exited {status} after {:?}",
        started.elapsed()
    );
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("second signal"), "{log}");

    sim.control(json!({"stall": false})).await;
    let _gw = ChildGateway::spawn(&cfg).await;
    wait_all_at_sdp(&sim, &cfg.store.path, &ids).await;
}

/// Submissions offered in total by the concurrent clients of the load test.
const LOAD: usize = 2000;
const CLIENTS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (sim, cfg) = setup(dir.path()).await;
    sim.control(json!({"stall": false})).await;
    let mut gw = ChildGateway::spawn(&cfg).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let quarter_acked = Arc::new(Notify::new());
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (http, base) = (http.clone(), gw.base.clone());
        let (next, acked, quarter_acked) = (next.clone(), acked.clone(), quarter_acked.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= LOAD {
                    return;
                }
                let r = http
                    .post(format!("{base}/v1/messages"))
                    .bearer_auth(TOKEN)
                    .json(&json!({
                        "from": "im:alice@im.example.org",
                        "to": [format!("sms:+86136{n:08}")],
                        "text": format!("drain under load {n}"),
                    }))
                    .send()
                    .await;
                // After the signal: 503 shutting_down, or no connection at all.
                let Ok(r) = r else { continue };
                if r.status() != reqwest::StatusCode::ACCEPTED {
                    continue;
                }
                let Ok(v) = r.json::<Value>().await else {
                    continue;
                };
                let mut acked = acked.lock().unwrap();
                acked.push(v["id"].as_str().unwrap().to_string());
                if acked.len() == LOAD / 4 {
                    quarter_acked.notify_one();
                }
            }
        }));
    }
    tokio::time::timeout(Duration::from_secs(20), quarter_acked.notified())
        .await
        .expect("a quarter of the load was not acknowledged in time");
    gw.signal("TERM");
    let deadline = Duration::from_secs(cfg.drain_timeout_secs);
    let status = gw.wait_exit(deadline + Duration::from_secs(10)).await;
    for c in clients {
        c.await.unwrap();
    }
    let log = strip_ansi(&gw.log());
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "SIGTERM under load: exited {status}; {} of {LOAD} acked; the SDP had {}",
        acked.len(),
        sim.sim.stats().unique_correlators
    );
    assert!(status.success(), "exit status {status}; log:\n{log}");
    assert!(acked.len() >= LOAD / 4);

    let _gw = ChildGateway::spawn(&cfg).await;
    wait_all_at_sdp(&sim, &cfg.store.path, &acked).await;
}
