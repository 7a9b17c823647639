//! Pulling apps: an app with `pull_every_secs` and a `callback_url` is asked for pushes by
//! a signed `GET callback_url` (the same headers as a push, over an empty body). It answers
//! `200` with `{"pushes": [push, …]}` (each as `POST /v1/apps/{appid}/messages` takes it),
//! distributed like pushes. An app that fails (transport error, non-2xx, a bad answer) is
//! asked again after twice the wait of the time before, up to `[apps]
//! pull_max_backoff_secs`; pulls run concurrently (`pull_concurrency`), each within
//! `pull_timeout_ms`, so a slow or failing app holds up no other. Pulls stop with the
//! receive side (the HTTP server); those under way may finish first.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Platform;
use super::push::PushBody;
use crate::directory::App;

/// Most pushes one pull may answer with.
pub const MAX_PUSHES: usize = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    pushes: Vec<PushBody>,
}

struct State {
    next: Instant,
    failures: u32,
    busy: bool,
}

/// How one pull went.
#[derive(Debug)]
pub struct Pulled {
    pub pushes: usize,
    pub refused: usize,
}

/// Runs the pulls until `stop`.
pub async fn run(platform: Arc<Platform>, stop: CancellationToken) {
    let cfg = platform.config().clone();
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_millis(cfg.pull_timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "app pulls cannot start");
            return;
        }
    };
    let mut states: HashMap<String, State> = HashMap::new();
    let mut running: JoinSet<(String, Result<Pulled, String>)> = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Ok((id, result)) = done {
                    finished(&platform, &mut states, &id, result);
                }
                continue;
            }
        }
        let snap = platform.intake().directory().snapshot();
        let now = Instant::now();
        let pulled: Vec<&App> = snap
            .apps
            .apps
            .values()
            .filter(|a| a.enabled && a.callback_url.is_some() && a.pull_every_secs.is_some())
            .collect();
        states.retain(|id, _| pulled.iter().any(|a| a.id == *id));
        for app in pulled {
            if running.len() >= cfg.pull_concurrency {
                break;
            }
            let st = states.entry(app.id.clone()).or_insert(State {
                next: now,
                failures: 0,
                busy: false,
            });
            if st.busy || st.next > now {
                continue;
            }
            st.busy = true;
            let (p, c, a) = (platform.clone(), client.clone(), app.clone());
            running.spawn(async move {
                let r = pull(&p, &c, &a).await;
                (a.id, r)
            });
        }
    }
    // Pulls under way finish what their app answered (within their time limit), so pushes
    // an app handed over are not dropped halfway at a shutdown.
    let finish = Duration::from_millis(cfg.pull_timeout_ms.saturating_mul(2));
    let _ = tokio::time::timeout(finish, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    running.abort_all();
}

fn finished(
    platform: &Platform,
    states: &mut HashMap<String, State>,
    id: &str,
    result: Result<Pulled, String>,
) {
    let snap = platform.intake().directory().snapshot();
    let every = snap
        .apps
        .apps
        .get(id)
        .and_then(|a| a.pull_every_secs)
        .unwrap_or(60);
    let Some(st) = states.get_mut(id) else {
        return;
    };
    st.busy = false;
    let wait = match result {
        Ok(p) => {
            st.failures = 0;
            metrics::counter!("switchboard_app_pulls_total", "app" => id.to_string(), "result" => "ok")
                .increment(1);
            tracing::debug!(app = %id, pushes = p.pushes, refused = p.refused, "app pulled");
            every
        }
        Err(why) => {
            st.failures = st.failures.saturating_add(1);
            metrics::counter!("switchboard_app_pulls_total", "app" => id.to_string(), "result" => "failed")
                .increment(1);
            let wait = every
                .saturating_mul(1u64 << st.failures.min(16))
                .min(platform.config().pull_max_backoff_secs)
                .max(every);
            tracing::warn!(app = %id, failures = st.failures, next_in_secs = wait, "app pull failed: {why}");
            wait
        }
    };
    st.next = Instant::now() + Duration::from_secs(wait);
}

/// Pulls one app and distributes what it answered.
pub async fn pull(
    platform: &Platform,
    client: &reqwest::Client,
    app: &App,
) -> Result<Pulled, String> {
    let url = app.callback_url.as_deref().ok_or("no callback_url")?;
    let uri: http::Uri = url.parse().map_err(|e| format!("callback_url: {e}"))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = client.get(url);
    for (k, v) in super::sign::headers(&app.secret, "GET", path, b"") {
        req = req.header(k, v);
    }
    let mut resp = req.send().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status().as_u16()));
    }
    let max = platform.config().pull_max_bytes;
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| format!("GET {url}: {e}"))? {
        if body.len() + chunk.len() > max {
            return Err(format!("GET {url}: the answer is over {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    let answer: Answer =
        serde_json::from_slice(&body).map_err(|e| format!("GET {url}: the answer: {e}"))?;
    if answer.pushes.len() > MAX_PUSHES {
        return Err(format!(
            "GET {url}: {} pushes in one answer; at most {MAX_PUSHES}",
            answer.pushes.len()
        ));
    }
    let mut out = Pulled {
        pushes: 0,
        refused: 0,
    };
    for p in answer.pushes {
        match platform.push(app, p, "pull").await {
            Ok(_) => out.pushes += 1,
            Err(_) => out.refused += 1,
        }
    }
    Ok(out)
}
