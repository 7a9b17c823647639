//! Protocol connectors: one folder per protocol, each with its config, its sink (the
//! pipeline's [`Sink`] port), and its receive side (servers, links, callback routes) that
//! reaches the gateway only through the pipeline's [`Intake`].
//!
//! [`build`] is the registry: it makes every configured connector's sinks, routes and
//! services, which `gateway` starts. Adding a connector is one folder, one line in
//! [`build`] and one config field. The registry is the only code here that reads the whole
//! gateway config; each connector is given its own sections.

pub mod app;
pub mod mail;
pub mod sdp;
pub mod webhook;
pub mod xmpp;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::Config;
use crate::address::Channel;
use crate::content::media::MediaLinks;
use crate::pipeline::{Intake, Messages, Sink, Sinks};
pub use crate::pipeline::{Sent, SinkError};

/// A link that must be up for the gateway to be ready (`/readyz`).
#[derive(Clone)]
pub struct ReadySource {
    /// Named in `/readyz` when down (`xmpp sms.example.org`).
    pub name: String,
    pub up: Arc<AtomicBool>,
}

/// What the registry needs besides the config.
pub struct Deps {
    /// Stored messages, for sinks that quote an earlier one.
    pub messages: Messages,
    /// Signs links to media parts.
    pub media: Arc<MediaLinks>,
    /// The URLs the SDP is told to send its receipts to (SMS, MMS).
    pub notify_endpoint: String,
    pub mms_notify_endpoint: String,
    /// The SMTP server's listener, when `[mail] listen` is set.
    pub smtp: Option<TcpListener>,
    /// How long the receive side may take to finish at shutdown.
    pub drain: Duration,
    /// Users, groups and the app registry (the app sink reads the apps' callback URLs and
    /// secrets).
    pub directory: Arc<crate::directory::Directory>,
}

/// A receive side, started once the pipeline's intake exists.
pub trait Service: Send {
    /// Starts it on `tracker` (or a task of its own, returned, which the gateway waits for
    /// at shutdown before it drains the stages). It stops taking work at `shutdown`.
    fn start(
        self: Box<Self>,
        intake: Intake,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> Option<JoinHandle<()>>;
}

/// HTTP routes of a connector (callbacks a peer calls), made once the intake exists.
pub type RouteMaker = Box<dyn FnOnce(&Intake) -> axum::Router + Send>;

/// Every configured connector's parts.
#[derive(Default)]
pub struct Connectors {
    pub sinks: Sinks,
    /// Routes served with the SDP callbacks (main listener, or `[http] callbacks_listen`).
    pub callback_routes: Vec<RouteMaker>,
    pub services: Vec<Box<dyn Service>>,
    /// Links `/readyz` waits for.
    pub ready: Vec<ReadySource>,
}

impl Connectors {
    fn sink(&mut self, channels: &[Channel], sink: Arc<dyn Sink>) {
        for ch in channels {
            self.sinks.insert(*ch, sink.clone());
        }
    }
}

/// The registry: makes the connectors `cfg` configures, each from its own sections.
pub fn build(cfg: &Config, deps: Deps) -> Result<Connectors, String> {
    let mut c = Connectors::default();

    // The SDP: SMS (and MMS) to phones; its callbacks are always served.
    if !cfg.sdp.send_sms_url.is_empty() {
        let mms = (!cfg.content.mms.send_message_url.is_empty()).then(|| {
            sdp::mms_client::MmsClient::new(
                cfg.content.mms.send_message_url.clone(),
                cfg.sdp.clone(),
                deps.mms_notify_endpoint.clone(),
            )
        });
        let sink = sdp::SdpSink {
            sms: sdp::SdpClient::new(cfg.sdp.clone(), deps.notify_endpoint.clone()),
            mms,
            concurrency: cfg.sdp.concurrency,
        };
        c.sink(&[Channel::Sms], Arc::new(sink));
    }
    let callbacks = cfg.sdp.callbacks.clone();
    let version = cfg.sdp.version;
    let mo = sdp::MoRouting {
        service_number: cfg.sdp.service_number.clone(),
        mo: cfg.mo.clone(),
        im_domains: cfg.im.domains.clone(),
    };
    let mms_receive = (!cfg.content.mms.receive_message_url.is_empty()).then(|| {
        sdp::mms_client::ReceiveClient::new(
            cfg.content.mms.receive_message_url.clone(),
            cfg.sdp.clone(),
            cfg.content.mms.max_receive_bytes,
        )
    });
    c.callback_routes.push(Box::new(move |intake: &Intake| {
        sdp::inbound::routes(Arc::new(sdp::Inbound {
            intake: intake.clone(),
            callbacks,
            version,
            mo,
            mms_receive,
        }))
    }));

    // XMPP component links carry `im:` recipients when configured.
    if let Some(x) = &cfg.xmpp {
        let (sink, links, states) = xmpp::XmppSink::new(x, Some(deps.media.clone()));
        c.sink(
            &[Channel::Im],
            Arc::new(sink.with_concurrency(cfg.im.concurrency)),
        );
        c.ready.extend(states.into_iter().map(|s| ReadySource {
            name: format!("xmpp {}", s.domain),
            up: s.up,
        }));
        c.services.push(Box::new(links));
    }

    // HTTP webhooks: the IM server (`im:` without XMPP, and `app:`), and status reports.
    let mut app_im: Option<Arc<dyn Sink>> = None;
    if !cfg.im.url.is_empty() {
        let im: Arc<dyn Sink> = Arc::new(
            webhook::WebhookSink::new(
                Some(cfg.im.url.clone()),
                Duration::from_millis(cfg.im.timeout_ms),
                cfg.im.concurrency,
            )
            .with_secret(&cfg.im.secret),
        );
        if !c.sinks.contains_key(&Channel::Im) {
            c.sink(&[Channel::Im], im.clone());
        }
        app_im = Some(im);
    }
    // Apps: their delivery reports to their callback URLs (signed), other messages to
    // `app:` addresses to the IM webhook.
    c.sink(
        &[Channel::App],
        Arc::new(app::AppSink::new(
            deps.directory.clone(),
            Duration::from_millis(cfg.apps.report_timeout_ms),
            cfg.reports.concurrency,
            app_im,
        )),
    );
    c.sink(
        &[Channel::Callback],
        Arc::new(
            webhook::WebhookSink::new(
                None,
                Duration::from_millis(cfg.reports.timeout_ms),
                cfg.reports.concurrency,
            )
            .with_secret(&cfg.reports.secret),
        ),
    );

    // Mail: a smarthost for mail out, an SMTP server for mail in.
    if !cfg.mail.smarthost.is_empty() {
        let sink = mail::MailSink::new(&cfg.mail, deps.messages.clone())?;
        c.sink(&[Channel::Mail], Arc::new(sink));
    }
    if let Some(listener) = deps.smtp {
        let server = mail::service::SmtpServer::new(&cfg.mail, &cfg.content, listener, deps.drain)?;
        c.services.push(Box::new(server));
    }
    if cfg.mail.delay_report_secs > 0 && !cfg.mail.listen.is_empty() {
        c.services.push(Box::new(mail::service::DelayReporter {
            wait_ms: cfg.mail.delay_report_secs.saturating_mul(1000),
        }));
    }
    Ok(c)
}

/// Classifies a webhook-style HTTP answer that is not 2xx: 408, 429 and 5xx are worth a
/// retry, every other status is permanent.
pub(crate) fn classify_status(status: http::StatusCode, url: &str) -> SinkError {
    let msg = format!("HTTP {} from {url}", status.as_u16());
    if status.is_server_error()
        || status == http::StatusCode::REQUEST_TIMEOUT
        || status == http::StatusCode::TOO_MANY_REQUESTS
    {
        SinkError::Transient(msg)
    } else {
        SinkError::Permanent(msg)
    }
}

/// Classifies a transport error of an HTTP request: all of them are worth a retry
/// (refused connection, timeout, reset), except a request that could not be built; a
/// connection that could not be made is `Unavailable` (the request never left).
pub(crate) fn classify_reqwest(e: &reqwest::Error) -> SinkError {
    if e.is_builder() {
        SinkError::Permanent(format!("bad request: {e}"))
    } else if e.is_timeout() {
        SinkError::Transient("timed out".into())
    } else if e.is_connect() {
        SinkError::Unavailable(format!("cannot connect: {}", root_cause(e)))
    } else {
        SinkError::Transient(format!("transport: {}", root_cause(e)))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
