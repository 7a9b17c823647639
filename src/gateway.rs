//! Assembling and running a gateway: store, stages, sinks, HTTP server and (for the local
//! trial) the built-in SDP simulator.
//!
//! `run` takes listeners that are already bound, so tests bind port 0 and run many gateways
//! in one process. Stopping is `shutdown.cancel()`: the HTTP server stops accepting, the
//! stages drain within `drain_timeout_secs`, what is left is logged (it stays in the store
//! and goes out after the next start), and `run` returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::connectors::im::WebhookSink;
use crate::connectors::mail::MailSink;
use crate::connectors::sdp::SdpClient;
use crate::connectors::xmpp::XmppSink;
use crate::http::{AppState, NOTIFY_PATH, ReadySource};
use crate::message::IdGen;
use crate::pipeline::{self, Ctx, Sinks};
use crate::store::{Store, StoreError};

/// The sockets a gateway serves, bound by the caller.
pub struct Listeners {
    pub http: TcpListener,
    /// For the embedded simulator, when `[simulator] enabled = true`.
    pub sim: Option<TcpListener>,
    /// The SMTP server's, when `[mail] listen` is set.
    pub smtp: Option<TcpListener>,
}

impl Listeners {
    /// Binds what the config names.
    pub async fn bind(cfg: &Config) -> std::io::Result<Listeners> {
        let http = TcpListener::bind(&cfg.http.listen).await?;
        let sim = if cfg.simulator.enabled {
            Some(TcpListener::bind(&cfg.simulator.sim.listen).await?)
        } else {
            None
        };
        let smtp = if cfg.mail.listen.is_empty() {
            None
        } else {
            Some(TcpListener::bind(&cfg.mail.listen).await?)
        };
        Ok(Listeners { http, sim, smtp })
    }
}

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Setup(String),
}

/// Runs a gateway until `shutdown` is cancelled, then drains and returns.
pub async fn run(
    mut cfg: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let metrics = crate::telemetry::metrics_handle();
    let http_addr: SocketAddr = listeners.http.local_addr()?;
    let public = cfg.public_url(http_addr);
    // With `[sdp.callbacks] secret_path`, the SDP is told the endpoints with the secret.
    let notify_endpoint = format!("{public}{}", cfg.sdp.callbacks.path(NOTIFY_PATH));
    let mms_notify_endpoint = format!(
        "{public}{}",
        cfg.sdp
            .callbacks
            .path(crate::connectors::sdp::mms::MMS_NOTIFY_PATH)
    );
    let aux = TaskTracker::new();
    let aux_stop = CancellationToken::new();

    if cfg.simulator.enabled {
        let sim_listener = listeners.sim.ok_or_else(|| {
            RunError::Setup("the simulator is enabled but has no listener".into())
        })?;
        let sim_addr = sim_listener.local_addr()?;
        if cfg.sdp.send_sms_url.is_empty() {
            cfg.sdp.send_sms_url = format!("http://{sim_addr}{}", crate::sim::SEND_SMS_PATH);
        }
        if cfg.content.mms.receive_message_url.is_empty() {
            cfg.content.mms.receive_message_url =
                format!("http://{sim_addr}{}", crate::sim::RECEIVE_MESSAGE_PATH);
        }
        let mut sim_cfg = cfg.simulator.sim.clone();
        sim_cfg
            .notify_url
            .get_or_insert_with(|| notify_endpoint.clone());
        sim_cfg
            .mms_notify_url
            .get_or_insert_with(|| mms_notify_endpoint.clone());
        if sim_cfg.callbacks.is_empty() {
            sim_cfg.callbacks = crate::connectors::sdp::callbacks::CallbackCredentials::from_config(
                &cfg.sdp.callbacks,
            );
        }
        tracing::info!(listen = %sim_addr, "built-in SDP simulator running");
        let stop = aux_stop.clone();
        aux.spawn(async move {
            if let Err(e) = crate::sim::serve(sim_listener, sim_cfg, stop).await {
                tracing::error!(error = %e, "SDP simulator stopped");
            }
        });
    }
    aux.spawn(crate::telemetry::upkeep(metrics.clone(), aux_stop.clone()));

    let cfg = Arc::new(cfg);
    let ids = Arc::new(IdGen::new(cfg.node_id));
    let store = {
        let (c, i) = (cfg.store.clone(), ids.clone());
        let ttl = (cfg.retry.ttl_secs as i64) * 1000;
        tokio::task::spawn_blocking(move || Store::open(&c, i, ttl))
            .await
            .map_err(|e| RunError::Setup(e.to_string()))??
    };
    let recovered = store.recover().await?;
    if recovered > 0 {
        tracing::info!(
            recipients = recovered,
            "recovered unsent work from the store"
        );
    }

    let media = Arc::new(crate::content::media::MediaLinks::new(
        &cfg.content.media,
        &public,
    ));
    let xmpp = cfg
        .xmpp
        .as_ref()
        .map(|x| XmppSink::new(x, Some(media.clone())));
    let sinks = Sinks {
        sms: (!cfg.sdp.send_sms_url.is_empty())
            .then(|| SdpClient::new(cfg.sdp.clone(), notify_endpoint.clone())),
        mms: (!cfg.content.mms.send_message_url.is_empty()).then(|| {
            crate::connectors::sdp::mms::MmsClient::new(
                cfg.content.mms.send_message_url.clone(),
                cfg.sdp.clone(),
                mms_notify_endpoint.clone(),
            )
        }),
        im: (!cfg.im.url.is_empty()).then(|| {
            WebhookSink::new(
                Some(cfg.im.url.clone()),
                Duration::from_millis(cfg.im.timeout_ms),
                cfg.im.concurrency,
            )
        }),
        callback: Some(WebhookSink::new(
            None,
            Duration::from_millis(cfg.reports.timeout_ms),
            cfg.reports.concurrency,
        )),
        xmpp: xmpp.as_ref().map(|(sink, _, _)| sink.clone()),
        mail: if cfg.mail.smarthost.is_empty() {
            None
        } else {
            Some(MailSink::new(&cfg.mail, store.clone()).map_err(RunError::Setup)?)
        },
    };
    let ctx = Arc::new(Ctx::new(cfg.clone(), store.clone(), ids));
    aux.spawn(crate::store::retention::run(
        store.clone(),
        cfg.retention.clone(),
        aux_stop.clone(),
    ));
    let tracker = TaskTracker::new();
    let stages_stop = CancellationToken::new();
    let (intake, depths) = pipeline::start(ctx, sinks, &tracker, stages_stop.clone());
    // The SMTP server stops with the HTTP server: it takes no new mail, finishes the
    // messages in progress within the drain deadline, then lets go of the intake.
    let smtp = match listeners.smtp {
        Some(l) => {
            let tls = crate::connectors::mail::server::tls_acceptor(&cfg.mail)
                .map_err(RunError::Setup)?;
            tracing::info!(listen = %l.local_addr()?, starttls = tls.is_some(), "SMTP server running");
            Some(tokio::spawn(crate::connectors::mail::server::serve(
                l,
                intake.clone(),
                tls,
                shutdown.clone(),
                Duration::from_secs(cfg.drain_timeout_secs),
            )))
        }
        None => None,
    };
    if cfg.mail.delay_report_secs > 0 && !cfg.mail.listen.is_empty() {
        tracker.spawn(crate::connectors::mail::delay_reporter(
            intake.ctx().clone(),
            shutdown.clone(),
        ));
    }
    // The component links stop with the HTTP server (`shutdown`): no new work comes in
    // while the stages drain; deliveries still queued for them wait in the store.
    let mut ready = Vec::new();
    if let Some((_, links, states)) = xmpp {
        links.start(intake.clone(), &tracker, shutdown.clone());
        ready.extend(states.into_iter().map(|s| ReadySource {
            name: format!("xmpp {}", s.domain),
            up: s.up,
        }));
    }

    let state = Arc::new(AppState {
        cfg: cfg.clone(),
        intake,
        depths: depths.clone(),
        callers: crate::http::auth::Callers::new(&cfg),
        metrics,
        shutdown: shutdown.clone(),
        ready,
        mms_receive: (!cfg.content.mms.receive_message_url.is_empty()).then(|| {
            crate::connectors::sdp::mms::ReceiveClient::new(
                cfg.content.mms.receive_message_url.clone(),
                cfg.sdp.clone(),
                cfg.content.mms.max_receive_bytes,
            )
        }),
        media,
    });
    let app = crate::http::router(state);
    tracing::info!(listen = %http_addr, sdp = %cfg.sdp.send_sms_url, "switchboard running");
    let listener =
        crate::http::listener::LimitedListener::new(listeners.http, cfg.http.max_connections);
    // Connect info gives the SDP callbacks the peer's address (their source allowlist).
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<crate::connectors::sdp::callbacks::PeerAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let deadline = Duration::from_secs(cfg.drain_timeout_secs);
    let server = tokio::spawn(async move { server.await });
    shutdown.cancelled().await;
    tracing::info!("stopping: no new work is accepted; draining");
    let started = tokio::time::Instant::now();
    match tokio::time::timeout(deadline, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(error = %e, "HTTP server error"),
        Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task failed"),
        Err(_) => tracing::warn!("HTTP connections still open at the drain deadline"),
    }
    if let Some(smtp) = smtp {
        let left = deadline.saturating_sub(started.elapsed()) + Duration::from_secs(2);
        if tokio::time::timeout(left, smtp).await.is_err() {
            tracing::warn!("SMTP server still running at the drain deadline");
        }
    }
    stages_stop.cancel();
    let left = deadline.saturating_sub(started.elapsed());
    let drained = pipeline::drain(&tracker, &depths, left).await;
    aux_stop.cancel();
    aux.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), aux.wait()).await;
    store.close().await;
    tracing::info!(drained, "stopped");
    Ok(())
}
