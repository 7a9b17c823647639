//! Parlay X delivery receipts (SMS and MMS) in the pipeline's terms.
//!
//! Mapping of delivery statuses to recipient states:
//! `DeliveredToTerminal` → delivered; `DeliveryImpossible` → failed;
//! `DeliveredToNetwork`, `MessageWaiting` → sent, more to come;
//! `DeliveryUncertain`, `DeliveryNotificationNotSupported` → sent, and no receipt to expect.
//!
//! A receipt is matched by its correlator to the phone it reports on (see
//! `pipeline::receipts`); each is counted in
//! `switchboard_reports_received_total{status, outcome}`.

use super::parlayx::DeliveryStatus;
use crate::message::State;
use crate::pipeline::{Intake, Receipt, ReceiptResult, ReceiptTarget};
use crate::store::StoreError;

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

/// Applies a delivery receipt for the phone at `address`. Returns after it is committed.
pub async fn apply(
    intake: &Intake,
    correlator: &str,
    address: &str,
    status: DeliveryStatus,
) -> Result<ReceiptResult, StoreError> {
    let label = status.as_str();
    let (state, final_word) = map_status(status);
    let result = intake
        .receipt(Receipt {
            target: ReceiptTarget::Correlator {
                correlator,
                phone: address,
            },
            state,
            final_word,
            status: label.to_string(),
            error: (state == State::Failed).then(|| format!("SDP reported {label}")),
        })
        .await?;
    let outcome = match result {
        ReceiptResult::Applied => "applied",
        ReceiptResult::Duplicate => "duplicate",
        ReceiptResult::NotApplicable => "not_applicable",
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
