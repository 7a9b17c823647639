//! What becomes of a recipient after an attempt or a stage's decision: the retry policy.
//!
//! - sent: `sent`, an attempt spent;
//! - permanent failure: `failed`, an attempt spent;
//! - temporary failure: an attempt spent, the next one after an exponential backoff with
//!   jitter; `failed` once `retry.max_attempts` are spent;
//! - unavailable peer: no attempt spent, the next look after a quarter of the message's age
//!   (within the backoff bounds), so a long outage is neither hammered nor counted;
//! - either way `expired` when the next attempt would fall after the time to live.
//!
//! [`outcome`] decides without side effects (the clock is an argument); `Ctx::settle`
//! counts it in the metrics and records it.

use rand::Rng;

use super::config::RetryConfig;
use super::{Sent, SinkError};
use crate::message::{Envelope, State};
use crate::store::Outcome;

/// A stage's decision about a recipient other than "sent".
pub enum Settle {
    Sink(SinkError),
    /// Not now: try again at this time (ms), without counting an attempt.
    Defer(String, i64),
    /// No sink serves the channel: wait in the store.
    Held(String),
    Expired,
}

/// The counter an outcome adds to (a metric name and its `reason` label, if any).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    Sent,
    Held,
    Deferred,
    Retried,
    /// Waits for the time given by a stage (rate limit, store trouble): not counted here.
    Waiting,
    Failed(&'static str),
}

/// The outcome of `result` for recipient `idx` of `env` at time `now` (ms), and what to
/// count. `None` when the envelope has no such recipient.
pub fn outcome(
    retry: &RetryConfig,
    env: &Envelope,
    idx: u32,
    result: Result<Sent, Settle>,
    now: i64,
) -> Option<(Outcome, Count)> {
    let rcpt = env.recipient(idx)?;
    let attempts = rcpt.attempts;
    let base = Outcome {
        state: State::Failed,
        attempts,
        next_attempt_at: 0,
        last_error: None,
        remote_id: None,
        final_word: true,
        status: None,
    };
    Some(match result {
        Ok(sent) => (
            Outcome {
                state: State::Sent,
                attempts: attempts + 1,
                remote_id: sent.remote_id,
                final_word: sent.final_word,
                ..base
            },
            Count::Sent,
        ),
        Err(Settle::Held(why)) => (
            Outcome {
                state: State::Held,
                last_error: Some(why),
                final_word: false,
                ..base
            },
            Count::Held,
        ),
        Err(Settle::Defer(why, at)) => (
            Outcome {
                state: State::Retry,
                next_attempt_at: at,
                last_error: Some(why),
                final_word: false,
                ..base
            },
            Count::Waiting,
        ),
        Err(Settle::Expired) => (
            Outcome {
                state: State::Expired,
                last_error: Some(format!("time to live ran out after {attempts} attempt(s)")),
                ..base
            },
            Count::Failed("expired"),
        ),
        Err(Settle::Sink(SinkError::Permanent(e))) => (
            Outcome {
                attempts: attempts + 1,
                last_error: Some(e),
                ..base
            },
            Count::Failed("permanent"),
        ),
        Err(Settle::Sink(err)) => {
            // Temporary: an attempt is spent and the wait doubles. Unavailable: nothing
            // was tried with this message, so no attempt is spent; the wait grows with
            // the message's age (a quarter of it, within the backoff bounds), so a long
            // outage is not hammered, and only the time to live ends it.
            let unavailable = matches!(err, SinkError::Unavailable(_));
            let (attempts, next) = if unavailable {
                let age = now - env.created_at;
                (attempts, now + unavailable_backoff_ms(retry, age) as i64)
            } else {
                (attempts + 1, now + backoff_ms(retry, attempts + 1) as i64)
            };
            let e = match err {
                SinkError::Unavailable(e) => format!("unavailable: {e}"),
                SinkError::Transient(e) | SinkError::Permanent(e) => e,
            };
            if !unavailable && attempts >= retry.max_attempts {
                (
                    Outcome {
                        attempts,
                        last_error: Some(format!("gave up after {attempts} attempts: {e}")),
                        ..base
                    },
                    Count::Failed("attempts"),
                )
            } else if next > env.expires_at {
                (
                    Outcome {
                        state: State::Expired,
                        attempts,
                        last_error: Some(format!(
                            "time to live runs out before the next attempt: {e}"
                        )),
                        ..base
                    },
                    Count::Failed("expired"),
                )
            } else {
                (
                    Outcome {
                        state: State::Retry,
                        attempts,
                        next_attempt_at: next,
                        last_error: Some(e),
                        final_word: false,
                        ..base
                    },
                    if unavailable {
                        Count::Deferred
                    } else {
                        Count::Retried
                    },
                )
            }
        }
    })
}

/// Exponential backoff with jitter: `initial * 2^(attempt-1)`, capped, then a random
/// point in its upper half.
pub fn backoff_ms(retry: &RetryConfig, attempt: u32) -> u64 {
    let base = retry
        .initial_backoff_ms
        .saturating_mul(1u64 << (attempt.saturating_sub(1)).min(30))
        .min(retry.max_backoff_ms);
    let half = base / 2;
    half + rand::rng().random_range(0..=base - half)
}

/// The wait before looking again at a message whose peer was unavailable: a quarter of its
/// age, within `[initial_backoff_ms, max_backoff_ms]`, then a random point in its upper half.
pub fn unavailable_backoff_ms(retry: &RetryConfig, age_ms: i64) -> u64 {
    let base = (u64::try_from(age_ms).unwrap_or(0) / 4)
        .clamp(retry.initial_backoff_ms, retry.max_backoff_ms);
    let half = base / 2;
    half + rand::rng().random_range(0..=base - half)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::Address;
    use crate::message::{Content, Kind, MsgId, Recipient};

    const T0: i64 = 1_800_000_000_000;

    fn retry() -> RetryConfig {
        RetryConfig {
            max_attempts: 3,
            initial_backoff_ms: 1000,
            max_backoff_ms: 8000,
            ..RetryConfig::default()
        }
    }

    fn env(attempts: u32, ttl_ms: i64) -> Envelope {
        let mut r = Recipient::new(0, Address::Sms("+8613800000001".into()));
        r.attempts = attempts;
        Envelope {
            id: MsgId(1),
            kind: Kind::Message,
            origin: Address::Mail("a@example.org".into()),
            client: "t".into(),
            client_ref: None,
            report_to: None,
            recipients: vec![r],
            content: Content::default(),
            created_at: T0,
            expires_at: T0 + ttl_ms,
            note: None,
            speaker: None,
        }
    }

    fn transient() -> Result<Sent, Settle> {
        Err(Settle::Sink(SinkError::Transient("reset".into())))
    }

    #[test]
    fn a_send_spends_an_attempt_and_keeps_the_remote_id() {
        let sent = Sent {
            remote_id: Some("r1".into()),
            final_word: false,
        };
        let (o, c) = outcome(&retry(), &env(1, 60_000), 0, Ok(sent), T0).unwrap();
        assert_eq!((o.state, o.attempts, c), (State::Sent, 2, Count::Sent));
        assert_eq!(o.remote_id.as_deref(), Some("r1"));
        assert!(!o.final_word);
        assert!(outcome(&retry(), &env(0, 1), 7, transient(), T0).is_none());
    }

    #[test]
    fn temporary_failures_back_off_exponentially_then_give_up() {
        let r = retry();
        for (attempts, lo, hi) in [(0u32, 500, 1000), (1, 1000, 2000)] {
            let (o, c) = outcome(&r, &env(attempts, 3_600_000), 0, transient(), T0).unwrap();
            assert_eq!(
                (o.state, o.attempts, c),
                (State::Retry, attempts + 1, Count::Retried)
            );
            let wait = o.next_attempt_at - T0;
            assert!(
                (lo..=hi).contains(&wait),
                "attempt {attempts}: waits {wait}"
            );
        }
        // The cap holds however many attempts were made.
        for _ in 0..50 {
            assert!(backoff_ms(&r, 30) <= 8000 && backoff_ms(&r, 30) >= 4000);
        }
        let (o, c) = outcome(&r, &env(2, 3_600_000), 0, transient(), T0).unwrap();
        assert_eq!((o.state, o.attempts), (State::Failed, 3));
        assert_eq!(c, Count::Failed("attempts"));
        assert!(o.final_word);
        assert!(
            o.last_error
                .unwrap()
                .starts_with("gave up after 3 attempts")
        );
    }

    #[test]
    fn an_unavailable_peer_spends_no_attempt_and_waits_longer_as_the_message_ages() {
        let r = retry();
        let unavailable = || Err(Settle::Sink(SinkError::Unavailable("refused".into())));
        // Far more outages than max_attempts: still waiting, nothing spent.
        let (o, c) = outcome(&r, &env(2, 3_600_000), 0, unavailable(), T0 + 20_000).unwrap();
        assert_eq!((o.state, o.attempts, c), (State::Retry, 2, Count::Deferred));
        let wait = o.next_attempt_at - (T0 + 20_000);
        assert!(
            (2500..=5000).contains(&wait),
            "a quarter of 20 s: waits {wait}"
        );
        assert!(o.last_error.unwrap().starts_with("unavailable: "));
        // Young: the initial backoff; old: the cap.
        assert!((500..=1000).contains(&unavailable_backoff_ms(&r, 10)));
        assert!((4000..=8000).contains(&unavailable_backoff_ms(&r, 10_000_000)));
    }

    #[test]
    fn the_time_to_live_ends_retries_and_waits() {
        let r = retry();
        let (o, c) = outcome(&r, &env(0, 100), 0, transient(), T0).unwrap();
        assert_eq!((o.state, c), (State::Expired, Count::Failed("expired")));
        assert!(o.final_word);
        let unavailable = Err(Settle::Sink(SinkError::Unavailable("down".into())));
        let (o, _) = outcome(&r, &env(0, 100), 0, unavailable, T0).unwrap();
        assert_eq!((o.state, o.attempts), (State::Expired, 0));
        let (o, _) = outcome(&r, &env(1, 100), 0, Err(Settle::Expired), T0).unwrap();
        assert_eq!(o.state, State::Expired);
        assert_eq!(
            o.last_error.as_deref(),
            Some("time to live ran out after 1 attempt(s)")
        );
    }

    #[test]
    fn permanent_failures_holds_and_deferrals() {
        let r = retry();
        let perm = Err(Settle::Sink(SinkError::Permanent("POL0001".into())));
        let (o, c) = outcome(&r, &env(0, 60_000), 0, perm, T0).unwrap();
        assert_eq!((o.state, o.attempts), (State::Failed, 1));
        assert_eq!(c, Count::Failed("permanent"));
        let (o, c) = outcome(
            &r,
            &env(0, 60_000),
            0,
            Err(Settle::Held("no sink".into())),
            T0,
        )
        .unwrap();
        assert_eq!(
            (o.state, o.attempts, o.final_word, c),
            (State::Held, 0, false, Count::Held)
        );
        let defer = Err(Settle::Defer("rate_limited".into(), T0 + 1000));
        let (o, c) = outcome(&r, &env(1, 60_000), 0, defer, T0).unwrap();
        assert_eq!(
            (o.state, o.attempts, o.next_attempt_at, c),
            (State::Retry, 1, T0 + 1000, Count::Waiting)
        );
    }
}
