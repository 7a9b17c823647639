//! The SMTP session over in-memory IO, against a real pipeline on a temporary store: the
//! RCPT checks and what DATA commits.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::config::{Config, GroupConfig};
use crate::message::{IdGen, MsgId};
use crate::pipeline::{self, Ctx, Sinks};
use crate::store::Store;

struct Gateway {
    shared: Shared,
    ctx: Arc<Ctx>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A pipeline with no sinks (what is committed stays queued) and a session's shared state.
fn gateway(edit: impl FnOnce(&mut Config)) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.store.path = dir.path().join("sb.db");
    cfg.directory.groups = vec![GroupConfig {
        name: "team".into(),
        members: vec![
            "sms:+8613800000001".into(),
            "mail:bob@example.com".into(),
            "mail:alice@example.com".into(),
        ],
    }];
    cfg.mail.max_recipients = 3;
    edit(&mut cfg);
    let cfg = Arc::new(cfg);
    let ids = Arc::new(IdGen::new(1));
    let store = Store::open(&cfg.store, ids.clone(), 60_000).unwrap();
    let ctx = Arc::new(Ctx::new(cfg.clone(), store, ids));
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (intake, _) = pipeline::start(ctx.clone(), Sinks::new(), &tracker, stop.clone());
    let shared = Shared::new(&cfg.mail, &cfg.content, intake, None, stop.clone());
    Gateway {
        shared,
        ctx,
        stop,
        _dir: dir,
    }
}

/// Runs one session over `script` (which ends with `QUIT`); the replies, one per line.
async fn talk(gw: &Gateway, script: &str) -> Vec<String> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    client.write_all(script.as_bytes()).await.unwrap();
    let mut session = Session::new(&gw.shared, "127.0.0.1".parse().unwrap());
    let run = tokio::time::timeout(Duration::from_secs(20), session.run(server, true));
    assert!(run.await.expect("the session ends").unwrap().is_none());
    let mut out = String::new();
    client.read_to_string(&mut out).await.unwrap();
    out.lines().map(str::to_string).collect()
}

/// The reply lines that begin with `code`.
fn with(replies: &[String], code: &str) -> Vec<String> {
    replies
        .iter()
        .filter(|l| l.starts_with(code))
        .cloned()
        .collect()
}

#[tokio::test]
async fn rcpt_refuses_relaying_unknown_groups_and_too_many() {
    let gw = gateway(|_| {});
    let r = talk(
        &gw,
        "EHLO client.example.com\r\n\
         RCPT TO:<8613800000001@sms.example.org>\r\n\
         MAIL FROM:<alice@example.com>\r\n\
         RCPT TO:<someone@elsewhere.example.net>\r\n\
         RCPT TO:<nobody@groups.example.org>\r\n\
         RCPT TO:<notaphone@sms.example.org>\r\n\
         RCPT TO:<8613800000001@sms.example.org>\r\n\
         RCPT TO:<8613800000002@sms.example.org>\r\n\
         RCPT TO:<team@groups.example.org>\r\n\
         RCPT TO:<8613800000003@sms.example.org>\r\n\
         QUIT\r\n",
    );
    let r = r.await;
    assert!(r[0].starts_with("220 "), "{r:?}");
    assert_eq!(with(&r, "503"), ["503 5.5.1 Need MAIL first"], "{r:?}");
    let refused = with(&r, "550");
    assert_eq!(refused.len(), 3, "{r:?}");
    assert!(
        refused[0].starts_with("550 5.7.1 <someone@elsewhere.example.net>: Relay access denied")
    );
    assert_eq!(
        refused[1],
        "550 5.1.1 <nobody@groups.example.org>: no such group"
    );
    assert!(refused[2].starts_with("550 5.1.1 "), "{r:?}");
    assert_eq!(with(&r, "250 2.1.5").len(), 3, "{r:?}");
    assert_eq!(with(&r, "452"), ["452 4.5.3 Too many recipients"], "{r:?}");
    assert!(r.last().unwrap().starts_with("221 "), "{r:?}");
}

#[tokio::test]
async fn only_members_may_write_to_a_group_and_known_senders_are_enforced() {
    let gw = gateway(|_| {});
    let r = talk(
        &gw,
        "EHLO client.example.com\r\n\
         MAIL FROM:<mallory@example.com>\r\n\
         RCPT TO:<team@groups.example.org>\r\n\
         QUIT\r\n",
    )
    .await;
    assert_eq!(
        with(&r, "550"),
        ["550 5.7.1 <team@groups.example.org>: only members may write to this group"],
        "{r:?}"
    );
    let gw = gateway(|cfg| cfg.directory.mail_senders = "known".into());
    let r = talk(
        &gw,
        "EHLO client.example.com\r\n\
         MAIL FROM:<mallory@example.com>\r\n\
         QUIT\r\n",
    )
    .await;
    assert_eq!(with(&r, "550"), ["550 5.7.1 Sender not allowed"], "{r:?}");
}

#[tokio::test]
async fn data_commits_the_message_with_groups_expanded() {
    let gw = gateway(|_| {});
    let r = talk(
        &gw,
        "EHLO client.example.com\r\n\
         MAIL FROM:<alice@example.com>\r\n\
         RCPT TO:<team@groups.example.org> NOTIFY=SUCCESS,FAILURE\r\n\
         RCPT TO:<8613800000001@sms.example.org> NOTIFY=NEVER\r\n\
         RCPT TO:<carol%im.example.net@im.example.org>\r\n\
         DATA\r\n\
         From: alice@example.com\r\n\
         Subject: Lunch\r\n\
         \r\n\
         At noon.\r\n\
         ..with a dot\r\n\
         .\r\n\
         QUIT\r\n",
    )
    .await;
    assert_eq!(with(&r, "354").len(), 1, "{r:?}");
    let queued = with(&r, "250 2.0.0 Ok: queued as ");
    assert_eq!(queued.len(), 1, "{r:?}");
    let id = MsgId::parse(&queued[0]["250 2.0.0 Ok: queued as ".len()..]).unwrap();
    let env = gw.ctx.store.load(id).await.unwrap().expect("stored");
    let to: Vec<String> = env
        .recipients
        .iter()
        .map(|r| r.address.to_string())
        .collect();
    // The group's members in place of the group, each address once (its first place wins).
    assert_eq!(
        to,
        [
            "sms:+8613800000001",
            "mail:bob@example.com",
            "im:carol@im.example.net"
        ]
    );
    // Alice is a member: she speaks as the group, and is not sent her own mail.
    assert_eq!(env.origin.to_string(), "group:team");
    assert_eq!(
        env.speaker.as_ref().map(|a| a.to_string()).as_deref(),
        Some("mail:alice@example.com")
    );
    assert_eq!(env.client, "smtp");
    let mail = env.content.mail.as_ref().unwrap();
    // Each member keeps the DSN request of the RCPT that named its group.
    let notify: Vec<bool> = mail.rcpts.iter().map(|m| m.notify_success).collect();
    assert_eq!(notify, [true, true, false]);
    assert_eq!(
        env.report_to.as_ref().map(|a| a.to_string()).as_deref(),
        Some("mail:alice@example.com")
    );
    assert!(env.content.text.contains("Lunch"), "{:?}", env.content.text);
    assert!(
        env.content.text.contains(".with a dot"),
        "{:?}",
        env.content.text
    );
    assert!(env.expires_at > env.created_at);
}

#[tokio::test]
async fn data_refused_before_the_commit_stores_nothing() {
    let gw = gateway(|cfg| {
        cfg.mail.attachments_to_sms = "refuse".into();
        cfg.mail.max_message_bytes = 2000;
    });
    let attachment = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
        Content-Type: text/plain\r\n\r\nhi\r\n--b\r\n\
        Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n";
    let big = "x".repeat(3000);
    let script = format!(
        "EHLO c\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<8613800000001@sms.example.org>\r\n\
         DATA\r\nSubject: file\r\nMIME-Version: 1.0\r\n{attachment}.\r\n\
         MAIL FROM:<alice@example.com>\r\nRCPT TO:<8613800000001@sms.example.org>\r\n\
         DATA\r\nSubject: big\r\n\r\n{big}\r\n.\r\n\
         MAIL FROM:<>\r\nRCPT TO:<8613800000001@sms.example.org>\r\n\
         DATA\r\nSubject: Undelivered Mail\r\n\r\nno ids of ours here\r\n.\r\n\
         QUIT\r\n"
    );
    let r = talk(&gw, &script).await;
    assert_eq!(
        with(&r, "554"),
        ["554 5.6.1 Attachments cannot be delivered to a phone; send text only"],
        "{r:?}"
    );
    assert_eq!(with(&r, "552").len(), 1, "{r:?}");
    // A null-sender mail is taken as a report, never as a message.
    assert_eq!(
        with(&r, "250 2.0.0 Ok: delivery report taken").len(),
        1,
        "{r:?}"
    );
    assert!(with(&r, "250 2.0.0 Ok: queued").is_empty(), "{r:?}");
    let counts = gw.ctx.store.state_counts().await.unwrap();
    assert!(counts.iter().all(|(_, n)| *n == 0), "{counts:?}");
}
