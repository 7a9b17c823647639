//! The directory's records, as the admin API takes them and the store keeps them (one JSON
//! document per record).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::address::Address;

/// One person, known on several networks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    #[serde(default)]
    pub id: String,
    pub name: String,
    /// The person's addresses (`im:`, `mail:`, `sms:`); the first is where group
    /// messages and notices reach them.
    #[serde(with = "addresses")]
    pub addresses: Vec<Address>,
    /// User ids.
    #[serde(default)]
    pub friends: Vec<String>,
    /// Only friends (and the groups the user is in) may send to this user.
    #[serde(default)]
    pub friends_only: bool,
    /// The rest of the user's own business card (the name and addresses are above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<crate::cards::Profile>,
}

/// A member of a group: a person (a user, or an address with no user) or a whole group,
/// which joins as one member.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Member {
    User(String),
    Group(String),
    #[serde(with = "address")]
    Address(Address),
}

impl Member {
    pub fn kind(&self) -> &'static str {
        match self {
            Member::User(_) => "user",
            Member::Group(_) => "group",
            Member::Address(_) => "address",
        }
    }
}

/// A group and its direct members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    #[serde(default)]
    pub id: String,
    pub name: String,
    /// The user who made the group; told of join requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
    /// Users told of join requests, besides the creator.
    #[serde(default)]
    pub admins: Vec<String>,
    #[serde(default)]
    pub members: Vec<Member>,
    /// Most direct members (0: no limit).
    #[serde(default)]
    pub limit: u32,
}

/// Where a join request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinState {
    Pending,
    Approved,
    Refused,
}

/// A user, or a group (asked for by one of its admins, `by`), asking to join a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub id: String,
    pub group: String,
    pub member: Member,
    /// The user who asked (the user itself, or an admin of the joining group).
    pub by: String,
    pub state: JoinState,
    pub created_at: i64,
}

/// An entry of a user's address book (cards added to it): kept as the document given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookEntry {
    pub owner: String,
    pub id: String,
    pub entry: serde_json::Value,
}

/// A registered third-party app (the app platform's registry, kept beside the users).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
    /// The HMAC key of its pushes, pulls and reports. Never shown after it is made.
    #[serde(default)]
    pub secret: String,
    /// Where its delivery reports go and where it is pulled from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// `false` stops all its traffic at once.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// What it may push to: `user`, `friends`, `group`.
    #[serde(default = "user_only")]
    pub may_target: Vec<AppTarget>,
    /// Pushes per minute (its bucket holds a minute's worth).
    #[serde(default = "sixty")]
    pub rate_per_minute: u32,
    /// Whether its messages may go to phones (as the fallback text): each costs an SMS.
    #[serde(default)]
    pub phones: bool,
    /// Poll `callback_url` for pushes this often (signed GET); `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_every_secs: Option<u64>,
    /// The users who may install it; empty: everybody.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audience: Vec<String>,
    /// Most people one of its pushes reaches (never more than `[apps]
    /// max_recipients_per_push`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_recipients: Option<usize>,
    /// Most XML bytes of one of its messages (never more than `[apps] max_content_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_content_bytes: Option<usize>,
}

impl App {
    /// Its limit of people per push, under the platform's.
    pub fn recipient_limit(&self, platform: usize) -> usize {
        self.max_recipients.map_or(platform, |m| m.min(platform))
    }

    /// Its limit of content bytes, under the platform's.
    pub fn content_limit(&self, platform: usize) -> usize {
        self.max_content_bytes.map_or(platform, |m| m.min(platform))
    }
}

fn yes() -> bool {
    true
}
fn user_only() -> Vec<AppTarget> {
    vec![AppTarget::User]
}
fn sixty() -> u32 {
    60
}

/// What an app may push to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppTarget {
    User,
    Friends,
    Group,
}

/// An app on a user's app list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Install {
    pub user: String,
    pub app: String,
    pub installed_at: i64,
}

impl Install {
    /// Its record id in the store.
    pub fn key(user: &str, app: &str) -> String {
        format!("{user}/{app}")
    }
}

/// The tables the directory keeps in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    Users,
    Groups,
    JoinRequests,
    Apps,
    Installs,
}

impl Table {
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Groups => "groups",
            Table::JoinRequests => "join_requests",
            Table::Apps => "apps",
            Table::Installs => "installs",
        }
    }

    pub fn parse(s: &str) -> Option<Table> {
        [
            Table::Users,
            Table::Groups,
            Table::JoinRequests,
            Table::Apps,
            Table::Installs,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// One directory write: a record put (`doc`, JSON) or deleted (`None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub table: Table,
    pub id: String,
    pub doc: Option<String>,
}

mod address {
    use super::*;

    pub fn serialize<S: Serializer>(a: &Address, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&a.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Address, D::Error> {
        let s = String::deserialize(d)?;
        Address::parse_user(&s).map_err(serde::de::Error::custom)
    }
}

mod addresses {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[Address], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|a| a.to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Address>, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        v.iter()
            .map(|s| Address::parse_user(s).map_err(serde::de::Error::custom))
            .collect()
    }
}
