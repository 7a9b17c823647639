//! The app platform: registered third-party apps push content to users, to a user's
//! friends and to groups; each user has an app list (install, uninstall) and a bounded
//! message stack the IM server reads at login; users recommend apps to friends; apps that
//! ask for it are pulled.
//!
//! The registry and the app lists are directory records ([`registry`], kept in the same
//! store tables and changed one at a time like users and groups), so disabling an app
//! stops its traffic with the next request. A push is checked ([`sign`]: HMAC with the
//! app's secret, replay window, nonces; then the app's rate, its targets, the content
//! ([`xml`]) and the people it reaches ([`push`])) and becomes one message from
//! `app:APPID` with a recipient per person, committed with its stack entries in one
//! transaction: the same stages, retries and reports as any message, so a crash during a
//! fan-out loses nobody. Reports go to the app's `callback_url`, signed the same way.

pub mod config;
pub mod pull;
pub mod push;
pub mod registry;
pub mod sign;
pub mod xml;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::address::Address;
use crate::directory::{App, Door};
use crate::message::{AppKind, AppMessage, AppMode, Content, Kind, MsgId, now_ms};
use crate::pipeline::{Draft, Intake, Resolved, SubmitError};
use config::AppsConfig;
use push::{PushBody, Target};

/// Why the platform refused a request: a stable code and what went wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AppError {
    pub code: &'static str,
    pub message: String,
    /// Seconds to wait, for `rate_limited`, `queue_full` and `busy`.
    pub retry_after: Option<u64>,
}

impl AppError {
    pub fn new(code: &'static str, message: impl Into<String>) -> AppError {
        AppError {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn later(mut self, secs: u64) -> AppError {
        self.retry_after = Some(secs);
        self
    }
}

/// What a push made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// The app message's id (the message's).
    pub id: MsgId,
    /// Stacks it was put on.
    pub users: usize,
    /// Addresses it is delivered to.
    pub recipients: usize,
    /// People it could not be delivered to (phones, for an app without `phones`).
    pub unreachable: usize,
}

/// The headers of a signed request, as received.
pub struct Signed<'a> {
    pub timestamp: Option<&'a str>,
    pub nonce: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// The app platform's running state: the replay window, each app's rate.
pub struct Platform {
    intake: Intake,
    cfg: AppsConfig,
    replay: sign::Replay,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The registered app `appid`, or `unknown_app`.
fn registered(snap: &crate::directory::Snapshot, appid: &str) -> Result<App, AppError> {
    snap.apps
        .apps
        .get(appid)
        .cloned()
        .ok_or_else(|| AppError::new("unknown_app", format!("no app {appid:?}")))
}

/// The `app` label of a metric: the appid for registered apps only, so unknown callers
/// cannot make labels up.
fn label(snap: &crate::directory::Snapshot, appid: &str) -> String {
    if snap.apps.apps.contains_key(appid) {
        appid.to_string()
    } else {
        "unknown".to_string()
    }
}

impl Platform {
    pub fn new(intake: Intake) -> Platform {
        let cfg = intake.ctx().cfg.apps.clone();
        Platform {
            replay: sign::Replay::new(cfg.replay_window_secs, cfg.max_nonces, now_ms() / 1000),
            intake,
            cfg,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &AppsConfig {
        &self.cfg
    }

    pub fn intake(&self) -> &Intake {
        &self.intake
    }

    /// Counts a refusal by app and code, and passes it on.
    pub fn refused(&self, appid: &str, e: AppError) -> AppError {
        let app = label(&self.intake.directory().snapshot(), appid);
        metrics::counter!("switchboard_app_refused_total", "app" => app, "reason" => e.code)
            .increment(1);
        tracing::info!(app = %appid, reason = e.code, "app request refused: {}", e.message);
        e
    }

    /// The app a signed request comes from: registered, signed with its secret, within the
    /// replay window with a fresh nonce, and enabled. Every refusal is counted.
    pub fn authenticate(
        &self,
        appid: &str,
        method: &str,
        path: &str,
        h: &Signed<'_>,
        body: &[u8],
    ) -> Result<App, AppError> {
        self.check_signed(appid, method, path, h, body)
            .map_err(|e| self.refused(appid, e))
    }

    fn check_signed(
        &self,
        appid: &str,
        method: &str,
        path: &str,
        h: &Signed<'_>,
        body: &[u8],
    ) -> Result<App, AppError> {
        let snap = self.intake.directory().snapshot();
        let app = registered(&snap, appid)?;
        let (Some(ts), Some(nonce), Some(sig)) = (h.timestamp, h.nonce, h.signature) else {
            return Err(AppError::new(
                "bad_signature",
                "sign the request: X-App-Timestamp, X-App-Nonce and X-App-Signature",
            ));
        };
        let ts: i64 = ts.trim().parse().map_err(|_| {
            AppError::new(
                "bad_signature",
                "X-App-Timestamp: Unix seconds, digits only",
            )
        })?;
        if !sign::nonce_ok(nonce) {
            return Err(AppError::new(
                "bad_signature",
                format!(
                    "X-App-Nonce: 1-{} visible ASCII characters",
                    sign::MAX_NONCE
                ),
            ));
        }
        if !sign::verify(&app.secret, method, path, ts, nonce, body, sig.trim()) {
            return Err(AppError::new(
                "bad_signature",
                "the signature does not match (HMAC-SHA256 of METHOD\\nPATH\\nTIMESTAMP\\nNONCE\\nSHA256(body), lowercase hex)",
            ));
        }
        match self.replay.check(appid, ts, nonce, now_ms() / 1000) {
            Ok(()) => {}
            Err(sign::ReplayError::Stale) => {
                return Err(AppError::new(
                    "stale_timestamp",
                    format!(
                        "X-App-Timestamp is more than {} s from the gateway's clock",
                        self.cfg.replay_window_secs
                    ),
                ));
            }
            Err(sign::ReplayError::Replayed) => {
                return Err(AppError::new(
                    "replayed_nonce",
                    "this nonce was used within the replay window",
                ));
            }
            Err(sign::ReplayError::Full) => {
                return Err(
                    AppError::new("busy", "too many signed requests; try again later").later(1),
                );
            }
        }
        if !app.enabled {
            return Err(AppError::new(
                "app_disabled",
                format!("app {appid:?} is disabled"),
            ));
        }
        Ok(app)
    }

    /// Takes one push from the app's rate (`rate_per_minute`, a minute's worth in the
    /// bucket).
    fn take(&self, app: &App) -> Result<(), AppError> {
        let per_sec = f64::from(app.rate_per_minute) / 60.0;
        let cap = f64::from(app.rate_per_minute.max(1));
        let mut all = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if all.len() > 100_000 {
            all.clear();
        }
        let now = Instant::now();
        let b = all.entry(app.id.clone()).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec).min(cap);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - b.tokens) / per_sec.max(1e-9)).ceil().max(1.0) as u64;
            Err(AppError::new(
                "rate_limited",
                format!(
                    "app {:?} may push {} times a minute",
                    app.id, app.rate_per_minute
                ),
            )
            .later(wait))
        }
    }

    /// Distributes one push from `app` (authenticated, or pulled from it). Returns once
    /// the message and its stack entries are committed.
    pub async fn push(
        &self,
        app: &App,
        body: PushBody,
        via: &'static str,
    ) -> Result<Pushed, AppError> {
        self.push_inner(app, body, via)
            .await
            .map_err(|e| self.refused(&app.id, e))
    }

    async fn push_inner(
        &self,
        app: &App,
        body: PushBody,
        via: &'static str,
    ) -> Result<Pushed, AppError> {
        // The app as it is now: disabling it stops pushes already past authentication.
        let snap = self.intake.directory().snapshot();
        let app = registered(&snap, &app.id)?;
        if !app.enabled {
            return Err(AppError::new(
                "app_disabled",
                format!("app {:?} is disabled", app.id),
            ));
        }
        self.take(&app)?;
        let max_bytes = app.content_limit(self.cfg.max_content_bytes);
        let checked = xml::check(&body.content, max_bytes).map_err(|m| {
            let code = if body.content.len() > max_bytes {
                "content_too_large"
            } else {
                "invalid_content"
            };
            AppError::new(code, format!("content: {m}"))
        })?;
        let text = match &body.text {
            Some(t) => {
                self.check_text("text", t)?;
                t.clone()
            }
            None => checked.text.clone(),
        };
        let fan = push::fan_out(&snap, &self.cfg, &app, &body.target)?;
        let report = body.report && app.callback_url.is_some();
        let pushed = self
            .send(
                &app,
                AppKind::Push,
                body.mode,
                checked.xml,
                text,
                fan,
                None,
                report,
            )
            .await?;
        metrics::counter!("switchboard_app_pushes_total", "app" => app.id.clone(), "via" => via)
            .increment(1);
        tracing::info!(
            app = %app.id,
            id = %pushed.id,
            via,
            users = pushed.users,
            recipients = pushed.recipients,
            unreachable = pushed.unreachable,
            "app push accepted"
        );
        Ok(pushed)
    }

    fn check_text(&self, what: &str, t: &str) -> Result<(), AppError> {
        if t.chars().count() > self.cfg.max_text_chars {
            return Err(AppError::new(
                "text_too_long",
                format!("{what}: at most {} characters", self.cfg.max_text_chars),
            ));
        }
        Ok(())
    }

    /// `user` recommends `appid` to their friend `to`, with a comment: an app message of
    /// kind `recommendation` on the friend's stack and network.
    pub async fn recommend(
        &self,
        user: &str,
        appid: &str,
        to: &str,
        comment: &str,
    ) -> Result<Pushed, AppError> {
        let r = self.recommend_inner(user, appid, to, comment).await;
        r.map_err(|e| self.refused(appid, e))
    }

    async fn recommend_inner(
        &self,
        user: &str,
        appid: &str,
        to: &str,
        comment: &str,
    ) -> Result<Pushed, AppError> {
        let snap = self.intake.directory().snapshot();
        let from = snap
            .users
            .get(user)
            .ok_or_else(|| AppError::new("not_found", format!("no user {user:?}")))?;
        let app = registered(&snap, appid)?;
        registry::may_use(&app, user).map_err(|e| AppError::new(e.code, e.message))?;
        if !from.friends.iter().any(|f| f == to) {
            return Err(AppError::new(
                "not_a_friend",
                format!("{to:?} is not a friend of {user:?}"),
            ));
        }
        let friend = snap
            .users
            .get(to)
            .ok_or_else(|| AppError::new("unknown_user", format!("no user {to:?}")))?;
        self.check_text("comment", comment)?;
        let mut fan = push::Fanout {
            users: vec![friend.id.clone()],
            ..Default::default()
        };
        // The user's own message to a friend: it goes where the friend is reached, a
        // phone too.
        match friend.addresses.first() {
            Some(a) => fan.to.push(a.clone()),
            None => fan.unreachable = 1,
        }
        let content = recommendation_xml(&app, user, comment);
        let text = if comment.trim().is_empty() {
            format!("{} recommends {}", from.name, app.name)
        } else {
            format!("{} recommends {}: {}", from.name, app.name, comment.trim())
        };
        let pushed = self
            .send(
                &app,
                AppKind::Recommendation,
                AppMode::Tip,
                content,
                text,
                fan,
                Some(user.to_string()),
                false,
            )
            .await?;
        metrics::counter!("switchboard_app_recommendations_total", "app" => app.id.clone())
            .increment(1);
        tracing::info!(app = %app.id, by = %user, to = %to, id = %pushed.id, "app recommended");
        Ok(pushed)
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        app: &App,
        kind: AppKind,
        mode: AppMode,
        content: String,
        text: String,
        fan: push::Fanout,
        by: Option<String>,
        report: bool,
    ) -> Result<Pushed, AppError> {
        if fan.unreachable > 0 {
            metrics::counter!("switchboard_app_unreachable_total", "app" => app.id.clone())
                .increment(fan.unreachable as u64);
        }
        let origin = Address::App(app.id.clone());
        let to: Vec<(Address, usize)> = fan.to.iter().cloned().map(|a| (a, 0)).collect();
        let text = if text.trim().is_empty() {
            format!("{}: something new for you", app.name)
        } else {
            text
        };
        let env = self.intake.stamp(
            Draft {
                kind: Kind::Message,
                origin: origin.clone(),
                client: format!("app:{}", app.id),
                client_ref: None,
                report_to: report.then(|| origin.clone()),
                to: Vec::new(),
                content: Content {
                    text,
                    subject: Some(app.name.clone()),
                    app: Some(AppMessage {
                        app: app.id.clone(),
                        name: app.name.clone(),
                        kind,
                        mode,
                        content,
                        users: fan.users.clone(),
                        keep: self.cfg.stack_size.min(u32::MAX as usize) as u32,
                        by,
                    }),
                    ..Content::default()
                },
                note: None,
                door: Door::Api,
                speak_as: None,
            },
            Resolved {
                origin,
                speaker: None,
                to,
            },
        );
        let recipients = env.recipients.len();
        let env = self.intake.submit(env).await.map_err(|e| match e {
            SubmitError::QueueFull => {
                AppError::new("queue_full", "the gateway is busy; try again later").later(1)
            }
            SubmitError::ShuttingDown => {
                AppError::new("shutting_down", "the gateway is stopping; try again later").later(5)
            }
            SubmitError::Store(e) => {
                tracing::error!(error = %e, "cannot store an app message");
                AppError::new(
                    "store_unavailable",
                    "the store could not take it; try again later",
                )
                .later(1)
            }
        })?;
        metrics::counter!("switchboard_app_messages_total", "app" => app.id.clone())
            .increment(recipients as u64);
        Ok(Pushed {
            id: env.id,
            users: fan.users.len(),
            recipients,
            unreachable: fan.unreachable,
        })
    }
}

/// A recommendation's payload: the app's summary, who recommends it, the comment.
fn recommendation_xml(app: &App, by: &str, comment: &str) -> String {
    use quick_xml::escape::escape;
    let icon = app
        .icon_url
        .as_deref()
        .map(|u| format!(" icon='{}'", escape(u)))
        .unwrap_or_default();
    format!(
        "<recommendation app='{}' name='{}'{icon} by='{}'><comment>{}</comment></recommendation>",
        escape(app.id.as_str()),
        escape(app.name.as_str()),
        escape(by),
        escape(comment.trim()),
    )
}

/// A target from a user-facing path segment (for logs).
pub fn describe(t: &Target) -> String {
    match t {
        Target::User(u) => format!("user {u}"),
        Target::FriendsOf(u) => format!("friends of {u}"),
        Target::Group(g) => format!("group {g}"),
    }
}
