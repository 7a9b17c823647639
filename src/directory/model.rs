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

/// The tables the directory keeps in the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    Users,
    Groups,
    JoinRequests,
}

impl Table {
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Groups => "groups",
            Table::JoinRequests => "join_requests",
        }
    }

    pub fn parse(s: &str) -> Option<Table> {
        [Table::Users, Table::Groups, Table::JoinRequests]
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
