//! The SMTP client to the smarthost: lettre's connection over a `TcpStream` with
//! `TCP_NODELAY` (lettre never sets it, and without it every command waits for a delayed
//! ACK), pooled with `deadpool` under a hard maximum of connections.
//!
//! Each delivery is one transaction with one recipient, so the reply to it is that
//! recipient's result: 4xx is temporary (retry), 5xx permanent (failure report). A
//! connection that broke is dropped, not reused; a reused connection that the server closed
//! while idle is replaced once before the attempt counts as failed.

use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, Pool, PoolError, RecycleError, RecycleResult};
use lettre::address::Envelope as SmtpEnvelope;
use lettre::transport::smtp::Error as SmtpError;
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use tokio::net::TcpStream;

use super::super::SinkError;

/// Creates and recycles smarthost connections.
pub struct Manager {
    host: String,
    port: u16,
    hello: ClientId,
    tls: Option<TlsParameters>,
    timeout: Duration,
}

impl managed::Manager for Manager {
    type Type = AsyncSmtpConnection;
    type Error = SinkError;

    async fn create(&self) -> Result<AsyncSmtpConnection, SinkError> {
        let connect = async {
            let io = |e: std::io::Error| {
                SinkError::Unavailable(format!(
                    "cannot connect to the smarthost {}:{}: {e}",
                    self.host, self.port
                ))
            };
            let stream = TcpStream::connect((self.host.as_str(), self.port))
                .await
                .map_err(io)?;
            stream.set_nodelay(true).map_err(io)?;
            let mut conn =
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &self.hello)
                    .await
                    .map_err(|e| classify(&e))?;
            if let Some(tls) = &self.tls {
                conn.starttls(tls.clone(), &self.hello)
                    .await
                    .map_err(|e| classify(&e))?;
            }
            Ok(conn)
        };
        match tokio::time::timeout(self.timeout, connect).await {
            Ok(r) => r,
            Err(_) => Err(SinkError::Unavailable(
                "connecting to the smarthost timed out".into(),
            )),
        }
    }

    async fn recycle(
        &self,
        conn: &mut AsyncSmtpConnection,
        _: &Metrics,
    ) -> RecycleResult<SinkError> {
        if conn.has_broken() {
            Err(RecycleError::message("connection broke"))
        } else {
            Ok(())
        }
    }
}

/// A pool of smarthost connections.
#[derive(Clone)]
pub struct SmtpClient {
    pool: Pool<Manager>,
    timeout: Duration,
}

/// Smarthost settings.
pub struct ClientConfig<'a> {
    /// `host:port`.
    pub smarthost: &'a str,
    pub hello_name: &'a str,
    pub starttls: bool,
    /// Extra trusted CA certificates (PEM).
    pub ca_pem: Option<Vec<u8>>,
    pub max_connections: usize,
    pub timeout: Duration,
}

impl SmtpClient {
    pub fn new(cfg: ClientConfig<'_>) -> Result<SmtpClient, String> {
        let (host, port) = cfg
            .smarthost
            .rsplit_once(':')
            .ok_or_else(|| format!("{:?} is not host:port", cfg.smarthost))?;
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{:?} is not host:port", cfg.smarthost))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = if cfg.starttls {
            let mut b = TlsParameters::builder(host.clone());
            if let Some(pem) = &cfg.ca_pem {
                let cert = Certificate::from_pem(pem)
                    .map_err(|e| format!("smarthost CA certificate: {e}"))?;
                b = b.add_root_certificate(cert);
            }
            Some(
                b.build_rustls()
                    .map_err(|e| format!("smarthost TLS: {e}"))?,
            )
        } else {
            None
        };
        let manager = Manager {
            host,
            port,
            hello: ClientId::Domain(cfg.hello_name.to_string()),
            tls,
            timeout: cfg.timeout,
        };
        let pool = Pool::builder(manager)
            .max_size(cfg.max_connections.max(1))
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(cfg.timeout))
            .create_timeout(Some(cfg.timeout))
            .build()
            .map_err(|e| format!("smarthost pool: {e}"))?;
        Ok(SmtpClient {
            pool,
            timeout: cfg.timeout,
        })
    }

    /// Sends `message` from `from` (`None`: the null reverse-path of a DSN) to `to`.
    /// Returns the server's reply text (its queue id) on acceptance.
    pub async fn send(
        &self,
        from: Option<&str>,
        to: &str,
        message: &[u8],
    ) -> Result<String, SinkError> {
        let from = match from {
            Some(f) => Some(
                f.parse()
                    .map_err(|e| SinkError::Permanent(format!("bad sender {f:?}: {e}")))?,
            ),
            None => None,
        };
        let to = to
            .parse()
            .map_err(|e| SinkError::Permanent(format!("bad recipient {to:?}: {e}")))?;
        let envelope = SmtpEnvelope::new(from, vec![to])
            .map_err(|e| SinkError::Permanent(format!("bad envelope: {e}")))?;
        for attempt in 0..2 {
            let mut conn = self.pool.get().await.map_err(|e| match e {
                PoolError::Backend(e) => e,
                PoolError::Timeout(_) => {
                    SinkError::Unavailable("no smarthost connection became free in time".into())
                }
                other => SinkError::Transient(format!("smarthost pool: {other}")),
            })?;
            let reused = Object::metrics(&conn).recycle_count > 0;
            let result = tokio::time::timeout(self.timeout, conn.send(&envelope, message)).await;
            match result {
                Ok(Ok(resp)) => {
                    metrics::counter!("switchboard_smtp_client_total", "outcome" => "accepted")
                        .increment(1);
                    return Ok(resp.message().collect::<Vec<_>>().join(" "));
                }
                Ok(Err(e)) => {
                    // lettre already sent QUIT on a broken transaction; never reuse it.
                    let _ = Object::take(conn);
                    let retry_once = attempt == 0 && reused && !e.is_response();
                    if retry_once {
                        continue;
                    }
                    let err = classify(&e);
                    let outcome = if err.is_transient() {
                        "temporary"
                    } else {
                        "permanent"
                    };
                    metrics::counter!("switchboard_smtp_client_total", "outcome" => outcome)
                        .increment(1);
                    return Err(err);
                }
                Err(_) => {
                    let _ = Object::take(conn);
                    metrics::counter!("switchboard_smtp_client_total", "outcome" => "timeout")
                        .increment(1);
                    return Err(SinkError::Transient("smarthost timed out".into()));
                }
            }
        }
        Err(SinkError::Transient(
            "the smarthost closed the connection".into(),
        ))
    }
}

/// 4xx replies and transport trouble are temporary; 5xx replies and messages the server
/// could never take (no 8BITMIME for 8-bit content) are permanent.
fn classify(e: &SmtpError) -> SinkError {
    if e.is_permanent() {
        SinkError::Permanent(format!("smarthost: {e}"))
    } else if e.is_transient() {
        SinkError::Transient(format!("smarthost: {e}"))
    } else if e.is_client() {
        SinkError::Permanent(format!("smarthost: {e}"))
    } else {
        SinkError::Transient(format!("smarthost: {e}"))
    }
}
