//! Logs and metrics set-up. Metric names follow Prometheus conventions
//! (`switchboard_…_total`, `…_duration_seconds`); labels are of bounded cardinality
//! (channel, stage, outcome, reason — never an address or a message id).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::spelled;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder (installed on first use; several gateways in one
/// process, as in tests, share it).
pub fn metrics_handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let latency = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0, 300.0,
            ];
            let sizes = [
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ];
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("duration_seconds".into()), &latency)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("switchboard_store_commit_batch_size".into()),
                        &sizes,
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            handle
        })
        .clone()
}

/// Keeps the recorder's histogram buffers bounded until `stop`.
pub async fn upkeep(handle: PrometheusHandle, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
        }
    }
}

/// The `[log]` section.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter (`info`, `switchboard=debug`); `RUST_LOG` overrides it.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

spelled! {
    /// `log.format`: how each log line is written.
    LogFormat {
        /// Human-readable lines.
        Text = "text",
        /// One JSON object a line.
        Json = "json",
    }
}

impl LogConfig {
    /// Problems with `log.…`.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if let LogFormat::Other(f) = &self.format {
            e.push(format!("log.format: {f:?} must be \"text\" or \"json\""));
        }
        e
    }
}

/// Installs the log subscriber (`RUST_LOG` overrides the configured filter).
pub fn init_logs(level: &str, format: &LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if *format == LogFormat::Json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
