//! What the SDP calls: the Parlay X SmsNotification and MessageNotification endpoints
//! ([`routes`]), with what their handlers share ([`Inbound`]). The registry merges the
//! routes into the callbacks router (the main listener, or `[http] callbacks_listen`).

use std::sync::Arc;

use axum::Router;
use axum::routing::post;

use super::callbacks::CallbackConfig;
use super::mms_client::{MMS_NOTIFY_PATH, ReceiveClient};
use super::parlayx::Version;
use super::sms_notification::NOTIFY_PATH;
use super::{MoConfig, message_notification, sms_notification};
use crate::pipeline::Intake;

/// What the callback handlers share.
pub struct Inbound {
    pub intake: Intake,
    /// Who may call (`[sdp.callbacks]`).
    pub callbacks: CallbackConfig,
    /// The Parlay X version answered when a notification does not say.
    pub version: Version,
    /// How MO messages are routed.
    pub mo: MoRouting,
    /// Fetches received MMS content from the SDP (`content.mms.receive_message_url`).
    pub mms_receive: Option<ReceiveClient>,
}

/// The settings MO routing reads.
#[derive(Clone, Debug, Default)]
pub struct MoRouting {
    /// `[sdp] service_number`: replies dialled to it plus an extension are reply-routed.
    pub service_number: String,
    /// `[mo]`: default route and relaying.
    pub mo: MoConfig,
    /// `[im] domains`: a bare first word in one of them is an IM address.
    pub im_domains: Vec<String>,
}

/// The SDP's notification endpoints, bare and under a secret path segment
/// (`[sdp.callbacks] secret_path`).
pub fn routes(inbound: Arc<Inbound>) -> Router {
    Router::new()
        .route(NOTIFY_PATH, post(sms_notification::notification))
        .route(MMS_NOTIFY_PATH, post(message_notification::notification))
        .route(
            "/parlayx/SmsNotification/{secret}",
            post(sms_notification::notification),
        )
        .route(
            "/parlayx/MessageNotification/{secret}",
            post(message_notification::notification),
        )
        .with_state(inbound)
}
