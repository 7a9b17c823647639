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

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::config::{MailConfig, allowed};
use super::session::{Session, Shared};
use crate::content::ContentConfig;
use crate::pipeline::Intake;

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
    mail: &MailConfig,
    content: &ContentConfig,
    intake: Intake,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    deadline: Duration,
) {
    let shared = Arc::new(Shared::new(mail, content, intake, tls, shutdown.clone()));
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
            if *n >= shared.mail.max_connections_per_ip {
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
        Duration::from_secs(shared.mail.command_timeout_secs),
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
