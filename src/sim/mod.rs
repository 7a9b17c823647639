//! Built-in SDP simulator (`switchboard sdp-sim`): the operator side of Parlay X SMS.
//!
//! A real HTTP server (axum) that accepts `sendSms` (SOAP 1.1, Huawei header
//! optional) on `/parlayx/SendSmsService/services/SendSms` (alias `/SendSms`),
//! answers `sendSmsResponse`, HTTP 503 or a `PolicyException` fault by
//! configurable rates, and later POSTs `notifySmsDeliveryReceipt` callbacks to
//! the `receiptRequest` endpoint. It can also inject MO messages
//! (`notifySmsReception`) into the gateway, and exposes JSON control and
//! statistics endpoints under `/sim/`.
//!
//! Guarantees:
//! * Handlers are cheap: counters are atomics, duplicate detection keeps one
//!   64-bit hash per correlator (so memory stays small; a hash collision could in
//!   theory count a new correlator as a duplicate), recent messages live in a
//!   bounded ring buffer (`keep_messages`).
//! * Receipts go through one delay-queue task (a channel, items in due order —
//!   if `receipt_delay_ms` is lowered at run time, items already queued keep
//!   their older, later due time and delay those behind them), one shared
//!   keep-alive `reqwest::Client`, at most [`RECEIPT_CONCURRENCY`] POSTs in
//!   flight, and [`RECEIPT_ATTEMPTS`] attempts with a short backoff each.
//! * `stall` holds `sendSms` requests unanswered until it is cleared or the
//!   server shuts down (then they get 503), so graceful shutdown never hangs.
//! * Nothing received from the network is unwrapped; malformed requests get a
//!   SOAP fault `SVC0002` with HTTP 500.

use std::collections::{HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::connectors::sdp::parlayx::credentials::CallbackCredentials;
use crate::connectors::sdp::parlayx::{self, DeliveryStatus, Fault, Version};
mod config;
mod control;
mod mms;
mod receipts;
mod sms;
#[cfg(test)]
mod tests;

pub use config::SimConfig;
use config::{check_delay, check_rate};
pub use control::{MoRequest, SimControl, SimControlState};
use control::{bad_json, control, json_response, latency, messages, mo, mo_answer, reset, stats};
pub use mms::{MmsMoRequest, RECEIVE_MESSAGE_PATH, SEND_MESSAGE_PATH, SimMms, SimMmsPart};
use receipts::{ReceiptJob, deliver_receipt, post_soap, post_typed, receipt_worker};
use sms::{send_sms, simulated_503};

/// Receipt POSTs in flight at most.
pub const RECEIPT_CONCURRENCY: usize = 64;
/// Attempts per receipt POST (first try included).
pub const RECEIPT_ATTEMPTS: u32 = 3;
/// The SendSms endpoint path (as in the SDP's service WSDL).
pub const SEND_SMS_PATH: &str = "/parlayx/SendSmsService/services/SendSms";

const MAX_ERROR_BODY: usize = 2048;

/// A message text that starts with this prefix, followed by the sender's submit time in
/// microseconds since the Unix epoch and `;`, is a latency probe: the simulator records
/// how long it took to arrive (`GET /sim/latency`). Load tests use it; other texts are
/// not looked at.
pub const PROBE_PREFIX: &str = "probe:";
/// Most latency samples kept (later probes are counted, not kept).
pub const MAX_PROBES: usize = 2_000_000;

/// Counters reported by `GET /sim/stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Accepted sendSms, counted per address.
    pub received: u64,
    pub unique_correlators: u64,
    /// Accepted sendSms whose correlator was seen before.
    pub duplicates: u64,
    pub transient_errors: u64,
    pub permanent_faults: u64,
    pub receipts_sent: u64,
    pub receipts_failed: u64,
    pub mo_sent: u64,
    pub mo_failed: u64,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    unique_correlators: AtomicU64,
    duplicates: AtomicU64,
    transient_errors: AtomicU64,
    permanent_faults: AtomicU64,
    receipts_sent: AtomicU64,
    receipts_failed: AtomicU64,
    mo_sent: AtomicU64,
    mo_failed: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> SimStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SimStats {
            received: g(&self.received),
            unique_correlators: g(&self.unique_correlators),
            duplicates: g(&self.duplicates),
            transient_errors: g(&self.transient_errors),
            permanent_faults: g(&self.permanent_faults),
            receipts_sent: g(&self.receipts_sent),
            receipts_failed: g(&self.receipts_failed),
            mo_sent: g(&self.mo_sent),
            mo_failed: g(&self.mo_failed),
        }
    }

    fn reset(&self) {
        for a in [
            &self.received,
            &self.unique_correlators,
            &self.duplicates,
            &self.transient_errors,
            &self.permanent_faults,
            &self.receipts_sent,
            &self.receipts_failed,
            &self.mo_sent,
            &self.mo_failed,
        ] {
            a.store(0, Ordering::Relaxed);
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Submit → SDP latency of the probes received (`GET /sim/latency`), in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimLatency {
    /// Probes received.
    pub count: u64,
    /// Probes whose samples were kept (at most [`MAX_PROBES`]).
    pub kept: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// When the first and the last probe arrived, in microseconds since the Unix epoch.
    pub first_at_us: u64,
    pub last_at_us: u64,
}

#[derive(Default)]
struct Probes {
    count: u64,
    samples_us: Vec<u64>,
    first_at_us: u64,
    last_at_us: u64,
}

fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The submit time carried by a probe text.
fn probe_time(text: &str) -> Option<u64> {
    let rest = text.strip_prefix(PROBE_PREFIX)?;
    let (t, _) = rest.split_once(';')?;
    t.parse().ok()
}

impl Probes {
    fn record(&mut self, sent_us: u64) {
        let now = unix_us();
        self.count += 1;
        if self.first_at_us == 0 {
            self.first_at_us = now;
        }
        self.last_at_us = self.last_at_us.max(now);
        if self.samples_us.len() < MAX_PROBES {
            self.samples_us.push(now.saturating_sub(sent_us));
        }
    }

    fn summary(&self) -> SimLatency {
        let mut v = self.samples_us.clone();
        v.sort_unstable();
        let q = |p: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
            v[i] as f64 / 1000.0
        };
        SimLatency {
            count: self.count,
            kept: v.len() as u64,
            p50_ms: q(0.50),
            p90_ms: q(0.90),
            p99_ms: q(0.99),
            max_ms: v.last().map_or(0.0, |m| *m as f64 / 1000.0),
            first_at_us: self.first_at_us,
            last_at_us: self.last_at_us,
        }
    }
}

/// A message accepted by the simulator (`GET /sim/messages`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimMessage {
    pub request_id: String,
    pub addresses: Vec<String>,
    pub sender_name: Option<String>,
    pub message: String,
    pub correlator: Option<String>,
    pub sp_id: Option<String>,
}

/// Shared simulator state.
pub struct Simulator {
    cfg: RwLock<SimConfig>,
    counters: Arc<Counters>,
    correlators: Mutex<HashSet<u64>>,
    probes: Mutex<Probes>,
    messages: Mutex<VecDeque<SimMessage>>,
    mms: Mutex<VecDeque<SimMms>>,
    /// Received MMS waiting to be fetched with getMessage, oldest first (bounded by
    /// `keep_messages`).
    mms_inbox: Mutex<VecDeque<mms::Stored>>,
    stall: watch::Sender<bool>,
    client: reqwest::Client,
    receipts_tx: mpsc::UnboundedSender<ReceiptJob>,
    receipts_rx: Mutex<Option<mpsc::UnboundedReceiver<ReceiptJob>>>,
    worker_started: AtomicBool,
    next_id: AtomicU64,
    id_prefix: String,
    shutdown: CancellationToken,
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn correlator_hash(c: &str) -> u64 {
    let mut h = DefaultHasher::new();
    c.hash(&mut h);
    h.finish()
}

fn tel(s: &str) -> String {
    let s = s.trim();
    if s.starts_with("tel:") {
        s.to_owned()
    } else {
        format!("tel:{s}")
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

impl Simulator {
    /// Creates the state. The receipt worker starts with the first receipt
    /// (inside the runtime), so this needs no runtime.
    pub fn new(cfg: SimConfig) -> Arc<Simulator> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(RECEIPT_CONCURRENCY)
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "sdp-sim: custom HTTP client failed, using defaults");
                reqwest::Client::new()
            });
        let (tx, rx) = mpsc::unbounded_channel();
        let (stall, _) = watch::channel(false);
        Arc::new(Simulator {
            cfg: RwLock::new(cfg),
            counters: Arc::new(Counters::default()),
            correlators: Mutex::new(HashSet::new()),
            probes: Mutex::new(Probes::default()),
            messages: Mutex::new(VecDeque::new()),
            mms: Mutex::new(VecDeque::new()),
            mms_inbox: Mutex::new(VecDeque::new()),
            stall,
            client,
            receipts_tx: tx,
            receipts_rx: Mutex::new(Some(rx)),
            worker_started: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            id_prefix: chrono::Local::now().format("%Y%m%d%H%M%S").to_string(),
            shutdown: CancellationToken::new(),
        })
    }

    /// Current counters.
    pub fn stats(&self) -> SimStats {
        self.counters.snapshot()
    }

    /// Latency of the probes received so far (see [`PROBE_PREFIX`]).
    pub fn latency(&self) -> SimLatency {
        lock(&self.probes).summary()
    }

    /// Recent accepted messages, oldest first.
    /// The MMS received (the most recent `keep_messages`).
    pub fn mms_messages(&self) -> Vec<SimMms> {
        lock(&self.mms).iter().cloned().collect()
    }

    pub fn messages(&self) -> Vec<SimMessage> {
        lock(&self.messages).iter().cloned().collect()
    }

    /// Current configuration (including run-time changes).
    pub fn config(&self) -> SimConfig {
        read_lock(&self.cfg).clone()
    }

    /// Number of sendSms requests currently held by `stall`.
    pub fn stalled_requests(&self) -> usize {
        self.stall.receiver_count()
    }

    /// Holds or releases sendSms requests.
    pub fn set_stall(&self, stall: bool) {
        self.stall.send_replace(stall);
    }

    /// Clears counters, correlators, latency probes and recent messages.
    pub fn reset(&self) {
        self.counters.reset();
        lock(&self.correlators).clear();
        lock(&self.messages).clear();
        lock(&self.mms).clear();
        *lock(&self.probes) = Probes::default();
    }

    /// Stops the receipt worker and releases stalled requests (with 503).
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    fn next_request_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}{:010}", self.id_prefix, n)
    }

    fn ensure_worker(&self) {
        if self.worker_started.load(Ordering::Acquire) {
            return;
        }
        let Some(rx) = lock(&self.receipts_rx).take() else {
            return;
        };
        self.worker_started.store(true, Ordering::Release);
        tokio::spawn(receipt_worker(
            rx,
            self.client.clone(),
            self.counters.clone(),
            self.shutdown.clone(),
        ));
    }

    /// Waits while stalled; `false` if the server is shutting down.
    async fn wait_unstalled(&self) -> bool {
        if !*self.stall.borrow() {
            return true;
        }
        let mut rx = self.stall.subscribe();
        tokio::select! {
            r = rx.wait_for(|s| !*s) => r.is_ok(),
            _ = self.shutdown.cancelled() => false,
        }
    }

    fn apply_control(&self, c: &SimControl) -> Result<SimControlState, Vec<String>> {
        let mut errors = Vec::new();
        for (key, v) in [
            ("transient_error_rate", c.transient_error_rate),
            ("permanent_fault_rate", c.permanent_fault_rate),
            ("service_error_rate", c.service_error_rate),
            ("impossible_rate", c.impossible_rate),
        ] {
            if let Some(v) = v {
                check_rate(&mut errors, key, v);
            }
        }
        if let Some(d) = c.receipt_delay_ms {
            check_delay(&mut errors, d);
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let config = {
            let mut cfg = write_lock(&self.cfg);
            if let Some(v) = c.transient_error_rate {
                cfg.transient_error_rate = v;
            }
            if let Some(v) = c.permanent_fault_rate {
                cfg.permanent_fault_rate = v;
            }
            if let Some(v) = c.service_error_rate {
                cfg.service_error_rate = v;
            }
            if let Some(v) = c.impossible_rate {
                cfg.impossible_rate = v;
            }
            if let Some(v) = c.receipt_delay_ms {
                cfg.receipt_delay_ms = v;
            }
            if let Some(v) = c.send_receipts {
                cfg.send_receipts = v;
            }
            cfg.clone()
        };
        if let Some(s) = c.stall {
            self.set_stall(s);
        }
        Ok(SimControlState {
            config,
            stall: *self.stall.borrow(),
        })
    }
}

fn soap_response(status: StatusCode, body: String) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(parlayx::CONTENT_TYPE),
        )],
        body,
    )
        .into_response()
}

/// The simulator's routes.
pub fn router(state: Arc<Simulator>) -> Router {
    Router::new()
        .route(SEND_SMS_PATH, post(send_sms))
        .route(SEND_MESSAGE_PATH, post(mms::send_message))
        .route("/SendSms", post(send_sms))
        .route("/sim/stats", get(stats))
        .route("/sim/messages", get(messages))
        .route("/sim/latency", get(latency))
        .route("/sim/control", post(control))
        .route("/sim/reset", post(reset))
        .route("/sim/mo", post(mo))
        .route("/sim/mo-mms", post(mms::mo))
        .route(RECEIVE_MESSAGE_PATH, post(mms::get_message))
        .with_state(state)
}

/// Serves `state` on `listener` until `shutdown` is cancelled.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: Arc<Simulator>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "sdp-sim: listening (SendSms at {SEND_SMS_PATH})");
    }
    let app = router(state.clone());
    let st = state.clone();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            // Release stalled requests and stop the receipt worker.
            st.shutdown();
        })
        .await;
    state.shutdown();
    result
}

/// Runs the simulator with `cfg` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cfg: SimConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, Simulator::new(cfg), shutdown).await
}
