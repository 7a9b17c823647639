//! Virus scanning against a real clamd: each test writes its own signature database
//! (EICAR by MD5 in a `.hdb`, a text marker as an `.ndb` hex signature) and its own
//! clamd.conf, starts clamd on a free loopback port and stops it at the end.
//!
//! clamd missing: the test fails when `CI=true`, elsewhere it is skipped loudly.

mod common;
mod mail_peers;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use mail_peers::{SmtpSink, missing, swaks, swaks_bin};
use serde_json::{Value, json};
use switchboard::content::scan::WhenUnavailable;
use switchboard::message::Part;

/// The EICAR anti-virus test file (68 bytes, MD5 44d88612fea8a8f36de82e1278abb02f).
const EICAR: &[u8] = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
/// A text the `.ndb` signature `Test.Marker` catches.
const MARKER: &str = "SWITCHBOARD-TEST-MARKER";

fn clamd_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    let found = dirs
        .into_iter()
        .map(|d| d.join("clamd"))
        .find(|p| p.is_file());
    if found.is_none() {
        missing("clamd (apt-get install clamav-daemon clamav)");
    }
    found
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// clamd as a child process with a database written here.
struct Clamd {
    bin: PathBuf,
    child: Option<Child>,
    conf: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Clamd {
    async fn start() -> Option<Clamd> {
        let bin = clamd_bin()?;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        std::fs::write(
            db.join("test.hdb"),
            "44d88612fea8a8f36de82e1278abb02f:68:Test.EICAR\n",
        )
        .unwrap();
        std::fs::write(
            db.join("test.ndb"),
            format!("Test.Marker:0:*:{}\n", hex(MARKER.as_bytes())),
        )
        .unwrap();
        let port = free_port();
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nDatabaseDirectory {}\nTCPSocket {port}\nTCPAddr 127.0.0.1\n\
                 LocalSocket {}\nUser root\nLogFile {}\n",
                db.display(),
                dir.path().join("clamd.sock").display(),
                dir.path().join("clamd.log").display(),
            ),
        )
        .unwrap();
        let mut c = Clamd {
            bin,
            child: None,
            conf,
            port,
            _dir: dir,
        };
        c.run().await;
        Some(c)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts the process and waits until it answers PING.
    async fn run(&mut self) {
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start clamd");
        self.child = Some(child);
        let addr = self.addr();
        wait_for(Duration::from_secs(60), "clamd to answer PING", || {
            let addr = addr.clone();
            async move {
                let tcp = clamav_client::tokio::Tcp {
                    host_address: addr.as_str(),
                };
                match clamav_client::tokio::ping(tcp).await {
                    Ok(r) if r.starts_with(b"PONG") => Some(()),
                    _ => None,
                }
            }
        })
        .await;
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn part(name: &str, content_type: &str, bytes: &[u8]) -> Value {
    serde_json::to_value(Part {
        content_type: content_type.into(),
        name: Some(name.into()),
        bytes: bytes.to_vec(),
    })
    .unwrap()
}

async fn submit(h: &Harness, to: &str, parts: Vec<Value>) -> String {
    let body = json!({
        "from": "im:alice@im.example.org",
        "to": [to],
        "text": "have a look",
        "parts": parts,
        "report_url": h.hooks.report_url(),
    });
    let (status, resp) = h.submit(body).await;
    assert_eq!(status, 202, "{resp}");
    resp["id"].as_str().unwrap().to_string()
}

fn sim_got(h: &Harness, tel: &str) -> bool {
    h.sim.sim.messages().iter().any(|m| m.addresses == [tel])
}

/// Files under `dir`, recursively, with their bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p, b));
            }
        }
    }
    out
}

#[tokio::test]
async fn a_mail_with_eicar_is_refused_at_data_without_a_bounce_and_quarantined() {
    let Some(clamd) = Clamd::start().await else {
        return;
    };
    if swaks_bin().is_none() {
        return;
    }
    let Some(sink) = SmtpSink::start(&[]).await else {
        return;
    };
    let quarantine = tempfile::tempdir().unwrap();
    let q = quarantine.path().to_path_buf();
    let h = Harness::start(|cfg, _| {
        cfg.mail.listen = "127.0.0.1:0".into();
        cfg.mail.hostname = "gw.example.org".into();
        cfg.mail.smarthost = sink.addr.to_string();
        cfg.mail.default_notify = vec!["failure".into()];
        cfg.content.scan.clamd = clamd.addr();
        cfg.content.scan.quarantine_dir = q;
    })
    .await;
    let smtp = h.smtp.unwrap();

    let att = tempfile::tempdir().unwrap();
    let eicar = att.path().join("invoice.com");
    std::fs::write(&eicar, EICAR).unwrap();
    let (code, out) = swaks(
        smtp,
        &[
            "--from",
            "bob@example.com",
            "--to",
            "8613800000060@sms.example.org",
            "--header",
            "Subject: Invoice",
            "--body",
            "see attached",
            "--attach",
            eicar.to_str().unwrap(),
        ],
    )
    .await;
    // Refused at DATA, before the 250: nothing stored, so no DSN can ever go to the
    // (forgeable) sender; the reply names the signature, not where the mail is kept.
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("554 5.7.1"), "{out}");
    assert!(out.contains("Test.EICAR"), "{out}");
    let qpath = quarantine.path().to_string_lossy().into_owned();
    assert!(!out.contains(&qpath), "{out}");
    assert_eq!(h.stored_messages(), 0, "{out}");
    assert!(
        !sim_got(&h, "tel:+8613800000060"),
        "the infected mail was sent"
    );
    // The refused mail is kept in quarantine with a note.
    let kept = files(quarantine.path());
    assert!(
        kept.iter().any(|(p, b)| p.ends_with("message.eml")
            && String::from_utf8_lossy(b).contains("invoice.com")),
        "the mail not in quarantine: {:?}",
        kept.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    assert!(
        kept.iter().any(
            |(p, b)| p.ends_with("REASON") && String::from_utf8_lossy(b).contains("Test.EICAR")
        ),
        "no note with the signature in quarantine"
    );

    // The text-marker signature (`.ndb`) in an API part: refused and reported, while a
    // clean part passes (the phone gets the text).
    let id = submit(
        &h,
        "sms:+8613800000061",
        vec![part(
            "notes.txt",
            "text/plain",
            format!("x {MARKER} y").as_bytes(),
        )],
    )
    .await;
    let m = h.wait_state(&id, 0, "failed").await;
    let err = m["recipients"][0]["last_error"].as_str().unwrap();
    assert!(err.contains("virus_found: Test.Marker.UNOFFICIAL"), "{err}");
    // The error an API client reads names no path on disk.
    assert!(!err.contains(&qpath) && !err.contains('/'), "{err}");
    let report = h
        .hooks
        .wait("reports", "the failure report", |v| {
            v["message_id"] == id.as_str()
        })
        .await;
    assert!(
        report["detail"]
            .as_str()
            .is_some_and(|d| d.contains("Test.Marker")),
        "{report}"
    );
    let id = submit(
        &h,
        "sms:+8613800000062",
        vec![part("photo.png", "image/png", b"\x89PNG clean")],
    )
    .await;
    h.wait_state(&id, 0, "delivered").await;
    assert!(!sim_got(&h, "tel:+8613800000061"));
    assert!(
        h.metrics()
            .await
            .contains("switchboard_scan_total{outcome=\"infected\"}")
    );

    // The other direction: an MMS from a phone carrying EICAR, for an IM user, is scanned
    // too; it fails with the signature, is kept in quarantine and never reaches the user.
    let before = files(quarantine.path()).len();
    let (status, resp) = h
        .sim
        .mo_mms(&switchboard::sim::MmsMoRequest {
            from: "+8613800000063".into(),
            to: "10658000".into(),
            subject: None,
            text: "alice@im.example.org have a look".into(),
            parts: vec![
                Part {
                    content_type: "image/png".into(),
                    name: Some("ok.png".into()),
                    bytes: b"\x89PNG clean".to_vec(),
                },
                Part {
                    content_type: "application/octet-stream".into(),
                    name: Some("game.com".into()),
                    bytes: EICAR.to_vec(),
                },
            ],
            inline: false,
            notify_url: None,
        })
        .await;
    assert_eq!(status, 200, "{resp}");
    let err = wait_for(
        Duration::from_secs(15),
        "the MO MMS to fail the scan",
        || {
            let row = im_recipient(&h, "im:alice@im.example.org");
            async move { row.filter(|(state, _)| state == "failed").map(|(_, e)| e) }
        },
    )
    .await;
    assert!(
        err.as_deref().is_some_and(|e| e.contains("Test.EICAR")),
        "{err:?}"
    );
    assert!(
        files(quarantine.path()).len() > before,
        "nothing new in quarantine"
    );
    assert!(
        h.hooks.posted("im").is_empty(),
        "the infected MMS reached the IM webhook"
    );
    assert!(!err.unwrap_or_default().contains(&qpath));
    // No bounce was ever sent for the refused mail.
    assert!(
        sink.mails().iter().all(|m| !m.contains("X-Mail-Args: <>")),
        "a DSN was sent"
    );
    h.stop().await;
}

/// State and last error of the recipient with this address.
fn im_recipient(h: &Harness, address: &str) -> Option<(String, Option<String>)> {
    let c = rusqlite::Connection::open_with_flags(
        &h.cfg.store.path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .ok()?;
    c.query_row(
        "SELECT state, last_error FROM recipients WHERE address = ?1",
        [address],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .ok()
}

#[tokio::test]
async fn clamd_down_fail_closed_holds_and_sends_after_it_returns() {
    let Some(mut clamd) = Clamd::start().await else {
        return;
    };
    let quarantine = tempfile::tempdir().unwrap();
    let q = quarantine.path().to_path_buf();
    let addr = clamd.addr();
    let h = Harness::start(|cfg, _| {
        cfg.content.scan.clamd = addr;
        cfg.content.scan.quarantine_dir = q;
        cfg.content.scan.timeout_ms = 2000;
        // Fewer than the looks it will take: waiting for clamd spends no attempt.
        cfg.retry.max_attempts = 2;
    })
    .await;
    clamd.stop();
    let id = submit(
        &h,
        "sms:+8613800000070",
        vec![part("photo.png", "image/png", b"\x89PNG clean")],
    )
    .await;
    // Held: back in the store for a retry, with the reason, looked at again and again
    // without spending an attempt; nothing sent.
    let m = wait_for(
        Duration::from_secs(15),
        "several looks while the scanner is down",
        || async {
            let m = h.message(&id).await;
            let r = &m["recipients"][0];
            let looks = h
                .metrics()
                .await
                .lines()
                .find_map(|l| l.strip_prefix("switchboard_scan_total{outcome=\"unavailable\"} "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(0.0);
            (looks >= 3.0
                && r["state"] == "retry"
                && r["attempts"] == 0
                && r["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("scanner_unavailable")))
            .then_some(m)
        },
    )
    .await;
    assert!(!sim_got(&h, "tel:+8613800000070"), "{m}");

    clamd.run().await;
    let m = h.wait_state(&id, 0, "delivered").await;
    assert!(sim_got(&h, "tel:+8613800000070"), "{m}");
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("switchboard_scan_total{outcome=\"unavailable\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("switchboard_scan_total{outcome=\"clean\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("outcome=\"fail_open\""), "{metrics}");
    h.stop().await;
}

#[tokio::test]
async fn clamd_down_fail_open_passes_and_counts() {
    // The address of a stopped clamd: nothing listens there.
    let Some(mut clamd) = Clamd::start().await else {
        return;
    };
    clamd.stop();
    let addr = clamd.addr();
    let h = Harness::start(|cfg, _| {
        cfg.content.scan.clamd = addr;
        cfg.content.scan.on_unavailable = WhenUnavailable::FailOpen;
    })
    .await;
    let id = submit(
        &h,
        "sms:+8613800000080",
        vec![part("photo.png", "image/png", b"\x89PNG clean")],
    )
    .await;
    let m = h.wait_state(&id, 0, "delivered").await;
    assert_eq!(m["recipients"][0]["attempts"], 1, "{m}");
    let metrics = h.metrics().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("switchboard_scan_total{outcome=\"fail_open\"}"))
        .unwrap_or_else(|| panic!("no fail_open count in:\n{metrics}"));
    assert!(line.ends_with(" 1"), "{line}");
    h.stop().await;
}

#[test]
fn scan_config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.content.scan.clamd = "clamd.example.org".into();
    cfg.content.scan.timeout_ms = 0;
    cfg.content.scan.quarantine_retention_days = 0;
    let errors = cfg.validate();
    for key in [
        "content.scan.clamd:",
        "content.scan.timeout_ms:",
        "content.scan.quarantine_retention_days:",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(key)),
            "{key} {errors:?}"
        );
    }
}

/// A stand-in for clamd that answers no scan until `want` scans are open at once (or
/// `patience` has passed), so that a test can see whether scans overlap.
struct GatedClamd {
    addr: std::net::SocketAddr,
    most_at_once: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl GatedClamd {
    async fn start(want: usize, patience: Duration) -> GatedClamd {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (reached, _) = tokio::sync::watch::channel(false);
        let reached = Arc::new(reached);
        let (o, m) = (open.clone(), most.clone());
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (o, m, reached) = (o.clone(), m.clone(), reached.clone());
                tokio::spawn(async move {
                    // zINSTREAM\0, then chunks (u32 length + bytes) up to a zero length.
                    let mut cmd = [0u8; 10];
                    if s.read_exact(&mut cmd).await.is_err() {
                        return;
                    }
                    loop {
                        let mut len = [0u8; 4];
                        if s.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let n = u32::from_be_bytes(len) as usize;
                        if n == 0 {
                            break;
                        }
                        let mut chunk = vec![0u8; n];
                        if s.read_exact(&mut chunk).await.is_err() {
                            return;
                        }
                    }
                    let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    if now >= want {
                        reached.send_replace(true);
                    }
                    let mut rx = reached.subscribe();
                    let _ = tokio::time::timeout(patience, rx.wait_for(|r| *r)).await;
                    let _ = s.write_all(b"stream: OK\0").await;
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        GatedClamd {
            addr,
            most_at_once: most,
        }
    }
}

#[tokio::test]
async fn scans_of_several_messages_run_at_the_same_time() {
    // A scanner that answers only once four scans are open: with one scan at a time it
    // would wait out its patience for every message and the count would stay at one.
    let clamd = GatedClamd::start(4, Duration::from_secs(5)).await;
    let h = Harness::start(|cfg, _| {
        cfg.content.scan.clamd = clamd.addr.to_string();
        cfg.content.scan.timeout_ms = 20_000;
        cfg.content.check_concurrency = 8;
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            submit(
                &h,
                "im:bob@im.example.org",
                vec![part(&format!("p{i}.png"), "image/png", b"\x89PNG clean")],
            )
            .await,
        );
    }
    for id in &ids {
        h.wait_state(id, 0, "sent").await;
    }
    let most = clamd.most_at_once.load(std::sync::atomic::Ordering::SeqCst);
    assert!(most >= 4, "at most {most} scan(s) were open at once");
    h.stop().await;
}
