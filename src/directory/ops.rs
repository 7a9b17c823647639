//! Every change to the directory, decided against a snapshot: a change is checked whole
//! (unknown members, taken addresses, cycles, limits) and either refused with a stable code
//! or turned into a [`Plan`]: the records to write, the snapshot after them, and the notices
//! to send. Nothing here writes; the caller commits the plan's changes, then installs its
//! snapshot, with one change at a time.

use std::collections::{BTreeMap, HashSet};

use super::config::cycle_from;
use super::model::{Change, Group, JoinRequest, Member, Table, User};
use super::{Snapshot, binding_key};
use crate::address::Address;

/// Most addresses one user may have.
pub const MAX_ADDRESSES: usize = 16;
/// Most friends one user may have.
pub const MAX_FRIENDS: usize = 1000;
/// Most direct members of one group, whatever its `limit`.
pub const MAX_MEMBERS: usize = 10_000;
/// Longest display name, in characters.
pub const MAX_NAME: usize = 128;

/// Why a change was refused: a stable code and what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DirError {
    pub code: &'static str,
    pub message: String,
}

impl DirError {
    pub fn new(code: &'static str, message: impl Into<String>) -> DirError {
        DirError {
            code,
            message: message.into(),
        }
    }

    /// `404`-like: the record named is not there.
    pub fn is_not_found(&self) -> bool {
        self.code == "not_found"
    }

    /// `409`-like: the change conflicts with what is stored.
    pub fn is_conflict(&self) -> bool {
        matches!(self.code, "duplicate_id" | "in_use" | "already_decided")
    }
}

/// A message the directory wants sent, from a group to one party.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub group: String,
    pub to: Address,
    pub text: String,
}

/// A checked change: what to write, the snapshot once it is written, what to tell whom.
#[derive(Debug)]
pub struct Plan {
    pub changes: Vec<Change>,
    pub snap: Snapshot,
    pub notices: Vec<Notice>,
    /// The join request made or decided, if any.
    pub request: Option<JoinRequest>,
}

pub fn doc<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn check_id(what: &'static str, id: &str) -> Result<(), DirError> {
    if Address::parse_user(&format!("group:{id}")).is_err() {
        return Err(DirError::new(
            "invalid_id",
            format!("{what} id {id:?}: 1-64 letters, digits, '.', '_' or '-'"),
        ));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), DirError> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME || name.contains(['\r', '\n']) {
        return Err(DirError::new(
            "invalid_name",
            format!("name: one line of 1-{MAX_NAME} characters"),
        ));
    }
    Ok(())
}

impl Snapshot {
    fn with_user(&self, u: User) -> Snapshot {
        let mut users = self.users.clone();
        users.insert(u.id.clone(), u);
        self.rebuild(users, self.groups.clone(), self.requests.clone())
    }

    fn with_group(&self, g: Group) -> Snapshot {
        let mut groups = self.groups.clone();
        groups.insert(g.id.clone(), g);
        self.rebuild(self.users.clone(), groups, self.requests.clone())
    }

    /// Where a user is told things: their first address.
    pub(super) fn user_reach(&self, id: &str) -> Option<Address> {
        self.users
            .get(id)
            .and_then(|u| u.addresses.first().cloned())
    }

    /// The path back to `group` if its members were `members`.
    pub(super) fn cycle_with(&self, group: &str, members: &[Member]) -> Option<String> {
        let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for g in self.groups.values() {
            if g.id == group {
                continue;
            }
            for m in &g.members {
                if let Member::Group(inner) = m {
                    edges.entry(g.id.as_str()).or_default().push(inner.as_str());
                }
            }
        }
        for m in members {
            if let Member::Group(inner) = m {
                edges.entry(group).or_default().push(inner.as_str());
            }
        }
        cycle_from(&edges, group).map(|p| p.join(" → "))
    }

    /// The join requests but those `gone` picks, whose deletions are added to `changes`.
    fn requests_without(
        &self,
        changes: &mut Vec<Change>,
        gone: impl Fn(&JoinRequest) -> bool,
    ) -> BTreeMap<String, JoinRequest> {
        let mut requests = self.requests.clone();
        requests.retain(|rid, r| {
            if gone(r) {
                changes.push(Change {
                    table: Table::JoinRequests,
                    id: rid.clone(),
                    doc: None,
                });
                return false;
            }
            true
        });
        requests
    }

    /// Checks a group's member list.
    fn check_members(&self, group: &str, g: &Group) -> Result<(), DirError> {
        let mut seen = HashSet::new();
        for (i, m) in g.members.iter().enumerate() {
            match m {
                Member::User(id) if !self.users.contains_key(id) => {
                    return Err(DirError::new(
                        "unknown_member",
                        format!("members[{i}]: no user {id:?}"),
                    ));
                }
                Member::Group(id) if id == group => {
                    return Err(DirError::new(
                        "cycle",
                        format!("members[{i}]: a group may not contain itself"),
                    ));
                }
                Member::Group(id) if !self.groups.contains_key(id) => {
                    return Err(DirError::new(
                        "unknown_member",
                        format!("members[{i}]: no group {id:?}"),
                    ));
                }
                Member::Address(a)
                    if !matches!(a, Address::Sms(_) | Address::Mail(_) | Address::Im(_)) =>
                {
                    return Err(DirError::new(
                        "invalid_member",
                        format!("members[{i}]: {a} is neither a person nor a group"),
                    ));
                }
                _ => {}
            }
            let key = match m {
                Member::Address(a) => self.person_key(&Member::Address(binding_key(a))),
                m => self.person_key(m),
            };
            if !seen.insert(key) {
                return Err(DirError::new(
                    "duplicate_member",
                    format!("members[{i}]: listed twice"),
                ));
            }
        }
        let limit = effective_limit(g);
        if g.members.len() > limit {
            return Err(over_limit(limit));
        }
        if let Some(path) = self.cycle_with(group, &g.members) {
            return Err(DirError::new("cycle", format!("{path} would form a cycle")));
        }
        for (i, id) in g.creator.iter().chain(&g.admins).enumerate() {
            if !self.users.contains_key(id) {
                let field = if i == 0 && g.creator.is_some() {
                    "creator".to_string()
                } else {
                    format!("admins[{}]", i - usize::from(g.creator.is_some()))
                };
                return Err(DirError::new(
                    "unknown_user",
                    format!("{field}: no user {id:?}"),
                ));
            }
        }
        Ok(())
    }

    /// Adds or replaces a user. `create_only`: refused if the id is taken.
    pub fn put_user(&self, id: &str, mut u: User, create_only: bool) -> Result<Plan, DirError> {
        check_id("user", id)?;
        if !u.id.is_empty() && u.id != id {
            return Err(DirError::new(
                "id_mismatch",
                format!("id: {:?} differs from the path's {id:?}", u.id),
            ));
        }
        u.id = id.to_string();
        if create_only && self.users.contains_key(id) {
            return Err(DirError::new(
                "duplicate_id",
                format!("there is already a user {id:?}"),
            ));
        }
        check_name(&u.name)?;
        if u.card.is_some() {
            crate::cards::Card::of_user(&u)
                .validate(&crate::cards::CardsConfig::default())
                .map_err(|e| DirError::new("invalid_card", e.to_string()))?;
        }
        if u.addresses.is_empty() || u.addresses.len() > MAX_ADDRESSES {
            return Err(DirError::new(
                "invalid_addresses",
                format!("addresses: 1-{MAX_ADDRESSES} addresses"),
            ));
        }
        let mut seen = HashSet::new();
        for (i, a) in u.addresses.iter().enumerate() {
            if !matches!(a, Address::Sms(_) | Address::Mail(_) | Address::Im(_)) {
                return Err(DirError::new(
                    "invalid_address",
                    format!("addresses[{i}]: {a}: a user has sms:, mail: and im: addresses"),
                ));
            }
            if !seen.insert(binding_key(a)) {
                return Err(DirError::new(
                    "invalid_addresses",
                    format!("addresses[{i}]: {a} is listed twice"),
                ));
            }
            if let Some(other) = self.user_of(a).filter(|o| o.id != id) {
                return Err(DirError::new(
                    "address_taken",
                    format!("addresses[{i}]: {a} belongs to user {:?}", other.id),
                ));
            }
        }
        if u.friends.len() > MAX_FRIENDS {
            return Err(DirError::new(
                "too_many_friends",
                format!("friends: at most {MAX_FRIENDS}"),
            ));
        }
        for (i, f) in u.friends.iter().enumerate() {
            if !self.users.contains_key(f) && f != id {
                return Err(DirError::new(
                    "unknown_user",
                    format!("friends[{i}]: no user {f:?}"),
                ));
            }
        }
        let changes = vec![Change {
            table: Table::Users,
            id: id.to_string(),
            doc: Some(doc(&u)),
        }];
        Ok(Plan {
            changes,
            snap: self.with_user(u),
            notices: Vec::new(),
            request: None,
        })
    }

    /// Removes a user (also from friend lists and join requests). Refused while a group
    /// names the user as member, creator or admin.
    pub fn delete_user(&self, id: &str) -> Result<Plan, DirError> {
        if !self.users.contains_key(id) {
            return Err(DirError::new("not_found", format!("no user {id:?}")));
        }
        for g in self.groups.values() {
            let named = g.creator.as_deref() == Some(id)
                || g.admins.iter().any(|a| a == id)
                || g.members.contains(&Member::User(id.to_string()));
            if named {
                return Err(DirError::new(
                    "in_use",
                    format!("group {:?} names user {id:?}; change the group first", g.id),
                ));
            }
        }
        let mut users = self.users.clone();
        users.remove(id);
        let mut changes = vec![Change {
            table: Table::Users,
            id: id.to_string(),
            doc: None,
        }];
        for u in users.values_mut() {
            if u.friends.iter().any(|f| f == id) {
                u.friends.retain(|f| f != id);
                changes.push(Change {
                    table: Table::Users,
                    id: u.id.clone(),
                    doc: Some(doc(u)),
                });
            }
        }
        let requests = self.requests_without(&mut changes, |r| {
            r.by == id || r.member == Member::User(id.to_string())
        });
        // The user's app list goes with them.
        let mut apps = (*self.apps).clone();
        apps.installs.retain(|(user, app), _| {
            let keep = user != id;
            if !keep {
                changes.push(Change {
                    table: Table::Installs,
                    id: super::Install::key(user, app),
                    doc: None,
                });
            }
            keep
        });
        Ok(Plan {
            changes,
            snap: self
                .rebuild(users, self.groups.clone(), requests)
                .with_apps(apps),
            notices: Vec::new(),
            request: None,
        })
    }

    /// Adds or replaces a group. `create_only`: refused if the id is taken.
    pub fn put_group(&self, id: &str, mut g: Group, create_only: bool) -> Result<Plan, DirError> {
        check_id("group", id)?;
        if !g.id.is_empty() && g.id != id {
            return Err(DirError::new(
                "id_mismatch",
                format!("id: {:?} differs from the path's {id:?}", g.id),
            ));
        }
        g.id = id.to_string();
        if create_only && self.groups.contains_key(id) {
            return Err(DirError::new(
                "duplicate_id",
                format!("there is already a group {id:?}"),
            ));
        }
        check_name(&g.name)?;
        self.check_members(id, &g)?;
        let changes = vec![Change {
            table: Table::Groups,
            id: id.to_string(),
            doc: Some(doc(&g)),
        }];
        Ok(Plan {
            changes,
            snap: self.with_group(g),
            notices: Vec::new(),
            request: None,
        })
    }

    /// Removes a group and its join requests. Refused while another group has it as a
    /// member.
    pub fn delete_group(&self, id: &str) -> Result<Plan, DirError> {
        if !self.groups.contains_key(id) {
            return Err(DirError::new("not_found", format!("no group {id:?}")));
        }
        if let Some(outer) = self
            .groups
            .values()
            .find(|g| g.members.contains(&Member::Group(id.to_string())))
        {
            return Err(DirError::new(
                "in_use",
                format!(
                    "group {:?} has {id:?} as a member; change it first",
                    outer.id
                ),
            ));
        }
        let mut groups = self.groups.clone();
        groups.remove(id);
        let mut changes = vec![Change {
            table: Table::Groups,
            id: id.to_string(),
            doc: None,
        }];
        let requests = self.requests_without(&mut changes, |r| {
            r.group == id || r.member == Member::Group(id.to_string())
        });
        Ok(Plan {
            changes,
            snap: self.rebuild(self.users.clone(), groups, requests),
            notices: Vec::new(),
            request: None,
        })
    }
}

pub(super) fn effective_limit(g: &Group) -> usize {
    match g.limit {
        0 => MAX_MEMBERS,
        n => (n as usize).min(MAX_MEMBERS),
    }
}

pub(super) fn over_limit(limit: usize) -> DirError {
    DirError::new(
        "over_limit",
        format!("the group holds at most {limit} members"),
    )
}

pub(super) fn name_of(m: &Member) -> String {
    match m {
        Member::User(s) | Member::Group(s) => s.clone(),
        Member::Address(a) => a.to_string(),
    }
}
