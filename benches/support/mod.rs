//! What the load harnesses share: a gateway and an SDP simulator started in this process,
//! each on its own runtime (as if each were its own process, sized to the machine like
//! `switchboard run` and `sdp-sim`), on port 0 with the store in a temporary folder; and
//! the small HTTP helpers they poll with.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use switchboard::config::Config;
use switchboard::connectors::sdp::NOTIFY_PATH;
use switchboard::connectors::sdp::callbacks::{BasicAuth, CallbackCredentials};
use switchboard::gateway::{self, Listeners};
use switchboard::sim::{SEND_SMS_PATH, SimConfig, Simulator};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Microseconds since the Unix epoch (the simulator's latency probes use it).
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A gateway and simulator running in this process.
pub struct InProcess {
    stop: CancellationToken,
    gateway: tokio::task::JoinHandle<Result<(), gateway::RunError>>,
    runtimes: Vec<tokio::runtime::Runtime>,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Stops the gateway (drain, 15 s at most) and both runtimes.
    pub async fn stop(self) {
        self.stop.cancel();
        match tokio::time::timeout(Duration::from_secs(15), self.gateway).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => eprintln!("gateway: {e}"),
            Ok(Err(e)) => eprintln!("gateway task: {e}"),
            Err(_) => eprintln!("gateway did not stop within 15 s"),
        }
        for rt in self.runtimes {
            rt.shutdown_background();
        }
    }
}

fn runtime(name: &str) -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the {name} runtime: {e}"))
}

/// The simulated SDP authenticates its callbacks with basic auth.
fn callbacks() -> CallbackCredentials {
    CallbackCredentials {
        basic: Some(BasicAuth {
            user: "sdp".into(),
            password: "bench-callback-password".into(),
        }),
        header: None,
    }
}

/// A gateway config for a harness: loopback, the store in `dir` with `synchronous = sync`,
/// no daily cap, room on the loopback address for every client, the simulator's callback
/// credential. The harness adds its clients or tokens, then calls [`start`].
pub fn config(dir: &tempfile::TempDir, sync: &str) -> Config {
    let mut cfg = Config::default();
    cfg.http.listen = "127.0.0.1:0".into();
    // Clients, simulator and gateway share one loopback address: room for all of them.
    cfg.http.max_connections_per_ip = 4096;
    cfg.limits.recipient_daily_max = 0;
    cfg.store.path = dir.path().join("switchboard.db");
    cfg.store.synchronous = sync.into();
    cfg.im.domains = vec!["im.example.org".into()];
    cfg.log.level = "warn".into();
    cfg.sdp.callbacks.basic = callbacks().basic;
    cfg
}

/// Starts the simulator and a gateway on `cfg` (from [`config`]); their base URLs.
pub async fn start(
    mut cfg: Config,
    dir: tempfile::TempDir,
) -> Result<(String, String, InProcess), String> {
    let http = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let http_addr = http.local_addr().map_err(|e| e.to_string())?;
    let sim_listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("bind: {e}"))?;
    let sim_addr = sim_listener.local_addr().map_err(|e| e.to_string())?;
    let sim_cfg = SimConfig {
        listen: sim_addr.to_string(),
        notify_url: Some(format!("http://{http_addr}{NOTIFY_PATH}")),
        // The ring of recent messages is not needed here.
        keep_messages: 0,
        callbacks: callbacks(),
        ..SimConfig::default()
    };
    cfg.sdp.send_sms_url = format!("http://{sim_addr}{SEND_SMS_PATH}");
    let errors = cfg.validate();
    if !errors.is_empty() {
        return Err(format!("config: {errors:?}"));
    }
    let stop = CancellationToken::new();
    let (gw_rt, sim_rt) = (runtime("gateway")?, runtime("sim")?);
    let (http, sim_listener) = (
        http.into_std().map_err(|e| e.to_string())?,
        sim_listener.into_std().map_err(|e| e.to_string())?,
    );
    let sim_listener = {
        let _in = sim_rt.enter();
        TcpListener::from_std(sim_listener).map_err(|e| e.to_string())?
    };
    let http = {
        let _in = gw_rt.enter();
        TcpListener::from_std(http).map_err(|e| e.to_string())?
    };
    sim_rt.spawn(switchboard::sim::serve_with(
        sim_listener,
        Simulator::new(sim_cfg),
        stop.clone(),
    ));
    let gateway = gw_rt.spawn(gateway::run(cfg, Listeners::http_only(http), stop.clone()));
    Ok((
        format!("http://{http_addr}"),
        format!("http://{sim_addr}"),
        InProcess {
            stop,
            gateway,
            runtimes: vec![gw_rt, sim_rt],
            _dir: dir,
        },
    ))
}

/// GETs `url` and reads its JSON answer.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
) -> Result<T, String> {
    let r = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("{url}: HTTP {}", r.status()));
    }
    r.json().await.map_err(|e| format!("{url}: {e}"))
}

/// Waits until the gateway's `/readyz` answers 200, or `until`.
pub async fn wait_ready(
    http: &reqwest::Client,
    gateway: &str,
    until: Instant,
) -> Result<(), String> {
    let url = format!("{gateway}/readyz");
    loop {
        if let Ok(r) = http.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() >= until {
            return Err(format!("{url} did not answer 200 in time"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A harness's `main`: `--help` prints `usage`; bad arguments exit 2; otherwise `run` goes
/// on a runtime of its own, stopped after `deadline` and 20 s more (room for the report
/// and the shutdown); it exits 0 when `run` says every message went as it should, else 1.
pub fn main<A, F, Fut>(
    name: &str,
    usage: &str,
    args: Result<Option<A>, String>,
    deadline: Duration,
    run: F,
) -> std::process::ExitCode
where
    F: FnOnce(A) -> Fut,
    Fut: std::future::Future<Output = Result<bool, String>>,
{
    use std::process::ExitCode;
    let args = match args {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}\n\n{usage}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let hard = deadline + Duration::from_secs(20);
    let result = rt.block_on(async move {
        tokio::time::timeout(hard, run(args))
            .await
            .unwrap_or_else(|_| Err("the run did not finish within its deadline".into()))
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::from(1)
        }
    }
}

/// Waits until the simulator has seen `expected` distinct correlators, or `until`; its
/// counters, whether the deadline came first, and its latency record.
pub async fn wait_delivered(
    http: &reqwest::Client,
    sim: &str,
    expected: u64,
    until: Instant,
) -> Result<
    (
        switchboard::sim::SimStats,
        bool,
        switchboard::sim::SimLatency,
    ),
    String,
> {
    let stats_url = format!("{sim}/sim/stats");
    let (stats, timed_out) = loop {
        let s: switchboard::sim::SimStats = get_json(http, &stats_url).await?;
        if s.unique_correlators >= expected {
            break (s, false);
        }
        if Instant::now() >= until {
            break (s, true);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let latency = get_json(http, &format!("{sim}/sim/latency")).await?;
    Ok((stats, timed_out, latency))
}
