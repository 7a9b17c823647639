//! Mail throughput against Postfix's own load tools, with a gateway, an SDP simulator and
//! Postfix's smtp-sink (as the smarthost) started by this program on loopback:
//!
//! 1. mail → SMS: `smtp-source -s 20 -m 20000 -l 2048` into the gateway's SMTP server
//!    (store `synchronous = "full"`: every `250` is after an fsync'd group commit); reports
//!    messages/s accepted, then waits until every accepted message reached the simulator.
//! 2. SMS → mail: N mobile-originated SMS posted to the gateway's Parlay X endpoint
//!    (`notifySmsReception`, as the SDP sends them) by C concurrent HTTP clients, each
//!    `bob@example.org hello …`; reports messages/s from the first POST until smtp-sink
//!    accepted every one of them (state `sent` in the store).
//!
//! `cargo bench --bench mail -- [-m 20000] [-s 20] [-l 2048] [-n 20000] [-c 64]`
//! Needs the unpacked postfix package (`SWITCHBOARD_POSTFIX_DIR`, as scripts/test.sh sets it,
//! else `target/peers/postfix`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use switchboard::config::Config;
use switchboard::connectors::sdp::NOTIFY_PATH;
use switchboard::connectors::sdp::parlayx::{self, Version};
use switchboard::gateway::{self, Listeners};
use switchboard::sim::{SEND_SMS_PATH, SimConfig, Simulator};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The basic-auth credential the simulated SDP sends with its callbacks.
const CALLBACK_USER: &str = "sdp";
const CALLBACK_PASSWORD: &str = "bench-callback-password";

struct Args {
    messages: u64,
    sessions: u64,
    length: u64,
    mo: u64,
    clients: usize,
}

fn arg(args: &[String], flag: &str, default: u64) -> Result<u64, String> {
    match args.iter().position(|a| a == flag) {
        Some(i) => args
            .get(i + 1)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs a number")),
        None => Ok(default),
    }
}

fn postfix_dir() -> Option<PathBuf> {
    let mut c = Vec::new();
    if let Some(d) = std::env::var_os("SWITCHBOARD_POSTFIX_DIR") {
        c.push(PathBuf::from(d));
    }
    c.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/peers/postfix"));
    c.push(PathBuf::from("/"));
    c.into_iter()
        .find(|d| d.join("usr/sbin/smtp-source").is_file())
}

fn tool(dir: &Path, name: &str) -> Command {
    let mut c = Command::new(dir.join("usr/sbin").join(name));
    c.env("LD_LIBRARY_PATH", dir.join("usr/lib/postfix"));
    c
}

fn count(db: &Path, sql: &str) -> i64 {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(0)
}

async fn wait_until(deadline: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().collect();
    let args = match (|| {
        Ok::<_, String>(Args {
            messages: arg(&raw, "-m", 20_000)?,
            sessions: arg(&raw, "-s", 20)?,
            length: arg(&raw, "-l", 2048)?,
            mo: arg(&raw, "-n", 20_000)?,
            clients: arg(&raw, "-c", 64)? as usize,
        })
    })() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let Some(pf) = postfix_dir() else {
        eprintln!(
            "Postfix's smtp-source/smtp-sink not found: run scripts/test.sh or set SWITCHBOARD_POSTFIX_DIR"
        );
        return ExitCode::from(2);
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(args, pf))
}

async fn run(args: Args, pf: PathBuf) -> ExitCode {
    let dir = tempfile::tempdir().expect("tempdir");
    // smtp-sink as the smarthost, not dumping (disk writes would measure the disk).
    let sink_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut sink = tool(&pf, "smtp-sink");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if root {
        sink.args(["-u", "nobody"]);
    }
    let mut sink = sink
        .arg(format!("127.0.0.1:{sink_port}"))
        .arg("1024")
        .stdout(Stdio::null())
        .spawn()
        .expect("cannot start smtp-sink");
    let sink_addr: SocketAddr = format!("127.0.0.1:{sink_port}").parse().expect("addr");
    wait_until(Duration::from_secs(5), || {
        std::net::TcpStream::connect(sink_addr).is_ok()
    })
    .await;

    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let smtp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let sim_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let http_addr = http.local_addr().expect("addr");
    let smtp_addr = smtp.local_addr().expect("addr");
    let sim_addr = sim_listener.local_addr().expect("addr");
    // The simulated SDP authenticates its callbacks with basic auth.
    let callbacks = switchboard::connectors::sdp::callbacks::CallbackCredentials {
        basic: Some(switchboard::connectors::sdp::callbacks::BasicAuth {
            user: CALLBACK_USER.into(),
            password: CALLBACK_PASSWORD.into(),
        }),
        header: None,
    };
    let sim = Simulator::new(SimConfig {
        receipt_delay_ms: 50,
        notify_url: Some(format!("http://{http_addr}{NOTIFY_PATH}")),
        keep_messages: 100,
        callbacks: callbacks.clone(),
        ..SimConfig::default()
    });
    let stop = CancellationToken::new();
    tokio::spawn(switchboard::sim::serve_with(
        sim_listener,
        sim.clone(),
        stop.clone(),
    ));
    let mut cfg = Config::default();
    cfg.store.path = dir.path().join("switchboard.db");
    cfg.store.synchronous = "full".into();
    cfg.sdp.send_sms_url = format!("http://{sim_addr}{SEND_SMS_PATH}");
    cfg.sdp.callbacks.basic = callbacks.basic.clone();
    cfg.mail.listen = smtp_addr.to_string();
    cfg.mail.smarthost = sink_addr.to_string();
    // One sender sends everything: the abuse limits are not what is measured.
    cfg.mail.max_messages_per_sender_per_minute = 0;
    cfg.mail.max_messages_per_session = 1_000_000;
    cfg.log.level = "warn".into();
    let db = cfg.store.path.clone();
    let gw = tokio::spawn(gateway::run(
        cfg,
        Listeners {
            http,
            callbacks: None,
            admin: None,
            sim: None,
            smtp: Some(smtp),
        },
        stop.clone(),
    ));
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(args.clients)
        .build()
        .expect("client");
    wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(http_addr).is_ok()
    })
    .await;

    // 1. smtp-source → gateway → simulator.
    let source_cmd = format!(
        "smtp-source -s {} -m {} -l {} -f bench@example.com -t 8613800000000@sms.example.org -M bench.example.com {smtp_addr}",
        args.sessions, args.messages, args.length
    );
    println!("mail → SMS: {source_cmd}");
    let started = Instant::now();
    let out = {
        let mut c = tool(&pf, "smtp-source");
        c.args([
            "-s",
            &args.sessions.to_string(),
            "-m",
            &args.messages.to_string(),
            "-l",
            &args.length.to_string(),
            "-f",
            "bench@example.com",
            "-t",
            "8613800000000@sms.example.org",
            "-M",
            "bench.example.com",
            &smtp_addr.to_string(),
        ]);
        tokio::task::spawn_blocking(move || c.output())
            .await
            .expect("join")
            .expect("cannot run smtp-source")
    };
    let took = started.elapsed();
    let accepted = count(&db, "SELECT COUNT(*) FROM messages WHERE client = 'smtp'") as u64;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.trim().is_empty() {
        println!("  smtp-source said: {}", stderr.trim());
    }
    let rate_in = accepted as f64 / took.as_secs_f64();
    println!(
        "  accepted {accepted}/{} in {:.2}s: {rate_in:.0} messages/s (250 after a durable commit)",
        args.messages,
        took.as_secs_f64()
    );
    let all_out = wait_until(Duration::from_secs(120), || {
        sim.stats().received >= accepted
    })
    .await;
    let e2e = started.elapsed();
    println!(
        "  {} reached the simulator; all of them {:.2}s after the start ({:.0} messages/s end to end)",
        sim.stats().received,
        e2e.as_secs_f64(),
        accepted as f64 / e2e.as_secs_f64()
    );

    // 2. MO SMS → gateway → smtp-sink.
    println!(
        "SMS → mail: {} notifySmsReception POSTs, {} clients, into smtp-sink {sink_addr}",
        args.mo, args.clients
    );
    let url = format!("http://{http_addr}{NOTIFY_PATH}");
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (client, url, next, failed) =
            (client.clone(), url.clone(), next.clone(), failed.clone());
        let total = args.mo;
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let body = parlayx::encode_notify_sms_reception(
                    Version::V2_2,
                    &format!("mo{i}"),
                    &format!("bob@example.org hello {i}"),
                    &format!("tel:+86139{:08}", i % 100_000_000),
                    "tel:10658000",
                    None,
                );
                // A refusal (queue full: SOAP fault SVC0001) is what an SDP retries.
                loop {
                    let ok = client
                        .post(&url)
                        .basic_auth(CALLBACK_USER, Some(CALLBACK_PASSWORD))
                        .header("content-type", "text/xml; charset=utf-8")
                        .header("SOAPAction", "\"\"")
                        .body(body.clone())
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        break;
                    }
                    failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let posted = started.elapsed();
    let sql =
        "SELECT COUNT(*) FROM recipients WHERE address = 'mail:bob@example.org' AND state = 'sent'";
    let want = args.mo as i64;
    let all_mailed = wait_until(Duration::from_secs(120), || count(&db, sql) >= want).await;
    let e2e = started.elapsed();
    let mailed = count(&db, sql);
    println!(
        "  {want} MO accepted in {:.2}s ({:.0}/s); {} refusals (queue full) retried",
        posted.as_secs_f64(),
        want as f64 / posted.as_secs_f64(),
        failed.load(Ordering::Relaxed)
    );
    println!(
        "  {mailed} accepted by smtp-sink {:.2}s after the first POST: {:.0} messages/s",
        e2e.as_secs_f64(),
        mailed as f64 / e2e.as_secs_f64()
    );
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), gw).await;
    let _ = sink.kill();
    let _ = sink.wait();
    if all_out && all_mailed && accepted == args.messages {
        ExitCode::SUCCESS
    } else {
        println!("incomplete run: see the counts above");
        ExitCode::FAILURE
    }
}
