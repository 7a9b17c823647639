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

use crate::connectors::sdp::callbacks::CallbackCredentials;
use crate::connectors::sdp::parlayx::{self, DeliveryStatus, Fault, Version};

mod mms;
pub use mms::{MmsMoRequest, RECEIVE_MESSAGE_PATH, SEND_MESSAGE_PATH, SimMms, SimMmsPart};

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

/// Simulator settings (`[sim]` in the configuration file).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Listen address, used by `main` (serve() takes a bound listener).
    pub listen: String,
    /// Delay before the delivery receipt is POSTed.
    pub receipt_delay_ms: u64,
    /// Share of sendSms answered with HTTP 503 (0..=1).
    pub transient_error_rate: f64,
    /// Share answered with a SOAP fault PolicyException POL0001 (HTTP 500).
    pub permanent_fault_rate: f64,
    /// Share answered with a SOAP fault ServiceException SVC0001 (HTTP 500): a temporary
    /// error that costs the sender an attempt (counted with `transient_errors`).
    pub service_error_rate: f64,
    /// Share of accepted messages whose receipt is DeliveryImpossible.
    pub impossible_rate: f64,
    /// POST delivery receipts at all.
    pub send_receipts: bool,
    /// The gateway's SmsNotification endpoint for MO (notifySmsReception).
    pub notify_url: Option<String>,
    /// The gateway's MessageNotification endpoint for MO MMS (notifyMessageReception).
    pub mms_notify_url: Option<String>,
    /// Parlay X version of the documents the simulator sends.
    pub version: Version,
    /// How many recent messages GET /sim/messages keeps.
    pub keep_messages: usize,
    /// The credentials sent with every callback (receipts, MO), as the gateway's
    /// `[sdp.callbacks]` expects them; a secret path is part of the URLs.
    pub callbacks: CallbackCredentials,
    /// Deliver each receipt (synchronously) before answering its sendSms, as an SDP whose
    /// receipt overtakes its response does.
    pub receipt_before_response: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: "127.0.0.1:9090".into(),
            receipt_delay_ms: 50,
            transient_error_rate: 0.0,
            permanent_fault_rate: 0.0,
            service_error_rate: 0.0,
            impossible_rate: 0.0,
            send_receipts: true,
            notify_url: None,
            mms_notify_url: None,
            version: Version::V2_2,
            keep_messages: 10_000,
            callbacks: CallbackCredentials::default(),
            receipt_before_response: false,
        }
    }
}

fn check_rate(errors: &mut Vec<String>, key: &str, v: f64) {
    if !(0.0..=1.0).contains(&v) {
        errors.push(format!("sim.{key}: must be between 0 and 1"));
    }
}

const MAX_RECEIPT_DELAY_MS: u64 = 3_600_000;

fn check_delay(errors: &mut Vec<String>, v: u64) {
    if v > MAX_RECEIPT_DELAY_MS {
        errors.push(format!(
            "sim.receipt_delay_ms: must be at most {MAX_RECEIPT_DELAY_MS} (one hour)"
        ));
    }
}

fn check_url(errors: &mut Vec<String>, key: &str, url: &str) {
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        errors.push(format!("sim.{key}: must be an http:// or https:// URL"));
    }
}

impl SimConfig {
    /// Problems with the settings, each naming its key; empty when valid.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        match self.listen.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => errors.push("sim.listen: must be host:port, e.g. 127.0.0.1:9090".into()),
        }
        check_delay(&mut errors, self.receipt_delay_ms);
        check_rate(
            &mut errors,
            "transient_error_rate",
            self.transient_error_rate,
        );
        check_rate(
            &mut errors,
            "permanent_fault_rate",
            self.permanent_fault_rate,
        );
        check_rate(&mut errors, "impossible_rate", self.impossible_rate);
        check_rate(&mut errors, "service_error_rate", self.service_error_rate);
        if let Some(url) = &self.mms_notify_url {
            check_url(&mut errors, "mms_notify_url", url);
        }
        if let Some(url) = &self.notify_url {
            check_url(&mut errors, "notify_url", url);
        }
        errors
    }
}

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

/// Body of `POST /sim/control`; every field optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimControl {
    pub transient_error_rate: Option<f64>,
    pub permanent_fault_rate: Option<f64>,
    pub service_error_rate: Option<f64>,
    pub impossible_rate: Option<f64>,
    pub receipt_delay_ms: Option<u64>,
    pub send_receipts: Option<bool>,
    pub stall: Option<bool>,
}

/// Answer of `POST /sim/control`: the resulting configuration plus `stall`.
#[derive(Clone, Debug, Serialize)]
pub struct SimControlState {
    #[serde(flatten)]
    pub config: SimConfig,
    pub stall: bool,
}

/// Body of `POST /sim/mo`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoRequest {
    /// Subscriber, `+8613800000000` or `tel:+86…`.
    pub from: String,
    /// Service number (+ extension), `tel:` optional.
    pub to: String,
    pub text: String,
    /// Overrides the configured `notify_url`.
    #[serde(default)]
    pub notify_url: Option<String>,
}

/// One delivery receipt waiting for its due time.
struct ReceiptJob {
    due: Instant,
    endpoint: String,
    correlator: String,
    address: String,
    status: DeliveryStatus,
    version: Version,
    /// An MMS receipt (`notifyMessageDeliveryReceipt`) rather than an SMS one.
    mms: bool,
    creds: CallbackCredentials,
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

/// The delay queue: sleeps until each job is due, then POSTs it with bounded concurrency.
async fn receipt_worker(
    mut rx: mpsc::UnboundedReceiver<ReceiptJob>,
    client: reqwest::Client,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(RECEIPT_CONCURRENCY));
    loop {
        let job = tokio::select! {
            j = rx.recv() => match j { Some(j) => j, None => break },
            _ = shutdown.cancelled() => break,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(job.due) => {}
            _ = shutdown.cancelled() => break,
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.cancelled() => break,
        };
        let client = client.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            deliver_receipt(&client, &counters, &job).await;
            drop(permit);
        });
    }
    tracing::debug!("sdp-sim: receipt worker stopped");
}

/// POSTs one receipt (with retries) and counts the result.
async fn deliver_receipt(client: &reqwest::Client, counters: &Counters, job: &ReceiptJob) {
    let body = if job.mms {
        parlayx::mms::encode_notify_message_delivery_receipt(&parlayx::mms::MessageReceipt {
            correlator: job.correlator.clone(),
            address: job.address.clone(),
            status: job.status,
        })
    } else {
        parlayx::encode_notify_delivery_receipt(
            job.version,
            &job.correlator,
            &job.address,
            job.status,
        )
    };
    let body = job.creds.sign_envelope(body);
    let ok = post_soap_with_retries(client, &job.endpoint, Bytes::from(body), &job.creds).await;
    bump(if ok {
        &counters.receipts_sent
    } else {
        &counters.receipts_failed
    });
}

async fn post_soap(
    client: &reqwest::Client,
    url: &str,
    body: Bytes,
    creds: &CallbackCredentials,
) -> Result<(StatusCode, String), reqwest::Error> {
    post_typed(client, url, parlayx::CONTENT_TYPE, body, creds).await
}

/// POSTs a SOAP request (plain or with attachments) with the callback credentials and
/// reads the answer.
async fn post_typed(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
    creds: &CallbackCredentials,
) -> Result<(StatusCode, String), reqwest::Error> {
    let resp = creds
        .apply(client.post(url))
        .header(header::CONTENT_TYPE, content_type)
        .header("SOAPAction", "\"\"")
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    Ok((status, text))
}

async fn post_soap_with_retries(
    client: &reqwest::Client,
    url: &str,
    body: Bytes,
    creds: &CallbackCredentials,
) -> bool {
    for attempt in 1..=RECEIPT_ATTEMPTS {
        match post_soap(client, url, body.clone(), creds).await {
            Ok((s, _)) if s.is_success() => return true,
            Ok((s, text)) => {
                tracing::debug!(%url, status = %s, attempt, body = %truncate(&text, 200), "sdp-sim: receipt refused");
            }
            Err(e) => tracing::debug!(%url, error = %e, attempt, "sdp-sim: receipt POST failed"),
        }
        if attempt < RECEIPT_ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt * attempt))).await;
        }
    }
    tracing::warn!(%url, "sdp-sim: receipt not delivered after {RECEIPT_ATTEMPTS} attempts");
    false
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

fn json_response<T: Serialize>(status: StatusCode, v: &T) -> Response {
    match serde_json::to_string(v) {
        Ok(s) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            s,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

fn bad_json(e: &serde_json::Error) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": e.to_string() }),
    )
}

async fn send_sms(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    if !sim.wait_unstalled().await {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let req = match parlayx::decode_send_sms(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "sdp-sim: bad sendSms");
            let fault = Fault::service(
                "SVC0002",
                "Invalid input value for message part %1",
                vec![truncate(&e.to_string(), 200)],
            );
            return soap_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                parlayx::encode_fault(&fault),
            );
        }
    };
    let (transient, permanent, impossible, send_receipts, delay, version, keep, service) = {
        let c = read_lock(&sim.cfg);
        (
            c.transient_error_rate,
            c.permanent_fault_rate,
            c.impossible_rate,
            c.send_receipts,
            c.receipt_delay_ms,
            c.version,
            c.keep_messages,
            c.service_error_rate,
        )
    };
    let (creds, before) = {
        let c = read_lock(&sim.cfg);
        (c.callbacks.clone(), c.receipt_before_response)
    };
    if let Some(refused) = simulated_503(&sim, transient) {
        return refused;
    }
    if service > 0.0 && rand::random::<f64>() < service {
        bump(&sim.counters.transient_errors);
        let fault = Fault::service(
            "SVC0001",
            "A service error occurred. Error code is %1",
            vec!["simulated".into()],
        );
        return soap_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            parlayx::encode_fault(&fault),
        );
    }
    if permanent > 0.0 && rand::random::<f64>() < permanent {
        bump(&sim.counters.permanent_faults);
        let fault = Fault::policy(
            "POL0001",
            "A policy error occurred. Error code is %1",
            vec!["simulated".into()],
        );
        return soap_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            parlayx::encode_fault(&fault),
        );
    }
    sim.counters
        .received
        .fetch_add(req.addresses.len() as u64, Ordering::Relaxed);
    let correlator = req.receipt_request.as_ref().map(|r| r.correlator.clone());
    if let Some(c) = &correlator {
        let fresh = lock(&sim.correlators).insert(correlator_hash(c));
        bump(if fresh {
            &sim.counters.unique_correlators
        } else {
            &sim.counters.duplicates
        });
    }
    if let Some(sent_us) = probe_time(&req.message) {
        lock(&sim.probes).record(sent_us);
    }
    let request_id = sim.next_request_id();
    if send_receipts && let Some(rr) = &req.receipt_request {
        sim.ensure_worker();
        let due = Instant::now() + Duration::from_millis(delay);
        for address in &req.addresses {
            let status = if impossible > 0.0 && rand::random::<f64>() < impossible {
                DeliveryStatus::DeliveryImpossible
            } else {
                DeliveryStatus::DeliveredToTerminal
            };
            let job = ReceiptJob {
                due,
                endpoint: rr.endpoint.clone(),
                correlator: rr.correlator.clone(),
                address: address.clone(),
                status,
                version,
                mms: false,
                creds: creds.clone(),
            };
            if before {
                deliver_receipt(&sim.client, &sim.counters, &job).await;
            } else if sim.receipts_tx.send(job).is_err() {
                bump(&sim.counters.receipts_failed);
            }
        }
    }
    let response = parlayx::encode_send_sms_response(version, &request_id);
    if keep > 0 {
        let msg = SimMessage {
            request_id,
            sp_id: req.header.map(|h| h.sp_id),
            addresses: req.addresses,
            sender_name: req.sender_name,
            message: req.message,
            correlator,
        };
        let mut ring = lock(&sim.messages);
        while ring.len() >= keep {
            ring.pop_front();
        }
        ring.push_back(msg);
    }
    soap_response(StatusCode::OK, response)
}

async fn stats(State(sim): State<Arc<Simulator>>) -> Response {
    json_response(StatusCode::OK, &sim.stats())
}

async fn latency(State(sim): State<Arc<Simulator>>) -> Response {
    json_response(StatusCode::OK, &sim.latency())
}

async fn messages(State(sim): State<Arc<Simulator>>) -> Response {
    json_response(StatusCode::OK, &sim.messages())
}

async fn control(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    let c: SimControl = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return bad_json(&e),
    };
    match sim.apply_control(&c) {
        Ok(state) => {
            tracing::info!(?c, "sdp-sim: control");
            json_response(StatusCode::OK, &state)
        }
        Err(errors) => json_response(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "errors": errors }),
        ),
    }
}

async fn reset(State(sim): State<Arc<Simulator>>) -> Response {
    sim.reset();
    json_response(StatusCode::OK, &sim.stats())
}

async fn mo(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    let req: MoRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_json(&e),
    };
    let (configured, version) = {
        let c = read_lock(&sim.cfg);
        (c.notify_url.clone(), c.version)
    };
    let Some(url) = req.notify_url.clone().or(configured) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": "no notify_url configured or given" }),
        );
    };
    let correlator = format!("mo-{}", sim.next_request_id());
    let now = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let xml = parlayx::encode_notify_sms_reception(
        version,
        &correlator,
        &req.text,
        &tel(&req.from),
        &tel(&req.to),
        Some(&now),
    );
    let creds = read_lock(&sim.cfg).callbacks.clone();
    let xml = creds.sign_envelope(xml);
    let sent = post_soap(&sim.client, &url, Bytes::from(xml), &creds).await;
    mo_answer(&sim, sent, serde_json::json!({ "correlator": correlator }))
}

/// With probability `rate`: a 503 answer (counted as a transient error).
fn simulated_503(sim: &Simulator, rate: f64) -> Option<Response> {
    (rate > 0.0 && rand::random::<f64>() < rate).then(|| {
        bump(&sim.counters.transient_errors);
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "service unavailable (simulated)",
        )
            .into_response()
    })
}

/// The answer of `/sim/mo` and `/sim/mo-mms`: what the gateway said to the notification
/// (`ok` plus the status when it took it, else 502 with its status and answer).
fn mo_answer(
    sim: &Simulator,
    sent: Result<(StatusCode, String), reqwest::Error>,
    mut ok: serde_json::Value,
) -> Response {
    match sent {
        Ok((status, _)) if status.is_success() => {
            bump(&sim.counters.mo_sent);
            ok["status"] = status.as_u16().into();
            json_response(StatusCode::OK, &ok)
        }
        Ok((status, text)) => {
            bump(&sim.counters.mo_failed);
            json_response(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({
                    "status": status.as_u16(),
                    "body": truncate(&text, MAX_ERROR_BODY),
                }),
            )
        }
        Err(e) => {
            bump(&sim.counters.mo_failed);
            json_response(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({ "status": null, "error": e.to_string() }),
            )
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::sdp::parlayx::{
        Notification, ReceiptRequest, RequestHeader, SendSms, SoapError,
    };

    struct Running {
        base: String,
        sim: Arc<Simulator>,
        token: CancellationToken,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
        client: reqwest::Client,
    }

    impl Running {
        async fn stop(self) {
            self.token.cancel();
            let r = tokio::time::timeout(Duration::from_secs(5), self.task).await;
            assert!(matches!(r, Ok(Ok(Ok(())))), "server did not stop cleanly");
        }

        async fn post(&self, path: &str, body: String) -> (StatusCode, String) {
            let r = self
                .client
                .post(format!("{}{path}", self.base))
                .header(header::CONTENT_TYPE, parlayx::CONTENT_TYPE)
                .body(body)
                .send()
                .await
                .unwrap();
            let s = r.status();
            (s, r.text().await.unwrap())
        }

        async fn get_json(&self, path: &str) -> serde_json::Value {
            let r = self
                .client
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .unwrap();
            serde_json::from_str(&r.text().await.unwrap()).unwrap()
        }
    }

    async fn start(cfg: SimConfig) -> Running {
        assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let sim = Simulator::new(cfg);
        let token = CancellationToken::new();
        let task = tokio::spawn(serve_with(listener, sim.clone(), token.clone()));
        Running {
            base,
            sim,
            token,
            task,
            client: reqwest::Client::new(),
        }
    }

    /// A tiny gateway-side receiver: forwards each body to a channel, answers 200.
    async fn receiver() -> (String, mpsc::UnboundedReceiver<String>, CancellationToken) {
        let (tx, rx) = mpsc::unbounded_channel::<String>();
        let app = Router::new().route(
            "/notify",
            post(move |body: String| {
                let tx = tx.clone();
                async move {
                    let kind = match parlayx::decode_notification(body.as_bytes()) {
                        Ok(n) => n.kind(),
                        Err(_) => return (StatusCode::BAD_REQUEST, String::new()),
                    };
                    let _ = tx.send(body);
                    (
                        StatusCode::OK,
                        parlayx::encode_notify_response(Version::V2_2, kind),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notify", listener.local_addr().unwrap());
        let token = CancellationToken::new();
        let t = token.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { t.cancelled().await })
                .await
        });
        (url, rx, token)
    }

    fn request(correlator: &str, endpoint: Option<&str>) -> String {
        let req = SendSms {
            addresses: vec!["tel:+8613800000001".into(), "tel:+8613800000002".into()],
            sender_name: Some("10658000".into()),
            message: "hello <sim> & co".into(),
            receipt_request: endpoint.map(|e| ReceiptRequest {
                endpoint: e.into(),
                interface_name: "SmsNotification".into(),
                correlator: correlator.into(),
            }),
            header: Some(RequestHeader::with_password(
                "sp1",
                "secret",
                "svc",
                "20240101000000",
                "tel:+8613800000001",
                "tel:+8613800000001",
            )),
        };
        parlayx::encode_send_sms(Version::V2_2, &req)
    }

    fn quiet() -> SimConfig {
        SimConfig {
            send_receipts: false,
            ..SimConfig::default()
        }
    }

    #[test]
    fn probes_are_parsed_and_summarised() {
        assert_eq!(
            probe_time("probe:1700000000000000;hello"),
            Some(1_700_000_000_000_000)
        );
        assert_eq!(probe_time("probe:12x;hello"), None);
        assert_eq!(probe_time("probe:12"), None);
        assert_eq!(probe_time("hello probe:12;"), None);
        let mut p = Probes::default();
        assert_eq!(p.summary(), SimLatency::default());
        let now = unix_us();
        for ms in 1..=100u64 {
            p.record(now - ms * 1000);
        }
        let s = p.summary();
        assert_eq!((s.count, s.kept), (100, 100));
        assert!(s.p50_ms >= 50.0 && s.p50_ms < 60.0, "{s:?}");
        assert!(s.p99_ms >= 99.0 && s.max_ms >= 100.0, "{s:?}");
        assert!(s.first_at_us >= now && s.last_at_us >= s.first_at_us);
    }

    #[test]
    fn config_validation() {
        assert!(SimConfig::default().validate().is_empty());
        let bad = SimConfig {
            listen: "nope".into(),
            transient_error_rate: 1.5,
            permanent_fault_rate: -0.1,
            impossible_rate: f64::NAN,
            notify_url: Some("ftp://x".into()),
            receipt_delay_ms: u64::MAX,
            ..SimConfig::default()
        };
        let errs = bad.validate();
        for key in [
            "sim.listen",
            "sim.transient_error_rate: must be between 0 and 1",
            "sim.permanent_fault_rate",
            "sim.impossible_rate",
            "sim.notify_url",
            "sim.receipt_delay_ms",
        ] {
            assert!(errs.iter().any(|e| e.starts_with(key)), "{key}: {errs:?}");
        }
        // Unknown keys are refused, missing keys defaulted.
        let parsed: SimConfig =
            serde_json::from_str(r#"{"receipt_delay_ms": 5, "version": "v2_1"}"#).unwrap();
        assert_eq!(parsed.receipt_delay_ms, 5);
        assert_eq!(parsed.version, Version::V2_1);
        assert_eq!(parsed.keep_messages, 10_000);
        assert!(serde_json::from_str::<SimConfig>(r#"{"bogus": 1}"#).is_err());
    }

    #[tokio::test]
    async fn send_sms_round_trip_and_duplicates() {
        let r = start(quiet()).await;
        let (s, body) = r
            .post(SEND_SMS_PATH, request("c-1", Some("http://127.0.0.1:1/x")))
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let id1 = parlayx::decode_send_sms_response(body.as_bytes()).unwrap();
        // Alias path, same correlator → duplicate.
        let (s, body) = r
            .post("/SendSms", request("c-1", Some("http://127.0.0.1:1/x")))
            .await;
        assert_eq!(s, StatusCode::OK);
        let id2 = parlayx::decode_send_sms_response(body.as_bytes()).unwrap();
        assert_ne!(id1, id2);
        let st = r.sim.stats();
        assert_eq!(st.received, 4);
        assert_eq!(st.unique_correlators, 1);
        assert_eq!(st.duplicates, 1);

        let stats = r.get_json("/sim/stats").await;
        assert_eq!(stats["received"], 4);
        assert_eq!(stats["duplicates"], 1);
        let msgs = r.get_json("/sim/messages").await;
        assert_eq!(msgs.as_array().unwrap().len(), 2);
        assert_eq!(msgs[0]["message"], "hello <sim> & co");
        assert_eq!(msgs[0]["correlator"], "c-1");
        assert_eq!(msgs[0]["sp_id"], "sp1");
        assert_eq!(msgs[0]["sender_name"], "10658000");
        assert_eq!(msgs[0]["addresses"][1], "tel:+8613800000002");

        // Malformed → SVC0002 fault, HTTP 500.
        let (s, body) = r.post(SEND_SMS_PATH, "<nope".into()).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        let f = parlayx::decode_fault(body.as_bytes()).unwrap();
        assert_eq!(f.message_id(), Some("SVC0002"));

        let (s, _) = r.post("/sim/reset", String::new()).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(r.sim.stats(), SimStats::default());
        assert!(r.sim.messages().is_empty());
        r.stop().await;
    }

    #[tokio::test]
    async fn ring_buffer_is_bounded() {
        let r = start(SimConfig {
            keep_messages: 2,
            ..quiet()
        })
        .await;
        for c in ["a", "b", "c"] {
            let (s, _) = r
                .post(SEND_SMS_PATH, request(c, Some("http://x.invalid/")))
                .await;
            assert_eq!(s, StatusCode::OK);
        }
        let m = r.sim.messages();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].correlator.as_deref(), Some("b"));
        assert_eq!(m[1].correlator.as_deref(), Some("c"));
        r.stop().await;
    }

    #[tokio::test]
    async fn transient_errors_give_503() {
        let r = start(SimConfig {
            transient_error_rate: 1.0,
            ..quiet()
        })
        .await;
        let (s, _) = r.post(SEND_SMS_PATH, request("c", None)).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        let st = r.sim.stats();
        assert_eq!((st.transient_errors, st.received), (1, 0));
        r.stop().await;
    }

    #[tokio::test]
    async fn permanent_faults_give_pol0001() {
        let r = start(SimConfig {
            permanent_fault_rate: 1.0,
            ..quiet()
        })
        .await;
        let (s, body) = r.post(SEND_SMS_PATH, request("c", None)).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        match parlayx::decode_send_sms_response(body.as_bytes()) {
            Err(SoapError::Fault(f)) => {
                assert_eq!(f.message_id(), Some("POL0001"));
                assert_eq!(
                    f.exception.as_ref().map(|e| e.kind),
                    Some(parlayx::ExceptionKind::Policy)
                );
            }
            other => panic!("expected a fault, got {other:?}"),
        }
        assert_eq!(r.sim.stats().permanent_faults, 1);
        r.stop().await;
    }

    #[tokio::test]
    async fn receipts_are_posted() {
        let (url, mut rx, rtoken) = receiver().await;
        let r = start(SimConfig {
            receipt_delay_ms: 10,
            ..SimConfig::default()
        })
        .await;
        let (s, _) = r.post(SEND_SMS_PATH, request("corr-42", Some(&url))).await;
        assert_eq!(s, StatusCode::OK);
        let mut got = Vec::new();
        for _ in 0..2 {
            let body = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("receipt within deadline")
                .expect("channel open");
            got.push(parlayx::decode_notification(body.as_bytes()).unwrap());
        }
        got.sort_by_key(|n| format!("{n:?}"));
        for (n, addr) in got.iter().zip(["tel:+8613800000001", "tel:+8613800000002"]) {
            assert_eq!(
                n,
                &Notification::DeliveryReceipt {
                    correlator: "corr-42".into(),
                    address: addr.into(),
                    status: DeliveryStatus::DeliveredToTerminal,
                }
            );
        }
        // receipts_sent is bumped right after the POST returns.
        let deadline = Instant::now() + Duration::from_secs(5);
        while r.sim.stats().receipts_sent < 2 {
            assert!(Instant::now() < deadline, "{:?}", r.sim.stats());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        // impossible_rate = 1 via control
        let (s, body) = r
            .post("/sim/control", r#"{"impossible_rate": 1.0}"#.into())
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["impossible_rate"], 1.0);
        assert_eq!(v["stall"], false);
        r.post(SEND_SMS_PATH, request("corr-43", Some(&url))).await;
        let body = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            parlayx::decode_notification(body.as_bytes()).unwrap(),
            Notification::DeliveryReceipt { status: DeliveryStatus::DeliveryImpossible, ref correlator, .. } if correlator == "corr-43"
        ));
        r.stop().await;
        rtoken.cancel();
    }

    #[tokio::test]
    async fn failed_receipts_are_counted() {
        // Nothing listens on the endpoint: every attempt fails.
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/notify", dead.local_addr().unwrap());
        drop(dead);
        let r = start(SimConfig {
            receipt_delay_ms: 0,
            ..SimConfig::default()
        })
        .await;
        r.post(SEND_SMS_PATH, request("c", Some(&url))).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.sim.stats().receipts_failed < 2 {
            assert!(Instant::now() < deadline, "{:?}", r.sim.stats());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(r.sim.stats().receipts_sent, 0);
        r.stop().await;
    }

    #[tokio::test]
    async fn mo_reaches_the_gateway() {
        let (url, mut rx, rtoken) = receiver().await;
        let r = start(SimConfig {
            notify_url: Some(url.clone()),
            ..quiet()
        })
        .await;
        let (s, body) = r
            .post(
                "/sim/mo",
                r#"{"from": "+8613800000000", "to": "10658000123", "text": "hi <there> & you"}"#
                    .into(),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], 200);
        let xml = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        match parlayx::decode_notification(xml.as_bytes()).unwrap() {
            Notification::Reception {
                correlator,
                message,
                sender_address,
                activation_number,
                date_time,
            } => {
                assert!(correlator.is_some_and(|c| c.starts_with("mo-")));
                assert_eq!(message, "hi <there> & you");
                assert_eq!(sender_address, "tel:+8613800000000");
                assert_eq!(activation_number, "tel:10658000123");
                assert!(date_time.is_some());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(r.sim.stats().mo_sent, 1);

        // A gateway answering 4xx/5xx → 502 and mo_failed.
        let (s, body) = r
            .post(
                "/sim/mo",
                format!(
                    r#"{{"from": "tel:+1", "to": "tel:2", "text": "x", "notify_url": "{}"}}"#,
                    url.replace("/notify", "/missing")
                ),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], 404);
        assert_eq!(r.sim.stats().mo_failed, 1);
        // Bad JSON → 400.
        let (s, _) = r.post("/sim/mo", "{".into()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        r.stop().await;
        rtoken.cancel();
    }

    #[tokio::test]
    async fn stall_holds_requests_until_released() {
        let r = start(quiet()).await;
        let (s, body) = r.post("/sim/control", r#"{"stall": true}"#.into()).await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("\"stall\":true"));
        let client = r.client.clone();
        let url = format!("{}{SEND_SMS_PATH}", r.base);
        let body = request("st-1", None);
        let pending = tokio::spawn(async move {
            let resp = client.post(url).body(body).send().await.unwrap();
            let s = resp.status();
            (s, resp.text().await.unwrap())
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while r.sim.stalled_requests() < 1 {
            assert!(Instant::now() < deadline, "request never reached the stall");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(!pending.is_finished());
        assert_eq!(r.sim.stats().received, 0);
        // Invalid control values are refused and change nothing.
        let (s, body) = r
            .post("/sim/control", r#"{"transient_error_rate": 2}"#.into())
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(body.contains("sim.transient_error_rate"));
        let (s, _) = r.post("/sim/control", r#"{"stall": false}"#.into()).await;
        assert_eq!(s, StatusCode::OK);
        let (s, body) = tokio::time::timeout(Duration::from_secs(5), pending)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s, StatusCode::OK);
        assert!(parlayx::decode_send_sms_response(body.as_bytes()).is_ok());
        assert_eq!(r.sim.stats().received, 2);
        r.stop().await;
    }

    #[tokio::test]
    async fn shutdown_releases_stalled_requests() {
        let r = start(quiet()).await;
        r.sim.set_stall(true);
        let client = r.client.clone();
        let url = format!("{}{SEND_SMS_PATH}", r.base);
        let body = request("st-2", None);
        let pending =
            tokio::spawn(
                async move { client.post(url).body(body).send().await.map(|r| r.status()) },
            );
        let deadline = Instant::now() + Duration::from_secs(5);
        while r.sim.stalled_requests() < 1 {
            assert!(Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        r.stop().await;
        let s = tokio::time::timeout(Duration::from_secs(5), pending)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    }
}
