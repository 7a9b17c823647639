//! The mail connector's receive side as services the gateway starts: the SMTP server and
//! the maker of `delayed` DSNs.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::MailConfig;
use crate::connectors::Service;
use crate::content::ContentConfig;
use crate::pipeline::Intake;

/// The SMTP server on its bound listener.
pub struct SmtpServer {
    mail: MailConfig,
    content: ContentConfig,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    drain: Duration,
}

impl SmtpServer {
    /// Loads the STARTTLS certificate, if `mail` names one. `content` holds the virus and
    /// spam checks made before the `250`, and whether MMS out is configured.
    pub fn new(
        mail: &MailConfig,
        content: &ContentConfig,
        listener: TcpListener,
        drain: Duration,
    ) -> Result<Self, String> {
        Ok(SmtpServer {
            mail: mail.clone(),
            content: content.clone(),
            listener,
            tls: super::server::tls_acceptor(mail)?,
            drain,
        })
    }
}

impl Service for SmtpServer {
    /// The server stops with the HTTP server: it takes no new mail, finishes the messages
    /// in progress within the drain deadline, then lets go of the intake.
    fn start(
        self: Box<Self>,
        intake: Intake,
        _tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        let listen = self
            .listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(listen, starttls = self.tls.is_some(), "SMTP server running");
        let SmtpServer {
            mail,
            content,
            listener,
            tls,
            drain,
        } = *self;
        Some(tokio::spawn(async move {
            super::server::serve(listener, &mail, &content, intake, tls, shutdown, drain).await
        }))
    }
}

/// Makes the `delayed` reports that have come due (`[mail] delay_report_secs`).
pub struct DelayReporter {
    pub wait_ms: u64,
}

impl Service for DelayReporter {
    fn start(
        self: Box<Self>,
        intake: Intake,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Option<JoinHandle<()>> {
        tracker.spawn(super::delay_reporter(intake, self.wait_ms, shutdown));
        None
    }
}
