//! App push harness: an app pushes N times to the friends of its users (F friends each,
//! every friend reached on a phone) with C concurrent signed clients; measures the pushes
//! accepted (202, committed with their stack entries), the recipient SMS that reach the SDP
//! simulator, and the push latency.
//!
//! It starts a gateway (store in a temporary folder, `synchronous = "full"`) and an SDP
//! simulator in this process on port 0, seeds the directory (U users, each with F friends
//! of their own), registers an app that may reach phones and installs it for every user.
//! Every push text is a simulator latency probe (`probe:<submit time µs>;…`, see
//! `switchboard::sim::PROBE_PREFIX`): each of its SMS measures push → SDP.
//!
//! `cargo bench --bench apps -- -n 2000 -c 16 --friends 100`

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{InProcess, unix_us, wait_ready};
use switchboard::sim::{PROBE_PREFIX, SimLatency, SimStats};

mod support;

const USAGE: &str = "\
App push harness: an app pushes to users' friends; measures pushes accepted and the SMS
that reach the SDP simulator.

usage: cargo bench --bench apps -- [options]

  -n N              pushes (default 2000), each to the friends of one user
  -c C              concurrent signed clients (default 16)
  --friends F       friends of each user, each reached on a phone (default 100, at
                    most 1000)
  --users U         users the pushes go round (default 20); U x F phone users are seeded
  --deadline SECS   stop and report after this long, exiting non-zero (default 180)
  --sync MODE       store.synchronous: full or normal (default full)
  -h, --help        this text

Unknown arguments (such as the --bench that cargo adds) are ignored.
Exit status: 0 when every push was accepted and each of its SMS reached the simulator
once, 1 otherwise (deadline, errors, lost or duplicated SMS), 2 for bad arguments.
";

const ADMIN_TOKEN: &str = "apps-harness-admin-token";
const APP: &str = "bench";
/// The app's bucket holds a minute's worth; the registry allows at most this.
const RATE_PER_MINUTE: u32 = 60_000;

struct Args {
    n: u64,
    c: usize,
    friends: usize,
    users: usize,
    deadline: Duration,
    sync: String,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        n: 2000,
        c: 16,
        friends: 100,
        users: 20,
        deadline: Duration::from_secs(180),
        sync: "full".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "-n" => a.n = value("-n")?.parse().map_err(|e| format!("-n: {e}"))?,
            "-c" => a.c = value("-c")?.parse().map_err(|e| format!("-c: {e}"))?,
            "--friends" => {
                a.friends = value("--friends")?
                    .parse()
                    .map_err(|e| format!("--friends: {e}"))?
            }
            "--users" => {
                a.users = value("--users")?
                    .parse()
                    .map_err(|e| format!("--users: {e}"))?
            }
            "--deadline" => {
                let s: u64 = value("--deadline")?
                    .parse()
                    .map_err(|e| format!("--deadline: {e}"))?;
                a.deadline = Duration::from_secs(s);
            }
            "--sync" => a.sync = value("--sync")?,
            _ => {}
        }
    }
    if a.n == 0 || a.c == 0 || a.users == 0 {
        return Err("-n, -c and --users must be at least 1".into());
    }
    if a.friends == 0 || a.friends > 1000 {
        return Err("--friends: 1-1000".into());
    }
    if a.users * a.friends > 10_000_000 {
        return Err("--users x --friends: at most 10,000,000 phones".into());
    }
    if a.n > u64::from(RATE_PER_MINUTE) {
        return Err(format!(
            "-n: at most {RATE_PER_MINUTE} (the app's rate bucket holds a minute's worth)"
        ));
    }
    if !matches!(a.sync.as_str(), "full" | "normal") {
        return Err("--sync: full or normal".into());
    }
    Ok(Some(a))
}

fn user_id(u: usize) -> String {
    format!("user{u:05}")
}

fn friend_id(u: usize, f: usize) -> String {
    format!("friend{u:05}x{f:04}")
}

/// A distinct phone for friend `f` of user `u`.
fn phone(u: usize, f: usize, friends: usize) -> String {
    format!("sms:+8613{:09}", u * friends + f)
}

/// What the clients counted.
#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    recipients: AtomicU64,
    busy_503: AtomicU64,
    rate_limited: AtomicU64,
    errors: AtomicU64,
    abandoned: AtomicU64,
    /// Microseconds since the start of the run at which the last 202 arrived.
    last_accept_us: AtomicU64,
    /// Push → 202, in microseconds, of every accepted push (its last attempt).
    latencies_us: Mutex<Vec<u64>>,
}

async fn start_in_process(a: &Args) -> Result<(String, String, InProcess), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let mut cfg = support::config(&dir, &a.sync);
    cfg.admin.token = ADMIN_TOKEN.into();

    // The directory: U users (on IM), each with F friends of their own on phones.
    let mut users = serde_json::Map::new();
    for u in 0..a.users {
        let friends: Vec<String> = (0..a.friends).map(|f| friend_id(u, f)).collect();
        for (f, id) in friends.iter().enumerate() {
            users.insert(
                id.clone(),
                json!({"name": format!("Friend {f} of {u}"), "addresses": [phone(u, f, a.friends)]}),
            );
        }
        users.insert(
            user_id(u),
            json!({
                "name": format!("User {u}"),
                "addresses": [format!("im:{}@im.example.org", user_id(u))],
                "friends": friends,
            }),
        );
    }
    let seed = dir.path().join("directory-seed.json");
    std::fs::write(&seed, json!({"users": users, "groups": {}}).to_string())
        .map_err(|e| format!("{}: {e}", seed.display()))?;
    cfg.directory.file = Some(seed);
    support::start(cfg, dir).await
}

/// Registers the app (it may reach phones) and installs it for every user; its secret.
async fn set_up_app(http: &reqwest::Client, gateway: &str, users: usize) -> Result<String, String> {
    let r = http
        .put(format!("{gateway}/v1/apps/{APP}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({
            "name": "Bench",
            "may_target": ["user", "friends", "group"],
            "rate_per_minute": RATE_PER_MINUTE,
            "phones": true,
        }))
        .send()
        .await
        .map_err(|e| format!("PUT app: {e}"))?;
    if r.status() != reqwest::StatusCode::CREATED {
        return Err(format!("PUT app: HTTP {}", r.status()));
    }
    let v: Value = r.json().await.map_err(|e| format!("PUT app: {e}"))?;
    let secret = v["secret"]
        .as_str()
        .ok_or("PUT app: no secret in the answer")?
        .to_string();
    for u in 0..users {
        let r = http
            .put(format!("{gateway}/v1/users/{}/apps/{APP}", user_id(u)))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .map_err(|e| format!("install: {e}"))?;
        if !r.status().is_success() {
            return Err(format!("install for {}: HTTP {}", user_id(u), r.status()));
        }
    }
    Ok(secret)
}

/// One client: takes push numbers until all are taken and submits each (signed afresh
/// for every attempt) until it is accepted; a 503 means "later".
#[allow(clippy::too_many_arguments)]
async fn client(
    http: reqwest::Client,
    gateway: String,
    secret: Arc<String>,
    next: Arc<AtomicU64>,
    args: Arc<Args>,
    counts: Arc<Counts>,
    t0: Instant,
    until: Instant,
) {
    const MAX_ATTEMPTS: u32 = 200;
    let path = format!("/v1/apps/{APP}/messages");
    let url = format!("{gateway}{path}");
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= args.n || Instant::now() >= until {
            return;
        }
        let user = user_id(i as usize % args.users);
        // The first submit time goes into the text: a retried push keeps it.
        let text = format!("{PROBE_PREFIX}{};app push {i}", unix_us());
        let body = json!({
            "target": {"friends_of": user},
            "mode": "popup",
            "content": format!("<news><h>push {i}</h></news>"),
            "text": text,
        })
        .to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if attempt > MAX_ATTEMPTS || Instant::now() >= until {
                counts.abandoned.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let ts = (unix_us() / 1_000_000) as i64;
            let nonce = format!("bench-{i}-{attempt}");
            let sig =
                switchboard::apps::sign::sign(&secret, "POST", &path, ts, &nonce, body.as_bytes());
            let sent = Instant::now();
            let r = http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header("X-App-Timestamp", ts.to_string())
                .header("X-App-Nonce", nonce)
                .header("X-App-Signature", sig)
                .body(body.clone())
                .send()
                .await;
            match r {
                Ok(resp) if resp.status() == reqwest::StatusCode::ACCEPTED => {
                    let v: Value = resp.json().await.unwrap_or(Value::Null);
                    let took = sent.elapsed().as_micros() as u64;
                    counts.accepted.fetch_add(1, Ordering::Relaxed);
                    counts
                        .recipients
                        .fetch_add(v["recipients"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    counts
                        .last_accept_us
                        .fetch_max(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                    counts
                        .latencies_us
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(took);
                    break;
                }
                Ok(resp)
                    if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE
                        || resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS =>
                {
                    let counter = if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                        &counts.rate_limited
                    } else {
                        &counts.busy_503
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    let _ = resp.bytes().await;
                    // Retry-After is in whole seconds; wait briefly, growing.
                    let wait = Duration::from_millis(5 * u64::from(attempt.min(20)));
                    tokio::time::sleep(wait).await;
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    if counts.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("push {i}: HTTP {status}: {}", text.trim());
                    }
                    counts.abandoned.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    if counts.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("push {i}: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// The `p` quantile of sorted microseconds, in milliseconds.
fn quantile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

struct Report<'a> {
    args: &'a Args,
    submit_secs: f64,
    deliver_secs: f64,
    stats: SimStats,
    latency: SimLatency,
    timed_out: bool,
}

fn print_report(r: &Report<'_>, counts: &Counts) {
    let accepted = counts.accepted.load(Ordering::Relaxed);
    let recipients = counts.recipients.load(Ordering::Relaxed);
    let per_sec = |k: u64, s: f64| if s > 0.0 { k as f64 / s } else { 0.0 };
    let mut lat = counts
        .latencies_us
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    lat.sort_unstable();
    println!(
        "pushes           {} by {} signed clients, to the {} friends of one of {} users (phones)",
        r.args.n, r.args.c, r.args.friends, r.args.users
    );
    println!(
        "accepted         {accepted} in {:.2} s = {:.0} pushes/s ({recipients} recipients = {:.0} recipients/s committed)",
        r.submit_secs,
        per_sec(accepted, r.submit_secs),
        per_sec(recipients, r.submit_secs)
    );
    println!(
        "push latency     push -> 202 p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        quantile_ms(&lat, 0.50),
        quantile_ms(&lat, 0.90),
        quantile_ms(&lat, 0.99),
        lat.last().map_or(0.0, |m| *m as f64 / 1000.0)
    );
    println!(
        "delivered to SDP {} unique SMS in {:.2} s = {:.0} msgs/s (first push to last arrival)",
        r.stats.unique_correlators,
        r.deliver_secs,
        per_sec(r.stats.unique_correlators, r.deliver_secs)
    );
    println!(
        "SMS latency      push -> SDP p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} SMS)",
        r.latency.p50_ms, r.latency.p90_ms, r.latency.p99_ms, r.latency.max_ms, r.latency.count
    );
    println!(
        "duplicates       {} (sendSms with a correlator seen before)",
        r.stats.duplicates
    );
    println!(
        "refused          {} with 503, {} with 429 (retried)",
        counts.busy_503.load(Ordering::Relaxed),
        counts.rate_limited.load(Ordering::Relaxed)
    );
    println!(
        "errors           {} (other statuses, network errors); {} pushes given up",
        counts.errors.load(Ordering::Relaxed),
        counts.abandoned.load(Ordering::Relaxed)
    );
    if r.timed_out {
        println!("DEADLINE         reached before every push was accepted and delivered");
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let args = Arc::new(args);
    let started = Instant::now();
    let until = started + args.deadline;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.c)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let (gateway, sim, local) = start_in_process(&args).await?;
    wait_ready(&http, &gateway, until).await?;
    let secret = Arc::new(set_up_app(&http, &gateway, args.users).await?);
    let r = http
        .post(format!("{sim}/sim/reset"))
        .send()
        .await
        .map_err(|e| format!("{sim}/sim/reset: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("{sim}/sim/reset: HTTP {}", r.status()));
    }
    println!(
        "gateway + simulator in this process, store.synchronous = {:?}, ready in {:.1} s",
        args.sync,
        started.elapsed().as_secs_f64()
    );

    let counts = Arc::new(Counts::default());
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let t0_unix_us = unix_us();
    let mut clients = Vec::with_capacity(args.c);
    for _ in 0..args.c {
        clients.push(tokio::spawn(client(
            http.clone(),
            gateway.clone(),
            secret.clone(),
            next.clone(),
            args.clone(),
            counts.clone(),
            t0,
            until,
        )));
    }
    for c in clients {
        let _ = c.await;
    }
    let submit_secs = counts.last_accept_us.load(Ordering::Relaxed) as f64 / 1e6;
    let accepted = counts.accepted.load(Ordering::Relaxed);
    let recipients = counts.recipients.load(Ordering::Relaxed);

    // Wait until every recipient of every accepted push reached the simulator.
    let (stats, late, latency) = support::wait_delivered(&http, &sim, recipients, until).await?;
    let timed_out = late || (accepted < args.n && Instant::now() >= until);
    let deliver_secs = latency.last_at_us.saturating_sub(t0_unix_us) as f64 / 1e6;
    print_report(
        &Report {
            args: &args,
            submit_secs,
            deliver_secs,
            stats,
            latency,
            timed_out,
        },
        &counts,
    );

    local.stop().await;
    let ok = !timed_out
        && accepted == args.n
        && recipients == args.n * args.friends as u64
        && stats.unique_correlators == recipients
        && stats.duplicates == 0
        && counts.errors.load(Ordering::Relaxed) == 0;
    Ok(ok)
}

fn main() -> ExitCode {
    let args = parse_args();
    let deadline = match &args {
        Ok(Some(a)) => a.deadline,
        _ => Duration::ZERO,
    };
    support::main("apps", USAGE, args, deadline, run)
}
