//! The SDP as the sink of the `sms` channel: a text goes out as `sendSms`, a message the
//! process stage planned as MMS as `sendMessage`.

use futures::future::BoxFuture;

use super::SdpClient;
use super::mms_client::{MmsClient, MmsRequest};
use crate::pipeline::{Delivery, Sent, Sink, SinkError};

/// SMS (and, when configured, MMS) to phones.
pub struct SdpSink {
    pub sms: SdpClient,
    /// MMS to phones (Parlay X SendMessage); absent: phones get text only.
    pub mms: Option<MmsClient>,
    pub concurrency: usize,
}

impl Sink for SdpSink {
    fn name(&self) -> &'static str {
        "sdp"
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    /// The SDP may send a delivery receipt before it answers `sendSms`.
    fn early_receipts(&self) -> bool {
        true
    }

    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<Sent, SinkError>> {
        Box::pin(async move {
            let rcpt = d
                .env
                .recipient(d.idx)
                .map(|r| r.address.value())
                .ok_or_else(|| SinkError::Permanent(format!("no recipient {}", d.idx)))?;
            let correlator = d.env.correlator(d.idx);
            if let Some(plan) = &d.mms {
                let Some(mms) = &self.mms else {
                    return Err(SinkError::Transient("no MMS interface configured".into()));
                };
                return mms
                    .send(&MmsRequest {
                        to: rcpt,
                        sender: d.sender.as_deref(),
                        subject: d.env.content.subject.as_deref(),
                        plan,
                        correlator: &correlator,
                    })
                    .await;
            }
            let text = match &d.sms {
                Some(shape) => shape.text.as_str(),
                None => d.env.content.text.as_str(),
            };
            self.sms
                .send(&super::SmsRequest {
                    to: rcpt,
                    sender: d.sender.as_deref(),
                    text,
                    correlator: &correlator,
                })
                .await
        })
    }
}
