//! The HTTP server's accept loop: one per listener (API, and optionally the SDP callbacks
//! and the admin API on listeners of their own), each with its own limits.
//!
//! Guarantees:
//! - At most `max_connections` open connections per listener: a permit is taken *before*
//!   `accept`, so the rest wait in the kernel's backlog (memory stays bounded however many
//!   clients connect).
//! - At most `max_connections_per_ip` open connections from one source address; the next
//!   one is accepted and closed at once (counted, `reason="per_ip_cap"`), so one address
//!   cannot take the listener from the others.
//! - A request's head must be complete within `header_read_timeout_ms` of the connection
//!   opening or of the previous response being sent (hyper's header-read timer: it is not
//!   reset by each byte, and on a kept-alive connection it runs from the end of the last
//!   response, so it is also the idle keep-alive limit). A TLS handshake has the same time.
//! - A request's body must be read in full within `body_read_timeout_ms` of its head;
//!   past it, reading the body fails (the handler answers 400) and the connection closes.
//! - Every request carries `axum::extract::ConnectInfo<SocketAddr>` (the peer's address)
//!   in its extensions.
//! - On shutdown: no new connections; idle connections are closed, requests in progress
//!   finish, then `serve` returns. Dropping `serve`'s future aborts every connection.
//!
//! Refusals are counted in `switchboard_http_refused_total{listener, reason}` and logged
//! (at most one warning per listener every 10 seconds, with the count left unlogged).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use super::config::HttpConfig;

/// The limits of one listener.
#[derive(Clone)]
pub struct ServeOptions {
    /// The listener's name in logs and metric labels (`api`, `callbacks`, `admin`).
    pub name: &'static str,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    /// Serve HTTPS with this acceptor.
    pub tls: Option<TlsAcceptor>,
}

impl ServeOptions {
    /// The limits `[http]` gives every listener.
    pub fn from_config(name: &'static str, cfg: &HttpConfig, tls: Option<TlsAcceptor>) -> Self {
        ServeOptions {
            name,
            max_connections: cfg.max_connections.max(1),
            max_connections_per_ip: cfg.max_connections_per_ip.max(1),
            header_read_timeout: Duration::from_millis(cfg.header_read_timeout_ms.max(1)),
            body_read_timeout: Duration::from_millis(cfg.body_read_timeout_ms.max(1)),
            tls,
        }
    }
}

/// Loads the certificate chain and private key (PEM files) for HTTPS.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("http.tls_cert: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "http.tls_cert: no certificate in {}",
            cert.display()
        ));
    }
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| format!("http.tls_key: {e}"))?
        .ok_or_else(|| format!("http.tls_key: no private key in {}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("http.tls_cert: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` on `listener` until `shutdown` is cancelled and the connections still
/// open have finished their requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    opts: ServeOptions,
    shutdown: CancellationToken,
) {
    let shared = Arc::new(Shared {
        router,
        per_ip: Mutex::new(HashMap::new()),
        refusals: RefusalLog::default(),
        opts,
    });
    let permits = Arc::new(Semaphore::new(shared.opts.max_connections));
    let mut conns = JoinSet::new();
    let name = shared.opts.name;
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p,
            _ = shutdown.cancelled() => break,
            Some(_) = conns.join_next() => continue,
        };
        // The semaphore is never closed, so acquiring cannot fail.
        let Ok(permit) = permit else { break };
        let (stream, peer) = loop {
            tokio::select! {
                r = listener.accept() => match r {
                    Ok(c) => break c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next() => {}
                _ = shutdown.cancelled() => {
                    drop(listener);
                    return finish(conns, name).await;
                }
            }
        };
        let ip = canonical(peer.ip());
        let Some(slot) = IpSlot::take(&shared, ip) else {
            shared.refuse("per_ip_cap", ip);
            drop(stream);
            continue;
        };
        let open = move |permits: &Semaphore, max: usize| {
            metrics::gauge!("switchboard_http_connections", "listener" => name)
                .set(max.saturating_sub(permits.available_permits()) as f64);
        };
        open(&permits, shared.opts.max_connections);
        let (shared, shutdown, permits) = (shared.clone(), shutdown.clone(), permits.clone());
        conns.spawn(async move {
            connection(stream, peer, &shared, shutdown).await;
            drop(slot);
            drop(permit);
            open(&permits, shared.opts.max_connections);
        });
    }
    drop(listener);
    finish(conns, name).await;
}

async fn finish(mut conns: JoinSet<()>, name: &'static str) {
    while conns.join_next().await.is_some() {}
    metrics::gauge!("switchboard_http_connections", "listener" => name).set(0.0);
}

/// IPv4-mapped IPv6 addresses count as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// What the connections of one listener share.
struct Shared {
    router: Router,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    refusals: RefusalLog,
    opts: ServeOptions,
}

impl Shared {
    fn refuse(&self, reason: &'static str, ip: IpAddr) {
        metrics::counter!("switchboard_http_refused_total", "listener" => self.opts.name, "reason" => reason)
            .increment(1);
        tracing::debug!(listener = self.opts.name, reason, peer = %ip, "HTTP connection refused");
        if let Some(suppressed) = self.refusals.due() {
            tracing::warn!(
                listener = self.opts.name,
                reason,
                peer = %ip,
                since_last_warning = suppressed,
                "HTTP connection refused"
            );
        }
    }
}

/// At most one warning every 10 seconds; the refusals in between are only counted.
#[derive(Default)]
struct RefusalLog {
    last_ms: AtomicU64,
    since: AtomicU64,
}

impl RefusalLog {
    const EVERY_MS: u64 = 10_000;

    /// `Some(refusals since the last warning)` when a warning is due.
    fn due(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        let since = self.since.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= Self::EVERY_MS
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.since.fetch_sub(since, Ordering::Relaxed);
            Some(since)
        } else {
            None
        }
    }
}

/// One connection counted against its source address; released when dropped.
struct IpSlot {
    shared: Arc<Shared>,
    ip: IpAddr,
}

impl IpSlot {
    fn take(shared: &Arc<Shared>, ip: IpAddr) -> Option<IpSlot> {
        let mut map = shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= shared.opts.max_connections_per_ip {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            shared: shared.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = self.shared.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    shutdown: CancellationToken,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let Some(acceptor) = &shared.opts.tls else {
        return http(stream, peer, shared, shutdown).await;
    };
    let handshake = tokio::select! {
        r = tokio::time::timeout(shared.opts.header_read_timeout, acceptor.accept(stream)) => r,
        _ = shutdown.cancelled() => return,
    };
    match handshake {
        Ok(Ok(tls)) => http(tls, peer, shared, shutdown).await,
        Ok(Err(e)) => {
            tracing::debug!(listener = shared.opts.name, peer = %peer, error = %e, "TLS handshake failed");
            shared.refuse("tls_handshake", canonical(peer.ip()));
        }
        Err(_) => shared.refuse("tls_handshake_timeout", canonical(peer.ip())),
    }
}

async fn http<I>(io: I, peer: SocketAddr, shared: &Arc<Shared>, shutdown: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = shared.router.clone();
    let (name, body_timeout) = (shared.opts.name, shared.opts.body_read_timeout);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let mut router = router.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let body = axum::body::Body::new(DeadlineBody::new(body, body_timeout, name));
            let resp: Result<axum::response::Response, Infallible> =
                router.call(hyper::Request::from_parts(parts, body)).await;
            resp
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.opts.header_read_timeout)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        if e.is_timeout() {
            shared.refuse("header_timeout", canonical(peer.ip()));
        } else {
            tracing::debug!(listener = name, peer = %peer, error = %e, "HTTP connection ended with an error");
        }
    }
}

/// The request body read too late.
#[derive(Debug)]
pub struct BodyTimeout;

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body was not received in time")
    }
}

impl std::error::Error for BodyTimeout {}

/// A request body that fails once its deadline has passed (the deadline runs from the
/// request's head, for the whole body, whatever the pace of the bytes).
pub struct DeadlineBody<B> {
    inner: B,
    deadline: Pin<Box<tokio::time::Sleep>>,
    listener: &'static str,
    expired: bool,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, timeout: Duration, listener: &'static str) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            listener,
            expired: false,
        }
    }
}

impl<B> HttpBody for DeadlineBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.expired {
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        if this.inner.is_end_stream() {
            return Pin::new(&mut this.inner)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(Into::into)));
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired = true;
            metrics::counter!("switchboard_http_refused_total", "listener" => this.listener, "reason" => "body_timeout")
                .increment(1);
            tracing::debug!(
                listener = this.listener,
                "request body not received in time"
            );
            return Poll::Ready(Some(Err(BodyTimeout.into())));
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_that_trickles_fails_at_its_deadline() {
        let chunks = futures::stream::unfold(0u32, |i| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Some((Ok::<_, std::io::Error>(Bytes::from_static(b"x")), i + 1))
        });
        let body = DeadlineBody::new(
            axum::body::Body::from_stream(chunks),
            Duration::from_millis(300),
            "test",
        );
        let started = std::time::Instant::now();
        let err = axum::body::to_bytes(axum::body::Body::new(body), usize::MAX)
            .await
            .expect_err("an endless trickle must fail");
        assert!(started.elapsed() < Duration::from_secs(2), "{err}");
        assert!(
            format!("{err:?}").contains("BodyTimeout"),
            "unexpected error {err:?}"
        );
    }

    #[tokio::test]
    async fn a_body_in_time_is_passed_through() {
        let body = DeadlineBody::new(
            axum::body::Body::from("hello"),
            Duration::from_secs(5),
            "test",
        );
        let got = axum::body::to_bytes(axum::body::Body::new(body), 100)
            .await
            .unwrap();
        assert_eq!(&got[..], b"hello");
    }

    #[test]
    fn mapped_addresses_count_as_ipv4() {
        let v6: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(canonical(v6), "127.0.0.1".parse::<IpAddr>().unwrap());
    }
}
