//! The mail bridge against real mail software: swaks and raw SMTP into the gateway's SMTP
//! server, Postfix's smtp-sink as the smarthost, the SDP simulator behind it.

mod common;
mod mail_peers;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use mail_parser::{MessageParser, MimeHeaders};
use mail_peers::*;
use serde_json::json;
use switchboard::config::{Config, GroupConfig};
use switchboard::connectors::sdp::parlayx::{self, DeliveryStatus, Version};
use switchboard::sim::SimConfig;

/// A gateway with its SMTP server on port 0.
async fn mail_gateway(tweak: impl FnOnce(&mut Config, &mut SimConfig)) -> (Harness, SocketAddr) {
    let h = Harness::start(|cfg, sim| {
        cfg.mail.listen = "127.0.0.1:0".into();
        cfg.mail.hostname = "gw.example.org".into();
        tweak(cfg, sim);
    })
    .await;
    let smtp = h.smtp.expect("the SMTP server's address");
    (h, smtp)
}

/// A recipient row read from the store: (state, attempts, last_error).
fn recipient_row(h: &Harness, address: &str) -> Option<(String, i64, Option<String>)> {
    let c = rusqlite::Connection::open_with_flags(
        &h.cfg.store.path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .ok()?;
    c.query_row(
        "SELECT state, attempts, last_error FROM recipients WHERE address = ?1 ORDER BY msg_id DESC LIMIT 1",
        [address],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .ok()
}

async fn wait_row(
    h: &Harness,
    address: &str,
    what: &str,
    pred: impl Fn(&(String, i64, Option<String>)) -> bool,
) -> (String, i64, Option<String>) {
    wait_for(Duration::from_secs(20), what, || {
        let row = recipient_row(h, address).filter(|r| pred(r));
        async move { row }
    })
    .await
}

fn count_where(h: &Harness, sql: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(
        &h.cfg.store.path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    (cert, key)
}

#[tokio::test]
async fn swaks_plain_utf8_pipelined_and_starttls_mail_reaches_the_simulator_as_sms() {
    if swaks_bin().is_none() {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.mail.tls_cert = Some(cert.clone());
        cfg.mail.tls_key = Some(key.clone());
    })
    .await;

    let (code, out) = swaks(
        smtp,
        &[
            "--from",
            "alice@example.com",
            "--to",
            "8613800000001@sms.example.org",
            "--header",
            "Subject: Plain",
            "--body",
            "hello from mail",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("250-PIPELINING") && out.contains("250-DSN"),
        "{out}"
    );
    assert!(
        out.contains("250-ENHANCEDSTATUSCODES") && out.contains("250-8BITMIME"),
        "{out}"
    );
    assert!(
        out.contains("250-SIZE") && out.contains("STARTTLS"),
        "{out}"
    );
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let m = sms_to(&h, "+8613800000001", |_| true).await;
    assert_eq!(m.message, "Plain: hello from mail");

    // RFC 2047 subject, 8-bit UTF-8 body.
    let (code, out) = swaks(
        smtp,
        &[
            "--from",
            "alice@example.com",
            "--to",
            "8613800000002@sms.example.org",
            "--header",
            "Subject: =?UTF-8?B?5L2g5aW9IEdyw7zDn2U=?=",
            "--add-header",
            "MIME-Version: 1.0",
            "--add-header",
            "Content-Type: text/plain; charset=utf-8",
            "--add-header",
            "Content-Transfer-Encoding: 8bit",
            "--body",
            "Grüße — 晚上八点见",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let m = sms_to(&h, "+8613800000002", |_| true).await;
    assert_eq!(m.message, "你好 Grüße: Grüße — 晚上八点见");

    // PIPELINING: MAIL, RCPT and DATA in one write.
    let (code, out) = swaks(
        smtp,
        &[
            "--pipeline",
            "--from",
            "alice@example.com",
            "--to",
            "8613800000003@sms.example.org",
            "--header",
            "Subject: Piped",
            "--body",
            "three commands at once",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let m = sms_to(&h, "+8613800000003", |_| true).await;
    assert_eq!(m.message, "Piped: three commands at once");

    // STARTTLS.
    let (code, out) = swaks(
        smtp,
        &[
            "--tls",
            "--from",
            "alice@example.com",
            "--to",
            "8613800000004@sms.example.org",
            "--header",
            "Subject: Secret",
            "--body",
            "over TLS",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("220 2.0.0 Ready to start TLS"), "{out}");
    assert!(out.contains("TLS started"), "{out}");
    let m = sms_to(&h, "+8613800000004", |_| true).await;
    assert_eq!(m.message, "Secret: over TLS");
    h.stop().await;
}

#[tokio::test]
async fn relaying_oversize_and_too_many_recipients_are_refused_with_the_right_codes() {
    if swaks_bin().is_none() {
        return;
    }
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.mail.max_message_bytes = 4096;
        cfg.mail.max_recipients = 2;
    })
    .await;

    let (code, out) = swaks(
        smtp,
        &[
            "--from",
            "spammer@example.com",
            "--to",
            "x@gmail.com",
            "--quit-after",
            "RCPT",
        ],
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("550 5.7.1"), "{out}");

    let big = "x".repeat(70).repeat(100);
    let (code, out) = swaks(
        smtp,
        &[
            "--from",
            "a@example.com",
            "--to",
            "8613800000010@sms.example.org",
            "--body",
            &big,
        ],
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("552 5.3.4"), "{out}");

    let (code, out) = swaks(
        smtp,
        &[
            "--from", "a@example.com",
            "--to",
            "8613800000011@sms.example.org,8613800000012@sms.example.org,8613800000013@sms.example.org",
            "--body", "three",
        ],
    )
    .await;
    assert!(out.contains("452 4.5.3"), "{out}");
    // The first two were accepted and the message went to them.
    assert_eq!(code, 0, "{out}");
    sms_to(&h, "+8613800000012", |_| true).await;

    // Declared SIZE over the limit, a non-number, a bad command, a nested MAIL.
    let (mut c, greeting) = Smtp::connect(smtp).await;
    assert!(greeting.starts_with("220 gw.example.org"), "{greeting}");
    assert!(
        c.cmd("MAIL FROM:<a@example.com>")
            .await
            .starts_with("503 5.5.1")
    );
    assert!(
        c.cmd("EHLO client.example.com")
            .await
            .starts_with("250-gw.example.org")
    );
    assert!(
        c.cmd("MAIL FROM:<a@example.com> SIZE=999999")
            .await
            .starts_with("552 5.3.4")
    );
    assert!(
        c.cmd("RCPT TO:<8613800000010@sms.example.org>")
            .await
            .starts_with("503 5.5.1")
    );
    assert!(
        c.cmd("MAIL FROM:<a@example.com>")
            .await
            .starts_with("250 2.1.0")
    );
    assert!(
        c.cmd("MAIL FROM:<a@example.com>")
            .await
            .starts_with("503 5.5.1")
    );
    assert!(
        c.cmd("RCPT TO:<hello@sms.example.org>")
            .await
            .starts_with("550 5.1.1")
    );
    assert!(
        c.cmd("RCPT TO:<nogroup@groups.example.org>")
            .await
            .starts_with("550 5.1.1")
    );
    assert!(c.cmd("DATA").await.starts_with("503 5.5.1"));
    assert!(c.cmd("FROBNICATE").await.starts_with("500 5.5.1"));
    let long = format!("NOOP {}", "y".repeat(5000));
    assert!(c.cmd(&long).await.starts_with("500 5.5.2"));
    assert!(c.cmd("NOOP").await.starts_with("250"));
    assert!(c.cmd("QUIT").await.starts_with("221"));
    h.stop().await;
}

#[tokio::test]
async fn a_full_queue_answers_451_and_nothing_accepted_is_lost() {
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.queues.auth = 1;
        cfg.queues.process = 1;
        cfg.queues.dispatch = 1;
        cfg.sdp.concurrency = 1;
    })
    .await;
    h.sim.sim.set_stall(true);
    let (mut c, _) = Smtp::connect(smtp).await;
    c.cmd("EHLO client.example.com").await;
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for i in 0..20 {
        let to = format!("86138000001{i:02}@sms.example.org");
        let r = c
            .mail(
                "a@example.com",
                &[&to],
                &format!("Subject: n{i}\r\n\r\nbody {i}"),
            )
            .await;
        if r.starts_with("250") {
            accepted.push(i);
        } else {
            assert!(r.starts_with("451 4.3.2"), "{r}");
            refused.push(i);
        }
    }
    assert!(!refused.is_empty(), "the queue never filled up");
    assert_eq!(
        h.stored_messages(),
        accepted.len() as i64,
        "a refused mail was stored"
    );
    h.sim.sim.set_stall(false);
    // What was refused, the client sends again later: now it is taken.
    for &i in &refused {
        let to = format!("86138000001{i:02}@sms.example.org");
        let end = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let r = c
                .mail(
                    "a@example.com",
                    &[&to],
                    &format!("Subject: n{i}\r\n\r\nbody {i}"),
                )
                .await;
            if r.starts_with("250 2.0.0") {
                break;
            }
            assert!(r.starts_with("451 4.3.2"), "{r}");
            assert!(tokio::time::Instant::now() < end, "the queue stayed full");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for i in 0..20 {
        sms_to(&h, &format!("+86138000001{i:02}"), |t| {
            t == format!("n{i}: body {i}")
        })
        .await;
    }
    h.stop().await;
}

#[tokio::test]
async fn sms_to_mail_arrives_at_smtp_sink_from_the_mapped_address_and_replies_come_back() {
    let Some(sink) = SmtpSink::start(&[]).await else {
        return;
    };
    if swaks_bin().is_none() {
        return;
    }
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.mail.smarthost = sink.addr.to_string();
    })
    .await;
    assert_eq!(
        h.sim
            .mo("+8613800000020", "10658000", "bob@example.org hello bob")
            .await,
        200
    );
    let mail = sink
        .wait_mail("the SMS as a mail at smtp-sink", |m| {
            m.contains("hello bob")
        })
        .await;
    assert!(
        mail.contains("X-Mail-Args: <8613800000020@sms.example.org>"),
        "{mail}"
    );
    assert!(mail.contains("X-Rcpt-Args: <bob@example.org>"), "{mail}");
    let parsed = MessageParser::default().parse(mail.as_bytes()).unwrap();
    let from = parsed
        .from()
        .and_then(|f| f.first())
        .and_then(|a| a.address())
        .unwrap();
    assert_eq!(from, "8613800000020@sms.example.org");
    assert_eq!(parsed.subject(), Some("SMS from +8613800000020"));

    // Bob answers the mapped address: the mail comes back through the SMTP server as SMS.
    let (code, out) = swaks(
        smtp,
        &[
            "--from",
            "bob@example.org",
            "--to",
            "8613800000020@sms.example.org",
            "--header",
            "Subject: Re: SMS from +8613800000020",
            "--body",
            "hi phone\n\nOn Mon, you wrote:\n> hello bob\n",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let sms = sms_to(&h, "+8613800000020", |t| t.contains("hi phone")).await;
    assert_eq!(sms.message, "Re: SMS from +8613800000020: hi phone");
    // The phone answers that SMS's sender sub-address: back to bob by mail.
    let sub = sms.sender_name.expect("a reply sub-address");
    assert_eq!(h.sim.mo("+8613800000020", &sub, "see you at 8").await, 200);
    let mail = sink
        .wait_mail("the phone's reply at smtp-sink", |m| {
            m.contains("see you at 8")
        })
        .await;
    assert!(mail.contains("X-Rcpt-Args: <bob@example.org>"), "{mail}");
    h.stop().await;
}

#[tokio::test]
async fn a_temporary_rejection_by_the_smarthost_is_retried() {
    let Some(sink) = SmtpSink::start(&["-r", "RCPT"]).await else {
        return;
    };
    let h = Harness::start(|cfg, _| {
        cfg.mail.smarthost = sink.addr.to_string();
        cfg.retry.max_attempts = 100;
    })
    .await;
    assert_eq!(
        h.sim
            .mo("+8613800000021", "10658000", "carol@example.org ping")
            .await,
        200
    );
    let (state, attempts, err) =
        wait_row(&h, "mail:carol@example.org", "two attempts", |r| r.1 >= 2).await;
    assert_eq!(state, "retry");
    assert!(attempts >= 2);
    assert!(err.as_deref().unwrap_or("").contains("450"), "{err:?}");
    h.stop().await;
}

#[tokio::test]
async fn a_permanent_rejection_by_the_smarthost_fails_at_once() {
    let Some(sink) = SmtpSink::start(&["-f", "RCPT", "-B", "550 5.1.1 no such user"]).await else {
        return;
    };
    let h = Harness::start(|cfg, _| {
        cfg.mail.smarthost = sink.addr.to_string();
    })
    .await;
    assert_eq!(
        h.sim
            .mo("+8613800000022", "10658000", "dave@example.org ping")
            .await,
        200
    );
    let (_, attempts, err) = wait_row(&h, "mail:dave@example.org", "the failure", |r| {
        r.0 == "failed"
    })
    .await;
    assert_eq!(attempts, 1);
    assert!(err.as_deref().unwrap_or("").contains("550"), "{err:?}");
    h.stop().await;
}

/// The `message/delivery-status` text of a DSN dumped by smtp-sink, after checking that it
/// is a `multipart/report; report-type=delivery-status`; also the original headers part.
fn dsn_fields(dump: &str) -> (String, String) {
    let msg = MessageParser::default()
        .parse(dump.as_bytes())
        .expect("a mail");
    let ct = msg.root_part().content_type().expect("a content type");
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("report")),
        "{dump}"
    );
    assert_eq!(
        ct.attribute("report-type"),
        Some("delivery-status"),
        "{dump}"
    );
    let part = |sub: &str| {
        msg.parts
            .iter()
            .find(|p| p.content_type().is_some_and(|c| c.subtype() == Some(sub)))
            .map(|p| String::from_utf8_lossy(p.contents()).into_owned())
            .unwrap_or_else(|| panic!("no {sub} part in {dump}"))
    };
    (part("delivery-status"), part("rfc822-headers"))
}

#[tokio::test]
async fn notify_success_and_failure_produce_dsns_with_the_per_recipient_fields() {
    let Some(sink) = SmtpSink::start(&[]).await else {
        return;
    };
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.mail.smarthost = sink.addr.to_string();
    })
    .await;
    let send = |to: &'static str, subject: &'static str, notify: &'static str| async move {
        let (mut c, _) = Smtp::connect(smtp).await;
        c.cmd("EHLO client.example.com").await;
        let r = c
            .cmd("MAIL FROM:<bob@example.com> RET=HDRS ENVID=env-42")
            .await;
        assert!(r.starts_with("250"), "{r}");
        let r = c
            .cmd(&format!("RCPT TO:<{to}> NOTIFY={notify} ORCPT=rfc822;{to}"))
            .await;
        assert!(r.starts_with("250"), "{r}");
        assert!(c.cmd("DATA").await.starts_with("354"));
        c.send(&format!(
            "From: bob@example.com\r\nSubject: {subject}\r\n\r\nping\r\n.\r\n"
        ))
        .await;
        let r = c.reply().await;
        assert!(r.starts_with("250"), "{r}");
        c.cmd("QUIT").await;
    };

    send(
        "8613800000030@sms.example.org",
        "dsn one",
        "SUCCESS,FAILURE",
    )
    .await;
    let dump = sink
        .wait_mail("the delivered DSN", |m| {
            m.contains("X-Mail-Args: <>") && m.contains("delivered")
        })
        .await;
    assert!(dump.contains("X-Rcpt-Args: <bob@example.com>"), "{dump}");
    let (status, headers) = dsn_fields(&dump);
    for want in [
        "Reporting-MTA: dns; gw.example.org",
        "Original-Envelope-Id: env-42",
        "Original-Recipient: rfc822; 8613800000030@sms.example.org",
        "Final-Recipient: rfc822; 8613800000030@sms.example.org",
        "Action: delivered",
        "Status: 2.0.0",
        "Diagnostic-Code: x-switchboard; DeliveredToTerminal",
    ] {
        assert!(status.contains(want), "{want} missing in:\n{status}");
    }
    assert!(headers.contains("Subject: dsn one"), "{headers}");

    h.sim.control(json!({"impossible_rate": 1.0})).await;
    send(
        "8613800000031@sms.example.org",
        "dsn two",
        "SUCCESS,FAILURE",
    )
    .await;
    let dump = sink
        .wait_mail("the failed DSN", |m| {
            m.contains("X-Mail-Args: <>") && m.contains("8613800000031") && m.contains("failed")
        })
        .await;
    let (status, headers) = dsn_fields(&dump);
    assert!(status.contains("Action: failed"), "{status}");
    assert!(status.contains("Status: 5."), "{status}");
    assert!(
        status.contains("Final-Recipient: rfc822; 8613800000031@sms.example.org"),
        "{status}"
    );
    assert!(status.contains("DeliveryImpossible"), "{status}");
    assert!(headers.contains("Subject: dsn two"), "{headers}");

    // NOTIFY=FAILURE only: a delivery is not reported (no report is even made).
    h.sim.control(json!({"impossible_rate": 0.0})).await;
    send("8613800000032@sms.example.org", "dsn three", "FAILURE").await;
    wait_row(&h, "sms:+8613800000032", "the delivery", |r| {
        r.0 == "delivered"
    })
    .await;
    assert_eq!(
        count_where(&h, "SELECT COUNT(*) FROM messages WHERE kind = 'report'"),
        2
    );
    h.stop().await;
}

#[tokio::test]
async fn relayed_and_delayed_dsns() {
    let Some(sink) = SmtpSink::start(&[]).await else {
        return;
    };
    let (h, smtp) = mail_gateway(|cfg, sim| {
        cfg.mail.smarthost = sink.addr.to_string();
        cfg.mail.delay_report_secs = 1;
        cfg.retry.max_attempts = 1000;
        sim.send_receipts = false;
    })
    .await;
    let send = |to: &'static str, notify: &'static str| async move {
        let (mut c, _) = Smtp::connect(smtp).await;
        c.cmd("EHLO client.example.com").await;
        assert!(
            c.cmd("MAIL FROM:<erin@example.com>")
                .await
                .starts_with("250")
        );
        let r = c.cmd(&format!("RCPT TO:<{to}> NOTIFY={notify}")).await;
        assert!(r.starts_with("250"), "{r}");
        assert!(c.cmd("DATA").await.starts_with("354"));
        c.send("Subject: later\r\n\r\nping\r\n.\r\n").await;
        assert!(c.reply().await.starts_with("250"));
    };
    // The SDP cannot confirm: relayed.
    send("8613800000040@sms.example.org", "SUCCESS").await;
    let m = sms_to(&h, "+8613800000040", |_| true).await;
    let (status, _) = h
        .soap(parlayx::encode_notify_delivery_receipt(
            Version::V2_2,
            m.correlator.as_deref().unwrap(),
            "tel:+8613800000040",
            DeliveryStatus::DeliveryUncertain,
        ))
        .await;
    assert_eq!(status, 200);
    let dump = sink
        .wait_mail("the relayed DSN", |m| {
            m.contains("X-Mail-Args: <>") && m.contains("Action: relayed")
        })
        .await;
    let (status, _) = dsn_fields(&dump);
    assert!(
        status.contains("Final-Recipient: rfc822; 8613800000040@sms.example.org"),
        "{status}"
    );
    assert!(status.contains("Status: 2.0.0"), "{status}");

    // Still unsent after the wait: delayed, once.
    h.sim.control(json!({"transient_error_rate": 1.0})).await;
    send("8613800000041@sms.example.org", "DELAY").await;
    let dump = sink
        .wait_mail("the delayed DSN", |m| {
            m.contains("X-Mail-Args: <>") && m.contains("8613800000041")
        })
        .await;
    let (status, _) = dsn_fields(&dump);
    assert!(status.contains("Action: delayed"), "{status}");
    assert!(status.contains("Status: 4.0.0"), "{status}");
    h.stop().await;
}

#[tokio::test]
async fn mail_reaches_im_users_and_groups_and_im_reaches_mail() {
    let Some(sink) = SmtpSink::start(&[]).await else {
        return;
    };
    if swaks_bin().is_none() {
        return;
    }
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.mail.smarthost = sink.addr.to_string();
        cfg.directory.groups = vec![GroupConfig {
            name: "team42".into(),
            // Mail to a group is spoken as the group: bob must be a member.
            members: vec![
                "sms:+8613800000050".into(),
                "im:carol@im.example.org".into(),
                "mail:bob@example.com".into(),
            ],
        }];
    })
    .await;
    let (code, out) = swaks(
        smtp,
        &[
            "--from",
            "bob@example.com",
            "--to",
            "alice@im.example.org",
            "--header",
            "Subject: Lunch",
            "--body",
            "at noon?",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let im = h
        .hooks
        .wait("im", "the mail at the IM webhook", |v| {
            v["to"] == "im:alice@im.example.org"
        })
        .await;
    assert_eq!(im["from"], "mail:bob@example.com");
    assert_eq!(im["text"], "Lunch\n\nat noon?");

    let (code, out) = swaks(
        smtp,
        &[
            "--from",
            "bob@example.com",
            "--to",
            "team42@groups.example.org",
            "--header",
            "Subject: All hands",
            "--body",
            "now",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    sms_to(&h, "+8613800000050", |t| {
        t == "team42 / bob@example.com: All hands: now"
    })
    .await;
    h.hooks
        .wait("im", "the group mail at carol", |v| {
            v["to"] == "im:carol@im.example.org"
        })
        .await;

    // An attachment to a phone: the text goes, with a note.
    let att = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(att.path(), b"\x89PNG fake").unwrap();
    let (code, out) = swaks(
        smtp,
        &[
            "--from",
            "bob@example.com",
            "--to",
            "8613800000051@sms.example.org",
            "--header",
            "Subject: Photo",
            "--body",
            "see attached",
            "--attach",
            att.path().to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    let sms = sms_to(&h, "+8613800000051", |_| true).await;
    assert_eq!(
        sms.message,
        "Photo: see attached [1 attachment(s) not sent to the phone]"
    );
    // Marked multimedia, the attachment kept as a part.
    assert_eq!(
        count_where(
            &h,
            "SELECT COUNT(*) FROM messages WHERE json_extract(content, '$.mail.multimedia') = 1
             AND json_array_length(content, '$.parts') = 1"
        ),
        1
    );

    // IM → mail: the From is the IM user's mail form.
    let (status, body) = h
        .submit(json!({"from": "im:alice@im.example.org", "to": ["mail:bob@example.com"], "text": "from IM"}))
        .await;
    assert_eq!(status, 202, "{body}");
    let mail = sink
        .wait_mail("the IM message as mail", |m| m.contains("from IM"))
        .await;
    assert!(
        mail.contains("X-Mail-Args: <alice@im.example.org>"),
        "{mail}"
    );
    assert!(mail.contains("X-Rcpt-Args: <bob@example.com>"), "{mail}");
    h.stop().await;
}

#[tokio::test]
async fn attachments_to_a_phone_can_be_refused_by_policy() {
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.mail.attachments_to_sms = "refuse".into();
    })
    .await;
    let (mut c, _) = Smtp::connect(smtp).await;
    c.cmd("EHLO client.example.com").await;
    let body = "Subject: x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n--B\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=a.png\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--B--";
    let r = c
        .mail("a@example.com", &["8613800000060@sms.example.org"], body)
        .await;
    assert!(r.starts_with("554 5.6.1"), "{r}");
    assert_eq!(h.stored_messages(), 0);
    h.stop().await;
}

#[tokio::test]
async fn a_mail_acknowledged_before_kill_9_is_delivered_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let http_port = free_port();
    let mut cfg = test_config(dir.path());
    cfg.http.listen = format!("127.0.0.1:{http_port}");
    cfg.mail.listen = format!("127.0.0.1:{}", free_port());
    cfg.retry.max_attempts = 1000;
    let sim = Sim::start(SimConfig {
        receipt_delay_ms: 10,
        transient_error_rate: 1.0,
        notify_url: Some(format!(
            "http://127.0.0.1:{http_port}/parlayx/SmsNotification"
        )),
        callbacks: sim_callbacks(),
        ..SimConfig::default()
    })
    .await;
    cfg.sdp.send_sms_url = sim.send_sms_url();
    let smtp: SocketAddr = cfg.mail.listen.parse().unwrap();
    let mut gw = ChildGateway::spawn(&cfg).await;
    let (mut c, _) = Smtp::connect(smtp).await;
    c.cmd("EHLO client.example.com").await;
    let r = c
        .mail(
            "a@example.com",
            &["8613800000070@sms.example.org"],
            "Subject: survive\r\n\r\nkill -9",
        )
        .await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let id = r.trim().rsplit(' ').next().unwrap().to_string();
    gw.kill9();
    drop(c);
    sim.control(json!({"transient_error_rate": 0.0})).await;
    let gw = ChildGateway::spawn(&cfg).await;
    let url = format!("{}/v1/messages/{id}", gw.base);
    wait_for(
        Duration::from_secs(20),
        "delivery after the restart",
        || {
            let url = url.clone();
            async move {
                let m: serde_json::Value = reqwest::Client::new()
                    .get(&url)
                    .bearer_auth(ADMIN_TOKEN)
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                (m["recipients"][0]["state"] == "delivered").then_some(())
            }
        },
    )
    .await;
    let sms = sim
        .sim
        .messages()
        .into_iter()
        .find(|m| m.addresses == ["tel:+8613800000070".to_string()])
        .expect("the SMS at the simulator");
    assert_eq!(sms.message, "survive: kill -9");
}

#[tokio::test]
async fn networks_connections_per_address_and_timeouts_are_enforced() {
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.mail.max_connections_per_ip = 1;
        cfg.mail.command_timeout_secs = 1;
    })
    .await;
    let (mut first, greeting) = Smtp::connect(smtp).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    let (_, refused) = Smtp::connect(smtp).await;
    assert!(refused.starts_with("421 4.7.0"), "{refused}");
    // An idle client is told so and let go, which frees its slot.
    let timeout = first.reply().await;
    assert!(timeout.starts_with("421 4.4.2"), "{timeout}");
    let (mut again, greeting) = wait_for(Duration::from_secs(10), "a free slot", || async {
        let (c, g) = Smtp::connect(smtp).await;
        g.starts_with("220 ").then_some((c, g))
    })
    .await;
    assert!(greeting.starts_with("220 "));
    assert!(again.cmd("QUIT").await.starts_with("221"));
    h.stop().await;

    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.mail.allow_networks = vec!["10.0.0.0/8".into()];
    })
    .await;
    let (_, refused) = Smtp::connect(smtp).await;
    assert!(refused.starts_with("554 5.7.1"), "{refused}");
    h.stop().await;
}

#[tokio::test]
async fn the_smarthost_connection_is_upgraded_with_starttls() {
    // Gateway B (STARTTLS offered) is gateway A's smarthost: an MO addressed to a phone's
    // mail address leaves A as mail over TLS and B turns it into an SMS again.
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let (b, b_smtp) = mail_gateway(|cfg, _| {
        cfg.mail.tls_cert = Some(cert.clone());
        cfg.mail.tls_key = Some(key.clone());
        cfg.mail.allow_networks = vec!["127.0.0.0/8".into()];
    })
    .await;
    let a = Harness::start(|cfg, _| {
        cfg.mail.smarthost = format!("localhost:{}", b_smtp.port());
        cfg.mail.smarthost_starttls = true;
        cfg.mail.smarthost_ca = Some(cert.clone());
        // A's own SMS domain differs, so the mail address is B's phone, not A's.
        cfg.mail.sms_domain = "sms.a.example.org".into();
    })
    .await;
    assert_eq!(
        a.sim
            .mo(
                "+8613800000080",
                "10658000",
                "8613800000081@sms.example.org over tls"
            )
            .await,
        200
    );
    let sms = sms_to(&b, "+8613800000081", |_| true).await;
    assert_eq!(sms.message, "SMS from +8613800000080: over tls");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn on_shutdown_idle_sessions_are_closed_and_a_message_in_progress_is_finished() {
    let (h, smtp) = mail_gateway(|_, _| {}).await;
    let db = h.cfg.store.path.clone();
    let (mut idle, _) = Smtp::connect(smtp).await;
    idle.cmd("EHLO idle.example.com").await;
    let (mut busy, _) = Smtp::connect(smtp).await;
    busy.cmd("EHLO busy.example.com").await;
    assert!(
        busy.cmd("MAIL FROM:<a@example.com>")
            .await
            .starts_with("250")
    );
    assert!(
        busy.cmd("RCPT TO:<8613800000090@sms.example.org>")
            .await
            .starts_with("250")
    );
    assert!(busy.cmd("DATA").await.starts_with("354"));
    let stopping = tokio::spawn(h.stop());
    let bye = idle.reply().await;
    assert!(bye.starts_with("421 4.3.2"), "{bye}");
    wait_for(Duration::from_secs(10), "the listener to close", || async {
        tokio::net::TcpStream::connect(smtp)
            .await
            .is_err()
            .then_some(())
    })
    .await;
    busy.send("Subject: last one\r\n\r\nin time\r\n.\r\n").await;
    let r = busy.reply().await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    // Now idle, the session is let go (or its QUIT is answered, whichever comes first).
    let last = busy.cmd("QUIT").await;
    assert!(
        last.starts_with("221") || last.starts_with("421 4.3.2"),
        "{last}"
    );
    assert_eq!(count_rows(&db, "messages"), 1);
    stopping.await.unwrap();
}

#[tokio::test]
async fn long_body_lines_are_refused_and_a_stalled_data_phase_times_out() {
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.mail.max_line_bytes = 1000;
        cfg.mail.data_timeout_secs = 1;
    })
    .await;
    let (mut c, _) = Smtp::connect(smtp).await;
    c.cmd("EHLO client.example.com").await;
    let long = format!("Subject: wide\r\n\r\n{}", "w".repeat(2000));
    let r = c
        .mail("a@example.com", &["8613800000095@sms.example.org"], &long)
        .await;
    assert!(r.starts_with("554 5.6.0"), "{r}");
    // The session goes on: a normal message right after is taken.
    let r = c
        .mail(
            "a@example.com",
            &["8613800000095@sms.example.org"],
            "Subject: ok\r\n\r\nfine",
        )
        .await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert!(c.cmd("MAIL FROM:<a@example.com>").await.starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<8613800000096@sms.example.org>")
            .await
            .starts_with("250")
    );
    assert!(c.cmd("DATA").await.starts_with("354"));
    c.send("Subject: half\r\n\r\nand then nothing").await;
    let r = c.reply().await;
    assert!(r.starts_with("421 4.4.2"), "{r}");
    assert_eq!(count_rows(&h.cfg.store.path, "messages"), 1);
    h.stop().await;
}

/// `[directory] mail_senders = "known"`: swaks from an address no user has is refused at
/// `MAIL FROM` with 550 5.7.1, counted, and nothing is stored; a user's address is taken.
/// Mail to a group from somebody outside it is refused at `RCPT`.
#[tokio::test]
async fn mail_senders_outside_the_directory_and_non_members_are_refused() {
    if swaks_bin().is_none() {
        return;
    }
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.directory.mail_senders = "known".into();
        seed_directory(
            cfg,
            json!({
                "users": {"bob": {"name": "Bob", "addresses": ["mail:bob@example.com"]}},
                "groups": {"crew": {"name": "Crew", "members": [{"address": "sms:+8613800000061"}]}}
            }),
        );
    })
    .await;
    let refused = |page: &str, reason: &str| -> u64 {
        let key =
            format!("switchboard_messages_refused_total{{stage=\"receive\",reason=\"{reason}\"}} ");
        page.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    let before = refused(&h.metrics().await, "unknown_sender");
    let (code, out) = swaks(
        smtp,
        &[
            "--from",
            "mallory@example.net",
            "--to",
            "8613800000060@sms.example.org",
            "--body",
            "free SMS",
        ],
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("550 5.7.1 Sender not allowed"), "{out}");
    assert_eq!(refused(&h.metrics().await, "unknown_sender"), before + 1);

    // Bob is a user: his mail to a phone is taken, his mail to a group he is not in is not.
    let (code, out) = swaks(
        smtp,
        &[
            "--from",
            "bob@example.com",
            "--to",
            "crew@groups.example.org",
            "--body",
            "hello crew",
        ],
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("550 5.7.1 <crew@groups.example.org>: only members may write to this group"),
        "{out}"
    );
    assert_eq!(h.stored_messages(), 0, "nothing refused is stored");
    let (code, out) = swaks(
        smtp,
        &[
            "--from",
            "bob@example.com",
            "--to",
            "8613800000060@sms.example.org",
            "--body",
            "fine",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}");
    sms_to(&h, "+8613800000060", |t| t.ends_with("fine")).await;
    h.stop().await;
}
