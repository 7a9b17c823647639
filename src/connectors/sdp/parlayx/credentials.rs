//! The credentials an SDP sends with its callbacks: HTTP basic auth and the Huawei
//! `NotifySOAPHeader` (`spRevId`, `spRevpassword`, `timeStamp`). The gateway checks them
//! (`connectors::sdp::callbacks`); the simulator, like a genuine SDP, makes them.

use serde::{Deserialize, Serialize};

use super::NotifyHeader;

/// HTTP basic auth credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BasicAuth {
    pub user: String,
    pub password: String,
}

/// How `spRevpassword` is made from the shared password.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PasswordAlgorithm {
    /// MD5(id + password + timeStamp), hex in either case.
    #[default]
    Md5,
    /// MD5(id + password + timeStamp), upper-case hex only.
    Md5Upper,
    /// MD5(id + password + timeStamp), lower-case hex only.
    Md5Lower,
    /// The password itself.
    Plain,
}

/// Which header id goes into the MD5.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HashId {
    #[default]
    SpId,
    SpRevId,
}

/// `[sdp.callbacks.header]`: the `NotifySOAPHeader` check.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyHeaderAuth {
    /// The `spRevId` the SDP must send (empty: not compared).
    pub sp_rev_id: String,
    /// The `spId` the SDP must send (empty: not compared).
    pub sp_id: String,
    /// The shared password behind `spRevpassword`.
    pub password: String,
    pub algorithm: PasswordAlgorithm,
    /// The id hashed with the password (`sp_id` or `sp_rev_id`).
    pub hash_id: HashId,
    /// How far `timeStamp` (`yyyyMMddHHmmss`, local time) may be from now, in seconds;
    /// 0: not checked.
    pub window_secs: u64,
}

impl Default for NotifyHeaderAuth {
    fn default() -> Self {
        NotifyHeaderAuth {
            sp_rev_id: String::new(),
            sp_id: String::new(),
            password: String::new(),
            algorithm: PasswordAlgorithm::Md5,
            hash_id: HashId::SpId,
            window_secs: 300,
        }
    }
}

impl NotifyHeaderAuth {
    /// The header a genuine SDP would send now (the simulator's, and tests').
    pub fn make_header(&self, timestamp: &str) -> NotifyHeader {
        NotifyHeader {
            sp_rev_id: self.sp_rev_id.clone(),
            sp_rev_password: self.password_for(&self.sp_id, &self.sp_rev_id, timestamp),
            sp_id: self.sp_id.clone(),
            timestamp: timestamp.to_string(),
        }
    }

    pub(crate) fn password_for(&self, sp_id: &str, sp_rev_id: &str, timestamp: &str) -> String {
        let id = match self.hash_id {
            HashId::SpId => sp_id,
            HashId::SpRevId => sp_rev_id,
        };
        match self.algorithm {
            PasswordAlgorithm::Plain => self.password.clone(),
            PasswordAlgorithm::Md5 | PasswordAlgorithm::Md5Lower => {
                super::sp_password(id, &self.password, timestamp)
            }
            PasswordAlgorithm::Md5Upper => {
                super::sp_password(id, &self.password, timestamp).to_ascii_uppercase()
            }
        }
    }
}

/// The credentials a simulated SDP sends with its callbacks (`[simulator.callbacks]`);
/// the secret path is part of the URLs it is given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackCredentials {
    pub basic: Option<BasicAuth>,
    pub header: Option<NotifyHeaderAuth>,
}

impl CallbackCredentials {
    pub fn is_empty(&self) -> bool {
        self.basic.is_none() && self.header.is_none()
    }

    /// Adds the credentials to a callback: basic auth on the request, the
    /// NotifySOAPHeader into the envelope.
    pub fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.basic {
            Some(b) => req.basic_auth(&b.user, Some(&b.password)),
            None => req,
        }
    }

    /// `xml` with the NotifySOAPHeader inserted, when one is configured.
    pub fn sign_envelope(&self, xml: String) -> String {
        match &self.header {
            Some(h) => super::insert_notify_header(xml, &h.make_header(&super::timestamp_now())),
            None => xml,
        }
    }
}
