//! One SMTP session: the state machine over `smtp-proto`'s request parser (which has no
//! I/O), generic over the stream so it runs on TCP, TLS or in-memory IO alike. The limits
//! and replies it keeps are listed in [`super::server`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smtp_proto::request::receiver::RequestReceiver;
use smtp_proto::{
    Error as ProtoError, MAIL_RET_FULL, RCPT_NOTIFY_DELAY, RCPT_NOTIFY_FAILURE, RCPT_NOTIFY_NEVER,
    RCPT_NOTIFY_SUCCESS, Request,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::config::MailConfig;
use super::data::DataReader;
use super::limits::{RateTicket, SenderRate};
use super::precheck::PreQueue;
use crate::address::{Address, MailDomains};
use crate::content::ContentConfig;
use crate::directory::Door;
use crate::message::MailRcpt;
use crate::pipeline::Intake;

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

/// The command deadline under load (fewer than a fifth of the session slots free), when
/// the configured one is longer: slow clients cannot keep others waiting for long.
const BUSY_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// What every session of one server shares.
pub(super) struct Shared {
    pub mail: MailConfig,
    /// MMS out is configured: media of a mail to a phone go with it.
    pub mms_out: bool,
    pub intake: Intake,
    pub tls: Option<TlsAcceptor>,
    pub domains: MailDomains,
    pub nets: Vec<(IpAddr, u8)>,
    pub per_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Virus and spam checks before the `250`.
    pub pre: PreQueue,
    /// Messages per envelope sender per minute.
    pub rate: Arc<SenderRate>,
    /// Session slots (`max_connections`).
    pub slots: Arc<Semaphore>,
    /// Stop taking new work: idle sessions close.
    pub soft: CancellationToken,
    /// The drain deadline passed: every session closes now.
    pub hard: CancellationToken,
}

impl Shared {
    pub(super) fn new(
        mail: &MailConfig,
        content: &ContentConfig,
        intake: Intake,
        tls: Option<TlsAcceptor>,
        shutdown: CancellationToken,
    ) -> Shared {
        Shared {
            domains: mail.domains(),
            nets: mail.networks(),
            mms_out: !content.mms.send_message_url.is_empty(),
            intake,
            tls,
            per_ip: Mutex::new(HashMap::new()),
            pre: PreQueue::new(content),
            slots: Arc::new(Semaphore::new(mail.max_connections.max(1))),
            rate: SenderRate::new(mail.max_messages_per_sender_per_minute),
            soft: shutdown,
            hard: CancellationToken::new(),
            mail: mail.clone(),
        }
    }
}

/// One mail transaction being collected.
pub(super) struct Txn {
    /// `None`: the null reverse-path (a bounce).
    pub(super) from: Option<String>,
    pub(super) envid: Option<String>,
    pub(super) ret_full: bool,
    pub(super) rcpts: Vec<(Address, MailRcpt)>,
    /// The sender's token for this message (given back unless it is stored).
    pub(super) ticket: Option<RateTicket>,
}

pub(super) enum Next {
    Continue,
    Data,
    Quit,
    StartTls,
}

pub(super) struct Session<'a> {
    pub(super) shared: &'a Shared,
    pub(super) ip: IpAddr,
    pub(super) helo: Option<String>,
    pub(super) tls_active: bool,
    pub(super) txn: Option<Txn>,
    pub(super) errors: u32,
    pub(super) junk: u32,
    /// Transactions that reached the end of `DATA`.
    pub(super) messages: usize,
}

pub(super) fn reply(out: &mut Vec<u8>, line: &str) {
    out.extend_from_slice(line.as_bytes());
    out.extend_from_slice(b"\r\n");
}

impl<'a> Session<'a> {
    pub(super) fn new(shared: &'a Shared, ip: IpAddr) -> Session<'a> {
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
        &self.shared.mail
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
    pub(super) async fn run<S: AsyncRead + AsyncWrite + Unpin>(
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
        let cfg = &self.shared.mail;
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
                } else if let Some(Err(e)) = Address::parse_user(&format!("mail:{}", from.address))
                    .ok()
                    .map(|a| self.shared.intake.directory().check_sender(&a, Door::Smtp))
                {
                    // `[directory] mail_senders = "known"`: only users' mail addresses.
                    refused(e.code());
                    reply(out, "550 5.7.1 Sender not allowed");
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
        let cfg = &self.shared.mail;
        let Some(txn) = self.txn.as_mut() else {
            reply(out, "503 5.5.1 Need MAIL first");
            return;
        };
        if txn.rcpts.len() >= cfg.max_recipients {
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
            && !self.shared.intake.directory().has_group(name)
        {
            reply(out, &format!("550 5.1.1 <{}>: no such group", to.address));
            return;
        }
        // Mail to a group is spoken as the group: members only.
        if let Address::Group(name) = &addr
            && let Some(from) = &txn.from
            && let Err(e) = self
                .shared
                .intake
                .directory()
                .check_member(name, &Address::Mail(from.clone()))
        {
            refused(e.code());
            reply(
                out,
                &format!(
                    "550 5.7.1 <{}>: only members may write to this group",
                    to.address
                )
                .replace(['\r', '\n'], ""),
            );
            return;
        }
        let never = to.flags & RCPT_NOTIFY_NEVER != 0;
        let given = to.flags & (RCPT_NOTIFY_SUCCESS | RCPT_NOTIFY_FAILURE | RCPT_NOTIFY_DELAY);
        let has = |flag: u64, name: &str| {
            if never {
                false
            } else if cfg.always_report {
                true
            } else if given != 0 {
                to.flags & flag != 0
            } else {
                cfg.default_notify.iter().any(|n| n == name)
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
}

pub(super) fn refused(reason: &'static str) {
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

#[cfg(test)]
mod tests;
