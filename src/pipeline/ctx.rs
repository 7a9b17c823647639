//! What every stage shares: the config, the store, the id generator, the byte budget, the
//! daily caps, the directory, the reply-route cache, and the recording of outcomes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Sent;
use super::budget::ByteBudget;
use super::dispatch::InFlight;
use super::limits;
use super::settle::{self, Count, Settle};
use crate::address::Address;
use crate::config::Config;
use crate::directory::Directory;
use crate::message::SmsInfo;
use crate::message::{Envelope, IdGen, now_ms};
use crate::store::{Applied, Outcome, Store, StoreError};

/// What every stage shares.
pub struct Ctx {
    pub cfg: Arc<Config>,
    pub store: Store,
    pub ids: Arc<IdGen>,
    /// Users, groups, opt-outs and the app registry (shared with the connectors).
    pub directory: Arc<Directory>,
    /// Wakes the feeder (a report or a retry became due now).
    pub feeder_wake: Arc<Notify>,
    /// The bytes of content inside the stages (`[queues] max_bytes`).
    pub budget: ByteBudget,
    /// Messages per phone per day (`[limits] recipient_daily_max`).
    pub daily: limits::DailyCap,
    /// Reply extensions by party, with the time each was read from the store.
    reply_exts: Mutex<HashMap<String, (u32, i64)>>,
    /// Recipients whose send is in flight at a sink whose receipts may come early.
    pub in_flight: InFlight,
    /// Directory changes, one at a time (decided, committed, installed).
    pub(super) dir_changes: tokio::sync::Mutex<()>,
}

impl Ctx {
    pub fn new(cfg: Arc<Config>, store: Store, ids: Arc<IdGen>) -> Ctx {
        let directory = Arc::new(Directory::new(&cfg.directory));
        Ctx::with_directory(cfg, store, ids, directory)
    }

    /// [`Ctx::new`] with a directory the connectors share.
    pub fn with_directory(
        cfg: Arc<Config>,
        store: Store,
        ids: Arc<IdGen>,
        directory: Arc<Directory>,
    ) -> Ctx {
        Ctx {
            store,
            ids,
            directory,
            feeder_wake: Arc::new(Notify::new()),
            budget: ByteBudget::new(cfg.queues.max_bytes),
            daily: limits::DailyCap::new(cfg.limits.recipient_daily_max),
            reply_exts: Mutex::new(HashMap::new()),
            in_flight: InFlight::default(),
            dir_changes: tokio::sync::Mutex::new(()),
            cfg,
        }
    }

    /// Start-up: reads the stored directory, then puts the users and groups of
    /// `[directory] file` and `[[directory.groups]]` into it (committed like any change).
    /// Any error names what is wrong; the gateway does not start on it.
    pub async fn load_directory(&self) -> Result<(), String> {
        let _one = self.dir_changes.lock().await;
        let rows = self
            .store
            .directory_rows()
            .await
            .map_err(|e| format!("cannot read the directory: {e}"))?;
        let (stored, bad) = crate::directory::Snapshot::from_rows(rows);
        for b in &bad {
            tracing::error!(record = %b, "a stored directory record does not read; left out");
        }
        let (users, groups) = crate::directory::Directory::seed_records(&self.cfg.directory)?;
        let plan = stored
            .seed(users, groups)
            .map_err(|e| format!("directory: {}", e.message))?;
        if !plan.changes.is_empty() {
            self.store
                .write_directory(plan.changes)
                .await
                .map_err(|e| format!("cannot write the directory: {e}"))?;
        }
        tracing::info!(
            users = plan.snap.users.len(),
            groups = plan.snap.groups.len(),
            "directory loaded"
        );
        self.directory.install(plan.snap);
        Ok(())
    }

    /// The sender sub-address for messages from `origin` to phones: service number +
    /// the origin's reply-routing extension.
    pub(super) async fn sms_sender(&self, origin: &Address) -> Result<String, StoreError> {
        let party = origin.to_string();
        let now = now_ms();
        // A cached route is looked up in the store again now and then, which marks it used
        // there, so the retention job never deletes a route that is in use.
        let refresh_ms =
            (self.cfg.retention.reply_route_idle_secs as i64 * 1000 / 4).clamp(1000, 3_600_000);
        let cached = self
            .reply_exts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&party)
            .copied()
            .filter(|&(_, at)| now - at < refresh_ms);
        let ext = match cached {
            Some((e, _)) => e,
            None => {
                let e = self.store.reply_ext(&party).await?;
                let mut map = self.reply_exts.lock().unwrap_or_else(|e| e.into_inner());
                if map.len() >= 100_000 {
                    map.clear();
                }
                map.insert(party, (e, now));
                e
            }
        };
        Ok(format!("{}{}", self.cfg.sdp.service_number, ext))
    }

    /// Forgets the cached reply route of a party (after it was erased).
    pub fn forget_reply_route(&self, party: &Address) {
        let party = party.to_string();
        self.reply_exts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p, _| *p != party && !p.starts_with(&format!("{party}/")));
    }

    /// Records the result of one attempt (or a decision of a stage) for a recipient.
    pub async fn settle(&self, env: &Envelope, idx: u32, result: Result<Sent, Settle>) {
        self.settle_sms(env, idx, result, None).await
    }

    /// [`Ctx::settle`] for an attempt that went out as SMS in this shape: the encoding and
    /// parts are recorded with the outcome, and counted when it was sent.
    pub async fn settle_sms(
        &self,
        env: &Envelope,
        idx: u32,
        result: Result<Sent, Settle>,
        sms: Option<SmsInfo>,
    ) {
        let now = now_ms();
        let Some((outcome, count)) = settle::outcome(&self.cfg.retry, env, idx, result, now) else {
            return;
        };
        let channel = env.recipient(idx).map_or("", |r| r.channel().as_str());
        match count {
            Count::Sent => {
                metrics::counter!("switchboard_messages_sent_total", "channel" => channel)
                    .increment(1);
                if let Some(info) = &sms {
                    metrics::counter!("switchboard_sms_parts_total", "encoding" => info.encoding.as_str())
                        .increment(u64::from(info.parts));
                }
                metrics::histogram!("switchboard_end_to_end_duration_seconds", "channel" => channel)
                    .record((now - env.created_at).max(0) as f64 / 1000.0);
            }
            Count::Held => {
                metrics::counter!("switchboard_messages_held_total", "channel" => channel)
                    .increment(1)
            }
            Count::Deferred => {
                metrics::counter!("switchboard_deferred_total", "channel" => channel).increment(1)
            }
            Count::Retried => {
                metrics::counter!("switchboard_retries_total", "channel" => channel).increment(1)
            }
            Count::Waiting => {}
            Count::Failed(reason) => {
                metrics::counter!("switchboard_messages_failed_total", "channel" => channel, "reason" => reason)
                    .increment(1)
            }
        }
        self.record_sms(env, idx, outcome, sms).await;
    }

    /// Writes an outcome; wakes the feeder if it created a report.
    pub async fn record(&self, env: &Envelope, idx: u32, outcome: Outcome) {
        self.record_sms(env, idx, outcome, None).await
    }

    async fn record_sms(&self, env: &Envelope, idx: u32, outcome: Outcome, sms: Option<SmsInfo>) {
        let rid = env.recipient_id(idx);
        match self.store.apply_sms(rid, outcome, sms).await {
            Ok(Applied::Updated { report: Some(_) }) => self.feeder_wake.notify_one(),
            Ok(_) => {}
            // The recipient stays as it was in the store (queued): it is sent again after
            // a restart. At-least-once, never lost.
            Err(e) => tracing::error!(recipient = %rid, error = %e, "cannot record outcome"),
        }
    }
}
