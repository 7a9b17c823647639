//! Content checks of received mail before the `250` (pre-queue): the virus scan (clamd, of
//! the whole mail as received) and the spam checks (built-in rules, rspamd on the mail as
//! received). A refused mail gets its SMTP refusal, so no bounce is ever made for it (no
//! backscatter to a forged sender).
//!
//! - Each check keeps its own deadline (`content.scan.timeout_ms`, `content.spam.timeout_ms`);
//!   at most `content.check_concurrency` mails are checked at once, and a mail that cannot
//!   start its checks within those deadlines is treated as unchecked.
//! - No verdict in time follows the check's `on_unavailable`: `fail_closed` → `451 4.7.1`
//!   (the client retries), `fail_open` → accepted, counted.
//! - A checked mail is marked (`MailMeta::content_checked`) so the process stage does not
//!   check it again; a tag from the spam rules is applied to its text here.
//! - Replies name the virus signature or the spam rule, never a path or a score.

use std::time::Duration;

use tokio::sync::Semaphore;

use crate::content::ContentConfig;
use crate::content::scan::{Scanner, WhenUnavailable};
use crate::content::spam::{SpamCheck, Verdict};
use crate::message::Envelope;

/// The pre-queue checks of one SMTP server.
pub struct PreQueue {
    scanner: Option<Scanner>,
    spam: Option<SpamCheck>,
    slots: Semaphore,
    /// How long a mail may wait for its turn.
    patience: Duration,
}

fn refused(reason: &'static str) {
    metrics::counter!("switchboard_messages_refused_total", "stage" => "receive", "reason" => reason)
        .increment(1);
}

/// One line of a signature name or rule, safe in an SMTP reply.
fn printable(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(100)
        .collect()
}

impl PreQueue {
    pub fn new(content: &ContentConfig) -> PreQueue {
        let scanner = Scanner::new(&content.scan);
        let spam = SpamCheck::new(&content.spam);
        let mut patience = 0;
        if scanner.is_some() {
            patience += content.scan.timeout_ms;
        }
        if spam.is_some() {
            patience += content.spam.timeout_ms;
        }
        PreQueue {
            scanner,
            spam,
            slots: Semaphore::new(content.check_concurrency.max(1)),
            patience: Duration::from_millis(patience),
        }
    }

    /// Checks `env` (built from `raw`); `Err(reply)` when the mail is to be refused or tried
    /// again later, else the envelope is marked checked (and tagged).
    pub async fn check(&self, env: &mut Envelope, raw: &[u8]) -> Result<(), String> {
        if self.scanner.is_none() && self.spam.is_none() {
            return Ok(());
        }
        let permit = tokio::time::timeout(self.patience, self.slots.acquire()).await;
        let Ok(Ok(_permit)) = permit else {
            return self.no_turn(env);
        };
        if let Some(scanner) = &self.scanner {
            match scanner.scan_bytes(raw).await {
                Ok(None) => {
                    metrics::counter!("switchboard_scan_total", "outcome" => "clean").increment(1);
                }
                Ok(Some(signature)) => {
                    metrics::counter!("switchboard_scan_total", "outcome" => "infected")
                        .increment(1);
                    refused("virus_found");
                    if let Err(e) = scanner.quarantine_mail(env, &signature, raw).await {
                        tracing::error!(message = %env.id, error = %e, "cannot quarantine");
                    }
                    tracing::warn!(message = %env.id, %signature, "virus found in a received mail; refused");
                    return Err(format!(
                        "554 5.7.1 Message refused: virus found ({})",
                        printable(&signature)
                    ));
                }
                Err(e) => match scanner.on_unavailable() {
                    WhenUnavailable::FailClosed => {
                        metrics::counter!("switchboard_scan_total", "outcome" => "unavailable")
                            .increment(1);
                        refused("scanner_unavailable");
                        tracing::warn!(message = %env.id, error = %e, "mail not scanned; told to try later");
                        return Err(
                            "451 4.7.1 Content check unavailable; try again later".to_string()
                        );
                    }
                    WhenUnavailable::FailOpen => {
                        metrics::counter!("switchboard_scan_total", "outcome" => "fail_open")
                            .increment(1);
                        tracing::warn!(message = %env.id, error = %e, "mail accepted unscanned (fail_open)");
                    }
                },
            }
        }
        if let Some(spam) = &self.spam {
            match spam.check_mail(env, raw).await {
                Verdict::Pass => {}
                Verdict::Tag(text) => env.content.text = text,
                Verdict::Refuse(why) => {
                    refused("spam");
                    let rule = why.split(':').next().unwrap_or("spam");
                    tracing::info!(message = %env.id, rule, "spam refused at receive");
                    return Err(format!(
                        "550 5.7.1 Message refused as spam ({})",
                        printable(rule)
                    ));
                }
                Verdict::Retry(why) => {
                    refused("spam_check_unavailable");
                    tracing::warn!(message = %env.id, error = %why, "mail not checked for spam; told to try later");
                    return Err("451 4.7.1 Content check unavailable; try again later".to_string());
                }
            }
        }
        self.mark(env);
        Ok(())
    }

    fn mark(&self, env: &mut Envelope) {
        if let Some(m) = env.content.mail.as_mut() {
            m.content_checked = true;
        }
    }

    /// No check could start in time: each configured check's policy decides.
    fn no_turn(&self, env: &mut Envelope) -> Result<(), String> {
        let closed = self
            .scanner
            .as_ref()
            .is_some_and(|s| s.on_unavailable() == WhenUnavailable::FailClosed)
            || self.spam.as_ref().is_some_and(|s| s.fail_closed());
        if closed {
            refused("content_check_busy");
            return Err("451 4.7.1 Content check unavailable; try again later".to_string());
        }
        if self.scanner.is_some() {
            metrics::counter!("switchboard_scan_total", "outcome" => "fail_open").increment(1);
        }
        tracing::warn!(message = %env.id, "mail accepted unchecked: no check slot in time (fail_open)");
        self.mark(env);
        Ok(())
    }
}
