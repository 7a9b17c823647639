//! The SMTP server against clients that try to get in: smuggled DATA ends, bare CR/LF,
//! null-sender mail to a phone, forged bounces, trickling sessions, connection and message
//! limits, and content checks that cannot answer in time.

mod common;
mod mail_peers;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use mail_peers::*;
use switchboard::config::Config;
use switchboard::sim::SimConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

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

fn sms_count(h: &Harness, number: &str) -> usize {
    let tel = format!("tel:{number}");
    h.sim
        .sim
        .messages()
        .iter()
        .filter(|m| m.addresses == [tel.clone()])
        .count()
}

/// A counter's value on `/metrics` (0 when absent).
async fn metric(h: &Harness, key: &str) -> u64 {
    h.metrics()
        .await
        .lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// (state, last_error) of the newest recipient with this address.
fn recipient(h: &Harness, address: &str) -> Option<(String, Option<String>)> {
    let c = rusqlite::Connection::open_with_flags(
        &h.cfg.store.path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .ok()?;
    c.query_row(
        "SELECT state, last_error FROM recipients WHERE address = ?1 ORDER BY msg_id DESC LIMIT 1",
        [address],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .ok()
}

/// Reads until the server closes the connection (or 20 s pass); everything it said.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the server kept the connection open; it said:\n{}",
                String::from_utf8_lossy(&all)
            ),
        }
    }
    String::from_utf8_lossy(&all).into_owned()
}

/// A raw session up to `354`, then `data` in one write; what the server says until it
/// closes (after `QUIT`).
async fn raw_transaction(smtp: SocketAddr, rcpt: &str, data: &[u8]) -> String {
    let mut s = TcpStream::connect(smtp).await.unwrap();
    s.write_all(
        format!(
            "EHLO client.example.com\r\nMAIL FROM:<mallory@example.com>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Wait for the 354 before the data, as a client must.
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("354 ") {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("no 354")
            .unwrap();
        assert!(
            n > 0,
            "closed before 354: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    s.write_all(data).await.unwrap();
    let _ = s.write_all(b"QUIT\r\n").await;
    read_to_close(&mut s).await
}

#[tokio::test]
async fn a_smuggled_end_of_data_queues_nothing_and_closes_the_session() {
    let (h, smtp) = mail_gateway(|_, _| {}).await;
    // `\r\n.\r\r\n` (which some servers take as the end), then a whole second transaction
    // inside the body: neither message may be queued, and the commands are never run.
    let said = raw_transaction(
        smtp,
        "8613800000201@sms.example.org",
        b"Subject: one\r\n\r\nfirst\r\n.\r\r\nMAIL FROM:<evil@example.com>\r\n\
          RCPT TO:<8613800000202@sms.example.org>\r\nDATA\r\nSubject: two\r\n\r\nsmuggled\r\n.\r\n",
    )
    .await;
    assert!(said.contains("554 5.6.0"), "{said}");
    let after = said.split("554 5.6.0").nth(1).unwrap_or("");
    assert!(
        !after.contains("\r\n250"),
        "commands after the doubtful end ran:\n{said}"
    );
    assert_eq!(h.stored_messages(), 0, "{said}");

    // The same smuggling with bare LFs (`\n.\n`).
    let said = raw_transaction(
        smtp,
        "8613800000201@sms.example.org",
        b"Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.com>\r\n\
          RCPT TO:<8613800000202@sms.example.org>\r\nDATA\r\nsmuggled\r\n.\r\n",
    )
    .await;
    assert!(said.contains("554 5.6.0"), "{said}");
    assert_eq!(h.stored_messages(), 0);

    // A proper message with dot-stuffing and a dot line that is not an end: exactly one.
    let said = raw_transaction(
        smtp,
        "8613800000201@sms.example.org",
        b"Subject: one\r\n\r\n..dotted\r\n.x\r\n.\r\n",
    )
    .await;
    assert!(said.contains("250 2.0.0 Ok: queued"), "{said}");
    assert_eq!(h.stored_messages(), 1);
    wait_for(Duration::from_secs(15), "the one SMS", || async {
        (sms_count(&h, "+8613800000201") == 1).then_some(())
    })
    .await;
    assert_eq!(sms_count(&h, "+8613800000202"), 0);
    h.stop().await;
}

#[tokio::test]
async fn bare_cr_or_lf_in_data_is_refused_with_554_and_nothing_is_stored() {
    let (h, smtp) = mail_gateway(|_, _| {}).await;
    for data in [
        &b"Subject: lf\r\n\r\na bare\nline feed\r\n.\r\n"[..],
        b"Subject: cr\r\n\r\na bare\rcarriage return\r\n.\r\n",
        b"Subject: cr\r\n\r\nat the end\r\r\n.\r\n",
        b"Subject: lf only\n\nall unix\n.\n",
    ] {
        let said = raw_transaction(smtp, "8613800000203@sms.example.org", data).await;
        assert!(said.contains("554 5.6.0"), "{data:?}: {said}");
        assert!(!said.contains("queued"), "{said}");
    }
    assert_eq!(h.stored_messages(), 0);
    assert!(
        metric(
            &h,
            "switchboard_messages_refused_total{stage=\"receive\",reason=\"bare_newline\"}"
        )
        .await
            >= 4
    );

    // BDAT is not offered, and is refused rather than read as commands.
    let (mut c, _) = Smtp::connect(smtp).await;
    let ehlo = c.cmd("EHLO client.example.com").await;
    assert!(!ehlo.contains("CHUNKING"), "{ehlo}");
    assert!(c.cmd("MAIL FROM:<a@example.com>").await.starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<8613800000203@sms.example.org>")
            .await
            .starts_with("250")
    );
    let r = c.cmd("BDAT 6 LAST").await;
    assert!(r.starts_with("502"), "{r}");
    assert_eq!(h.stored_messages(), 0);
    h.stop().await;
}

/// A Postfix-style bounce (RFC 3464) of the mail whose Message-ID is `original`.
fn bounce(to: &str, original: &str, action: &str, status: &str) -> String {
    format!(
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n\
         To: {to}\r\n\
         Subject: Undelivered Mail Returned to Sender\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B1\"\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: text/plain\r\n\
         \r\n\
         I'm sorry to have to inform you that your message could not be delivered.\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: message/delivery-status\r\n\
         \r\n\
         Reporting-MTA: dns; mx.example.org\r\n\
         \r\n\
         Final-Recipient: rfc822; bob@example.org\r\n\
         Action: {action}\r\n\
         Status: {status}\r\n\
         Diagnostic-Code: smtp; 550 {status} <bob@example.org>: Recipient address\r\n    rejected: User unknown\r\n\
         \r\n\
         --B1\r\n\
         Content-Type: text/rfc822-headers\r\n\
         \r\n\
         From: {to}\r\n\
         To: bob@example.org\r\n\
         Subject: SMS from +8613800000210\r\n\
         Message-ID: {original}\r\n\
         \r\n\
         --B1--\r\n"
    )
}

async fn send_null_sender(smtp: SocketAddr, to: &str, data: &str) -> String {
    let (mut c, _) = Smtp::connect(smtp).await;
    c.cmd("EHLO mx.example.org").await;
    let r = c.mail("", &[to], data).await;
    c.cmd("QUIT").await;
    r
}

#[tokio::test]
async fn a_null_sender_bounce_to_a_phone_is_a_report_never_an_sms() {
    let Some(sink) = SmtpSink::start(&[]).await else {
        return;
    };
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.mail.smarthost = sink.addr.to_string();
    })
    .await;
    let phone = "8613800000210@sms.example.org";
    // A bounce for nothing the gateway sent: taken (250), dropped, no SMS.
    let r = send_null_sender(
        smtp,
        phone,
        &bounce(
            phone,
            "<0000000000000000.x@elsewhere.example>",
            "failed",
            "5.1.1",
        ),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let r = send_null_sender(
        smtp,
        "8613800000211@sms.example.org",
        "Subject: out of office\r\n\r\nI am away.\r\n",
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(h.stored_messages(), 0);

    // The phone writes to bob: the gateway sends a mail with its Message-ID.
    assert_eq!(
        h.sim
            .mo(
                "+8613800000210",
                "10658000",
                "bob@example.org are you there"
            )
            .await,
        200
    );
    let mail = sink
        .wait_mail("the SMS as mail", |m| m.contains("are you there"))
        .await;
    let parsed = mail_parser::MessageParser::default()
        .parse(mail.as_bytes())
        .unwrap();
    let mid = format!("<{}>", parsed.message_id().expect("a Message-ID"));
    assert!(mid.ends_with("@gw.example.org>"), "{mid}");
    wait_for(
        Duration::from_secs(15),
        "the mail recipient sent",
        || async { recipient(&h, "mail:bob@example.org").filter(|r| r.0 == "sent") },
    )
    .await;

    // A forged bounce naming the same recipient with a guessed token changes nothing.
    let (rid, _) = mid
        .trim_matches(['<', '>'])
        .split_once('.')
        .expect("recipient id and token");
    let forged = format!("<{rid}.{}@gw.example.org>", "0".repeat(32));
    let r = send_null_sender(smtp, phone, &bounce(phone, &forged, "failed", "5.1.1")).await;
    assert!(r.starts_with("250"), "{r}");
    // A delay notice for the real one is not a failure either.
    let r = send_null_sender(smtp, phone, &bounce(phone, &mid, "delayed", "4.4.1")).await;
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(recipient(&h, "mail:bob@example.org").unwrap().0, "sent");

    // The real bounce: the recipient fails with the bounce's status.
    let r = send_null_sender(smtp, phone, &bounce(phone, &mid, "failed", "5.1.1")).await;
    assert!(r.starts_with("250"), "{r}");
    let (_, err) = wait_for(Duration::from_secs(15), "the bounce applied", || async {
        recipient(&h, "mail:bob@example.org").filter(|r| r.0 == "failed")
    })
    .await;
    let err = err.unwrap_or_default();
    assert!(err.contains("5.1.1"), "{err}");
    // Once more: a duplicate.
    send_null_sender(smtp, phone, &bounce(phone, &mid, "failed", "5.1.1")).await;

    // No bounce became a message, none reached a phone.
    assert_eq!(
        sms_count(&h, "+8613800000210") + sms_count(&h, "+8613800000211"),
        0
    );
    let key = |o: &str| format!("switchboard_mail_null_sender_total{{outcome=\"{o}\"}}");
    assert_eq!(metric(&h, &key("recorded")).await, 1);
    assert_eq!(metric(&h, &key("unmatched")).await, 3);
    assert_eq!(metric(&h, &key("not_failure")).await, 1);
    assert_eq!(metric(&h, &key("duplicate")).await, 1);
    let c = rusqlite::Connection::open_with_flags(
        &h.cfg.store.path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let from_smtp: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM messages WHERE client = 'smtp'",
            [],
            |r| r.get(0),
        )
        .unwrap_or(0);
    assert_eq!(from_smtp, 0, "a null-sender mail was stored as a message");
    h.stop().await;
}

/// A session from `ip` that trickles a command one byte every ~second after its greeting.
/// Returns (greeted, cut with 421 4.4.2, bytes sent before the cut).
async fn trickle(smtp: SocketAddr, ip: IpAddr) -> (bool, bool, usize) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(ip, 0)).unwrap();
    let s = match sock.connect(smtp).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("connect from {ip}: {e}");
            return (false, false, 0);
        }
    };
    let (mut r, mut w) = s.into_split();
    let mut buf = [0u8; 512];
    let mut said = Vec::new();
    // The greeting (maybe after a wait in the backlog).
    loop {
        match tokio::time::timeout(Duration::from_secs(30), r.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                said.extend_from_slice(&buf[..n]);
                if said.ends_with(b"\r\n") {
                    break;
                }
            }
            other => {
                eprintln!(
                    "greeting from {ip}: {other:?} {:?}",
                    String::from_utf8_lossy(&said)
                );
                return (false, false, 0);
            }
        }
    }
    if !said.starts_with(b"220 ") {
        eprintln!("greeting from {ip}: {:?}", String::from_utf8_lossy(&said));
        return (false, false, 0);
    }
    said.clear();
    let cmd = b"NOOP trickling along and along and along\r\n";
    let mut sent = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(900));
    tick.tick().await;
    // At most 30 bytes: a session the server does not cut ends the test as a failure.
    while sent < 30 {
        tokio::select! {
            n = r.read(&mut buf) => match n {
                Ok(n) if n > 0 => said.extend_from_slice(&buf[..n]),
                _ => break,
            },
            _ = tick.tick() => {
                if w.write_all(&cmd[sent..sent + 1]).await.is_err() {
                    break;
                }
                sent += 1;
            }
        }
    }
    // Whatever is left to read after the cut.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(n) = r.read(&mut buf).await {
            if n == 0 {
                break;
            }
            said.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    let cut = String::from_utf8_lossy(&said).contains("421 4.4.2");
    (true, cut, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_hundred_trickling_sessions_are_cut_and_a_real_client_gets_through() {
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.mail.command_timeout_secs = 2;
        cfg.mail.data_timeout_secs = 2;
    })
    .await;
    assert!(h.cfg.mail.max_connections < 600);
    // 600 sessions from ten addresses (60 each, under the per-address cap of 64), opened
    // in steps so that no more wait in the listen backlog (128 here) than it holds.
    let mut tricklers = Vec::new();
    for i in 0..600u32 {
        let ip: IpAddr = format!("127.0.0.{}", 2 + i % 10).parse().unwrap();
        tricklers.push(tokio::spawn(trickle(smtp, ip)));
        if i % 50 == 49 {
            let launched = u64::from(i + 1);
            wait_for(
                Duration::from_secs(20),
                "the server to take them",
                || async {
                    let accepted = metric(&h, "switchboard_smtp_connections_total").await;
                    (accepted + 100 >= launched).then_some(())
                },
            )
            .await;
        }
    }
    wait_for(Duration::from_secs(20), "the server to be full", || async {
        let accepted = metric(&h, "switchboard_smtp_connections_total").await;
        (accepted >= h.cfg.mail.max_connections as u64).then_some(())
    })
    .await;

    // The real client on 127.0.0.1 gets its greeting and its mail through.
    let (mut c, greeting) = Smtp::connect(smtp).await;
    assert!(greeting.starts_with("220 "), "{greeting}");
    c.cmd("EHLO client.example.com").await;
    let r = c
        .mail(
            "alice@example.com",
            &["8613800000220@sms.example.org"],
            "Subject: through\r\n\r\nstill here",
        )
        .await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    c.cmd("QUIT").await;
    wait_for(Duration::from_secs(15), "the real client's SMS", || async {
        (sms_count(&h, "+8613800000220") == 1).then_some(())
    })
    .await;

    // Every trickling session was cut by the per-command deadline, after a few bytes.
    let mut greeted = 0;
    for t in tricklers {
        let (g, cut, sent) = t.await.unwrap();
        if g {
            greeted += 1;
            assert!(cut, "a trickling session was not cut ({sent} bytes sent)");
            assert!(sent <= 6, "cut only after {sent} bytes");
        }
    }
    assert_eq!(greeted, 600);
    assert!(metric(&h, "switchboard_smtp_timeouts_total{phase=\"command\"}").await >= 600);
    h.stop().await;
}

async fn connect_from(smtp: SocketAddr, ip: &str) -> (TcpStream, String) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(ip.parse().unwrap(), 0)).unwrap();
    let mut s = sock.connect(smtp).await.unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("no greeting")
        .unwrap_or(0);
    (s, String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[tokio::test]
async fn the_per_address_connection_cap_holds() {
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.mail.max_connections_per_ip = 3;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let (s, g) = connect_from(smtp, "127.0.0.5").await;
        assert!(g.starts_with("220 "), "{g}");
        held.push(s);
    }
    // The cap+1th from that address is refused; again and again; another address is not.
    for _ in 0..5 {
        let (mut s, g) = connect_from(smtp, "127.0.0.5").await;
        assert!(g.starts_with("421 4.7.0"), "{g}");
        read_to_close(&mut s).await;
    }
    let (_other, g) = connect_from(smtp, "127.0.0.6").await;
    assert!(g.starts_with("220 "), "{g}");
    // A slot freed is a slot again, and only one.
    drop(held.pop());
    let (s, g) = wait_for(Duration::from_secs(10), "a free slot", || async {
        let (s, g) = connect_from(smtp, "127.0.0.5").await;
        g.starts_with("220 ").then_some((s, g))
    })
    .await;
    assert!(g.starts_with("220 "));
    held.push(s);
    let (_, g) = connect_from(smtp, "127.0.0.5").await;
    assert!(g.starts_with("421 4.7.0"), "{g}");
    assert!(
        metric(
            &h,
            "switchboard_messages_refused_total{stage=\"receive\",reason=\"connections_per_ip\"}"
        )
        .await
            >= 6
    );
    h.stop().await;
}

#[tokio::test]
async fn a_session_takes_at_most_max_messages_per_session() {
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.mail.max_messages_per_session = 3;
    })
    .await;
    let (mut c, _) = Smtp::connect(smtp).await;
    c.cmd("EHLO client.example.com").await;
    for n in 0..3 {
        let r = c
            .mail(
                "a@example.com",
                &["8613800000230@sms.example.org"],
                &format!("Subject: n{n}\r\n\r\nhello"),
            )
            .await;
        assert!(r.starts_with("250 2.0.0"), "{r}");
    }
    let r = c.cmd("MAIL FROM:<a@example.com>").await;
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert_eq!(c.reply().await, "", "the session is closed");
    assert_eq!(h.stored_messages(), 3);
    // A new session may send again.
    let (mut c, _) = Smtp::connect(smtp).await;
    c.cmd("EHLO client.example.com").await;
    let r = c
        .mail(
            "a@example.com",
            &["8613800000230@sms.example.org"],
            "Subject: again\r\n\r\nhello",
        )
        .await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert_eq!(h.stored_messages(), 4);
    h.stop().await;
}

#[tokio::test]
async fn a_sender_is_held_to_its_messages_per_minute() {
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.mail.max_messages_per_sender_per_minute = 2;
    })
    .await;
    let send = |from: &'static str| async move {
        let (mut c, _) = Smtp::connect(smtp).await;
        c.cmd("EHLO client.example.com").await;
        let r = c
            .mail(
                from,
                &["8613800000240@sms.example.org"],
                "Subject: rate\r\n\r\nhello",
            )
            .await;
        c.cmd("QUIT").await;
        r
    };
    assert!(send("spam@example.com").await.starts_with("250 2.0.0"));
    assert!(send("SPAM@example.com").await.starts_with("250 2.0.0"));
    let r = send("spam@example.com").await;
    assert!(r.starts_with("450 4.7.1"), "{r}");
    // Another sender is not affected.
    assert!(send("ham@example.com").await.starts_with("250 2.0.0"));
    // Transactions that store nothing do not count.
    let (mut c, _) = Smtp::connect(smtp).await;
    c.cmd("EHLO client.example.com").await;
    for _ in 0..5 {
        assert!(
            c.cmd("MAIL FROM:<ham@example.com>")
                .await
                .starts_with("250")
        );
        assert!(c.cmd("RSET").await.starts_with("250"));
    }
    c.cmd("QUIT").await;
    assert!(send("ham@example.com").await.starts_with("250 2.0.0"));
    assert_eq!(h.stored_messages(), 4);
    assert_eq!(
        metric(
            &h,
            "switchboard_messages_refused_total{stage=\"receive\",reason=\"sender_rate\"}"
        )
        .await,
        1
    );
    h.stop().await;
}

/// A "clamd" that accepts connections and never answers.
async fn silent_clamd() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (addr, task)
}

const WITH_ATTACHMENT: &str = "Subject: scan me\r\nMIME-Version: 1.0\r\n\
    Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\n\
    see attached\r\n--XX\r\nContent-Type: application/octet-stream\r\n\
    Content-Disposition: attachment; filename=a.bin\r\nContent-Transfer-Encoding: base64\r\n\r\n\
    aGVsbG8=\r\n--XX--";

#[tokio::test]
async fn a_scan_that_cannot_finish_in_time_follows_on_unavailable_before_the_250() {
    use switchboard::content::scan::WhenUnavailable;
    let (clamd, _task) = silent_clamd().await;
    let q = tempfile::tempdir().unwrap();
    let qdir = q.path().to_path_buf();
    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.content.scan.clamd = clamd.to_string();
        cfg.content.scan.timeout_ms = 300;
        cfg.content.scan.quarantine_dir = qdir;
    })
    .await;
    let (mut c, _) = Smtp::connect(smtp).await;
    c.cmd("EHLO client.example.com").await;
    let r = c
        .mail(
            "a@example.com",
            &["8613800000250@sms.example.org"],
            WITH_ATTACHMENT,
        )
        .await;
    assert!(r.starts_with("451 4.7.1"), "{r}");
    let dir = q.path().to_string_lossy().into_owned();
    assert!(!r.contains(&dir), "{r}");
    assert_eq!(h.stored_messages(), 0);
    h.stop().await;

    let (h, smtp) = mail_gateway(|cfg, _| {
        cfg.content.scan.clamd = clamd.to_string();
        cfg.content.scan.timeout_ms = 300;
        cfg.content.scan.on_unavailable = WhenUnavailable::FailOpen;
    })
    .await;
    let (mut c, _) = Smtp::connect(smtp).await;
    c.cmd("EHLO client.example.com").await;
    let r = c
        .mail(
            "a@example.com",
            &["8613800000251@sms.example.org"],
            WITH_ATTACHMENT,
        )
        .await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    wait_for(Duration::from_secs(15), "the SMS", || async {
        (sms_count(&h, "+8613800000251") == 1).then_some(())
    })
    .await;
    // Checked once, before the 250: the process stage did not scan it again.
    assert_eq!(
        metric(&h, "switchboard_scan_total{outcome=\"fail_open\"}").await,
        1
    );
    h.stop().await;
}
