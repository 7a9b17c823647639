//! XMPP throughput through a real Prosody, with a gateway and an SDP simulator in this
//! process and XMPP users played by `tests/xmpp/client.py` (slixmpp):
//!
//! 1. IM → SMS: U users each send M chat messages back to back to a phone JID
//!    (`+86138000000NN@sms.localhost`); reports messages/s from the first message until the
//!    simulator accepted every one (each committed, authorised, sent as Parlay X `sendSms`).
//! 2. SMS → IM: N mobile-originated SMS (`notifySmsReception`, posted by the simulator's MO
//!    endpoint from C concurrent HTTP clients), each `u0@localhost …`; reports messages/s from
//!    the first MO until the XMPP user received every one through Prosody.
//!
//! `cargo bench --bench xmpp -- [-u 4] [-m 2000] [-n 4000] [-c 32]`
//! Needs `prosody` and python3 with slixmpp (scripts/test.sh installs both).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/xmpp/support.rs"]
mod support;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::Harness;
use serde_json::json;
use support::{Prosody, User, peers_present};
use switchboard::address::Network;
use switchboard::connectors::xmpp::{ComponentConfig, XmppConfig};

const SECRET: &str = "bench-component-secret";

struct Args {
    users: usize,
    per_user: usize,
    mo: usize,
    mo_clients: usize,
}

fn args() -> Args {
    let mut a = Args {
        users: 4,
        per_user: 2000,
        mo: 4000,
        mo_clients: 32,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        match flag.as_str() {
            "-u" => a.users = num().max(1),
            "-m" => a.per_user = num().max(1),
            "-n" => a.mo = num().max(1),
            "-c" => a.mo_clients = num().max(1),
            // `cargo bench` passes `--bench`; anything else is ignored.
            _ => {}
        }
    }
    a
}

fn main() -> ExitCode {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(a))
}

async fn run(a: Args) -> ExitCode {
    if !peers_present() {
        return ExitCode::FAILURE;
    }
    let names: Vec<String> = (0..a.users.max(1)).map(|i| format!("u{i}")).collect();
    let accounts: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "benchpw")).collect();
    let prosody = Prosody::start(&[("sms.localhost", SECRET)], &accounts).await;
    let x = XmppConfig {
        server: prosody.component_server(),
        components: vec![ComponentConfig {
            domain: "sms.localhost".into(),
            network: Network::Sms,
            secret: SECRET.into(),
            name: None,
        }],
        ..XmppConfig::default()
    };
    // The bench's users are directory users, as XMPP senders must be.
    let seed_users: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|n| {
            (
                n.clone(),
                json!({"name": n, "addresses": [format!("im:{n}@localhost")]}),
            )
        })
        .collect();
    let h = Harness::start(|cfg, sim| {
        cfg.xmpp = Some(x);
        cfg.im.domains = vec!["localhost".into()];
        common::seed_directory(cfg, json!({ "users": seed_users }));
        cfg.log.level = "error".into();
        sim.receipt_delay_ms = 10;
    })
    .await;
    println!(
        "store synchronous = {:?}; {} user(s); Prosody {}",
        h.cfg.store.synchronous,
        names.len(),
        prosody.component_server()
    );

    // 1. IM → SMS.
    let mut users = Vec::new();
    for n in &names {
        users.push(User::login_with(&prosody, n, "benchpw", &["--quiet-messages"]).await);
    }
    let total = (a.per_user * users.len()) as u64;
    let start_count = h.sim.sim.stats().received;
    let t0 = Instant::now();
    for (i, u) in users.iter_mut().enumerate() {
        u.cmd(json!({"cmd": "blast", "to": format!("+86138000000{i:02}@sms.localhost"), "count": a.per_user}));
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    while h.sim.sim.stats().received < start_count + total {
        if Instant::now() > deadline {
            eprintln!(
                "IM → SMS: only {} of {total} reached the simulator",
                h.sim.sim.stats().received - start_count
            );
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "IM → SMS: {total} messages from {} XMPP users through Prosody to the SDP simulator in {secs:.2} s = {:.0} msg/s",
        users.len(),
        total as f64 / secs
    );

    // 2. SMS → IM.
    let mut u0 = users.swap_remove(0);
    drop(users);
    u0.cmd(json!({"cmd": "stats"}));
    let base = u0.wait("stats", |_| true).await["received"]
        .as_u64()
        .unwrap_or(0);
    let url = format!("{}/sim/mo", h.sim.url());
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..a.mo_clients {
        let (url, next, failed, n) = (url.clone(), next.clone(), failed.clone(), a.mo as u64);
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let body = json!({"from": format!("+8613900{:06}", i % 1_000_000), "to": "10658000", "text": format!("u0@localhost mo {i}")});
                let ok = http
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let posted = t0.elapsed().as_secs_f64();
    let want = base + a.mo as u64 - failed.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut seen = base;
    while seen < want {
        if Instant::now() > deadline {
            eprintln!(
                "SMS → IM: only {} of {} reached the XMPP user",
                seen - base,
                a.mo
            );
            return ExitCode::FAILURE;
        }
        u0.cmd(json!({"cmd": "stats"}));
        tokio::time::sleep(Duration::from_millis(20)).await;
        seen = u0
            .events()
            .iter()
            .filter(|e| e["event"] == "stats")
            .filter_map(|e| e["received"].as_u64())
            .max()
            .unwrap_or(base);
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "SMS → IM: {} MO messages ({} HTTP clients posting, all posted in {posted:.2} s) reached the XMPP user through Prosody in {secs:.2} s = {:.0} msg/s ({} refused by the gateway)",
        a.mo,
        a.mo_clients,
        (want - base) as f64 / secs,
        failed.load(Ordering::Relaxed)
    );
    h.stop().await;
    ExitCode::SUCCESS
}
