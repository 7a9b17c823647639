//! Spam checks through the whole flow: the built-in rules (blocked words, blocked URL
//! hosts, a per-sender flood of identical texts) and rspamd from Debian, started by the test
//! with its stock rules, DNS pointed at 127.0.0.1 and the network modules switched off.
//!
//! rspamd missing: the test fails when `CI=true`, elsewhere it is skipped loudly.

mod common;
mod mail_peers;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use mail_peers::{SmtpSink, missing, swaks, swaks_bin};
use serde_json::json;

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

async fn submit(h: &Harness, from: &str, to: &str, text: &str) -> String {
    let (status, resp) = h
        .submit(json!({
            "from": from,
            "to": [to],
            "text": text,
            "report_url": h.hooks.report_url(),
        }))
        .await;
    assert_eq!(status, 202, "{resp}");
    resp["id"].as_str().unwrap().to_string()
}

async fn failed_with(h: &Harness, id: &str, prefix: &str) {
    let m = h.wait_state(id, 0, "failed").await;
    let err = m["recipients"][0]["last_error"].as_str().unwrap_or("");
    assert!(err.starts_with(prefix), "{prefix}: {m}");
    let report = h
        .hooks
        .wait("reports", "the failure report", |v| v["message_id"] == id)
        .await;
    assert_eq!(report["state"], "failed", "{report}");
}

fn metric(metrics: &str, rule: &str, action: &str) -> u64 {
    let key = format!("switchboard_spam_total{{rule=\"{rule}\",action=\"{action}\"}}");
    metrics
        .lines()
        .find(|l| l.starts_with(&key))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn built_in_rules_refuse_with_a_report_and_count_per_rule() {
    let h = Harness::start(|cfg, _| {
        cfg.content.spam.blocked_words = vec!["casino".into()];
        cfg.content.spam.blocked_url_hosts = vec!["evil.example".into()];
        cfg.content.spam.flood_max_identical = 2;
        cfg.content.spam.flood_window_secs = 600;
    })
    .await;
    let alice = "im:alice@im.example.org";
    let id = submit(&h, alice, "sms:+8613800000100", "Win at the CASINO tonight").await;
    failed_with(&h, &id, "spam_blocked_word").await;
    let id = submit(
        &h,
        alice,
        "sms:+8613800000101",
        "see https://www.evil.example/x",
    )
    .await;
    failed_with(&h, &id, "spam_blocked_url").await;

    // Two identical texts pass, the third is a flood; another sender is not affected.
    for n in 0..2 {
        let id = submit(&h, alice, "sms:+8613800000102", "Same offer").await;
        h.wait_state(&id, 0, "delivered").await;
        assert!(n < 2);
    }
    let id = submit(
        &h,
        "im:bob@im.example.org",
        "sms:+8613800000102",
        "Same offer",
    )
    .await;
    h.wait_state(&id, 0, "delivered").await;
    let id = submit(&h, alice, "sms:+8613800000102", "Same offer").await;
    failed_with(&h, &id, "spam_flood").await;
    let id = submit(&h, alice, "sms:+8613800000102", "Another text").await;
    h.wait_state(&id, 0, "delivered").await;

    let metrics = h.metrics().await;
    assert_eq!(metric(&metrics, "blocked_word", "reject"), 1, "{metrics}");
    assert_eq!(metric(&metrics, "blocked_url", "reject"), 1, "{metrics}");
    assert_eq!(metric(&metrics, "flood", "reject"), 1, "{metrics}");
    h.stop().await;
}

/// rspamd as a child process with its own run, database and log folders.
struct Rspamd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Rspamd {
    async fn start() -> Option<Rspamd> {
        let bin = ["/usr/bin/rspamd", "/usr/sbin/rspamd"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_file());
        let Some(bin) = bin else {
            missing("rspamd (apt-get install rspamd)");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let local = root.join("local");
        let over = local.join("override.d");
        let locald = local.join("local.d");
        for d in [&over, &locald] {
            std::fs::create_dir_all(d).unwrap();
        }
        for d in ["run", "db", "log"] {
            let p = root.join(d);
            std::fs::create_dir(&p).unwrap();
            // rspamd drops to _rspamd, who must own its folders.
            let ok = Command::new("chown")
                .arg("_rspamd:_rspamd")
                .arg(&p)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
            }
        }
        let port = free_port();
        let write = |p: PathBuf, s: &str| std::fs::write(p, s).unwrap();
        write(
            over.join("worker-normal.inc"),
            &format!("bind_socket = \"127.0.0.1:{port}\";\ncount = 1;\n"),
        );
        for w in [
            "worker-controller.inc",
            "worker-proxy.inc",
            "worker-fuzzy.inc",
        ] {
            write(over.join(w), "enabled = false;\n");
        }
        // Never reach outside: DNS to loopback, modules that need the network off.
        write(
            over.join("options.inc"),
            "dns {\n  nameserver = [\"127.0.0.1:53\"];\n  timeout = 0.2s;\n  retransmits = 1;\n}\n",
        );
        for m in [
            "rbl",
            "fuzzy_check",
            "spf",
            "dkim",
            "dmarc",
            "arc",
            "asn",
            "mx_check",
            "dcc",
            "emails",
            "url_redirector",
            "external_services",
            "phishing",
            "neural",
            "reputation",
            "ratelimit",
            "greylist",
            "replies",
            "multimap",
        ] {
            write(locald.join(format!("{m}.conf")), "enabled = false;\n");
        }
        let var = |k: &str, v: &std::path::Path| format!("{k}={}", v.display());
        let child = Command::new(bin)
            .args([
                "-f",
                "-c",
                "/etc/rspamd/rspamd.conf",
                "-u",
                "_rspamd",
                "-g",
                "_rspamd",
            ])
            .args(["--var", &var("LOCAL_CONFDIR", &local)])
            .args(["--var", &var("RUNDIR", &root.join("run"))])
            .args(["--var", &var("DBDIR", &root.join("db"))])
            .args(["--var", &var("LOGDIR", &root.join("log"))])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start rspamd");
        let r = Rspamd {
            child,
            port,
            _dir: dir,
        };
        let url = format!("{}/ping", r.url());
        // The first start compiles its regular expressions (~9 s here).
        wait_for(Duration::from_secs(90), "rspamd to answer /ping", || {
            let url = url.clone();
            async move {
                let r = reqwest::Client::new()
                    .get(&url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .ok()?;
                r.status().is_success().then_some(())
            }
        })
        .await;
        Some(r)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Rspamd {
    fn drop(&mut self) {
        // TERM lets the main process stop its workers; KILL if it does not.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn rspamd_rejects_a_gtube_mail_at_data_without_a_bounce_and_passes_ham() {
    let Some(rspamd) = Rspamd::start().await else {
        return;
    };
    if swaks_bin().is_none() {
        return;
    }
    let Some(sink) = SmtpSink::start(&[]).await else {
        return;
    };
    let url = rspamd.url();
    let h = Harness::start(|cfg, _| {
        cfg.mail.listen = "127.0.0.1:0".into();
        cfg.mail.hostname = "gw.example.org".into();
        cfg.mail.smarthost = sink.addr.to_string();
        cfg.mail.default_notify = vec!["failure".into()];
        cfg.content.spam.rspamd_url = url;
        cfg.content.spam.on_unavailable = switchboard::content::scan::WhenUnavailable::FailClosed;
    })
    .await;

    // A GTUBE mail to a phone: refused at DATA, before the 250, so nothing is stored and no
    // DSN can go to the (forgeable) sender; nothing is sent.
    let (code, out) = swaks(
        h.smtp.unwrap(),
        &[
            "--from",
            "bob@example.com",
            "--to",
            "8613800000110@sms.example.org",
            "--header",
            "Subject: Offer",
            "--body",
            &format!("Cheap!\n{GTUBE}\n"),
        ],
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("550 5.7.1"), "{out}");
    assert!(out.contains("spam_rejected"), "{out}");
    assert_eq!(h.stored_messages(), 0, "{out}");
    assert!(
        !h.sim
            .sim
            .messages()
            .iter()
            .any(|m| m.addresses == ["tel:+8613800000110"]),
        "the GTUBE mail was sent"
    );
    // Ham by mail passes, checked once (before its 250).
    let (code, out) = swaks(
        h.smtp.unwrap(),
        &[
            "--from",
            "bob@example.com",
            "--to",
            "8613800000113@sms.example.org",
            "--header",
            "Subject: Dinner",
            "--body",
            "See you at 8, bring the wine.\n",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    wait_for(Duration::from_secs(15), "the ham mail as SMS", || async {
        h.sim
            .sim
            .messages()
            .iter()
            .any(|m| m.addresses == ["tel:+8613800000113"])
            .then_some(())
    })
    .await;

    // The same over the API, and a normal text passes.
    let id = submit(
        &h,
        "im:alice@im.example.org",
        "sms:+8613800000111",
        &format!("x {GTUBE} y"),
    )
    .await;
    failed_with(&h, &id, "spam_rejected").await;
    let id = submit(
        &h,
        "im:alice@im.example.org",
        "sms:+8613800000112",
        "Dinner at 8? Bring the wine.",
    )
    .await;
    let m = h.wait_state(&id, 0, "delivered").await;
    let sent = h
        .sim
        .sim
        .messages()
        .into_iter()
        .find(|s| s.addresses == ["tel:+8613800000112"])
        .expect("the ham SMS");
    assert_eq!(sent.message, "Dinner at 8? Bring the wine.", "{m}");
    let metrics = h.metrics().await;
    assert_eq!(metric(&metrics, "rspamd", "reject"), 2, "{metrics}");
    // Each ham checked once: the mail before its 250, not again at the process stage.
    assert_eq!(
        metric(&metrics, "rspamd", "pass") + metric(&metrics, "rspamd", "tag"),
        2,
        "{metrics}"
    );
    assert!(
        sink.mails().iter().all(|m| !m.contains("X-Mail-Args: <>")),
        "a DSN was sent"
    );
    h.stop().await;
}

#[test]
fn spam_config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.content.spam.rspamd_url = "127.0.0.1:11333".into();
    cfg.content.spam.blocked_url_hosts = vec!["http://x/".into()];
    cfg.content.spam.blocked_words = vec![" ".into()];
    cfg.content.spam.timeout_ms = 0;
    let errors = cfg.validate();
    for key in [
        "content.spam.rspamd_url:",
        "content.spam.blocked_url_hosts[0]:",
        "content.spam.blocked_words[0]:",
        "content.spam.timeout_ms:",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(key)),
            "{key} {errors:?}"
        );
    }
}
