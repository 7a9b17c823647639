//! Assembling and running a gateway: store, stages, the connectors the registry
//! (`connectors::build`) makes from the config, the HTTP server and (for the local trial)
//! the built-in SDP simulator.
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
use crate::connectors::sdp::{MMS_NOTIFY_PATH, NOTIFY_PATH};
use crate::http::AppState;
use crate::message::IdGen;
use crate::pipeline::{self, Ctx, Messages};
use crate::store::{Store, StoreError};

/// The sockets a gateway serves, bound by the caller.
pub struct Listeners {
    pub http: TcpListener,
    /// The SDP callbacks' own listener (`[http] callbacks_listen`); `None`: they are served
    /// on `http`.
    pub callbacks: Option<TcpListener>,
    /// The admin API's own listener (`[http] admin_listen`); `None`: served on `http`.
    pub admin: Option<TcpListener>,
    /// For the embedded simulator, when `[simulator] enabled = true`.
    pub sim: Option<TcpListener>,
    /// The SMTP server's, when `[mail] listen` is set.
    pub smtp: Option<TcpListener>,
}

impl Listeners {
    /// Binds what the config names.
    pub async fn bind(cfg: &Config) -> std::io::Result<Listeners> {
        let http = TcpListener::bind(&cfg.http.listen).await?;
        let callbacks = match &cfg.http.callbacks_listen {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        let admin = match &cfg.http.admin_listen {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
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
        Ok(Listeners {
            http,
            callbacks,
            admin,
            sim,
            smtp,
        })
    }

    /// Only the main HTTP listener.
    pub fn http_only(http: TcpListener) -> Listeners {
        Listeners {
            http,
            callbacks: None,
            admin: None,
            sim: None,
            smtp: None,
        }
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
    // The SDP is told to send its receipts to the callbacks listener when there is one;
    // with `[sdp.callbacks] secret_path`, to the endpoints with the secret.
    let callbacks_addr = match &listeners.callbacks {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let callbacks_base = match callbacks_addr {
        Some(a) => cfg.callbacks_public_url(a),
        None => public.clone(),
    };
    let notify_endpoint = format!("{callbacks_base}{}", cfg.sdp.callbacks.path(NOTIFY_PATH));
    let mms_notify_endpoint = format!(
        "{callbacks_base}{}",
        cfg.sdp.callbacks.path(MMS_NOTIFY_PATH)
    );
    let tls = match (&cfg.http.tls_cert, &cfg.http.tls_key) {
        (Some(cert), Some(key)) => {
            Some(crate::http::listener::tls_acceptor(cert, key).map_err(RunError::Setup)?)
        }
        _ => None,
    };
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
    let directory = Arc::new(crate::directory::Directory::new(&cfg.directory));
    let connectors = crate::connectors::build(
        &cfg,
        crate::connectors::Deps {
            messages: Messages::new(store.clone()),
            media: media.clone(),
            notify_endpoint: notify_endpoint.clone(),
            mms_notify_endpoint: mms_notify_endpoint.clone(),
            smtp: listeners.smtp,
            drain: Duration::from_secs(cfg.drain_timeout_secs),
            directory: directory.clone(),
        },
    )
    .map_err(RunError::Setup)?;
    let ctx = Arc::new(Ctx::with_directory(
        cfg.clone(),
        store.clone(),
        ids,
        directory,
    ));
    ctx.load_directory().await.map_err(RunError::Setup)?;
    aux.spawn(crate::store::retention::run(
        store.clone(),
        cfg.retention.clone(),
        aux_stop.clone(),
    ));
    let tracker = TaskTracker::new();
    let stages_stop = CancellationToken::new();
    let (intake, depths) = pipeline::start(ctx, connectors.sinks, &tracker, stages_stop.clone());
    // The receive sides (SMTP server, XMPP links) stop with the HTTP server (`shutdown`):
    // no new work comes in while the stages drain.
    let callback_routes: Vec<axum::Router> = connectors
        .callback_routes
        .into_iter()
        .map(|make| make(&intake))
        .collect();
    let services: Vec<_> = connectors
        .services
        .into_iter()
        .filter_map(|s| s.start(intake.clone(), &tracker, shutdown.clone()))
        .collect();
    let ready = connectors.ready;

    let apps = Arc::new(crate::apps::Platform::new(intake.clone()));
    // Pulls are a receive side: they stop with the HTTP server, so that their intake is
    // dropped and the stages can drain.
    aux.spawn(crate::apps::pull::run(apps.clone(), shutdown.clone()));
    let state = Arc::new(AppState {
        apps,
        cfg: cfg.clone(),
        intake,
        depths: depths.clone(),
        callers: crate::http::auth::Callers::new(&cfg),
        metrics,
        shutdown: shutdown.clone(),
        ready,
        media,
    });
    let routers = crate::http::routers(
        state,
        callback_routes,
        listeners.callbacks.is_some(),
        listeners.admin.is_some(),
    );
    tracing::info!(listen = %http_addr, tls = tls.is_some(), sdp = %cfg.sdp.send_sms_url, "switchboard running");
    let mut servers = Vec::new();
    let serve = |name: &'static str, l: TcpListener, r: axum::Router| {
        let opts = crate::http::listener::ServeOptions::from_config(name, &cfg.http, tls.clone());
        tokio::spawn(crate::http::listener::serve(l, r, opts, shutdown.clone()))
    };
    servers.push(serve("api", listeners.http, routers.main));
    if let (Some(l), Some(r)) = (listeners.callbacks, routers.callbacks) {
        tracing::info!(listen = %l.local_addr()?, "SDP callbacks on their own listener");
        servers.push(serve("callbacks", l, r));
    }
    if let (Some(l), Some(r)) = (listeners.admin, routers.admin) {
        tracing::info!(listen = %l.local_addr()?, "admin API on its own listener");
        servers.push(serve("admin", l, r));
    }
    let deadline = Duration::from_secs(cfg.drain_timeout_secs);
    shutdown.cancelled().await;
    tracing::info!("stopping: no new work is accepted; draining");
    let started = tokio::time::Instant::now();
    for mut server in servers {
        let left = deadline.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, &mut server).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "HTTP server task failed"),
            Err(_) => {
                tracing::warn!("HTTP connections still open at the drain deadline: closed");
                server.abort();
            }
        }
    }
    for service in services {
        let left = deadline.saturating_sub(started.elapsed()) + Duration::from_secs(2);
        if tokio::time::timeout(left, service).await.is_err() {
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
