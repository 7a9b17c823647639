//! Receipts: what a peer says became of a recipient after it took it (an SDP delivery
//! receipt for SMS or MMS, an XMPP receipt or error, a mail bounce). The one place one is
//! applied: matched to its recipient, stored, and — when it is the last word — turned into
//! a report for the origin. The connectors translate their protocol's statuses into a
//! [`Receipt`]; nothing here knows a protocol.
//!
//! A receipt found by correlator applies only to a phone recipient that was handed to its
//! sink (its send in flight, or made) and whose number is the receipt's; correlators are
//! random (`message::new_correlator`), so none can be guessed. A receipt for a recipient
//! id applies only when the connector's `owner` check accepts the stored recipient.
//! Anything else changes nothing.

use crate::address::Address;
use crate::message::{Recipient, RecipientId, State};
use crate::store::{Applied, CorrelatorHit, Outcome, StoreError};

use super::Ctx;

/// A peer's word on one recipient.
pub struct Receipt<'a> {
    pub target: ReceiptTarget<'a>,
    /// The state it leads to.
    pub state: State,
    /// No later receipt is to be expected.
    pub final_word: bool,
    /// Stored as the recipient's status (`DeliveredToTerminal`, `xmpp:received`, ...).
    pub status: String,
    /// Stored as the recipient's last error.
    pub error: Option<String>,
}

/// Which recipient a receipt is for.
pub enum ReceiptTarget<'a> {
    /// By the correlator given with the send, for the phone the peer reports on.
    Correlator { correlator: &'a str, phone: &'a str },
    /// By recipient id, read from the peer's answer; applies only when `owner` accepts the
    /// stored recipient (the peer is the one it was sent to).
    Recipient {
        rid: RecipientId,
        owner: &'a (dyn Fn(&Recipient) -> bool + Send + Sync),
    },
}

/// What became of a receipt.
#[derive(Debug, PartialEq, Eq)]
pub enum ReceiptResult {
    Applied,
    /// Already known (the recipient was final, or this status was reported already).
    Duplicate,
    /// Not for a recipient this peer may report on: no such correlator or recipient,
    /// another address, or one not handed to the sink. The callers answer all of these
    /// alike, so a guesser learns nothing.
    NotApplicable,
}

/// Whether a recipient was handed to its sink: its send is in flight, or a send was made
/// (`sent`, a `retry` after an attempt, a final state reached with an attempt).
fn handed_over(ctx: &Ctx, hit: &CorrelatorHit) -> bool {
    if ctx.in_flight.contains(hit.rid) {
        return true;
    }
    match hit.state {
        State::Sent => true,
        State::Retry => hit.attempts > 0,
        s if s.is_final() => hit.attempts > 0 || hit.remote_id.is_some(),
        _ => false,
    }
}

/// The same phone, however the peer writes it (`tel:+86…`, `tel:86…`, `+86…`).
fn same_phone(stored: &str, reported: &str) -> bool {
    crate::address::parse_sdp_number(reported).is_some_and(|n| n == stored)
}

/// Applies `r`. Returns after it is committed.
pub(super) async fn apply(ctx: &Ctx, r: Receipt<'_>) -> Result<ReceiptResult, StoreError> {
    let rid = match r.target {
        ReceiptTarget::Correlator { correlator, phone } => {
            let correlator = correlator.trim();
            let hit = if correlator.is_empty() || correlator.len() > 128 {
                None
            } else {
                ctx.store.find_correlator(correlator).await?
            };
            let applicable = hit.filter(|h| match &h.address {
                Address::Sms(stored) => same_phone(stored, phone) && handed_over(ctx, h),
                _ => false,
            });
            match applicable {
                Some(h) => h.rid,
                None => return Ok(ReceiptResult::NotApplicable),
            }
        }
        ReceiptTarget::Recipient { rid, owner } => {
            let Some(env) = ctx.store.load(rid.msg).await? else {
                return Ok(ReceiptResult::NotApplicable);
            };
            if !env.recipient(rid.idx).is_some_and(owner) {
                return Ok(ReceiptResult::NotApplicable);
            }
            rid
        }
    };
    let outcome = Outcome {
        state: r.state,
        attempts: 0,
        next_attempt_at: 0,
        last_error: r.error,
        remote_id: None,
        final_word: r.final_word,
        status: Some(r.status),
    };
    Ok(match ctx.store.apply(rid, outcome).await? {
        Applied::Updated { report } => {
            if report.is_some() {
                ctx.feeder_wake.notify_one();
            }
            ReceiptResult::Applied
        }
        Applied::Ignored => ReceiptResult::Duplicate,
        Applied::Unknown => ReceiptResult::NotApplicable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_compare_however_written() {
        assert!(same_phone("+8613800000001", "tel:+8613800000001"));
        assert!(same_phone("+8613800000001", "tel:8613800000001"));
        assert!(!same_phone("+8613800000001", "tel:+8613800000002"));
        assert!(!same_phone("+8613800000001", ""));
    }
}
