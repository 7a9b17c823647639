//! The auth and process stages.
//!
//! - **auth** refuses recipients the directory says may not be reached (not a user while
//!   their network is not open, `unknown_recipient`; a friends-only user and a sender who
//!   is no friend, `not_a_friend`), opted-out recipients and destinations the limits deny,
//!   counts the daily caps, and defers origins over their rate. Senders were checked at
//!   the door ([`Intake::resolve`](super::Intake::resolve)).
//! - **process** runs the content checks (virus scan, spam) of up to
//!   `content.check_concurrency` messages at once, in arrival order, then reshapes each
//!   recipient's content for its channel (SMS parts, MMS plan), picks its sender (the
//!   reply-routing sub-address for phones) and routes it to its channel's dispatch queue; a
//!   channel with no sink holds its recipients in the store. A message a member spoke as a
//!   group goes to phones after `<group> / <member>: ` (counted in its SMS parts), and the
//!   other sinks get the two names ([`Voice`](crate::content::voice::Voice)).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::settle::Settle;
use super::{Ctx, Delivery, Job, SinkError};
use crate::address::Channel;
use crate::message::{Kind, now_ms};

struct RateWindow {
    second: i64,
    counts: HashMap<String, u32>,
}

pub(super) async fn auth_stage(ctx: Arc<Ctx>, mut rx: mpsc::Receiver<Job>, tx: mpsc::Sender<Job>) {
    let limit = ctx.cfg.directory.rate_per_origin;
    let mut window = RateWindow {
        second: 0,
        counts: HashMap::new(),
    };
    while let Some(job) = rx.recv().await {
        metrics::counter!("switchboard_stage_processed_total", "stage" => "auth").increment(1);
        let env = &job.env;
        let mut keep = Vec::with_capacity(job.idxs.len());
        let over_rate = env.kind == Kind::Message && limit > 0 && {
            let now = now_ms();
            if now / 1000 != window.second {
                window.second = now / 1000;
                window.counts.clear();
            }
            let n = window.counts.entry(env.origin.to_string()).or_insert(0);
            *n += 1;
            *n > limit
        };
        for &idx in &job.idxs {
            let Some(rcpt) = env.recipient(idx) else {
                continue;
            };
            let reach = (env.kind == Kind::Message)
                .then(|| {
                    ctx.directory
                        .check_recipient(&env.origin, &rcpt.address)
                        .err()
                        .or_else(|| {
                            let card = env.content.card.as_ref()?;
                            let snap = ctx.directory.snapshot();
                            (!crate::cards::may_see(&snap, &ctx.cfg.cards, card, &rcpt.address))
                                .then_some("card_restricted")
                        })
                })
                .flatten();
            if let Some(reason) = reach {
                metrics::counter!("switchboard_messages_refused_total", "stage" => "auth", "reason" => reason)
                    .increment(1);
                tracing::info!(recipient = %env.recipient_id(idx), reason, "recipient refused");
                let why = match reason {
                    "not_a_friend" => {
                        "not_a_friend: the recipient takes messages from friends only"
                    }
                    "card_restricted" => {
                        "card_restricted: the card's owner shows it to friends only"
                    }
                    _ => {
                        "unknown_recipient: the recipient is not in the directory and its network is not open"
                    }
                };
                ctx.settle(
                    env,
                    idx,
                    Err(Settle::Sink(SinkError::Permanent(why.into()))),
                )
                .await;
            } else if env.kind == Kind::Message && ctx.directory.opted_out(&rcpt.address) {
                metrics::counter!("switchboard_messages_refused_total", "stage" => "auth", "reason" => "opted_out")
                    .increment(1);
                ctx.settle(
                    env,
                    idx,
                    Err(Settle::Sink(SinkError::Permanent(
                        "opted_out: the recipient does not accept messages from this gateway"
                            .into(),
                    ))),
                )
                .await;
            } else if let Some(why) = (env.kind == Kind::Message)
                .then(|| {
                    ctx.cfg
                        .limits
                        .check_destination(&rcpt.address)
                        .err()
                        .or_else(|| {
                            // Counted once, when the message is received: a retry or a
                            // message recovered after a restart is not counted again.
                            job.fresh
                                .then(|| ctx.daily.take(&rcpt.address, now_ms()).err())
                                .flatten()
                        })
                })
                .flatten()
            {
                let reason = if why.starts_with("recipient_daily_cap") {
                    "recipient_daily_cap"
                } else {
                    "destination_denied"
                };
                metrics::counter!("switchboard_messages_refused_total", "stage" => "auth", "reason" => reason)
                    .increment(1);
                tracing::info!(recipient = %env.recipient_id(idx), reason, "recipient refused");
                ctx.settle(env, idx, Err(Settle::Sink(SinkError::Permanent(why))))
                    .await;
            } else if over_rate {
                metrics::counter!("switchboard_messages_refused_total", "stage" => "auth", "reason" => "rate_limited")
                    .increment(1);
                let at = (window.second + 1) * 1000;
                ctx.settle(env, idx, Err(Settle::Defer("rate_limited".into(), at)))
                    .await;
            } else {
                keep.push(idx);
            }
        }
        if !keep.is_empty()
            && tx
                .send(Job {
                    env: job.env.clone(),
                    idxs: keep,
                    fresh: job.fresh,
                    budget: job.budget.clone(),
                })
                .await
                .is_err()
        {
            break;
        }
    }
}

pub(super) async fn process_stage(
    ctx: Arc<Ctx>,
    mut rx: mpsc::Receiver<Job>,
    txs: HashMap<Channel, mpsc::Sender<Delivery>>,
) {
    use futures::StreamExt;
    let checks_cfg = Arc::new((
        crate::content::scan::Scanner::new(&ctx.cfg.content.scan),
        crate::content::spam::SpamCheck::new(&ctx.cfg.content.spam),
    ));
    // Nothing to check: straight to routing, as before the checks existed.
    if checks_cfg.0.is_none() && checks_cfg.1.is_none() {
        while let Some(job) = rx.recv().await {
            metrics::counter!("switchboard_stage_processed_total", "stage" => "process")
                .increment(1);
            if !route(&ctx, job, &txs).await {
                return;
            }
        }
        return;
    }
    let limit = ctx.cfg.content.check_concurrency.max(1);
    // Scans and spam checks of up to `limit` messages run at once (a slow clamd or rspamd
    // does not hold up everything behind it); messages leave the checks in arrival order.
    let mut checks = futures::stream::FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some(done) = checks.next(), if !checks.is_empty() => {
                if let Some(job) = done
                    && !route(&ctx, job, &txs).await
                {
                    return;
                }
            }
            job = rx.recv(), if checks.len() < limit => match job {
                Some(job) => {
                    metrics::counter!("switchboard_stage_processed_total", "stage" => "process")
                        .increment(1);
                    checks.push_back(check(ctx.clone(), checks_cfg.clone(), job));
                }
                None => break,
            },
        }
    }
    while let Some(done) = checks.next().await {
        if let Some(job) = done
            && !route(&ctx, job, &txs).await
        {
            return;
        }
    }
}

/// The content checks of one message: `None` when it was refused or held (every
/// recipient settled), else the job to route (its text tagged when spam rules say so).
async fn check(
    ctx: Arc<Ctx>,
    checks: Arc<(
        Option<crate::content::scan::Scanner>,
        Option<crate::content::spam::SpamCheck>,
    )>,
    mut job: Job,
) -> Option<Job> {
    let (scanner, spam) = &*checks;
    // Mail checked before its SMTP `250` is not checked a second time.
    if job
        .env
        .content
        .mail
        .as_ref()
        .is_some_and(|m| m.content_checked)
    {
        return Some(job);
    }
    // Attachments are scanned before any recipient is routed: one verdict for all.
    if let Some(scanner) = scanner
        && job.env.kind == Kind::Message
    {
        let env = &job.env;
        use crate::content::scan::Decision;
        let failure = match scanner.check(env).await {
            Decision::Pass => None,
            Decision::Refuse(why) => Some(SinkError::Permanent(why)),
            Decision::Retry(why) => Some(SinkError::Unavailable(why)),
        };
        if let Some(err) = failure {
            let reason = if err.is_transient() {
                "scanner_unavailable"
            } else {
                "virus_found"
            };
            for &idx in &job.idxs {
                metrics::counter!("switchboard_messages_refused_total", "stage" => "process", "reason" => reason)
                    .increment(1);
                ctx.settle(env, idx, Err(Settle::Sink(err.clone()))).await;
            }
            return None;
        }
    }
    // Spam checks: a refusal fails every recipient; a tag changes the text sent.
    if let Some(spam) = spam
        && job.env.kind == Kind::Message
    {
        use crate::content::spam::Verdict;
        let failure = match spam.check(&job.env).await {
            Verdict::Pass => None,
            Verdict::Tag(text) => {
                let mut tagged = (*job.env).clone();
                tagged.content.text = text;
                job.env = Arc::new(tagged);
                None
            }
            Verdict::Refuse(why) => Some(SinkError::Permanent(why)),
            Verdict::Retry(why) => Some(SinkError::Unavailable(why)),
        };
        if let Some(err) = failure {
            for &idx in &job.idxs {
                metrics::counter!("switchboard_messages_refused_total", "stage" => "process", "reason" => "spam")
                    .increment(1);
                ctx.settle(&job.env, idx, Err(Settle::Sink(err.clone())))
                    .await;
            }
            return None;
        }
    }
    Some(job)
}

/// Reshapes a checked message for each recipient's channel and hands the deliveries to
/// dispatch. `false` when dispatch has stopped.
async fn route(ctx: &Arc<Ctx>, job: Job, txs: &HashMap<Channel, mpsc::Sender<Delivery>>) -> bool {
    {
        let env = &job.env;
        // A member speaking as the group: named once for every recipient.
        let voice = (env.kind == Kind::Message)
            .then(|| {
                crate::content::voice::Voice::of(&env.origin, env.speaker.as_ref(), |a| {
                    ctx.directory.display_name(a)
                })
            })
            .flatten()
            .map(Arc::new);
        // What phones are sent: the text after the group and speaker, if any, so that its
        // SMS parts are counted with them.
        // A card goes to phones as its compact text, whole lines within the SMS parts.
        let card_text = env
            .content
            .card
            .as_ref()
            .map(|c| crate::cards::sms_text(c, ctx.cfg.content.sms.max_parts));
        let text = card_text.as_deref().unwrap_or(&env.content.text);
        let phone_text = match &voice {
            Some(v) => std::borrow::Cow::Owned(v.prefixed(text)),
            None => std::borrow::Cow::Borrowed(text),
        };
        // The SMS shape depends only on the text: worked out once for all phone recipients.
        let mut sms_shape: Option<Result<Arc<crate::content::SmsShape>, String>> = None;
        // Media for phones go as one MMS when the SDP's MMS interface is configured.
        // So does a text over the SMS parts maximum under the `mms` overflow policy.
        let as_mms = !ctx.cfg.content.mms.send_message_url.is_empty()
            && (env
                .content
                .parts
                .iter()
                .any(|p| crate::content::mms::is_mms_part(&p.content_type))
                || crate::content::long_text_to_mms(&ctx.cfg.content.sms, &phone_text));
        let mut mms_plan: Option<Result<Arc<crate::content::mms::MmsPlan>, String>> = None;
        for &idx in &job.idxs {
            let Some(rcpt) = env.recipient(idx) else {
                continue;
            };
            let ch = rcpt.channel();
            let Some(tx) = txs.get(&ch) else {
                ctx.settle(
                    env,
                    idx,
                    Err(Settle::Held(format!(
                        "no {ch} connector is configured; held until one is"
                    ))),
                )
                .await;
                continue;
            };
            let sender = if ch == Channel::Sms && env.origin.channel() != Channel::Sms {
                match ctx.sms_sender(&env.origin).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot allocate a reply route");
                        let at = now_ms() + 1000;
                        ctx.settle(env, idx, Err(Settle::Defer(format!("store: {e}"), at)))
                            .await;
                        continue;
                    }
                }
            } else {
                None
            };
            let mms = if ch == Channel::Sms && as_mms {
                let plan = mms_plan.get_or_insert_with(|| {
                    crate::content::mms::plan(&ctx.cfg.content.mms, &phone_text, &env.content.parts)
                        .map(Arc::new)
                });
                match plan {
                    Ok(p) => Some(p.clone()),
                    Err(why) => {
                        metrics::counter!("switchboard_messages_refused_total", "stage" => "process", "reason" => "too_large")
                            .increment(1);
                        let why = why.clone();
                        ctx.settle(env, idx, Err(Settle::Sink(SinkError::Permanent(why))))
                            .await;
                        continue;
                    }
                }
            } else {
                None
            };
            let sms = if ch == Channel::Sms && mms.is_none() {
                let shape = sms_shape.get_or_insert_with(|| {
                    crate::content::shape_sms(&ctx.cfg.content.sms, &phone_text).map(Arc::new)
                });
                match shape {
                    Ok(s) => Some(s.clone()),
                    Err(why) => {
                        metrics::counter!("switchboard_messages_refused_total", "stage" => "process", "reason" => "too_long")
                            .increment(1);
                        let why = why.clone();
                        ctx.settle(env, idx, Err(Settle::Sink(SinkError::Permanent(why))))
                            .await;
                        continue;
                    }
                }
            } else {
                None
            };
            let d = Delivery {
                env: job.env.clone(),
                idx,
                sender,
                sms,
                mms,
                voice: voice.clone(),
                budget: job.budget.clone(),
            };
            if tx.send(d).await.is_err() {
                return false;
            }
        }
    }
    true
}
