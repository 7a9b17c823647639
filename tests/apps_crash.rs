//! Crash during an app's fan-out: an app pushes to the 1,000 friends of a user (each
//! reached on a phone), the gateway is killed with `kill -9` while the SMS are still being
//! sent, and restarted on the same store. Every friend gets every acknowledged push once or
//! more (duplicates are allowed and counted), none is missing, and every friend's message
//! stack still holds the pushes.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{Value, json};
use switchboard::connectors::sdp::NOTIFY_PATH;
use switchboard::sim::SimConfig;

/// Friends of the pushing user (the most a user may have, the most one push may reach).
const FRIENDS: usize = 1000;
/// Pushes acknowledged before the kill.
const PUSHES: usize = 3;
const APP: &str = "news";

fn friend(n: usize) -> String {
    format!("friend{n:04}")
}

fn phone(n: usize) -> String {
    format!("+86138000{n:05}")
}

fn push_text(k: usize) -> String {
    format!("crash push {k}")
}

/// A signed push from the app to alice's friends.
async fn push(http: &reqwest::Client, base: &str, secret: &str, k: usize) -> reqwest::Response {
    let path = format!("/v1/apps/{APP}/messages");
    let body = json!({
        "target": {"friends_of": "alice"},
        "mode": "popup",
        "content": format!("<news><h>{}</h></news>", push_text(k)),
        "text": push_text(k),
    })
    .to_string();
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let nonce = format!("apps-crash-{k}-{ts}");
    let sig = switchboard::apps::sign::sign(secret, "POST", &path, ts, &nonce, body.as_bytes());
    http.post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .header("X-App-Timestamp", ts.to_string())
        .header("X-App-Nonce", nonce)
        .header("X-App-Signature", sig)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Copies of each push the SDP received, by push and number (`+86…`).
fn received(sim: &Sim) -> HashMap<usize, HashMap<String, usize>> {
    let texts: HashMap<String, usize> = (0..PUSHES).map(|k| (push_text(k), k)).collect();
    let mut out: HashMap<usize, HashMap<String, usize>> = HashMap::new();
    for m in sim.sim.messages() {
        let Some(k) = texts.get(&m.message) else {
            continue;
        };
        for a in m.addresses {
            let number = a.strip_prefix("tel:").unwrap_or(&a).to_string();
            *out.entry(*k).or_default().entry(number).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_a_fan_out_to_1000_friends_loses_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let sim = Sim::start(SimConfig {
        notify_url: Some(format!("http://127.0.0.1:{port}{NOTIFY_PATH}")),
        receipt_delay_ms: 10,
        send_receipts: true,
        // Most sendSms are refused for a while (503: the recipient waits and is tried
        // again), so the fan-out is slow and the kill finds recipients in every state:
        // queued, waiting, in flight at the SDP, sent.
        transient_error_rate: 0.8,
        // Room for every SMS twice: each at least once, plus the re-sent ones.
        keep_messages: 2 * PUSHES * FRIENDS,
        callbacks: sim_callbacks(),
        ..SimConfig::default()
    })
    .await;
    let mut cfg = test_config(dir.path());
    cfg.http.listen = format!("127.0.0.1:{port}");
    cfg.sdp.send_sms_url = sim.send_sms_url();
    cfg.store.synchronous = "full".into();
    // Alice and her 1,000 friends, each reached on a phone of their own; the friendships go
    // both ways.
    let mut users = serde_json::Map::new();
    users.insert(
        "alice".into(),
        json!({
            "name": "Alice",
            "addresses": ["im:alice@im.example.org"],
            "friends": (0..FRIENDS).map(friend).collect::<Vec<_>>(),
        }),
    );
    for n in 0..FRIENDS {
        users.insert(
            friend(n),
            json!({
                "name": format!("Friend {n}"),
                "addresses": [format!("sms:{}", phone(n))],
                "friends": ["alice"],
            }),
        );
    }
    seed_directory(&mut cfg, json!({"users": users, "groups": {}}));
    let mut gw = ChildGateway::spawn(&cfg).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // The app (it may reach phones), installed by alice.
    let r = http
        .put(format!("{}/v1/apps/{APP}", gw.base))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({
            "name": "News",
            "may_target": ["user", "friends", "group"],
            "rate_per_minute": 60000,
            "phones": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);
    let app: Value = r.json().await.unwrap();
    let secret = app["secret"].as_str().expect("a made secret").to_string();
    let r = http
        .put(format!("{}/v1/users/alice/apps/{APP}", gw.base))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::CREATED);

    // The pushes: each one message with a recipient per friend, committed before the 202.
    let mut acked = Vec::new();
    for k in 0..PUSHES {
        let r = push(&http, &gw.base, &secret, k).await;
        assert_eq!(r.status(), reqwest::StatusCode::ACCEPTED, "push {k}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["users"], FRIENDS, "{v}");
        assert_eq!(v["recipients"], FRIENDS, "{v}");
        assert_eq!(v["unreachable"], 0, "{v}");
        acked.push(v["id"].as_str().unwrap().to_string());
    }
    let total = PUSHES * FRIENDS;

    // The kill comes once the SDP has some of the SMS, not after some time.
    wait_for(
        Duration::from_secs(30),
        "a tenth of the fan-out to reach the SDP",
        || {
            let n = sim.sim.stats().unique_correlators as usize;
            async move { (n >= total / 10).then_some(()) }
        },
    )
    .await;
    gw.kill9();
    let at_kill = sim.sim.stats();
    assert!(
        (at_kill.unique_correlators as usize) < total,
        "the fan-out was over before the kill: {at_kill:?}"
    );
    eprintln!(
        "killed with {} of {total} SMS at the SDP ({} refused with 503 so far)",
        at_kill.unique_correlators, at_kill.transient_errors
    );

    // Restart on the same store, without the start-up file: users, app and app list come
    // from the store. The SDP takes everything now.
    sim.control(json!({"transient_error_rate": 0.0})).await;
    cfg.directory.file = None;
    let gw = ChildGateway::spawn(&cfg).await;

    // One message per push, a recipient (and a correlator) per friend.
    let by_message = correlators_by_message(&cfg.store.path);
    for id in &acked {
        let c: HashSet<&String> = by_message.get(id).into_iter().flatten().collect();
        assert_eq!(c.len(), FRIENDS, "message {id}: correlators");
    }

    // Every friend gets every push, once or more.
    let numbers: HashSet<String> = (0..FRIENDS).map(phone).collect();
    let got = wait_for(
        Duration::from_secs(40),
        "every friend to get every push",
        || {
            let got = received(&sim);
            let complete = (0..PUSHES).all(|k| {
                got.get(&k)
                    .is_some_and(|seen| numbers.iter().all(|n| seen.contains_key(n)))
            });
            async move { complete.then_some(got) }
        },
    )
    .await;
    let mut copies = 0;
    for (k, seen) in &got {
        assert!(
            seen.keys().all(|n| numbers.contains(n)),
            "push {k} went to a number that is no friend's"
        );
        copies += seen.values().sum::<usize>();
    }
    let duplicates = copies - total;
    let stats = sim.sim.stats();
    assert_eq!(stats.unique_correlators as usize, total, "{stats:?}");
    assert_eq!(stats.duplicates as usize, duplicates, "{stats:?}");
    assert!(
        sim.sim.messages().len() < 2 * total,
        "the SDP's record may have dropped some"
    );
    eprintln!(
        "after the restart: {total} of {total} at the SDP, {duplicates} duplicates \
         (re-sends of SMS in flight at the kill)"
    );

    // The restarted gateway knows every recipient as sent (or delivered).
    for id in &acked {
        wait_for(
            Duration::from_secs(20),
            &format!("every recipient of {id} to be sent"),
            || {
                let (http, url) = (http.clone(), format!("{}/v1/messages/{id}", gw.base));
                async move {
                    let r = http.get(url).bearer_auth(ADMIN_TOKEN).send().await.ok()?;
                    assert!(r.status().is_success(), "GET {id}: {}", r.status());
                    let v: Value = r.json().await.ok()?;
                    let rs = v["recipients"].as_array()?;
                    assert_eq!(rs.len(), FRIENDS, "message {id}");
                    rs.iter()
                        .all(|r| matches!(r["state"].as_str(), Some("sent" | "delivered")))
                        .then_some(())
                }
            },
        )
        .await;
    }

    // Each friend's stack holds the pushes (written with the message, in its transaction).
    for n in [0, FRIENDS / 2, FRIENDS - 1] {
        let r = http
            .get(format!("{}/v1/users/{}/app-messages", gw.base, friend(n)))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "stack of {}: {}",
            friend(n),
            r.status()
        );
        let v: Value = r.json().await.unwrap();
        let n_msgs = v["messages"].as_array().map_or(0, Vec::len);
        assert_eq!(n_msgs, PUSHES, "stack of {}: {v}", friend(n));
    }
    drop(gw);
}
