//! Delivery receipts from the SDP: matched to the recipient by correlator, stored, and —
//! when they are the last word — turned into a report for the origin.
//!
//! Mapping of Parlay X delivery statuses to recipient states:
//! `DeliveredToTerminal` → delivered; `DeliveryImpossible` → failed;
//! `DeliveredToNetwork`, `MessageWaiting` → sent, more to come;
//! `DeliveryUncertain`, `DeliveryNotificationNotSupported` → sent, and no receipt to expect.

use crate::connectors::sdp::parlayx::DeliveryStatus;
use crate::message::{RecipientId, State};
use crate::store::{Applied, Outcome, StoreError};

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
    /// No recipient has this correlator.
    UnknownCorrelator,
}

/// Applies a delivery receipt. Returns after it is committed.
pub async fn apply(
    ctx: &Ctx,
    correlator: &str,
    status: DeliveryStatus,
) -> Result<ReceiptResult, StoreError> {
    let label = status.as_str();
    let Some(rid) = RecipientId::parse(correlator.trim()) else {
        metrics::counter!("switchboard_reports_received_total", "status" => label, "outcome" => "unknown")
            .increment(1);
        return Ok(ReceiptResult::UnknownCorrelator);
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
    let result = match ctx.store.apply(rid, outcome).await? {
        Applied::Updated { report } => {
            if report.is_some() {
                ctx.feeder_wake.notify_one();
            }
            ReceiptResult::Applied
        }
        Applied::Ignored => ReceiptResult::Duplicate,
        Applied::Unknown => ReceiptResult::UnknownCorrelator,
    };
    let outcome = match result {
        ReceiptResult::Applied => "applied",
        ReceiptResult::Duplicate => "duplicate",
        ReceiptResult::UnknownCorrelator => "unknown",
    };
    metrics::counter!("switchboard_reports_received_total", "status" => label, "outcome" => outcome)
        .increment(1);
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

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
