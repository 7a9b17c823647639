//! Virus scanning of attachments and media parts with clamd (`INSTREAM`, via
//! `clamav-client`), and the quarantine folder for what it finds.
//!
//! Guarantees:
//! - Every part of a message is scanned before any recipient is routed; one infected part
//!   refuses the whole message (a permanent failure naming the signature) and the parts are
//!   written to the quarantine folder (`<dir>/<message id>/`), pruned after the retention.
//! - clamd unreachable, timing out or answering an error is never a silent pass: under
//!   `fail_closed` the message is retried later (a temporary failure), under `fail_open` it
//!   passes and `switchboard_scan_total{outcome="fail_open"}` counts it.
//! - clamd's answer is read with a bound ([`MAX_REPLY`]) and the whole scan with a deadline.
//! - No error or refusal names a filesystem path (the quarantine folder, clamd's socket):
//!   they reach API clients, DSNs and SMTP replies. The quarantine folder of a message is
//!   named by its id.
//! - Mail received over SMTP is scanned whole before it is accepted ([`Scanner::scan_bytes`],
//!   [`Scanner::quarantine_mail`]), so a refusal is an SMTP reply, never a bounce.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::message::{Envelope, Part};

/// Largest clamd reply read (a reply is one line: `stream: <name> FOUND`).
pub const MAX_REPLY: usize = 4096;

/// What happens when clamd cannot give a verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenUnavailable {
    /// Hold the message and try again later (a temporary failure).
    #[default]
    FailClosed,
    /// Let it pass unscanned, counted in `switchboard_scan_total{outcome="fail_open"}`.
    FailOpen,
}

/// The `[content.scan]` section.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScanConfig {
    /// clamd's address: `host:port` (TCP) or an absolute path (Unix socket). Empty: no
    /// scanning.
    pub clamd: String,
    /// Deadline for one message's scan (connect, send, verdict), in milliseconds.
    pub timeout_ms: u64,
    /// clamd down or failing: `fail_closed` (hold and retry) or `fail_open` (pass, counted).
    pub on_unavailable: WhenUnavailable,
    /// Where infected content is kept, one folder per message.
    pub quarantine_dir: PathBuf,
    /// Days a quarantined message is kept before it is deleted.
    pub quarantine_retention_days: u32,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            clamd: String::new(),
            timeout_ms: 10_000,
            on_unavailable: WhenUnavailable::FailClosed,
            quarantine_dir: PathBuf::from("var/quarantine"),
            quarantine_retention_days: 30,
        }
    }
}

impl ScanConfig {
    /// Every error, each naming its key.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !self.clamd.is_empty()
            && !self.clamd.starts_with('/')
            && self.clamd.parse::<std::net::SocketAddr>().is_err()
        {
            e.push(format!(
                "content.scan.clamd: {:?} is neither ip:port nor an absolute socket path",
                self.clamd
            ));
        }
        if self.timeout_ms == 0 {
            e.push("content.scan.timeout_ms: must be at least 1".into());
        }
        if !self.clamd.is_empty() && self.quarantine_dir.as_os_str().is_empty() {
            e.push("content.scan.quarantine_dir: must not be empty when scanning".into());
        }
        if self.quarantine_retention_days == 0 {
            e.push("content.scan.quarantine_retention_days: must be at least 1".into());
        }
        e
    }
}

/// clamd's verdict on a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// `signature` as clamd names it (`Test.EICAR.UNOFFICIAL`); `part` names the part.
    Infected {
        signature: String,
        part: String,
    },
}

/// clamd gave no verdict.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("virus scanner unavailable: {0}")]
pub struct Unavailable(pub String);

/// What the process stage does with a message after scanning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Pass,
    /// Permanent failure for every recipient, with this error.
    Refuse(String),
    /// Temporary failure: try again later.
    Retry(String),
}

/// A clamd client and the quarantine.
#[derive(Clone, Debug)]
pub struct Scanner {
    cfg: ScanConfig,
}

impl Scanner {
    /// `None` when scanning is off (`clamd` empty).
    pub fn new(cfg: &ScanConfig) -> Option<Scanner> {
        (!cfg.clamd.is_empty()).then(|| Scanner { cfg: cfg.clone() })
    }

    /// Scans every part; the first infected one decides.
    pub async fn scan(&self, parts: &[Part]) -> Result<Verdict, Unavailable> {
        let deadline = Duration::from_millis(self.cfg.timeout_ms);
        let all = async {
            for (i, p) in parts.iter().enumerate() {
                if let Some(signature) = self.scan_one(&p.bytes).await? {
                    let part = p.name.clone().unwrap_or_else(|| format!("part {}", i + 1));
                    return Ok(Verdict::Infected { signature, part });
                }
            }
            Ok(Verdict::Clean)
        };
        tokio::time::timeout(deadline, all)
            .await
            .unwrap_or_else(|_| Err(Unavailable(format!("no verdict within {deadline:?}"))))
    }

    async fn scan_one(&self, bytes: &[u8]) -> Result<Option<String>, Unavailable> {
        let transport = Clamd {
            addr: self.cfg.clamd.clone(),
        };
        let reply = clamav_client::tokio::scan_buffer(bytes, transport, None)
            .await
            .map_err(|e| Unavailable(format!("clamd: {e}")))?;
        parse_reply(&reply)
    }

    /// Scans one whole object (a received mail: clamd reads its MIME structure itself),
    /// within the scan deadline; the signature found, if any.
    pub async fn scan_bytes(&self, bytes: &[u8]) -> Result<Option<String>, Unavailable> {
        let deadline = Duration::from_millis(self.cfg.timeout_ms);
        tokio::time::timeout(deadline, self.scan_one(bytes))
            .await
            .unwrap_or_else(|_| Err(Unavailable(format!("no verdict within {deadline:?}"))))
    }

    /// What the configured policy says when clamd gives no verdict.
    pub fn on_unavailable(&self) -> WhenUnavailable {
        self.cfg.on_unavailable
    }

    /// Keeps an infected received mail (`message.eml`) and a note in the quarantine folder
    /// of message `id`.
    pub async fn quarantine_mail(
        &self,
        env: &Envelope,
        signature: &str,
        raw: &[u8],
    ) -> io::Result<()> {
        let note = format!(
            "message {}\norigin {}\nsignature {}\n",
            env.id, env.origin, signature
        );
        self.keep(env, note, vec![("message.eml".into(), raw.to_vec())])
            .await
    }

    /// Scans `env`'s parts and turns the verdict into a decision under the configured
    /// policy; infected content goes to the quarantine.
    pub async fn check(&self, env: &Envelope) -> Decision {
        if env.content.parts.is_empty() {
            return Decision::Pass;
        }
        match self.scan(&env.content.parts).await {
            Ok(Verdict::Clean) => {
                metrics::counter!("switchboard_scan_total", "outcome" => "clean").increment(1);
                Decision::Pass
            }
            Ok(Verdict::Infected { signature, part }) => {
                metrics::counter!("switchboard_scan_total", "outcome" => "infected").increment(1);
                let kept = match self.quarantine(env, &signature).await {
                    Ok(()) => "kept in quarantine",
                    Err(e) => {
                        tracing::error!(message = %env.id, error = %e, "cannot quarantine");
                        "not kept: quarantine failed"
                    }
                };
                tracing::warn!(message = %env.id, %signature, %part, "virus found");
                Decision::Refuse(format!(
                    "virus_found: {signature} in {part:?}; the message was not delivered ({kept})"
                ))
            }
            Err(e) => match self.cfg.on_unavailable {
                WhenUnavailable::FailClosed => {
                    metrics::counter!("switchboard_scan_total", "outcome" => "unavailable")
                        .increment(1);
                    Decision::Retry(format!("scanner_unavailable: {e}"))
                }
                WhenUnavailable::FailOpen => {
                    metrics::counter!("switchboard_scan_total", "outcome" => "fail_open")
                        .increment(1);
                    tracing::warn!(message = %env.id, error = %e, "passed unscanned (fail_open)");
                    Decision::Pass
                }
            },
        }
    }

    /// Writes the message's parts and a note to `<quarantine_dir>/<id>/`, after pruning
    /// folders older than the retention.
    async fn quarantine(&self, env: &Envelope, signature: &str) -> io::Result<()> {
        let note = format!(
            "message {}\norigin {}\nsignature {}\n",
            env.id, env.origin, signature
        );
        let parts: Vec<(String, Vec<u8>)> = env
            .content
            .parts
            .iter()
            .enumerate()
            .map(|(i, p)| (file_name(i, p.name.as_deref()), p.bytes.clone()))
            .collect();
        self.keep(env, note, parts).await
    }

    /// Writes `files` and the note to `<quarantine_dir>/<id>/`.
    async fn keep(
        &self,
        env: &Envelope,
        note: String,
        parts: Vec<(String, Vec<u8>)>,
    ) -> io::Result<()> {
        let root = self.cfg.quarantine_dir.clone();
        let keep = Duration::from_secs(u64::from(self.cfg.quarantine_retention_days) * 86_400);
        let dir = root.join(env.id.to_string());
        tokio::task::spawn_blocking(move || {
            prune(&root, keep);
            std::fs::create_dir_all(&dir)?;
            for (name, bytes) in parts {
                std::fs::write(dir.join(name), bytes)?;
            }
            std::fs::write(dir.join("REASON"), note)
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// A file name for part `i`: its own name with anything but `[A-Za-z0-9._-]` replaced.
fn file_name(i: usize, name: Option<&str>) -> String {
    let base: String = name
        .unwrap_or("part")
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}-{}", i + 1, base.trim_start_matches('.'))
}

/// Deletes quarantine folders last changed longer than `keep` ago.
fn prune(root: &Path, keep: Duration) {
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    let now = SystemTime::now();
    for e in rd.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > keep);
        if old && let Err(err) = std::fs::remove_dir_all(e.path()) {
            tracing::warn!(entry = ?e.file_name(), error = %err, "cannot prune quarantine");
        }
    }
}

/// Reads clamd's `INSTREAM` reply: `stream: OK`, `stream: <name> FOUND`, or an error.
pub fn parse_reply(reply: &[u8]) -> Result<Option<String>, Unavailable> {
    let text = String::from_utf8_lossy(reply);
    let line = text.trim_end_matches(['\0', '\n', '\r', ' ']);
    let body = line.strip_prefix("stream:").unwrap_or(line).trim();
    if body == "OK" {
        return Ok(None);
    }
    if let Some(name) = body.strip_suffix(" FOUND") {
        let name = name.trim();
        if !name.is_empty() {
            return Ok(Some(name.to_string()));
        }
    }
    if line.is_empty() {
        return Err(Unavailable(
            "clamd closed the connection without a verdict".into(),
        ));
    }
    Err(Unavailable(format!(
        "clamd answered {:?}",
        line.chars().take(200).collect::<String>()
    )))
}

/// clamd over TCP or a Unix socket, its reply read with a bound.
struct Clamd {
    addr: String,
}

impl clamav_client::tokio::TransportProtocol for Clamd {
    type Stream = Limited;

    async fn connect(&self) -> io::Result<Limited> {
        let conn = if self.addr.starts_with('/') {
            Conn::Unix(UnixStream::connect(&self.addr).await?)
        } else {
            let s = TcpStream::connect(&self.addr).await?;
            s.set_nodelay(true)?;
            Conn::Tcp(s)
        };
        Ok(Limited {
            conn,
            left: MAX_REPLY,
        })
    }
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A connection whose reads stop with an error after [`MAX_REPLY`] bytes.
struct Limited {
    conn: Conn,
    left: usize,
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.left == 0 {
            return Poll::Ready(Err(io::Error::other(format!(
                "clamd reply longer than {MAX_REPLY} bytes"
            ))));
        }
        let mut tmp = [0u8; 512];
        let n = self.left.min(tmp.len()).min(buf.remaining());
        let mut sub = ReadBuf::new(&mut tmp[..n]);
        let polled = match &mut self.conn {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, &mut sub),
            Conn::Unix(s) => Pin::new(s).poll_read(cx, &mut sub),
        };
        match polled {
            Poll::Ready(Ok(())) => {
                let got = sub.filled().len();
                buf.put_slice(sub.filled());
                self.left -= got;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.conn {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, data),
            Conn::Unix(s) => Pin::new(s).poll_write(cx, data),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.conn {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.conn {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read() {
        assert_eq!(parse_reply(b"stream: OK\0"), Ok(None));
        assert_eq!(
            parse_reply(b"stream: Test.EICAR.UNOFFICIAL FOUND\0"),
            Ok(Some("Test.EICAR.UNOFFICIAL".into()))
        );
        assert!(parse_reply(b"INSTREAM size limit exceeded. ERROR\0").is_err());
        assert!(parse_reply(b"").is_err());
        assert!(parse_reply(b"stream:  FOUND\0").is_err());
    }

    #[test]
    fn quarantine_file_names_are_safe() {
        assert_eq!(file_name(0, Some("../../etc/passwd")), "1-_.._etc_passwd");
        assert_eq!(file_name(1, Some("eicar.com")), "2-eicar.com");
        assert_eq!(file_name(2, None), "3-part");
    }
}
