//! The SDP's sections: `[sdp]` (the SendSms endpoint, the header credentials, the
//! callbacks' authentication), `[mo]` (where mobile-originated SMS go) and `[simulator]`
//! (the SDP simulator run inside the gateway).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::callbacks::CallbackConfig;
use super::parlayx::Version;
use crate::address::Address;
use crate::config::{is_http_url, positive};
use crate::sim::SimConfig;

/// The operator's SDP (SMS over Parlay X).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SdpConfig {
    /// The SendSms endpoint. Empty: SMS recipients are held.
    pub send_sms_url: String,
    /// Parlay X version of the namespaces (`v2_2` or `v2_1`).
    pub version: Version,
    /// The service number; each Internet-side party is sent from service number +
    /// extension, and replies to that sub-address find their way back.
    pub service_number: String,
    /// Concurrent sendSms requests.
    pub concurrency: usize,
    /// Per-request timeout, in milliseconds.
    pub timeout_ms: u64,
    /// The China-operator `RequestSOAPHeader`, when the SDP wants one.
    pub header: Option<SdpHeaderConfig>,
    /// How the SDP's callbacks (receipts, MO) are authenticated; closed by default.
    pub callbacks: CallbackConfig,
}

impl Default for SdpConfig {
    fn default() -> Self {
        SdpConfig {
            send_sms_url: String::new(),
            version: Version::default(),
            service_number: "10658000".into(),
            concurrency: 64,
            timeout_ms: 10_000,
            header: None,
            callbacks: Default::default(),
        }
    }
}

impl SdpConfig {
    /// Problems with `sdp.…`, but for `sdp.callbacks` (which depend on whether an SDP is in
    /// use at all: `self.callbacks.validate`).
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if !self.send_sms_url.is_empty() && !is_http_url(&self.send_sms_url) {
            e.push(format!(
                "sdp.send_sms_url: {:?} is not an http(s) URL",
                self.send_sms_url
            ));
        }
        if self.service_number.is_empty()
            || !self.service_number.chars().all(|c| c.is_ascii_digit())
        {
            e.push(format!(
                "sdp.service_number: {:?} must be digits",
                self.service_number
            ));
        }
        positive(&mut e, "sdp.concurrency", self.concurrency);
        if self.timeout_ms == 0 {
            e.push("sdp.timeout_ms: must be at least 1".into());
        }
        if let Some(h) = &self.header {
            for (k, v) in [
                ("sp_id", &h.sp_id),
                ("password", &h.password),
                ("service_id", &h.service_id),
            ] {
                if v.is_empty() {
                    e.push(format!("sdp.header.{k}: must not be empty"));
                }
            }
        }
        e
    }
}

/// The `RequestSOAPHeader` credentials.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SdpHeaderConfig {
    pub sp_id: String,
    /// Plain password; the header carries MD5(spId + password + timeStamp).
    pub password: String,
    pub service_id: String,
    /// `FA`; defaults to the destination (`OA`).
    pub fa: Option<String>,
}

/// Routing of mobile-originated SMS.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct MoConfig {
    /// Where an MO goes that neither reply routing nor its first word can place.
    pub default_route: Option<String>,
    /// Whether an MO may be relayed to a phone (first word `sms:`/`tel:`/a number, or a
    /// phone as `default_route`). Off: such an MO is stored unroutable.
    pub relay_to_phones: bool,
    /// With `relay_to_phones`: the number prefixes (`+86`) a relayed MO may reach; empty
    /// reaches none.
    pub relay_networks: Vec<String>,
}

impl MoConfig {
    /// Problems with `mo.default_route`.
    pub fn validate_default_route(&self) -> Vec<String> {
        let mut e = Vec::new();
        if let Some(r) = &self.default_route
            && Address::parse_user(r).is_err()
        {
            e.push(format!("mo.default_route: {r:?} is not an address"));
        }
        e
    }

    /// Problems with `mo.relay_networks`.
    pub fn validate_relay_networks(&self) -> Vec<String> {
        let mut e = Vec::new();
        for (i, n) in self.relay_networks.iter().enumerate() {
            let digits = n.strip_prefix('+').unwrap_or("");
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                e.push(format!(
                    "mo.relay_networks[{i}]: {n:?} is not a number prefix such as \"+86\""
                ));
            }
        }
        e
    }
}

/// The simulator inside the gateway process.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedSim {
    pub enabled: bool,
    #[serde(flatten)]
    pub sim: SimConfig,
}

impl EmbeddedSim {
    /// Problems with `simulator.…` (none while it is off).
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.enabled {
            if self.sim.listen.parse::<SocketAddr>().is_err() {
                e.push(format!(
                    "simulator.listen: {:?} is not an address:port",
                    self.sim.listen
                ));
            }
            for msg in self.sim.validate() {
                e.push(format!("simulator.{}", msg.trim_start_matches("sim.")));
            }
        }
        e
    }
}
