//! Load harness: submits N messages over `POST /v1/messages` with C concurrent keep-alive
//! clients and measures what is accepted (202) and what reaches the SDP simulator.
//!
//! By default it starts a gateway (store in a temporary folder, `synchronous = "full"`) and
//! an SDP simulator in this process on port 0; with `--gateway URL --sim URL --token T` it
//! drives running ones instead. Every message text is a simulator latency probe
//! (`probe:<submit time µs>;…`, see `switchboard::sim::PROBE_PREFIX`), so the submit → SDP
//! latency is measured by the simulator against the harness's submit time.
//!
//! `cargo bench --bench load -- -n 50000 -c 64`

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::{InProcess, unix_us, wait_ready};
use switchboard::config::ClientConfig;
use switchboard::sim::{PROBE_PREFIX, SimLatency, SimStats};

mod support;

const USAGE: &str = "\
Load harness: submits messages to a gateway and measures what reaches the SDP simulator.

usage: cargo bench --bench load -- [options]

  -n N              messages to submit (default 50000), one sms: recipient each
  -c C              concurrent HTTP clients (default 64)
  --deadline SECS   stop and report after this long, exiting non-zero (default 120)
  --sync MODE       store.synchronous of the in-process gateway: full or normal
                    (default full)
  --gateway URL     drive a running gateway (e.g. http://127.0.0.1:8080) instead of
                    starting one in this process; needs --sim and --token
  --sim URL         the simulator the gateway sends to (e.g. http://127.0.0.1:9090);
                    its counters are reset (POST /sim/reset) before the run
  --token T         the API bearer token (its client must be allowed to send as
                    im:bench@im.example.org)
  -h, --help        this text

Unknown arguments (such as the --bench that cargo adds) are ignored.
Exit status: 0 when every message was accepted and reached the simulator once,
1 otherwise (deadline, errors, lost or duplicated messages), 2 for bad arguments.
";

const FROM: &str = "im:bench@im.example.org";
const IN_PROCESS_TOKEN: &str = "load-harness-token";

struct Args {
    n: u64,
    c: usize,
    deadline: Duration,
    sync: String,
    gateway: Option<String>,
    sim: Option<String>,
    token: Option<String>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut a = Args {
        n: 50_000,
        c: 64,
        deadline: Duration::from_secs(120),
        sync: "full".into(),
        gateway: None,
        sim: None,
        token: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "-n" => a.n = value("-n")?.parse().map_err(|e| format!("-n: {e}"))?,
            "-c" => a.c = value("-c")?.parse().map_err(|e| format!("-c: {e}"))?,
            "--deadline" => {
                let s: u64 = value("--deadline")?
                    .parse()
                    .map_err(|e| format!("--deadline: {e}"))?;
                a.deadline = Duration::from_secs(s);
            }
            "--sync" => a.sync = value("--sync")?,
            "--gateway" => a.gateway = Some(value("--gateway")?.trim_end_matches('/').into()),
            "--sim" => a.sim = Some(value("--sim")?.trim_end_matches('/').into()),
            "--token" => a.token = Some(value("--token")?),
            _ => {}
        }
    }
    if a.n == 0 || a.c == 0 {
        return Err("-n and -c must be at least 1".into());
    }
    if !matches!(a.sync.as_str(), "full" | "normal") {
        return Err("--sync: full or normal".into());
    }
    if a.gateway.is_some() != a.sim.is_some() || (a.gateway.is_some() && a.token.is_none()) {
        return Err("--gateway, --sim and --token go together".into());
    }
    Ok(Some(a))
}

/// What the clients counted.
#[derive(Default)]
struct Counts {
    accepted: AtomicU64,
    busy_503: AtomicU64,
    errors: AtomicU64,
    /// Messages given up on (refused for good or too many attempts).
    abandoned: AtomicU64,
    /// Microseconds since the start of the run at which the last 202 arrived.
    last_accept_us: AtomicU64,
}

async fn start_in_process(sync: &str) -> Result<(String, String, InProcess), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let mut cfg = support::config(&dir, sync);
    cfg.http.clients = vec![ClientConfig {
        name: "load".into(),
        token: IN_PROCESS_TOKEN.into(),
        senders: vec!["im:*".into()],
        submit_rate: 0,
        ..ClientConfig::default()
    }];
    support::start(cfg, dir).await
}

/// One client: takes message numbers until all are taken and submits each until it is
/// accepted (a 503 means "later": wait briefly and try again).
#[allow(clippy::too_many_arguments)]
async fn client(
    http: reqwest::Client,
    url: String,
    token: String,
    next: Arc<AtomicU64>,
    n: u64,
    counts: Arc<Counts>,
    t0: Instant,
    until: Instant,
) {
    const MAX_ATTEMPTS: u32 = 200;
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n || Instant::now() >= until {
            return;
        }
        // The submit time goes into the text once: a retried message keeps its first
        // submit time, so the latency includes the time spent being refused.
        let body = serde_json::json!({
            "from": FROM,
            "to": [format!("sms:+8613{:09}", i)],
            "text": format!("{PROBE_PREFIX}{};load test message {i}", unix_us()),
        })
        .to_string();
        let mut attempt = 0;
        loop {
            attempt += 1;
            if attempt > MAX_ATTEMPTS || Instant::now() >= until {
                counts.abandoned.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let r = http
                .post(&url)
                .bearer_auth(&token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await;
            match r {
                Ok(resp) if resp.status() == reqwest::StatusCode::ACCEPTED => {
                    // Read the body so the connection goes back to the pool.
                    let _ = resp.bytes().await;
                    counts.accepted.fetch_add(1, Ordering::Relaxed);
                    counts
                        .last_accept_us
                        .fetch_max(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
                    break;
                }
                Ok(resp) if resp.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => {
                    counts.busy_503.fetch_add(1, Ordering::Relaxed);
                    let asked = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map_or(Duration::from_millis(100), Duration::from_secs);
                    let _ = resp.bytes().await;
                    // Retry-After is in whole seconds; a load generator that waited that
                    // long would measure its own idleness. Wait briefly, growing.
                    let wait = asked.min(Duration::from_millis(5 * u64::from(attempt.min(20))));
                    tokio::time::sleep(wait).await;
                }
                Ok(resp) => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    if counts.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("submit {i}: HTTP {status}: {}", text.trim());
                    }
                    counts.abandoned.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    if counts.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("submit {i}: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

/// A `_sum`/`_count` pair of a Prometheus histogram, as a mean.
fn histogram_mean(metrics: &str, name: &str) -> Option<(f64, f64)> {
    let find = |suffix: &str| -> Option<f64> {
        let key = format!("{name}_{suffix}");
        metrics.lines().find_map(|l| {
            let rest = l.strip_prefix(&key)?;
            let rest = rest.strip_prefix(' ').or_else(|| {
                // A labelled series: `name_sum{…} value`.
                rest.strip_prefix('{')
                    .and_then(|r| r.split_once("} ").map(|(_, v)| v))
            })?;
            rest.trim().parse().ok()
        })
    };
    let (sum, count) = (find("sum")?, find("count")?);
    (count > 0.0).then(|| (sum / count, count))
}

struct Report {
    n: u64,
    c: usize,
    submit_secs: f64,
    deliver_secs: f64,
    stats: SimStats,
    latency: SimLatency,
    batch: Option<(f64, f64)>,
    commit: Option<(f64, f64)>,
    timed_out: bool,
}

fn print_report(r: &Report, counts: &Counts) {
    let accepted = counts.accepted.load(Ordering::Relaxed);
    let per_sec = |k: u64, s: f64| if s > 0.0 { k as f64 / s } else { 0.0 };
    println!("messages         {} submitted by {} clients", r.n, r.c);
    println!(
        "accepted         {accepted} in {:.2} s = {:.0} msgs/s",
        r.submit_secs,
        per_sec(accepted, r.submit_secs)
    );
    println!(
        "delivered to SDP {} unique in {:.2} s = {:.0} msgs/s (first submit to last arrival)",
        r.stats.unique_correlators,
        r.deliver_secs,
        per_sec(r.stats.unique_correlators, r.deliver_secs)
    );
    println!(
        "latency          submit -> SDP p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} probes)",
        r.latency.p50_ms, r.latency.p90_ms, r.latency.p99_ms, r.latency.max_ms, r.latency.count
    );
    println!(
        "duplicates       {} (sendSms with a correlator seen before)",
        r.stats.duplicates
    );
    println!(
        "refused (503)    {} (retried)",
        counts.busy_503.load(Ordering::Relaxed)
    );
    println!(
        "errors           {} (other statuses, network errors); {} messages given up",
        counts.errors.load(Ordering::Relaxed),
        counts.abandoned.load(Ordering::Relaxed)
    );
    println!(
        "receipts         {} sent to the gateway, {} failed",
        r.stats.receipts_sent, r.stats.receipts_failed
    );
    if let Some((mean, commits)) = r.batch {
        let took = r.commit.map_or(String::new(), |(d, _)| {
            format!(", {:.2} ms each", d * 1000.0)
        });
        println!("store commits    {commits:.0}, {mean:.1} writes per commit on average{took}");
    }
    if r.timed_out {
        println!("DEADLINE         reached before every message was accepted and delivered");
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let started = Instant::now();
    let until = started + args.deadline;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.c)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let (gateway, sim, token, local) = match (&args.gateway, &args.sim, &args.token) {
        (Some(g), Some(s), Some(t)) => (g.clone(), s.clone(), t.clone(), None),
        _ => {
            let (g, s, l) = start_in_process(&args.sync).await?;
            (g, s, IN_PROCESS_TOKEN.to_string(), Some(l))
        }
    };
    wait_ready(&http, &gateway, until).await?;
    let r = http
        .post(format!("{sim}/sim/reset"))
        .send()
        .await
        .map_err(|e| format!("{sim}/sim/reset: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("{sim}/sim/reset: HTTP {}", r.status()));
    }
    match &local {
        Some(_) => println!(
            "gateway + simulator in this process, store.synchronous = {:?}",
            args.sync
        ),
        None => println!("gateway {gateway}, simulator {sim}"),
    }

    let counts = Arc::new(Counts::default());
    let next = Arc::new(AtomicU64::new(0));
    let url = format!("{gateway}/v1/messages");
    let t0 = Instant::now();
    let t0_unix_us = unix_us();
    let mut clients = Vec::with_capacity(args.c);
    for _ in 0..args.c {
        clients.push(tokio::spawn(client(
            http.clone(),
            url.clone(),
            token.clone(),
            next.clone(),
            args.n,
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

    // Wait until everything accepted reached the simulator (or the deadline).
    let (stats, late, latency) = support::wait_delivered(&http, &sim, accepted, until).await?;
    let timed_out = late || (accepted < args.n && Instant::now() >= until);
    let deliver_secs = latency.last_at_us.saturating_sub(t0_unix_us) as f64 / 1e6;
    let metrics = match http.get(format!("{gateway}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let report = Report {
        n: args.n,
        c: args.c,
        submit_secs,
        deliver_secs,
        stats,
        latency,
        batch: histogram_mean(&metrics, "switchboard_store_commit_batch_size"),
        commit: histogram_mean(&metrics, "switchboard_store_commit_duration_seconds"),
        timed_out,
    };
    print_report(&report, &counts);

    if let Some(l) = local {
        l.stop().await;
    }
    let ok = !timed_out
        && accepted == args.n
        && stats.unique_correlators == accepted
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
    support::main("load", USAGE, args, deadline, run)
}
