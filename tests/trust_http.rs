//! The HTTP listeners under attack: idle floods, slow heads and bodies, one address taking
//! every connection, `/metrics` from outside, plain HTTP on the TLS port, forged webhooks.
//! Every socket here is on loopback; floods are bounded in count and time.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use common::*;
use serde_json::{Value, json};
use switchboard::config::Config;
use switchboard::gateway::{self, Listeners};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

const LOCAL_1: [u8; 4] = [127, 0, 0, 1];
const LOCAL_2: [u8; 4] = [127, 0, 0, 2];
const LOCAL_3: [u8; 4] = [127, 0, 0, 3];

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::from(a)
}

/// Raises this process's soft open-files limit to the hard limit when it is below
/// `want` (a flood of 2,000 sockets needs both ends in this process).
fn raise_nofile(want: libc::rlim_t) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            eprintln!("cannot read RLIMIT_NOFILE; going on with the current limit");
            return;
        }
        if lim.rlim_cur < want {
            let old = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                eprintln!("raised the open-files limit from {old} to {}", lim.rlim_cur);
            } else {
                eprintln!("cannot raise the open-files limit above {old}");
            }
        }
        assert!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur >= want,
            "this test needs {want} open files (ulimit -n); the hard limit is {}",
            lim.rlim_max
        );
    }
}

/// A TCP connection from `local` to `to`.
async fn connect_from(local: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(ip(local), 0))?;
    tokio::time::timeout(Duration::from_secs(5), s.connect(to))
        .await
        .map_err(|_| std::io::Error::other("connect timed out"))?
}

/// One `Connection: close` request over a fresh connection from `local`; the whole answer,
/// or `None` if the connection was refused or closed without one.
async fn raw_request(
    local: [u8; 4],
    to: SocketAddr,
    head: &str,
    extra_headers: &str,
) -> Option<String> {
    let mut s = connect_from(local, to).await.ok()?;
    let req = format!("{head}\r\nHost: gw\r\nConnection: close\r\n{extra_headers}\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    (!out.is_empty()).then(|| String::from_utf8_lossy(&out).into_owned())
}

/// Waits until `s` is closed by the other side (EOF or reset); how long that took.
async fn closed_within(s: &mut TcpStream, deadline: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.checked_sub(started.elapsed())?;
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {} // a response (or a 408): keep reading until the close
        }
    }
}

/// A gateway without simulator or harness connections (so no pooled client holds a
/// connection): its HTTP address, stop token and task.
struct Bare {
    addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), gateway::RunError>>,
    _dir: tempfile::TempDir,
}

impl Bare {
    async fn start(tweak: impl FnOnce(&mut Config)) -> Bare {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        tweak(&mut cfg);
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(gateway::run(cfg, Listeners::http_only(l), stop.clone()));
        wait_for(
            Duration::from_secs(10),
            "the gateway to answer",
            || async move {
                raw_request(LOCAL_1, addr, "GET /healthz HTTP/1.1", "")
                    .await
                    .filter(|r| r.starts_with("HTTP/1.1 200"))
            },
        )
        .await;
        Bare {
            addr,
            stop,
            task,
            _dir: dir,
        }
    }

    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the gateway did not stop in time")
            .unwrap()
            .unwrap();
    }
}

/// A TCP relay on 127.0.0.1 that reaches `target` from 127.0.0.3: the SDP, at an address
/// of its own, as it would be in production.
async fn sdp_relay(target: Arc<OnceLock<SocketAddr>>, stop: CancellationToken) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut inbound, _) = tokio::select! {
                r = l.accept() => match r { Ok(c) => c, Err(_) => continue },
                _ = stop.cancelled() => return,
            };
            let Some(&to) = target.get() else { continue };
            let stop = stop.clone();
            tokio::spawn(async move {
                let Ok(mut out) = connect_from(LOCAL_3, to).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut out) => {}
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            });
        }
    });
    addr
}

/// Opens `n` idle connections from `local` to `to`, each held until the server closes it,
/// `stop` is cancelled or a minute has passed; the count of those the server closed.
/// With `cap`, each batch of 100 waits until all but `cap` of those so far are closed,
/// so that the kernel's accept queue (1,024) never overflows on a busy machine.
async fn idle_flood(
    local: [u8; 4],
    to: SocketAddr,
    n: usize,
    cap: Option<usize>,
    stop: &CancellationToken,
) -> Arc<AtomicUsize> {
    const BATCH: usize = 100;
    let closed = Arc::new(AtomicUsize::new(0));
    let mut opened = 0;
    for batch in 0..n.div_ceil(BATCH) {
        if let Some(cap) = cap {
            let closed = closed.clone();
            wait_for(
                Duration::from_secs(20),
                "the connections over the cap to be closed",
                || {
                    let n = closed.load(Ordering::Relaxed);
                    async move { (n + cap >= opened).then_some(()) }
                },
            )
            .await;
        }
        let mut conns = Vec::new();
        for _ in batch * BATCH..((batch + 1) * BATCH).min(n) {
            conns.push(connect_from(local, to));
        }
        for c in futures::future::join_all(conns).await {
            let Ok(mut s) = c else { continue };
            opened += 1;
            let (closed, stop) = (closed.clone(), stop.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 256];
                tokio::select! {
                    r = s.read(&mut buf) => {
                        if matches!(r, Ok(0) | Err(_)) {
                            closed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            });
        }
    }
    assert_eq!(
        opened, n,
        "every flood connection is accepted by the kernel"
    );
    closed
}

fn client_from(local: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip(local))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn state_of(client: &reqwest::Client, base: &str, id: &str) -> Option<String> {
    let r = client
        .get(format!("{base}/v1/messages/{id}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .ok()?;
    let v: Value = r.json().await.ok()?;
    v["recipients"][0]["state"].as_str().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_flood_from_one_address_leaves_the_api_and_the_receipts_to_the_others() {
    const FLOOD: usize = 2000;
    const PER_IP: usize = 64;
    raise_nofile(3 * FLOOD as libc::rlim_t + 1000);
    let stop = CancellationToken::new();
    let target = Arc::new(OnceLock::new());
    let relay = sdp_relay(target.clone(), stop.clone()).await;
    let h = Harness::start(|cfg, _| {
        cfg.http.max_connections_per_ip = PER_IP;
        // Long enough that the flood stays up for the whole test: the cap is what holds.
        cfg.http.header_read_timeout_ms = 60_000;
        // The SDP is told to send its receipts through the relay (from 127.0.0.3).
        cfg.http.public_url = Some(format!("http://{relay}"));
    })
    .await;
    let gw: SocketAddr = h.base.trim_start_matches("http://").parse().unwrap();
    target.set(gw).unwrap();

    let closed = idle_flood(LOCAL_1, gw, FLOOD, Some(PER_IP), &stop).await;
    // Everything over the per-address cap is closed at once (the harness's own client
    // holds one of the 64).
    wait_for(
        Duration::from_secs(20),
        "the connections over the cap to be closed",
        || {
            let n = closed.load(Ordering::Relaxed);
            async move { (n >= FLOOD - PER_IP).then_some(()) }
        },
    )
    .await;
    let held = FLOOD - closed.load(Ordering::Relaxed);
    assert!(held <= PER_IP, "{held} flood connections held open");
    // The flood does hold its address: a new client from 127.0.0.1 is turned away.
    assert!(
        raw_request(LOCAL_1, gw, "GET /healthz HTTP/1.1", "")
            .await
            .is_none(),
        "127.0.0.1 is over its cap"
    );

    // Another address is served at once, and its message is delivered by the SDP's receipt.
    let other = client_from(LOCAL_2);
    let started = Instant::now();
    let r = other
        .post(format!("{}/v1/messages", h.base))
        .bearer_auth(TOKEN)
        .json(&json!({"from": "app:shop", "to": ["sms:+8613800000101"], "text": "served"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the submit from 127.0.0.2 took {:?}",
        started.elapsed()
    );
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let base = h.base.clone();
    wait_for(
        Duration::from_secs(15),
        "the message to be delivered by its receipt",
        || {
            let (other, base, id) = (other.clone(), base.clone(), id.clone());
            async move {
                (state_of(&other, &base, &id).await.as_deref() == Some("delivered")).then_some(())
            }
        },
    )
    .await;
    // The flood was still up the whole time.
    assert!(FLOOD - closed.load(Ordering::Relaxed) >= PER_IP - 2);
    stop.cancel();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_callbacks_listener_keeps_taking_receipts_while_the_api_is_saturated() {
    const CAP: usize = 16;
    const MESSAGES: usize = 5;
    let stop = CancellationToken::new();
    let h = Harness::start(|cfg, sim| {
        cfg.http.callbacks_listen = Some("127.0.0.1:0".into());
        cfg.http.max_connections = CAP;
        cfg.http.max_connections_per_ip = CAP;
        cfg.http.header_read_timeout_ms = 60_000;
        // Receipts come once the API is already full.
        sim.receipt_delay_ms = 1500;
    })
    .await;
    assert_ne!(h.callbacks_base, h.base);
    let gw: SocketAddr = h.base.trim_start_matches("http://").parse().unwrap();
    let mut ids = Vec::new();
    for i in 0..MESSAGES {
        ids.push(
            h.submit_ok(json!({
                "from": "app:shop",
                "to": [format!("sms:+86138000002{i:02}")],
                "text": "receipt me"
            }))
            .await,
        );
    }
    // Fill the API listener's every connection from 127.0.0.2 (the harness holds one
    // from 127.0.0.1).
    let _closed = idle_flood(LOCAL_2, gw, CAP, None, &stop).await;
    // The API is full: a new connection waits in the backlog unanswered.
    let probe = tokio::time::timeout(
        Duration::from_millis(1000),
        raw_request(LOCAL_3, gw, "GET /healthz HTTP/1.1", ""),
    )
    .await;
    assert!(probe.is_err(), "the API listener is saturated: {probe:?}");
    // The receipts still arrive, on the callbacks listener.
    let db = h.cfg.store.path.clone();
    wait_for(
        Duration::from_secs(20),
        "every recipient to be delivered",
        || {
            let db = db.clone();
            async move {
                let c = rusqlite::Connection::open_with_flags(
                    &db,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )
                .ok()?;
                let n: i64 = c
                    .query_row(
                        "SELECT COUNT(*) FROM recipients WHERE state = 'delivered'",
                        [],
                        |r| r.get(0),
                    )
                    .ok()?;
                (n == MESSAGES as i64).then_some(())
            }
        },
    )
    .await;
    // The callbacks are no longer on the API listener.
    stop.cancel();
    let on_api = wait_for(Duration::from_secs(10), "the API to be free again", || {
        raw_request(
            LOCAL_3,
            gw,
            "POST /parlayx/SmsNotification HTTP/1.1",
            "Content-Length: 0\r\n",
        )
    })
    .await;
    assert!(on_api.starts_with("HTTP/1.1 404"), "{on_api}");
    for id in &ids {
        h.wait_state(id, 0, "delivered").await;
    }
    h.stop().await;
}

#[tokio::test]
async fn idle_connections_are_closed_at_the_header_read_timeout() {
    let gw = Bare::start(|cfg| cfg.http.header_read_timeout_ms = 500).await;
    // Nothing sent at all.
    let mut s = connect_from(LOCAL_1, gw.addr).await.unwrap();
    let took = closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("an idle connection is closed");
    assert!(took >= Duration::from_millis(300), "closed after {took:?}");
    // Kept alive after a response, then idle.
    let mut s = connect_from(LOCAL_1, gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.ends_with(b"ok\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("a response")
            .unwrap();
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    closed_within(&mut s, Duration::from_secs(5))
        .await
        .expect("a kept-alive connection left idle is closed");
    gw.stop().await;
}

#[tokio::test]
async fn a_slow_loris_head_is_cut_at_the_header_read_deadline() {
    let gw = Bare::start(|cfg| cfg.http.header_read_timeout_ms = 1000).await;
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(40)
    );
    let s = connect_from(LOCAL_1, gw.addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let started = Instant::now();
    let sent = Arc::new(AtomicUsize::new(0));
    let trickle = {
        let (head, sent) = (head.clone(), sent.clone());
        tokio::spawn(async move {
            for b in head.bytes() {
                if wr.write_all(&[b]).await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let mut buf = [0u8; 512];
    let end = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    trickle.abort();
    assert!(end.is_ok(), "the trickled head was not cut");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "cut only after {took:?}");
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        sent < head.len(),
        "the whole head went through ({sent} bytes)"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_trickled_body_is_cut_at_the_body_read_deadline() {
    let gw = Bare::start(|cfg| cfg.http.body_read_timeout_ms = 800).await;
    let mut s = connect_from(LOCAL_1, gw.addr).await.unwrap();
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..1000 {
            if wr.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(8), async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    trickle.abort();
    let took = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        took < Duration::from_secs(4),
        "the body was read for {took:?}"
    );
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    gw.stop().await;
}

#[tokio::test]
async fn one_address_cannot_take_more_than_its_connections() {
    const CAP: usize = 4;
    let gw = Bare::start(|cfg| {
        cfg.http.max_connections_per_ip = CAP;
        cfg.http.header_read_timeout_ms = 30_000;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(connect_from(LOCAL_1, gw.addr).await.unwrap());
    }
    // Each of those is open (not closed by the server) ...
    for s in &mut held {
        assert!(
            closed_within(s, Duration::from_millis(300)).await.is_none(),
            "a connection within the cap was closed"
        );
    }
    // ... the next one from the same address is closed at once, unanswered ...
    let mut extra = connect_from(LOCAL_1, gw.addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut got)).await;
    assert!(
        got.is_empty(),
        "answered over the cap: {:?}",
        String::from_utf8_lossy(&got)
    );
    // ... while another address is served.
    let other = raw_request(LOCAL_2, gw.addr, "GET /healthz HTTP/1.1", "").await;
    assert!(other.is_some_and(|r| r.starts_with("HTTP/1.1 200")));
    // Once they close, the address is served again.
    drop(held);
    let addr = gw.addr;
    wait_for(
        Duration::from_secs(5),
        "127.0.0.1 to be served again",
        || async move {
            raw_request(LOCAL_1, addr, "GET /healthz HTTP/1.1", "")
                .await
                .filter(|r| r.starts_with("HTTP/1.1 200"))
        },
    )
    .await;
    gw.stop().await;
}

#[tokio::test]
async fn metrics_answer_only_the_allowlist_or_the_token() {
    const METRICS_TOKEN: &str = "metrics-token-0123456789";
    let gw = Bare::start(|cfg| {
        cfg.http.metrics_allow = vec!["127.0.0.1/32".into()];
        cfg.http.metrics_token = Some(METRICS_TOKEN.into());
    })
    .await;
    let get = |from, auth: String| async move {
        raw_request(from, gw.addr, "GET /metrics HTTP/1.1", &auth)
            .await
            .unwrap_or_default()
    };
    let outside = get(LOCAL_2, String::new()).await;
    assert!(outside.starts_with("HTTP/1.1 403"), "{outside}");
    assert!(!outside.contains("switchboard_"), "{outside}");
    let wrong = get(
        LOCAL_2,
        "Authorization: Bearer not-the-token-at-all\r\n".into(),
    )
    .await;
    assert!(wrong.starts_with("HTTP/1.1 403"), "{wrong}");
    let token = get(
        LOCAL_2,
        format!("Authorization: Bearer {METRICS_TOKEN}\r\n"),
    )
    .await;
    assert!(token.starts_with("HTTP/1.1 200"), "{token}");
    let inside = get(LOCAL_1, String::new()).await;
    assert!(inside.starts_with("HTTP/1.1 200"), "{inside}");
    assert!(
        inside.contains("switchboard_http_refused_total"),
        "{inside}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn https_is_served_with_the_configured_certificate_and_plain_http_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("http.crt"), dir.path().join("http.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let mut cfg = test_config(dir.path());
    cfg.http.tls_cert = Some(cert_path);
    cfg.http.tls_key = Some(key_path);
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    assert!(
        cfg.public_url("127.0.0.1:8443".parse().unwrap())
            .starts_with("https://")
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(gateway::run(cfg, Listeners::http_only(l), stop.clone()));

    let tls = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/healthz", addr.port());
    let body = wait_for(Duration::from_secs(10), "the HTTPS listener", || {
        let (tls, url) = (tls.clone(), url.clone());
        async move {
            let r = tls.get(&url).send().await.ok()?;
            r.status().is_success().then_some(())?;
            r.text().await.ok()
        }
    })
    .await;
    assert_eq!(body, "ok\n");
    let r = tls
        .post(format!("https://localhost:{}/v1/messages", addr.port()))
        .bearer_auth(TOKEN)
        .json(&json!({"from": "app:shop", "to": ["sms:+8613800000301"], "text": "over TLS"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://{addr}/healthz"))
        .send()
        .await;
    assert!(
        plain.as_ref().map_or(true, |r| !r.status().is_success()),
        "plain HTTP was answered: {plain:?}"
    );
    // A client that does not trust the certificate is refused too.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", addr)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert!(untrusting.get(&url).send().await.is_err());
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

/// What a webhook receiver got: path, signature header, raw body.
type Received = Arc<Mutex<Vec<(String, Option<String>, Vec<u8>)>>>;

async fn signed_receiver() -> (SocketAddr, Received) {
    let got: Received = Arc::default();
    async fn record(
        axum::extract::State((got, path)): axum::extract::State<(Received, &'static str)>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> &'static str {
        let sig = headers
            .get(switchboard::connectors::webhook::SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        got.lock().unwrap().push((path.into(), sig, body.to_vec()));
        "ok"
    }
    let app = axum::Router::new()
        .route(
            "/im",
            axum::routing::post(record).with_state((got.clone(), "im")),
        )
        .route(
            "/reports",
            axum::routing::post(record).with_state((got.clone(), "reports")),
        );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (addr, got)
}

#[tokio::test]
async fn webhooks_are_signed_and_a_changed_body_fails_verification() {
    const IM_SECRET: &str = "im-webhook-secret-0123456789";
    const REPORTS_SECRET: &str = "reports-secret-0123456789";
    let (rx, got) = signed_receiver().await;
    let h = Harness::start(|cfg, _| {
        cfg.im.url = format!("http://{rx}/im");
        cfg.im.secret = IM_SECRET.into();
        cfg.reports.secret = REPORTS_SECRET.into();
    })
    .await;
    h.submit_ok(json!({"from": "app:shop", "to": ["im:bob@im.example.org"], "text": "signed"}))
        .await;
    h.submit_ok(json!({
        "from": "app:shop",
        "to": ["sms:+8613800000401"],
        "text": "report me",
        "report_url": format!("http://{rx}/reports"),
    }))
    .await;
    let find = |path: &'static str| {
        let got = got.clone();
        async move {
            wait_for(Duration::from_secs(15), path, || {
                let found = got
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(p, _, _)| p == path)
                    .cloned();
                async move { found }
            })
            .await
        }
    };
    let now = chrono::Utc::now().timestamp();
    for (path, secret, other) in [
        ("im", IM_SECRET, REPORTS_SECRET),
        ("reports", REPORTS_SECRET, IM_SECRET),
    ] {
        let (_, sig, body) = find(path).await;
        let sig = sig.unwrap_or_else(|| panic!("the {path} POST is not signed"));
        use switchboard::connectors::webhook::verify_signature;
        assert!(
            verify_signature(secret.as_bytes(), &sig, &body, now, 300),
            "{path}: {sig}"
        );
        let mut changed = body.clone();
        let at = changed.len() / 2;
        changed[at] ^= 0x01;
        assert!(!verify_signature(
            secret.as_bytes(),
            &sig,
            &changed,
            now,
            300
        ));
        assert!(!verify_signature(other.as_bytes(), &sig, &body, now, 300));
        assert!(!verify_signature(
            secret.as_bytes(),
            &sig,
            &body,
            now + 3600,
            300
        ));
    }
    h.stop().await;
}
