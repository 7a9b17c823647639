//! The `switchboard` command: `run`, `check-config`, `sdp-sim`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use switchboard::config::Config;
use switchboard::gateway::{self, Listeners};
use switchboard::sim::{self, SimConfig};
use switchboard::telemetry;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Message distribution gateway: IM, mail and apps to SMS/MMS and back"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        /// The configuration file.
        #[arg(short, long, default_value = "config/switchboard.toml")]
        config: PathBuf,
    },
    /// Check a configuration file: prints every error with its key; exits non-zero if any.
    CheckConfig {
        #[arg(short, long, default_value = "config/switchboard.toml")]
        config: PathBuf,
    },
    /// Run the SDP simulator on its own (Parlay X SendSms + SmsNotification callbacks).
    SdpSim {
        /// Read the `[simulator]` section of this config file.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Listen here (overrides the config).
        #[arg(long)]
        listen: Option<String>,
        /// The gateway's SmsNotification URL, for MO (overrides the config).
        #[arg(long)]
        notify_url: Option<String>,
    },
    /// Remove everything the store holds about one address (messages it sent, messages
    /// only it received, its recipient entries, reports and reply route). With the gateway
    /// running, the admin API's `POST /admin/v1/erase` does the same and also clears the
    /// gateway's caches.
    Erase {
        /// The address, e.g. `sms:+8613800000000` or `im:alice@im.example.org`.
        address: String,
        #[arg(short, long, default_value = "config/switchboard.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => match Config::load(&config) {
            Ok(_) => {
                println!("{}: ok", config.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", config.display());
                ExitCode::from(2)
            }
        },
        Command::Erase { address, config } => erase(&config, &address),
        Command::Run { config } => {
            let cfg = match Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            telemetry::init_logs(&cfg.log.level, &cfg.log.format);
            block_on(async move {
                let listeners = match Listeners::bind(&cfg).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot bind the listeners");
                        return ExitCode::from(1);
                    }
                };
                let shutdown = CancellationToken::new();
                tokio::spawn(on_signals(shutdown.clone()));
                match gateway::run(cfg, listeners, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!(error = %e, "gateway failed");
                        ExitCode::from(1)
                    }
                }
            })
        }
        Command::SdpSim {
            config,
            listen,
            notify_url,
        } => {
            let mut sim_cfg = match &config {
                Some(path) => match Config::load(path) {
                    // The simulator signs its callbacks as the gateway's config expects.
                    Ok(c) => {
                        let mut s = c.simulator.sim;
                        if s.callbacks.is_empty() {
                            s.callbacks = switchboard::connectors::sdp::callbacks::CallbackCredentials::from_config(&c.sdp.callbacks);
                        }
                        s
                    }
                    Err(e) => {
                        eprintln!("{}: {e}", path.display());
                        return ExitCode::from(2);
                    }
                },
                None => SimConfig::default(),
            };
            if let Some(l) = listen {
                sim_cfg.listen = l;
            }
            if notify_url.is_some() {
                sim_cfg.notify_url = notify_url;
            }
            let errors = sim_cfg.validate();
            if !errors.is_empty() {
                eprintln!("{}", errors.join("\n"));
                return ExitCode::from(2);
            }
            telemetry::init_logs("info", &telemetry::LogFormat::Text);
            block_on(async move {
                let listener = match tokio::net::TcpListener::bind(&sim_cfg.listen).await {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!(error = %e, listen = %sim_cfg.listen, "cannot bind");
                        return ExitCode::from(1);
                    }
                };
                tracing::info!(listen = %sim_cfg.listen, "SDP simulator running");
                let shutdown = CancellationToken::new();
                tokio::spawn(on_signals(shutdown.clone()));
                match sim::serve(listener, sim_cfg, shutdown).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!(error = %e, "simulator failed");
                        ExitCode::from(1)
                    }
                }
            })
        }
    }
}

fn erase(config: &std::path::Path, address: &str) -> ExitCode {
    let cfg = match Config::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", config.display());
            return ExitCode::from(2);
        }
    };
    let addr = match switchboard::address::Address::parse_user(address) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    block_on(async move {
        let ids = std::sync::Arc::new(switchboard::message::IdGen::new(cfg.node_id));
        let ttl = (cfg.retry.ttl_secs as i64) * 1000;
        let store = match switchboard::store::Store::open(&cfg.store, ids, ttl) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("store: {e}");
                return ExitCode::FAILURE;
            }
        };
        let result = store.erase(&addr).await;
        store.close().await;
        match result {
            Ok(d) => {
                println!(
                    "erased {addr}: {} message(s), {} recipient entries, {} report(s), {} reply route(s)",
                    d.messages, d.recipients, d.reports, d.reply_routes
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("erase failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

fn block_on<F: std::future::Future<Output = ExitCode>>(f: F) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            ExitCode::from(1)
        }
    }
}

/// SIGTERM or SIGINT: stop accepting and drain. A second signal exits at once.
async fn on_signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
    shutdown.cancel();
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    tracing::warn!("second signal: exiting without finishing the drain");
    std::process::exit(130);
}
