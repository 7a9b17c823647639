//! Shared test harness: a gateway and an SDP simulator on port 0 in this process (or the
//! gateway as a child process, for crash tests), a webhook receiver standing in for the IM
//! server and report callbacks, and waiting on conditions with a deadline.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use serde_json::Value;
use switchboard::config::{ClientConfig, Config};
use switchboard::connectors::sdp::NOTIFY_PATH;
use switchboard::gateway::{self, Listeners};
use switchboard::sim::{self, SEND_SMS_PATH, SimConfig, SimMessage, Simulator};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub const TOKEN: &str = "test-token-0001";
pub const OTHER_TOKEN: &str = "test-token-0002";
/// The admin API's token: reads every message (MO, mail, XMPP, reports included).
pub const ADMIN_TOKEN: &str = "test-admin-token-0001";

/// The basic-auth credential the test SDP (simulator) sends with its callbacks.
pub const CALLBACK_USER: &str = "sdp";
pub const CALLBACK_PASSWORD: &str = "test-callback-password";

/// The callback credentials of [`test_config`], for simulators started by hand.
pub fn sim_callbacks() -> switchboard::connectors::sdp::callbacks::CallbackCredentials {
    switchboard::connectors::sdp::callbacks::CallbackCredentials {
        basic: Some(switchboard::connectors::sdp::callbacks::BasicAuth {
            user: CALLBACK_USER.into(),
            password: CALLBACK_PASSWORD.into(),
        }),
        header: None,
    }
}

/// Polls `f` until it gives `Some`, or panics naming `what` after `deadline`.
pub async fn wait_for<T, F, Fut>(deadline: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() >= end {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A config for tests: store in `dir`, fast retries, two API clients.
pub fn test_config(dir: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.http.listen = "127.0.0.1:0".into();
    cfg.http.clients = vec![
        ClientConfig {
            name: "im-server".into(),
            token: TOKEN.into(),
            senders: vec!["im:*".into(), "app:*".into(), "mail:*".into()],
            // Load and flow tests submit as fast as they can; the trust tests set limits.
            submit_rate: 0,
            max_recipients: 1000,
            ..ClientConfig::default()
        },
        ClientConfig {
            name: "other".into(),
            token: OTHER_TOKEN.into(),
            senders: vec!["app:other".into()],
            ..ClientConfig::default()
        },
    ];
    cfg.admin.token = ADMIN_TOKEN.into();
    cfg.limits.recipient_daily_max = 0;
    cfg.store.path = dir.join("switchboard.db");
    cfg.retry.initial_backoff_ms = 50;
    cfg.retry.max_backoff_ms = 400;
    cfg.retry.poll_interval_ms = 20;
    cfg.drain_timeout_secs = 5;
    cfg.im.domains = vec!["im.example.org".into()];
    cfg.log.level = "warn".into();
    cfg.sdp.callbacks.basic = sim_callbacks().basic;
    cfg
}

/// Waits for the SMS the simulator received for `number` (`+86…`), alone among its
/// addresses, whose text satisfies `pred`.
pub async fn sms_to(h: &Harness, number: &str, pred: impl Fn(&str) -> bool) -> SimMessage {
    let tel = format!("tel:{number}");
    wait_for(
        Duration::from_secs(20),
        &format!("an SMS to {number}"),
        || {
            let found = h
                .sim
                .sim
                .messages()
                .into_iter()
                .find(|m| m.addresses == [tel.clone()] && pred(&m.message));
            async move { found }
        },
    )
    .await
}

/// Puts users and groups into the gateway's directory at start: writes `seed` (the
/// `[directory] file` form, `{"users": {id: user}, "groups": {id: group}}`) beside the store
/// and points `directory.file` at it.
pub fn seed_directory(cfg: &mut Config, seed: Value) {
    let path = cfg
        .store
        .path
        .parent()
        .expect("the store lives in a directory")
        .join("directory-seed.json");
    std::fs::write(&path, seed.to_string()).unwrap();
    cfg.directory.file = Some(path);
}

/// What the webhook receiver recorded: `(path, body)` in arrival order.
type Posted = Arc<Mutex<Vec<(String, Value)>>>;

/// Records what is POSTed to it: the IM server's webhook (`/im`) and report callbacks
/// (`/reports`).
#[derive(Clone)]
pub struct Hooks {
    pub addr: SocketAddr,
    seen: Posted,
    stop: CancellationToken,
}

impl Hooks {
    pub async fn start() -> Hooks {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Posted = Arc::default();
        async fn record(
            State((seen, path)): State<(Posted, &'static str)>,
            body: axum::body::Bytes,
        ) -> &'static str {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            seen.lock().unwrap().push((path.to_string(), v));
            "ok"
        }
        let app = axum::Router::new()
            .route("/im", post(record).with_state((seen.clone(), "im")))
            .route(
                "/reports",
                post(record).with_state((seen.clone(), "reports")),
            );
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(s.cancelled_owned())
                .await;
        });
        Hooks { addr, seen, stop }
    }

    pub fn im_url(&self) -> String {
        format!("http://{}/im", self.addr)
    }

    pub fn report_url(&self) -> String {
        format!("http://{}/reports", self.addr)
    }

    /// Everything posted to `path` (`im` or `reports`) so far.
    pub fn posted(&self, path: &str) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Waits for a body posted to `path` that satisfies `pred`.
    pub async fn wait(&self, path: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_for(Duration::from_secs(10), what, || {
            let found = self.posted(path).into_iter().find(|v| pred(v));
            async move { found }
        })
        .await
    }
}

/// An SDP simulator on port 0 in this process.
pub struct Sim {
    pub addr: SocketAddr,
    pub sim: Arc<Simulator>,
    stop: CancellationToken,
}

impl Sim {
    pub async fn start(cfg: SimConfig) -> Sim {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Sim::start_on(listener, cfg).await
    }

    pub async fn start_on(listener: TcpListener, cfg: SimConfig) -> Sim {
        let addr = listener.local_addr().unwrap();
        let sim = Simulator::new(cfg);
        let stop = CancellationToken::new();
        tokio::spawn(sim::serve_with(listener, sim.clone(), stop.clone()));
        Sim { addr, sim, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn send_sms_url(&self) -> String {
        format!("http://{}{SEND_SMS_PATH}", self.addr)
    }

    /// Changes the simulator's behaviour (`/sim/control`).
    pub async fn control(&self, body: Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/sim/control", self.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "sim control: {}", r.status());
    }

    /// Makes the simulator send an MO to the gateway; returns the HTTP status it reports.
    pub async fn mo(&self, from: &str, to: &str, text: &str) -> reqwest::StatusCode {
        reqwest::Client::new()
            .post(format!("{}/sim/mo", self.url()))
            .json(&serde_json::json!({"from": from, "to": to, "text": text}))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Makes the simulator send an MO MMS (`/sim/mo-mms`); returns the HTTP status it
    /// reports and its answer.
    pub async fn mo_mms(
        &self,
        req: &switchboard::sim::MmsMoRequest,
    ) -> (reqwest::StatusCode, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}/sim/mo-mms", self.url()))
            .json(req)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A gateway on port 0 in this process, with its own simulator and webhook receiver.
pub struct Harness {
    pub base: String,
    /// Where the SDP callbacks are served (`base` unless `[http] callbacks_listen` is set).
    pub callbacks_base: String,
    /// The admin API's own listener, when `[http] admin_listen` is set.
    pub admin_base: Option<String>,
    pub sim: Sim,
    pub hooks: Hooks,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    pub cfg: Config,
    /// The SMTP server's address, when the config has `[mail] listen`.
    pub smtp: Option<SocketAddr>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), gateway::RunError>>>,
}

impl Harness {
    /// Starts simulator, webhook receiver and gateway; `tweak` adjusts both configs.
    pub async fn start(tweak: impl FnOnce(&mut Config, &mut SimConfig)) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let hooks = Hooks::start().await;
        let mut cfg = test_config(dir.path());
        cfg.im.url = hooks.im_url();
        let mut sim_cfg = SimConfig {
            receipt_delay_ms: 10,
            ..SimConfig::default()
        };
        tweak(&mut cfg, &mut sim_cfg);
        let http_listener = TcpListener::bind(&cfg.http.listen).await.unwrap();
        let http_addr = http_listener.local_addr().unwrap();
        // `[http] callbacks_listen` / `admin_listen` set (to port 0): listeners of their own;
        // the simulator then sends its receipts and MO to the callbacks listener.
        let callbacks_listener = match &cfg.http.callbacks_listen {
            Some(a) => Some(TcpListener::bind(a).await.unwrap()),
            None => None,
        };
        let admin_listener = match &cfg.http.admin_listen {
            Some(a) => Some(TcpListener::bind(a).await.unwrap()),
            None => None,
        };
        let callbacks_addr = callbacks_listener
            .as_ref()
            .map(|l| l.local_addr().unwrap())
            .unwrap_or(http_addr);
        let admin_base = admin_listener
            .as_ref()
            .map(|l| format!("http://{}", l.local_addr().unwrap()));
        let callbacks = &cfg.sdp.callbacks;
        sim_cfg.notify_url = Some(format!(
            "http://{callbacks_addr}{}",
            callbacks.path(NOTIFY_PATH)
        ));
        sim_cfg.mms_notify_url.get_or_insert_with(|| {
            format!(
                "http://{callbacks_addr}{}",
                callbacks.path(switchboard::connectors::sdp::MMS_NOTIFY_PATH)
            )
        });
        if sim_cfg.callbacks.is_empty() {
            sim_cfg.callbacks =
                switchboard::connectors::sdp::callbacks::CallbackCredentials::from_config(
                    callbacks,
                );
        }
        let sim = Sim::start(sim_cfg).await;
        if cfg.sdp.send_sms_url.is_empty() {
            cfg.sdp.send_sms_url = sim.send_sms_url();
        }
        if cfg.content.mms.receive_message_url.is_empty() {
            cfg.content.mms.receive_message_url =
                format!("{}{}", sim.url(), switchboard::sim::RECEIVE_MESSAGE_PATH);
        }
        let errors = cfg.validate();
        assert!(errors.is_empty(), "test config invalid: {errors:?}");
        // `[mail] listen` set (to port 0): the SMTP server gets a listener too.
        let smtp_listener = if cfg.mail.listen.is_empty() {
            None
        } else {
            Some(TcpListener::bind(&cfg.mail.listen).await.unwrap())
        };
        let smtp = smtp_listener.as_ref().map(|l| l.local_addr().unwrap());
        let stop = CancellationToken::new();
        let task = tokio::spawn(gateway::run(
            cfg.clone(),
            Listeners {
                http: http_listener,
                callbacks: callbacks_listener,
                admin: admin_listener,
                sim: None,
                smtp: smtp_listener,
            },
            stop.clone(),
        ));
        let h = Harness {
            base: format!("http://{http_addr}"),
            callbacks_base: format!("http://{callbacks_addr}"),
            admin_base,
            sim,
            hooks,
            dir,
            http: reqwest::Client::new(),
            cfg,
            smtp,
            stop,
            task: Some(task),
        };
        h.wait_ready().await;
        h
    }

    pub async fn wait_ready(&self) {
        let url = format!("{}/readyz", self.base);
        let http = self.http.clone();
        wait_for(Duration::from_secs(10), "the gateway to be ready", || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                match http.get(&url).send().await {
                    Ok(r) if r.status().is_success() => Some(()),
                    _ => None,
                }
            }
        })
        .await;
    }

    /// `POST /v1/messages` with the test token.
    pub async fn submit(&self, body: Value) -> (reqwest::StatusCode, Value) {
        self.submit_as(TOKEN, body).await
    }

    pub async fn submit_as(&self, token: &str, body: Value) -> (reqwest::StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/v1/messages", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST /v1/messages` that must be accepted; returns the message id.
    pub async fn submit_ok(&self, body: Value) -> String {
        let (status, resp) = self.submit(body).await;
        assert_eq!(status, 202, "{resp}");
        resp["id"].as_str().unwrap().to_string()
    }

    /// The simulator's copy of the SMS sent for message `id` (waits for it).
    pub async fn sent_sms(&self, id: &str) -> switchboard::sim::SimMessage {
        let correlators = correlators_of(&self.cfg.store.path, id);
        wait_for(
            Duration::from_secs(10),
            "the SMS to reach the simulator",
            || {
                let found = self.sim.sim.messages().into_iter().find(|m| {
                    m.correlator
                        .as_ref()
                        .is_some_and(|c| correlators.contains(c))
                });
                async move { found }
            },
        )
        .await
    }

    /// The SDP correlator of recipient `idx` of message `id` (read from the store file).
    pub fn correlator(&self, id: &str, idx: u32) -> String {
        correlator_of(&self.cfg.store.path, id, idx)
    }

    /// The message id whose recipient has this correlator.
    pub fn message_of(&self, correlator: &str) -> Option<String> {
        message_of_correlator(&self.cfg.store.path, correlator)
    }

    /// Adds the test SDP's callback credential to a request.
    pub fn sdp_auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cfg.sdp.callbacks.basic {
            Some(b) => req.basic_auth(&b.user, Some(&b.password)),
            None => req,
        }
    }

    /// `GET /v1/messages/{id}`.
    pub async fn message(&self, id: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/v1/messages/{id}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "GET message {id}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Waits until recipient `idx` of message `id` is in `state`; returns the message.
    pub async fn wait_state(&self, id: &str, idx: usize, state: &str) -> Value {
        wait_for(
            Duration::from_secs(15),
            &format!("message {id} recipient {idx} to become {state}"),
            || async move {
                let m = self.message(id).await;
                (m["recipients"][idx]["state"] == state).then_some(m)
            },
        )
        .await
    }

    /// POSTs raw XML to the gateway's SmsNotification endpoint, as the SDP (with its
    /// callback credential).
    pub async fn soap(&self, body: impl Into<String>) -> (reqwest::StatusCode, String) {
        let url = format!("{}{}", self.base, self.cfg.sdp.callbacks.path(NOTIFY_PATH));
        let body = switchboard::connectors::sdp::callbacks::CallbackCredentials::from_config(
            &self.cfg.sdp.callbacks,
        )
        .sign_envelope(body.into());
        let r = self
            .sdp_auth(self.http.post(url))
            .header("content-type", "text/xml; charset=utf-8")
            .header("SOAPAction", "\"\"")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Rows in the store's `messages` table (read directly from the file).
    pub fn stored_messages(&self) -> i64 {
        count_rows(&self.cfg.store.path, "messages")
    }

    /// Stops the gateway (drain) and waits for it.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let r = tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("gateway did not stop in time");
            r.expect("gateway task panicked").expect("gateway failed");
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn msg_id_of(id: &str) -> i64 {
    u64::from_str_radix(id, 16).expect("a message id") as i64
}

/// Every SDP correlator of message `id` (read from the store file).
pub fn correlators_of(db: &Path, id: &str) -> Vec<String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut st = c
        .prepare("SELECT correlator FROM recipients WHERE msg_id = ?1 AND correlator IS NOT NULL")
        .unwrap();
    st.query_map([msg_id_of(id)], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Every message's SDP correlators, by message id (read from the store file).
pub fn correlators_by_message(db: &Path) -> std::collections::HashMap<String, Vec<String>> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut st = c
        .prepare("SELECT msg_id, correlator FROM recipients WHERE correlator IS NOT NULL")
        .unwrap();
    let mut out: std::collections::HashMap<String, Vec<String>> = Default::default();
    let rows = st
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .unwrap();
    for row in rows {
        let (id, c) = row.unwrap();
        out.entry(format!("{:016x}", id as u64))
            .or_default()
            .push(c);
    }
    out
}

/// The SDP correlator of recipient `idx` of message `id`.
pub fn correlator_of(db: &Path, id: &str, idx: u32) -> String {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row(
        "SELECT correlator FROM recipients WHERE msg_id = ?1 AND idx = ?2",
        rusqlite::params![msg_id_of(id), idx],
        |r| r.get(0),
    )
    .unwrap()
}

/// The message id (16 hex digits) whose recipient has `correlator`.
pub fn message_of_correlator(db: &Path, correlator: &str) -> Option<String> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row(
        "SELECT msg_id FROM recipients WHERE correlator = ?1",
        [correlator],
        |r| r.get::<_, i64>(0),
    )
    .ok()
    .map(|id| format!("{:016x}", id as u64))
}

/// Counts the rows of a table in a SQLite store file.
pub fn count_rows(db: &Path, table: &str) -> i64 {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// A free loopback port (bound and released; for child processes that bind themselves).
/// Taken below the kernel's ephemeral range (32768 and up), so the source port of some
/// other test's outgoing connection cannot take it before the child binds it.
pub fn free_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(20_000..32_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in 20000-32000")
}

/// The gateway binary as a child process, for crash and signal tests.
pub struct ChildGateway {
    pub child: std::process::Child,
    pub base: String,
    pub config: PathBuf,
}

impl ChildGateway {
    /// Writes `cfg` next to its store and runs `switchboard run -c` on it; waits for ready.
    pub async fn spawn(cfg: &Config) -> ChildGateway {
        let config = cfg.store.path.with_file_name("switchboard.toml");
        std::fs::write(&config, toml::to_string(cfg).unwrap()).unwrap();
        let log = std::fs::File::create(cfg.store.path.with_file_name("gateway.log")).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["run", "-c"])
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start the gateway binary");
        let mut gw = ChildGateway {
            child,
            base: format!("http://{}", cfg.http.listen),
            config,
        };
        gw.wait_ready().await;
        gw
    }

    /// Waits until `/readyz` answers 200; panics with the gateway's log if it exits first
    /// or is not ready within 20 s.
    async fn wait_ready(&mut self) {
        let url = format!("{}/readyz", self.base);
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the child gateway exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            if tokio::time::Instant::now() >= end {
                panic!(
                    "the child gateway was not ready within 20 s:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resident memory of the process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// The most resident memory the process has had so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.config.with_file_name("gateway.log")).unwrap_or_default()
    }

    /// Sends a signal by name (`TERM`, `INT`, …) to the process.
    pub fn signal(&self, name: &str) {
        send_signal(self.child.id(), name);
    }

    /// Waits up to `deadline` for the process to exit by itself; its exit status.
    pub async fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        wait_exit(&mut self.child, deadline, "the child gateway to exit").await
    }
}

/// Sends a signal by name to a process (with kill(1): no libc binding needed).
pub fn send_signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -{name} {pid}: {status}");
}

/// Waits up to `deadline` for `child` to exit; its exit status.
pub async fn wait_exit(
    child: &mut std::process::Child,
    deadline: Duration,
    what: &str,
) -> std::process::ExitStatus {
    wait_for(deadline, what, || {
        let status = child.try_wait().expect("cannot wait for the child");
        async move { status }
    })
    .await
}

/// Removes ANSI colour sequences (log files written with colours).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Validates `xml` against `schemas/card.xsd` with xmllint; its output on failure.
pub fn xsd_check(xml: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("card.xml");
    std::fs::write(&file, xml).unwrap();
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/card.xsd");
    let out = match std::process::Command::new("xmllint")
        .args(["--noout", "--schema", schema])
        .arg(&file)
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            assert!(
                std::env::var("CI").is_err(),
                "xmllint is missing under CI: {e}"
            );
            eprintln!("SKIPPED the XSD check: xmllint is missing ({e})");
            return Ok(());
        }
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A second simulator for MMS (receipts after 10 ms) and its SendMessage URL, for
/// `[content.mms] send_message_url`.
pub async fn mms_sim() -> (Sim, String) {
    let mms = Sim::start(SimConfig {
        receipt_delay_ms: 10,
        callbacks: sim_callbacks(),
        ..SimConfig::default()
    })
    .await;
    let url = format!("{}{}", mms.url(), sim::SEND_MESSAGE_PATH);
    (mms, url)
}

/// The MMS of message `id` (in the store at `db`) once it reached the simulator `mms`.
pub async fn received_mms(db: &Path, mms: &Sim, id: &str) -> sim::SimMms {
    let correlators = correlators_of(db, id);
    wait_for(
        Duration::from_secs(15),
        "the MMS to reach the simulator",
        || {
            let found = mms.sim.mms_messages().into_iter().find(|m| {
                m.correlator
                    .as_ref()
                    .is_some_and(|c| correlators.contains(c))
            });
            async move { found }
        },
    )
    .await
}
