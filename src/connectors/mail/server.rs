//! The SMTP server: mail from the Internet side (a relaying MTA such as Postfix) for the
//! gateway's own domains — phones, IM users, groups.
//!
//! A session is a small state machine over `smtp-proto`'s request parser (which has no I/O).
//! Guarantees and limits:
//! - `250` after `DATA` is sent only once the message is committed to the store; a full
//!   queue answers `451 4.3.2` and stores nothing (the client retries).
//! - Only the gateway's domains are accepted (`550 5.7.1` for relaying); only clients from
//!   `allow_networks` may talk (`554 5.7.1`); at most `max_connections` sessions, at most
//!   `max_connections_per_ip` from one address (`421 4.7.0`).
//! - Bounded reads: command lines up to 4,096 bytes (`500 5.5.2`), message size
//!   (`552 5.3.4`, the excess is read and dropped, never kept), body line length
//!   (`554 5.6.0`), recipients (`452 4.5.3`); a session closes after 20 bad commands or 100
//!   junk ones (`NOOP`, `RSET`, `VRFY`, `HELP`, greetings).
//! - Deadlines, not idle timeouts: each command line must arrive whole within
//!   `command_timeout_secs` of the previous reply and the message data within
//!   `data_timeout_secs` of `354` (`421 4.4.2`), however slowly the bytes trickle; replies
//!   are written under the same deadline (a client that does not read is let go). With
//!   fewer than a fifth of the session slots free, the command deadline is at most 10 s.
//!   The per-address cap counts an IPv6 client's /64 as one address.
//! - At most `max_messages_per_session` messages per session (`421 4.7.0`), at most
//!   `max_messages_per_sender_per_minute` per envelope sender over all sessions (`450 4.7.1`).
//! - DATA framing ([`super::data`]): only `CRLF . CRLF` ends a message; a bare CR or LF is
//!   refused with `554 5.6.0` and the session closes, so nothing after a doubtful end is
//!   read as commands (no smuggling). `BDAT` (CHUNKING) is not offered: `502` and closed.
//! - Null-sender mail is a report on mail the gateway sent, never a message
//!   ([`super::bounce`]); other mail passes the virus and spam checks before the `250`
//!   ([`super::precheck`]), so refusals are SMTP replies, never bounces.
//! - Replies are written when the client's input is used up, so pipelined commands get
//!   their replies in one write (PIPELINING).
//! - On shutdown: no new connections; an idle session is told `421 4.3.2` and closed; a
//!   message in progress is finished within the drain deadline.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use smtp_proto::request::receiver::RequestReceiver;
use smtp_proto::{
    Error as ProtoError, MAIL_RET_FULL, RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER,
    RCPT_NOTIFY_SUCCESS, Request,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::config::{MailConfig, allowed};
use super::data::DataReader;
use super::limits::{RateTicket, SenderRate};
use super::precheck::PreQueue;
use super::{bounce, parse};
use crate::address::{Address, MailDomains};
use crate::config::Config;
use crate::message::{Content, Envelope, Kind, MailMeta, MailRcpt, Recipient, now_ms};
use crate::pipeline::{Intake, SubmitError};

/// Bad commands after which a session is closed.
const MAX_ERRORS: u32 = 20;

/// Longest command line, CRLF included (RFC 5321 asks for at least 512).
const MAX_COMMAND_LINE: usize = 4096;

/// Commands that move no mail (`NOOP`, `RSET`, `VRFY`, `HELP`, `EHLO`/`HELO`) after which a
/// session is closed.
const MAX_JUNK: u32 = 100;

/// Writes the pending replies before `deadline` (a client that does not read them is let
/// go) and clears them.
async fn write_out<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
    deadline: Instant,
) -> std::io::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let io = async {
        stream.write_all(out).await?;
        stream.flush().await
    };
    let r = tokio::time::timeout_at(deadline, io).await;
    out.clear();
    match r {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the client does not read its replies",
        )),
    }
}

/// A client address as the limits see it: IPv4-mapped IPv6 as IPv4, and an IPv6 client's
/// /64 as one address (a host is given a whole /64).
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & (u128::MAX << 64)).into()),
        },
        v4 => v4,
    }
}

/// The command deadline under load (fewer than a fifth of the session slots free), when
/// the configured one is longer: slow clients cannot keep others waiting for long.
const BUSY_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Loads the STARTTLS certificate and key named by the config, if any.
pub fn tls_acceptor(cfg: &MailConfig) -> Result<Option<TlsAcceptor>, String> {
    let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) else {
        return Ok(None);
    };
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("mail.tls_cert: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "mail.tls_cert: no certificate in {}",
            cert.display()
        ));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("mail.tls_key: {e}"))?
        .ok_or_else(|| format!("mail.tls_key: no private key in {}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("mail.tls_cert: {e}"))?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// What every session of one server shares.
struct Shared {
    cfg: Arc<Config>,
    intake: Intake,
    tls: Option<TlsAcceptor>,
    domains: MailDomains,
    nets: Vec<(IpAddr, u8)>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Virus and spam checks before the `250`.
    pre: PreQueue,
    /// Messages per envelope sender per minute.
    rate: Arc<SenderRate>,
    /// Session slots (`max_connections`).
    slots: Arc<Semaphore>,
    /// Stop taking new work: idle sessions close.
    soft: CancellationToken,
    /// The drain deadline passed: every session closes now.
    hard: CancellationToken,
}

/// Releases a client address's connection slot.
struct IpSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Serves SMTP on `listener` until `shutdown`, then lets the sessions finish within
/// `deadline` (closing the rest) and returns.
pub async fn serve(
    listener: TcpListener,
    intake: Intake,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    deadline: Duration,
) {
    let cfg = intake.ctx().cfg.clone();
    let shared = Arc::new(Shared {
        domains: cfg.mail.domains(),
        nets: cfg.mail.networks(),
        cfg: cfg.clone(),
        intake,
        tls,
        per_ip: Mutex::new(HashMap::new()),
        pre: PreQueue::new(&cfg),
        slots: Arc::new(Semaphore::new(cfg.mail.max_connections.max(1))),
        rate: SenderRate::new(cfg.mail.max_messages_per_sender_per_minute),
        soft: shutdown.clone(),
        hard: CancellationToken::new(),
    });
    let sessions = TaskTracker::new();
    let slots = shared.slots.clone();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.cancelled() => break,
        };
        let (sock, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "SMTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = sock.set_nodelay(true);
        let ip = peer.ip();
        let key = canonical(ip);
        metrics::counter!("switchboard_smtp_connections_total").increment(1);
        if !allowed(&shared.nets, ip) {
            metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => "network")
                .increment(1);
            sessions.spawn(refuse(
                sock,
                "554 5.7.1 Your network may not use this server\r\n",
            ));
            continue;
        }
        let over = {
            let mut map = shared.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let n = map.entry(key).or_insert(0);
            if *n >= cfg.mail.max_connections_per_ip {
                true
            } else {
                *n += 1;
                false
            }
        };
        if over {
            metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => "connections_per_ip")
                .increment(1);
            sessions.spawn(refuse(
                sock,
                "421 4.7.0 Too many connections from your address\r\n",
            ));
            continue;
        }
        let slot = IpSlot {
            shared: shared.clone(),
            ip: key,
        };
        let shared = shared.clone();
        let span = tracing::debug_span!("smtp", peer = %peer);
        sessions.spawn(
            async move {
                if let Err(e) = connection(shared, sock, ip).await {
                    tracing::debug!(error = %e, "SMTP session ended with an error");
                }
                drop(slot);
                drop(permit);
            }
            .instrument(span),
        );
    }
    drop(listener);
    sessions.close();
    if tokio::time::timeout(deadline, sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            sessions = sessions.len(),
            "SMTP sessions still open at the drain deadline; closing them"
        );
        shared.hard.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(1), sessions.wait()).await;
    }
}

async fn refuse(mut sock: TcpStream, line: &'static str) {
    let _ = tokio::time::timeout(Duration::from_secs(5), sock.write_all(line.as_bytes())).await;
    let _ = sock.shutdown().await;
}

async fn connection(shared: Arc<Shared>, sock: TcpStream, ip: IpAddr) -> std::io::Result<()> {
    let mut session = Session::new(&shared, ip);
    let Some(sock) = session.run(sock, true).await? else {
        return Ok(());
    };
    // The limits hold across the upgrade.
    let (messages, junk, errors) = (session.messages, session.junk, session.errors);
    let Some(acceptor) = shared.tls.clone() else {
        return Ok(());
    };
    let handshake = tokio::time::timeout(
        Duration::from_secs(shared.cfg.mail.command_timeout_secs),
        acceptor.accept(sock),
    );
    let tls = match handshake.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "STARTTLS handshake failed");
            return Ok(());
        }
        Err(_) => return Ok(()),
    };
    // RFC 3207: forget everything said before TLS.
    let mut session = Session::new(&shared, ip);
    session.tls_active = true;
    (session.messages, session.junk, session.errors) = (messages, junk, errors);
    session.run(tls, false).await?;
    Ok(())
}

/// One mail transaction being collected.
struct Txn {
    /// `None`: the null reverse-path (a bounce).
    from: Option<String>,
    envid: Option<String>,
    ret_full: bool,
    rcpts: Vec<(Address, MailRcpt)>,
    /// The sender's token for this message (given back unless it is stored).
    ticket: Option<RateTicket>,
}

enum Next {
    Continue,
    Data,
    Quit,
    StartTls,
}

struct Session<'a> {
    shared: &'a Shared,
    ip: IpAddr,
    helo: Option<String>,
    tls_active: bool,
    txn: Option<Txn>,
    errors: u32,
    junk: u32,
    /// Transactions that reached the end of `DATA`.
    messages: usize,
}

fn reply(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, ip: IpAddr) -> Session<'a> {
        Session {
            shared,
            ip,
            helo: None,
            tls_active: false,
            txn: None,
            errors: 0,
            junk: 0,
            messages: 0,
        }
    }

    fn mail_cfg(&self) -> &MailConfig {
        &self.shared.cfg.mail
    }

    /// When the next command must have arrived.
    fn command_deadline(&self) -> Instant {
        let cfg = self.mail_cfg();
        let mut wait = Duration::from_secs(cfg.command_timeout_secs);
        if self.shared.slots.available_permits() * 5 < cfg.max_connections {
            wait = wait.min(BUSY_COMMAND_TIMEOUT);
        }
        Instant::now() + wait
    }

    /// Runs the session on `stream`. Returns the stream when the client asked for STARTTLS
    /// (and it was granted); `None` when the session is over.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        mut stream: S,
        greet: bool,
    ) -> std::io::Result<Option<S>> {
        let cmd_timeout = Duration::from_secs(self.mail_cfg().command_timeout_secs);
        let data_timeout = Duration::from_secs(self.mail_cfg().data_timeout_secs);
        let max_size = self.mail_cfg().max_message_bytes;
        let max_line = self.mail_cfg().max_line_bytes;
        let mut out: Vec<u8> = Vec::with_capacity(512);
        // The client has until `deadline` for the whole command (or message data) being
        // read: trickling bytes does not move it.
        let mut deadline = self.command_deadline();
        if greet {
            reply(
                &mut out,
                &format!("220 {} ESMTP Switchboard", self.mail_cfg().hostname),
            );
            write_out(&mut stream, &mut out, deadline).await?;
        }
        let mut rbuf = vec![0u8; 16 * 1024];
        let mut receiver = RequestReceiver::default();
        let mut body: Option<DataReader> = None;
        // Bytes of the command line read so far (before its LF), and whether the rest of
        // an over-long line is being skipped.
        let mut partial = 0usize;
        let mut skipping = false;
        loop {
            let idle = body.is_none() && self.txn.is_none();
            let n = tokio::select! {
                r = tokio::time::timeout_at(deadline, stream.read(&mut rbuf)) => match r {
                    Ok(Ok(0)) => return Ok(None),
                    Ok(Ok(n)) => n,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        metrics::counter!("switchboard_smtp_timeouts_total", "phase" => if body.is_some() { "data" } else { "command" })
                            .increment(1);
                        reply(&mut out, "421 4.4.2 Timeout waiting for the client; closing");
                        let _ = write_out(&mut stream, &mut out, Instant::now() + Duration::from_secs(1)).await;
                        return Ok(None);
                    }
                },
                _ = self.shared.soft.cancelled(), if idle => {
                    reply(&mut out, "421 4.3.2 Service shutting down; try again later");
                    let _ = write_out(&mut stream, &mut out, Instant::now() + Duration::from_secs(1)).await;
                    return Ok(None);
                }
                _ = self.shared.hard.cancelled() => return Ok(None),
            };
            let mut it = rbuf[..n].iter();
            loop {
                if let Some(b) = body.as_mut() {
                    let input = it.as_slice();
                    let Some(used) = b.feed(input) else {
                        it = [].iter();
                        break;
                    };
                    it = input[used..].iter();
                    let Some(b) = body.take() else { break };
                    if b.bare_newline {
                        // Where the message ends is in doubt: nothing more is read.
                        self.txn = None;
                        metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => "bare_newline")
                            .increment(1);
                        reply(
                            &mut out,
                            "554 5.6.0 Message refused: bare CR or LF in the data (lines must end with CRLF); closing",
                        );
                        let _ =
                            write_out(&mut stream, &mut out, Instant::now() + cmd_timeout).await;
                        let _ = stream.shutdown().await;
                        return Ok(None);
                    }
                    let line = if b.too_big {
                        self.txn = None;
                        metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => "too_big")
                            .increment(1);
                        format!(
                            "552 5.3.4 Message size exceeds fixed maximum message size ({max_size} bytes)"
                        )
                    } else if b.long_line {
                        self.txn = None;
                        format!("554 5.6.0 A line of the message is longer than {max_line} bytes")
                    } else {
                        let shared = self.shared;
                        tokio::select! {
                            line = self.commit(b.into_bytes()) => line,
                            _ = shared.hard.cancelled() => return Ok(None),
                        }
                    };
                    // Answered for good (not "try later"): it counts against the session.
                    if !line.starts_with('4') {
                        self.messages += 1;
                    }
                    reply(&mut out, &line);
                    deadline = self.command_deadline();
                    continue;
                }
                let rest = it.as_slice();
                if rest.is_empty() {
                    break;
                }
                let line_end = rest.iter().position(|&c| c == b'\n');
                if skipping {
                    let Some(p) = line_end else {
                        it = [].iter();
                        break;
                    };
                    it = rest[p + 1..].iter();
                    skipping = false;
                    self.errors += 1;
                    reply(&mut out, "500 5.5.2 Line too long");
                    deadline = self.command_deadline();
                    if self.errors >= MAX_ERRORS {
                        reply(&mut out, "421 4.7.0 Too many errors; closing");
                        write_out(&mut stream, &mut out, deadline).await?;
                        let _ = stream.shutdown().await;
                        return Ok(None);
                    }
                    continue;
                }
                if partial + line_end.map_or(rest.len(), |p| p + 1) > MAX_COMMAND_LINE {
                    receiver = RequestReceiver::default();
                    partial = 0;
                    skipping = true;
                    continue;
                }
                partial = match line_end {
                    Some(_) => 0,
                    None => partial + rest.len(),
                };
                let next = match receiver.ingest(&mut it) {
                    Ok(req) => {
                        let req = req.into_owned();
                        self.handle(req, &mut out)
                    }
                    Err(ProtoError::NeedsMoreData { .. }) => break,
                    Err(e) => {
                        self.errors += 1;
                        reply(&mut out, &syntax_reply(&e));
                        if self.errors >= MAX_ERRORS {
                            reply(&mut out, "421 4.7.0 Too many errors; closing");
                            Next::Quit
                        } else {
                            Next::Continue
                        }
                    }
                };
                deadline = self.command_deadline();
                match next {
                    Next::Continue => {}
                    Next::Data => {
                        deadline = Instant::now() + data_timeout;
                        body = Some(DataReader::new(max_size, max_line));
                    }
                    Next::Quit => {
                        write_out(&mut stream, &mut out, deadline).await?;
                        let _ = stream.shutdown().await;
                        return Ok(None);
                    }
                    Next::StartTls => {
                        write_out(&mut stream, &mut out, deadline).await?;
                        // Anything pipelined after STARTTLS is dropped (RFC 3207).
                        return Ok(Some(stream));
                    }
                }
            }
            if !out.is_empty() {
                let until = Instant::now() + cmd_timeout;
                write_out(&mut stream, &mut out, until).await?;
            }
        }
    }

    fn handle(&mut self, req: Request<String>, out: &mut Vec<u8>) -> Next {
        let cfg = &self.shared.cfg.mail;
        if matches!(
            req,
            Request::Ehlo { .. }
                | Request::Helo { .. }
                | Request::Lhlo { .. }
                | Request::Noop { .. }
                | Request::Rset
                | Request::Vrfy { .. }
                | Request::Expn { .. }
                | Request::Help { .. }
        ) {
            self.junk += 1;
            if self.junk > MAX_JUNK {
                refused("junk_commands");
                reply(
                    out,
                    "421 4.7.0 Too many commands that move no mail; closing",
                );
                return Next::Quit;
            }
        }
        match req {
            Request::Ehlo { host } => {
                self.helo = Some(host);
                self.txn = None;
                let mut lines = vec![
                    format!("{} Hello", cfg.hostname),
                    "PIPELINING".to_string(),
                    format!("SIZE {}", cfg.max_message_bytes),
                    "8BITMIME".to_string(),
                    "ENHANCEDSTATUSCODES".to_string(),
                    "DSN".to_string(),
                ];
                if self.shared.tls.is_some() && !self.tls_active {
                    lines.push("STARTTLS".into());
                }
                let last = lines.len() - 1;
                for (i, l) in lines.iter().enumerate() {
                    let sep = if i == last { ' ' } else { '-' };
                    reply(out, &format!("250{sep}{l}"));
                }
                Next::Continue
            }
            Request::Helo { host } => {
                self.helo = Some(host);
                self.txn = None;
                reply(out, &format!("250 {}", cfg.hostname));
                Next::Continue
            }
            Request::Mail { from } => {
                if self.helo.is_none() {
                    reply(out, "503 5.5.1 Send EHLO or HELO first");
                } else if self.txn.is_some() {
                    reply(out, "503 5.5.1 Sender already given");
                } else if self.shared.soft.is_cancelled() {
                    reply(out, "421 4.3.2 Service shutting down; try again later");
                    return Next::Quit;
                } else if self.messages >= cfg.max_messages_per_session {
                    refused("messages_per_session");
                    reply(
                        out,
                        "421 4.7.0 Too many messages in one session; closing (connect again for more)",
                    );
                    return Next::Quit;
                } else if from.size > cfg.max_message_bytes {
                    reply(
                        out,
                        "552 5.3.4 Message size exceeds fixed maximum message size",
                    );
                } else if !from.address.is_empty()
                    && Address::parse_user(&format!("mail:{}", from.address)).is_err()
                {
                    reply(out, "553 5.1.7 Bad sender address");
                } else {
                    let sender = Address::parse_user(&format!("mail:{}", from.address))
                        .ok()
                        .map(|a| a.value().to_string());
                    // Null-sender mail never becomes a message: only the session limits
                    // bound it.
                    let ticket = match &sender {
                        Some(s) => match self.shared.rate.take(s) {
                            Some(t) => Some(t),
                            None => {
                                refused("sender_rate");
                                reply(
                                    out,
                                    "450 4.7.1 Too many messages from this sender; try again later",
                                );
                                return Next::Continue;
                            }
                        },
                        None => None,
                    };
                    self.txn = Some(Txn {
                        ticket,
                        from: sender,
                        envid: from.env_id.filter(|e| e.len() <= 100),
                        ret_full: from.flags & MAIL_RET_FULL != 0,
                        rcpts: Vec::new(),
                    });
                    reply(out, "250 2.1.0 Sender OK");
                }
                Next::Continue
            }
            Request::Rcpt { to } => {
                self.rcpt(to, out);
                Next::Continue
            }
            Request::Data => {
                match &self.txn {
                    None => reply(out, "503 5.5.1 Need MAIL first"),
                    Some(t) if t.rcpts.is_empty() => reply(out, "503 5.5.1 No valid recipients"),
                    Some(_) => {
                        reply(out, "354 Start mail input; end with <CRLF>.<CRLF>");
                        return Next::Data;
                    }
                }
                Next::Continue
            }
            Request::Rset => {
                self.txn = None;
                reply(out, "250 2.0.0 OK");
                Next::Continue
            }
            Request::Noop { .. } => {
                reply(out, "250 2.0.0 OK");
                Next::Continue
            }
            Request::Quit => {
                reply(out, &format!("221 2.0.0 {} closing", cfg.hostname));
                Next::Quit
            }
            Request::Vrfy { .. } => {
                reply(
                    out,
                    "252 2.5.2 Cannot VRFY; send the mail and it will be tried",
                );
                Next::Continue
            }
            Request::Help { .. } => {
                reply(out, "214 2.0.0 See RFC 5321");
                Next::Continue
            }
            Request::StartTls => {
                if self.tls_active {
                    reply(out, "503 5.5.1 TLS is already active");
                    Next::Continue
                } else if self.shared.tls.is_none() {
                    reply(out, "502 5.5.1 STARTTLS is not offered here");
                    Next::Continue
                } else {
                    reply(out, "220 2.0.0 Ready to start TLS");
                    Next::StartTls
                }
            }
            Request::Bdat { .. } => {
                // Not offered: the chunk that follows cannot be told from commands.
                refused("bdat");
                reply(
                    out,
                    "502 5.5.1 BDAT (CHUNKING) is not offered here; closing",
                );
                Next::Quit
            }
            other => {
                self.errors += 1;
                reply(
                    out,
                    &format!("502 5.5.1 {} is not implemented", other.name()),
                );
                Next::Continue
            }
        }
    }

    fn rcpt(&mut self, to: smtp_proto::RcptTo<String>, out: &mut Vec<u8>) {
        let cfg = &self.shared.cfg;
        let Some(txn) = self.txn.as_mut() else {
            reply(out, "503 5.5.1 Need MAIL first");
            return;
        };
        if txn.rcpts.len() >= cfg.mail.max_recipients {
            metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => "too_many_recipients")
                .increment(1);
            reply(out, "452 4.5.3 Too many recipients");
            return;
        }
        let addr = match self.shared.domains.recipient(&to.address) {
            Ok(Some(a)) => a,
            Ok(None) => {
                metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => "relay_denied")
                    .increment(1);
                reply(
                    out,
                    &format!(
                        "550 5.7.1 <{}>: Relay access denied",
                        to.address.replace(['\r', '\n'], "")
                    ),
                );
                return;
            }
            Err(e) => {
                reply(out, &format!("550 5.1.1 {e}").replace(['\r', '\n'], ""));
                return;
            }
        };
        if let Address::Group(name) = &addr
            && !cfg.directory.groups.iter().any(|g| &g.name == name)
        {
            reply(out, &format!("550 5.1.1 <{}>: no such group", to.address));
            return;
        }
        let never = to.flags & RCPT_NOTIFY_NEVER != 0;
        let given = to.flags & (RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_DELAY);
        let has = |flag: u64, name: &str| {
            if never {
                false
            } else if cfg.mail.always_report {
                true
            } else if given != 0 {
                to.flags & flag != 0
            } else {
                cfg.mail.default_notify.iter().any(|n| n == name)
            }
        };
        let meta = MailRcpt {
            address: to.address.clone(),
            orcpt: to.orcpt.clone().filter(|o| o.len() <= 500),
            notify_success: has(RCPT_NOTIFY_SUCCESS, "success"),
            notify_failure: has(RCPT_NOTIFY_FAILURE, "failure"),
            notify_delay: has(RCPT_NOTIFY_DELAY, "delay"),
        };
        if !txn.rcpts.iter().any(|(a, _)| a == &addr) {
            txn.rcpts.push((addr, meta));
        }
        reply(out, "250 2.1.5 Recipient OK");
    }

    /// Builds the envelope of a received message and commits it; the reply to send.
    async fn commit(&mut self, raw: Vec<u8>) -> String {
        let Some(mut txn) = self.txn.take() else {
            return "503 5.5.1 Need MAIL first".into();
        };
        if txn.from.is_none() {
            // A bounce or DSN: recorded as a report, or dropped; the same answer either way.
            bounce::take(self.shared.intake.ctx(), &raw).await;
            return "250 2.0.0 Ok: delivery report taken".into();
        }
        let ticket = txn.ticket.take();
        let cfg = &self.shared.cfg;
        let parsed = parse::parse(&raw);
        let mut recipients: Vec<Address> = Vec::new();
        let mut rcpt_meta: Vec<MailRcpt> = Vec::new();
        for (addr, meta) in txn.rcpts {
            let members: Vec<Address> = match &addr {
                Address::Group(name) => cfg
                    .directory
                    .groups
                    .iter()
                    .find(|g| &g.name == name)
                    .map(|g| {
                        g.members
                            .iter()
                            .filter_map(|m| Address::parse_user(m).ok())
                            .collect()
                    })
                    .unwrap_or_default(),
                other => vec![other.clone()],
            };
            for m in members {
                if !recipients.contains(&m) {
                    recipients.push(m);
                    rcpt_meta.push(meta.clone());
                }
            }
        }
        if recipients.is_empty() {
            return "554 5.5.1 No recipients left after expanding groups".into();
        }
        let to_phone = recipients.iter().any(|a| matches!(a, Address::Sms(_)));
        let attachments = parsed.parts.len();
        if to_phone && attachments > 0 && cfg.mail.attachments_to_sms == "refuse" {
            metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => "attachments")
                .increment(1);
            return "554 5.6.1 Attachments cannot be delivered to a phone; send text only".into();
        }
        let text = if to_phone {
            // With MMS, images, audio and video reach the phone; only the rest is left out.
            let mms = !cfg.content.mms.send_message_url.is_empty();
            let unsent = parsed
                .parts
                .iter()
                .filter(|p| !(mms && crate::content::mms::is_media(&p.content_type)))
                .count();
            let note =
                (unsent > 0).then(|| format!(" [{unsent} attachment(s) not sent to the phone]"));
            parse::sms_text(&parsed, cfg.mail.sms_max_chars, note.as_deref())
        } else {
            match &parsed.subject {
                Some(s) if !parsed.body.trim().is_empty() => {
                    format!("{s}\n\n{}", parsed.body.trim_end())
                }
                Some(s) => s.clone(),
                None => parsed.body.trim_end().to_string(),
            }
        };
        let now = now_ms();
        let wants_reports = rcpt_meta
            .iter()
            .any(|r| r.notify_success || r.notify_failure || r.notify_delay);
        let report_to = match (&txn.from, wants_reports) {
            (Some(sender), true) => Some(Address::Mail(sender.clone())),
            _ => None,
        };
        let delay_report_at = (cfg.mail.delay_report_secs > 0
            && rcpt_meta.iter().any(|r| r.notify_delay))
        .then(|| now + (cfg.mail.delay_report_secs as i64) * 1000);
        let origin = match &txn.from {
            Some(s) => Address::Mail(s.clone()),
            None => Address::Mail(format!("mailer-daemon@{}", cfg.mail.hostname)),
        };
        let ctx = self.shared.intake.ctx();
        let mut env = Envelope {
            id: ctx.ids.next(),
            kind: Kind::Message,
            origin,
            client: "smtp".into(),
            client_ref: txn.envid.clone(),
            report_to,
            recipients: recipients
                .into_iter()
                .enumerate()
                .map(|(i, a)| Recipient::new(i as u32, a))
                .collect(),
            content: Content {
                text,
                subject: None,
                parts: parsed.parts,
                report: None,
                mail: Some(MailMeta {
                    envid: txn.envid,
                    ret_full: txn.ret_full,
                    rcpts: rcpt_meta,
                    headers: parsed.headers,
                    multimedia: to_phone && attachments > 0,
                    delay_report_at,
                    content_checked: false,
                }),
            },
            created_at: now,
            expires_at: now + (cfg.retry.ttl_secs as i64) * 1000,
            note: None,
        };
        if let Err(refusal) = self.shared.pre.check(&mut env, &raw).await {
            return refusal;
        }
        drop(raw);
        match self.shared.intake.submit(env).await {
            Ok(env) => {
                if let Some(t) = ticket {
                    t.keep();
                }
                tracing::debug!(message = %env.id, peer = %self.ip, "mail accepted");
                format!("250 2.0.0 Ok: queued as {}", env.id)
            }
            Err(SubmitError::QueueFull) => "451 4.3.2 Queue full; try again later".into(),
            Err(SubmitError::ShuttingDown) => {
                "421 4.3.2 Service shutting down; try again later".into()
            }
            Err(SubmitError::Store(e)) => {
                tracing::error!(error = %e, "cannot store a received mail");
                "451 4.3.0 Temporary storage failure; try again later".into()
            }
        }
    }
}

fn refused(reason: &'static str) {
    metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => reason)
        .increment(1);
}

fn syntax_reply(e: &ProtoError) -> String {
    match e {
        ProtoError::UnknownCommand => "500 5.5.1 Command not recognized".into(),
        ProtoError::InvalidSenderAddress => "501 5.1.7 Bad sender address syntax".into(),
        ProtoError::InvalidRecipientAddress => "501 5.1.3 Bad recipient address syntax".into(),
        ProtoError::SyntaxError { syntax } => format!("501 5.5.4 Syntax: {syntax}"),
        ProtoError::InvalidParameter { param } => format!("501 5.5.4 Invalid {param} parameter"),
        ProtoError::UnsupportedParameter { param } => format!(
            "555 5.5.4 Unsupported parameter {}",
            param
                .chars()
                .filter(|c| !c.is_control())
                .take(40)
                .collect::<String>()
        ),
        ProtoError::ResponseTooLong => "500 5.5.2 Line too long".into(),
        _ => "500 5.5.2 Syntax error".into(),
    }
}
