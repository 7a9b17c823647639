//! The simulator's settings (`[sim]`) and their validation.

use super::*;

/// Simulator settings (`[sim]` in the configuration file).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// Listen address, used by `main` (serve() takes a bound listener).
    pub listen: String,
    /// Delay before the delivery receipt is POSTed.
    pub receipt_delay_ms: u64,
    /// Share of sendSms answered with HTTP 503 (0..=1).
    pub transient_error_rate: f64,
    /// Share answered with a SOAP fault PolicyException POL0001 (HTTP 500).
    pub permanent_fault_rate: f64,
    /// Share answered with a SOAP fault ServiceException SVC0001 (HTTP 500): a temporary
    /// error that costs the sender an attempt (counted with `transient_errors`).
    pub service_error_rate: f64,
    /// Share of accepted messages whose receipt is DeliveryImpossible.
    pub impossible_rate: f64,
    /// POST delivery receipts at all.
    pub send_receipts: bool,
    /// The gateway's SmsNotification endpoint for MO (notifySmsReception).
    pub notify_url: Option<String>,
    /// The gateway's MessageNotification endpoint for MO MMS (notifyMessageReception).
    pub mms_notify_url: Option<String>,
    /// Parlay X version of the documents the simulator sends.
    pub version: Version,
    /// How many recent messages GET /sim/messages keeps.
    pub keep_messages: usize,
    /// The credentials sent with every callback (receipts, MO), as the gateway's
    /// `[sdp.callbacks]` expects them; a secret path is part of the URLs.
    pub callbacks: CallbackCredentials,
    /// Deliver each receipt (synchronously) before answering its sendSms, as an SDP whose
    /// receipt overtakes its response does.
    pub receipt_before_response: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: "127.0.0.1:9090".into(),
            receipt_delay_ms: 50,
            transient_error_rate: 0.0,
            permanent_fault_rate: 0.0,
            service_error_rate: 0.0,
            impossible_rate: 0.0,
            send_receipts: true,
            notify_url: None,
            mms_notify_url: None,
            version: Version::V2_2,
            keep_messages: 10_000,
            callbacks: CallbackCredentials::default(),
            receipt_before_response: false,
        }
    }
}

pub(super) fn check_rate(errors: &mut Vec<String>, key: &str, v: f64) {
    if !(0.0..=1.0).contains(&v) {
        errors.push(format!("sim.{key}: must be between 0 and 1"));
    }
}

pub(super) const MAX_RECEIPT_DELAY_MS: u64 = 3_600_000;

pub(super) fn check_delay(errors: &mut Vec<String>, v: u64) {
    if v > MAX_RECEIPT_DELAY_MS {
        errors.push(format!(
            "sim.receipt_delay_ms: must be at most {MAX_RECEIPT_DELAY_MS} (one hour)"
        ));
    }
}

pub(super) fn check_url(errors: &mut Vec<String>, key: &str, url: &str) {
    if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
        errors.push(format!("sim.{key}: must be an http:// or https:// URL"));
    }
}

impl SimConfig {
    /// Problems with the settings, each naming its key; empty when valid.
    pub fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        match self.listen.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {}
            _ => errors.push("sim.listen: must be host:port, e.g. 127.0.0.1:9090".into()),
        }
        check_delay(&mut errors, self.receipt_delay_ms);
        check_rate(
            &mut errors,
            "transient_error_rate",
            self.transient_error_rate,
        );
        check_rate(
            &mut errors,
            "permanent_fault_rate",
            self.permanent_fault_rate,
        );
        check_rate(&mut errors, "impossible_rate", self.impossible_rate);
        check_rate(&mut errors, "service_error_rate", self.service_error_rate);
        if let Some(url) = &self.mms_notify_url {
            check_url(&mut errors, "mms_notify_url", url);
        }
        if let Some(url) = &self.notify_url {
            check_url(&mut errors, "notify_url", url);
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation() {
        assert!(SimConfig::default().validate().is_empty());
        let bad = SimConfig {
            listen: "nope".into(),
            transient_error_rate: 1.5,
            permanent_fault_rate: -0.1,
            impossible_rate: f64::NAN,
            notify_url: Some("ftp://x".into()),
            receipt_delay_ms: u64::MAX,
            ..SimConfig::default()
        };
        let errs = bad.validate();
        for key in [
            "sim.listen",
            "sim.transient_error_rate: must be between 0 and 1",
            "sim.permanent_fault_rate",
            "sim.impossible_rate",
            "sim.notify_url",
            "sim.receipt_delay_ms",
        ] {
            assert!(errs.iter().any(|e| e.starts_with(key)), "{key}: {errs:?}");
        }
        // Unknown keys are refused, missing keys defaulted.
        let parsed: SimConfig =
            serde_json::from_str(r#"{"receipt_delay_ms": 5, "version": "v2_1"}"#).unwrap();
        assert_eq!(parsed.receipt_delay_ms, 5);
        assert_eq!(parsed.version, Version::V2_1);
        assert_eq!(parsed.keep_messages, 10_000);
        assert!(serde_json::from_str::<SimConfig>(r#"{"bogus": 1}"#).is_err());
    }
}
