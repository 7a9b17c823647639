//! The Parlay X SMS namespaces, the SOAP content type and the interface version.

/// SOAP 1.1 envelope namespace.
pub const NS_SOAP: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// SOAP 1.2 envelope namespace (accepted when decoding only).
pub const NS_SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// Huawei SDP header namespace (`RequestSOAPHeader`, `NotifySOAPHeader`).
pub const NS_HUAWEI: &str = "http://www.huawei.com.cn/schema/common/v2_1";
/// Parlay X common types namespace (fault details, `SimpleReference`).
pub const NS_COMMON: &str = "http://www.csapi.org/schema/parlayx/common/v2_1";
/// SMS send local namespace, Parlay X 2.1.
pub const NS_SEND_V2_1: &str = "http://www.csapi.org/schema/parlayx/sms/send/v2_1/local";
/// SMS send local namespace, Parlay X 2.2.
pub const NS_SEND_V2_2: &str = "http://www.csapi.org/schema/parlayx/sms/send/v2_2/local";
/// SMS notification local namespace, Parlay X 2.1.
pub const NS_NOTIFICATION_V2_1: &str =
    "http://www.csapi.org/schema/parlayx/sms/notification/v2_1/local";
/// SMS notification local namespace, Parlay X 2.2.
pub const NS_NOTIFICATION_V2_2: &str =
    "http://www.csapi.org/schema/parlayx/sms/notification/v2_2/local";

/// HTTP `Content-Type` to send with every SOAP 1.1 document.
pub const CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// Parlay X SMS interface version; selects the local namespaces.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    /// `.../sms/{send,notification}/v2_1/local`
    V2_1,
    /// `.../sms/{send,notification}/v2_2/local`
    #[default]
    V2_2,
}

impl Version {
    /// Local namespace of the SendSms interface.
    pub fn send_ns(self) -> &'static str {
        match self {
            Version::V2_1 => NS_SEND_V2_1,
            Version::V2_2 => NS_SEND_V2_2,
        }
    }

    /// Local namespace of the SmsNotification interface.
    pub fn notification_ns(self) -> &'static str {
        match self {
            Version::V2_1 => NS_NOTIFICATION_V2_1,
            Version::V2_2 => NS_NOTIFICATION_V2_2,
        }
    }
}
