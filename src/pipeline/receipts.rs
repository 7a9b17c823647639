//! Delivery receipts from the SDP: matched to the recipient by correlator, stored, and —
//! when they are the last word — turned into a report for the origin.
//!
//! A receipt applies only to a phone recipient that was handed to the SDP (its send in
//! flight, or made), whose number is the receipt's address; correlators are random
//! (`message::new_correlator`), so none can be guessed. Anything else changes nothing.
//!
//! Mapping of Parlay X delivery statuses to recipient states:
//! `DeliveredToTerminal` → delivered; `DeliveryImpossible` → failed;
//! `DeliveredToNetwork`, `MessageWaiting` → sent, more to come;
//! `DeliveryUncertain`, `DeliveryNotificationNotSupported` → sent, and no receipt to expect.

use crate::address::Address;
use crate::connectors::sdp::parlayx::DeliveryStatus;
use crate::message::State;
use crate::store::{Applied, CorrelatorHit, Outcome, StoreError};

use super::Ctx;

/// The recipient state a delivery status leads to, and whether it is the last word.
pub fn map_status(status: DeliveryStatus) -> (State, bool) {
    match status {
        DeliveryStatus::DeliveredToTerminal => (State::Delivered, true),
        DeliveryStatus::DeliveryImpossible => (State::Failed, true),
        DeliveryStatus::DeliveredToNetwork | DeliveryStatus::MessageWaiting => (State::Sent, false),
        DeliveryStatus::DeliveryUncertain | DeliveryStatus::DeliveryNotificationNotSupported => {
            (State::Sent, true)
        }
    }
}

/// What became of a receipt.
#[derive(Debug, PartialEq, Eq)]
pub enum ReceiptResult {
    Applied,
    /// Already known (the recipient was final, or this status was reported already).
    Duplicate,
    /// Not for a recipient this SDP may report on: no such correlator, another address, a
    /// recipient of another channel, or one not handed to the SDP. The callers answer all
    /// of these alike, so a guesser learns nothing.
    NotApplicable,
}

/// Whether a recipient was handed to the SDP: its send is in flight, or a send was made
/// (`sent`, a `retry` after an attempt, a final state reached with an attempt).
fn handed_to_sdp(ctx: &Ctx, hit: &CorrelatorHit) -> bool {
    if ctx.sdp_in_flight.contains(hit.rid) {
        return true;
    }
    match hit.state {
        State::Sent => true,
        State::Retry => hit.attempts > 0,
        s if s.is_final() => hit.attempts > 0 || hit.remote_id.is_some(),
        _ => false,
    }
}

/// The same phone, however the SDP writes it (`tel:+86…`, `tel:86…`, `+86…`).
fn same_phone(stored: &str, reported: &str) -> bool {
    crate::address::parse_sdp_number(reported).is_some_and(|n| n == stored)
}

/// Applies a delivery receipt for the phone at `address`. Returns after it is committed.
pub async fn apply(
    ctx: &Ctx,
    correlator: &str,
    address: &str,
    status: DeliveryStatus,
) -> Result<ReceiptResult, StoreError> {
    let label = status.as_str();
    let count = |outcome: &'static str| {
        metrics::counter!("switchboard_reports_received_total", "status" => label, "outcome" => outcome)
            .increment(1);
    };
    let correlator = correlator.trim();
    let hit = if correlator.is_empty() || correlator.len() > 128 {
        None
    } else {
        ctx.store.find_correlator(correlator).await?
    };
    let applicable = hit.filter(|h| match &h.address {
        Address::Sms(phone) => same_phone(phone, address) && handed_to_sdp(ctx, h),
        _ => false,
    });
    let Some(hit) = applicable else {
        count("not_applicable");
        return Ok(ReceiptResult::NotApplicable);
    };
    let (state, final_word) = map_status(status);
    let outcome = Outcome {
        state,
        attempts: 0,
        next_attempt_at: 0,
        last_error: (state == State::Failed).then(|| format!("SDP reported {label}")),
        remote_id: None,
        final_word,
        status: Some(label.to_string()),
    };
    let result = match ctx.store.apply(hit.rid, outcome).await? {
        Applied::Updated { report } => {
            if report.is_some() {
                ctx.feeder_wake.notify_one();
            }
            ReceiptResult::Applied
        }
        Applied::Ignored => ReceiptResult::Duplicate,
        Applied::Unknown => ReceiptResult::NotApplicable,
    };
    count(match result {
        ReceiptResult::Applied => "applied",
        ReceiptResult::Duplicate => "duplicate",
        ReceiptResult::NotApplicable => "not_applicable",
    });
    Ok(result)
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

    #[test]
    fn statuses_map_as_specified() {
        use DeliveryStatus::*;
        assert_eq!(map_status(DeliveredToTerminal), (State::Delivered, true));
        assert_eq!(map_status(DeliveryImpossible), (State::Failed, true));
        assert_eq!(map_status(DeliveredToNetwork), (State::Sent, false));
        assert_eq!(map_status(MessageWaiting), (State::Sent, false));
        assert_eq!(map_status(DeliveryUncertain), (State::Sent, true));
        assert_eq!(
            map_status(DeliveryNotificationNotSupported),
            (State::Sent, true)
        );
    }
}
