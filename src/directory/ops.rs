//! Every change to the directory, decided against a snapshot: a change is checked whole
//! (unknown members, taken addresses, cycles, limits) and either refused with a stable code
//! or turned into a [`Plan`]: the records to write, the snapshot after them, and the notices
//! to send. Nothing here writes; the caller commits the plan's changes, then installs its
//! snapshot, with one change at a time.

use std::collections::{BTreeMap, HashSet};

use super::config::{DirectoryConfig, cycle_from};
use super::model::{Change, Group, JoinRequest, JoinState, Member, Table, User};
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
    fn new(code: &'static str, message: impl Into<String>) -> DirError {
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

fn doc<T: serde::Serialize>(v: &T) -> String {
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
        Snapshot::build(users, self.groups.clone(), self.requests.clone())
    }

    fn with_group(&self, g: Group) -> Snapshot {
        let mut groups = self.groups.clone();
        groups.insert(g.id.clone(), g);
        Snapshot::build(self.users.clone(), groups, self.requests.clone())
    }

    /// Where a user is told things: their first address.
    fn user_reach(&self, id: &str) -> Option<Address> {
        self.users
            .get(id)
            .and_then(|u| u.addresses.first().cloned())
    }

    /// The path back to `group` if its members were `members`.
    fn cycle_with(&self, group: &str, members: &[Member]) -> Option<String> {
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
        Ok(Plan {
            changes,
            snap: Snapshot::build(users, self.groups.clone(), requests),
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
            snap: Snapshot::build(self.users.clone(), groups, requests),
            notices: Vec::new(),
            request: None,
        })
    }

    /// A join request (`rid`, new) for `member` to join `group`, asked by user `by`: the
    /// user itself, or for a group one of that group's creator or admins. Refused when the
    /// group is full (the requester is told the limit), the member is already in, or a
    /// group joining would form a cycle. The group's creator and admins are told.
    pub fn request_join(
        &self,
        group: &str,
        member: Member,
        by: &str,
        rid: &str,
        now: i64,
    ) -> Result<Plan, DirError> {
        let g = self
            .groups
            .get(group)
            .ok_or_else(|| DirError::new("not_found", format!("no group {group:?}")))?;
        if !self.users.contains_key(by) {
            return Err(DirError::new("unknown_user", format!("by: no user {by:?}")));
        }
        match &member {
            Member::User(u) if u != by => {
                return Err(DirError::new(
                    "not_allowed",
                    format!("user {by:?} may not ask for user {u:?}"),
                ));
            }
            Member::User(_) => {}
            Member::Group(inner) => {
                let ig = self.groups.get(inner).ok_or_else(|| {
                    DirError::new("unknown_member", format!("group: no group {inner:?}"))
                })?;
                if ig.creator.as_deref() != Some(by) && !ig.admins.iter().any(|a| a == by) {
                    return Err(DirError::new(
                        "not_an_admin",
                        format!("user {by:?} is neither creator nor admin of group {inner:?}"),
                    ));
                }
                if inner == group {
                    return Err(DirError::new("cycle", "a group may not join itself"));
                }
                let mut members = g.members.clone();
                members.push(member.clone());
                if let Some(path) = self.cycle_with(group, &members) {
                    return Err(DirError::new("cycle", format!("{path} would form a cycle")));
                }
            }
            Member::Address(_) => {
                return Err(DirError::new(
                    "invalid_member",
                    "a join request is for a user or a group",
                ));
            }
        }
        // Already in: directly, or (a user) through one of their addresses or a nested group.
        let inside = g.members.contains(&member)
            || match &member {
                Member::User(u) => self
                    .users
                    .get(u)
                    .and_then(|u| u.addresses.first())
                    .is_some_and(|a| self.is_member(group, a)),
                _ => false,
            };
        if inside {
            return Err(DirError::new(
                "already_member",
                format!(
                    "{} {:?} is already in group {group:?}",
                    member.kind(),
                    name_of(&member)
                ),
            ));
        }
        if let Some(open) = self
            .requests
            .values()
            .find(|r| r.group == group && r.member == member && r.state == JoinState::Pending)
        {
            return Err(DirError::new(
                "already_requested",
                format!("request {} for this is still pending", open.id),
            ));
        }
        let limit = effective_limit(g);
        if g.members.len() >= limit {
            return Err(over_limit(limit));
        }
        let req = JoinRequest {
            id: rid.to_string(),
            group: group.to_string(),
            member: member.clone(),
            by: by.to_string(),
            state: JoinState::Pending,
            created_at: now,
        };
        let who = match &member {
            Member::Group(inner) => format!(
                "{} asks for group {} to join {} (request {rid})",
                self.users[by].name, self.groups[inner].name, g.name
            ),
            _ => format!(
                "{} asks to join {} (request {rid})",
                self.users[by].name, g.name
            ),
        };
        let mut told = HashSet::new();
        let notices = g
            .creator
            .iter()
            .chain(&g.admins)
            .filter(|id| told.insert(id.as_str()))
            .filter_map(|id| self.user_reach(id))
            .map(|to| Notice {
                group: group.to_string(),
                to,
                text: who.clone(),
            })
            .collect();
        let mut requests = self.requests.clone();
        requests.insert(rid.to_string(), req.clone());
        Ok(Plan {
            changes: vec![Change {
                table: Table::JoinRequests,
                id: rid.to_string(),
                doc: Some(doc(&req)),
            }],
            snap: Snapshot::build(self.users.clone(), self.groups.clone(), requests),
            notices,
            request: Some(req),
        })
    }

    /// Approves or refuses a pending join request. The requester is told either way; an
    /// approved member is added (the limit and cycles checked again), and when a group
    /// joins, every person inside it is told.
    pub fn decide(&self, group: &str, rid: &str, approve: bool) -> Result<Plan, DirError> {
        let req = self
            .requests
            .get(rid)
            .filter(|r| r.group == group)
            .ok_or_else(|| {
                DirError::new(
                    "not_found",
                    format!("no request {rid:?} for group {group:?}"),
                )
            })?;
        if req.state != JoinState::Pending {
            return Err(DirError::new(
                "already_decided",
                format!("request {rid:?} was already decided"),
            ));
        }
        let g = self
            .groups
            .get(group)
            .ok_or_else(|| DirError::new("not_found", format!("no group {group:?}")))?;
        let mut req = req.clone();
        let mut notices = Vec::new();
        let mut changes = Vec::new();
        let mut groups = self.groups.clone();
        let requester = self.user_reach(&req.by);
        if approve {
            if g.members.contains(&req.member) {
                return Err(DirError::new(
                    "already_member",
                    format!(
                        "{} {:?} is already in group {group:?}",
                        req.member.kind(),
                        name_of(&req.member)
                    ),
                ));
            }
            let mut ng = g.clone();
            ng.members.push(req.member.clone());
            let limit = effective_limit(&ng);
            if ng.members.len() > limit {
                return Err(over_limit(limit));
            }
            if let Some(path) = self.cycle_with(group, &ng.members) {
                return Err(DirError::new("cycle", format!("{path} would form a cycle")));
            }
            req.state = JoinState::Approved;
            changes.push(Change {
                table: Table::Groups,
                id: group.to_string(),
                doc: Some(doc(&ng)),
            });
            groups.insert(group.to_string(), ng);
            if let Some(to) = requester {
                notices.push(Notice {
                    group: group.to_string(),
                    to,
                    text: format!("Your request {rid} to join {} was approved.", g.name),
                });
            }
            if let Member::Group(inner) = &req.member {
                let inner_name = self
                    .groups
                    .get(inner)
                    .map(|g| g.name.clone())
                    .unwrap_or_default();
                for m in self.people(inner) {
                    if let Some(to) = self.reach(&m)
                        && !notices.iter().any(|n| n.to == to)
                    {
                        notices.push(Notice {
                            group: group.to_string(),
                            to,
                            text: format!("Your group {inner_name} has joined {}.", g.name),
                        });
                    }
                }
            }
        } else {
            req.state = JoinState::Refused;
            if let Some(to) = requester {
                notices.push(Notice {
                    group: group.to_string(),
                    to,
                    text: format!("Your request {rid} to join {} was refused.", g.name),
                });
            }
        }
        changes.push(Change {
            table: Table::JoinRequests,
            id: rid.to_string(),
            doc: Some(doc(&req)),
        });
        let mut requests = self.requests.clone();
        requests.insert(rid.to_string(), req.clone());
        Ok(Plan {
            changes,
            snap: Snapshot::build(self.users.clone(), groups, requests),
            notices,
            request: Some(req),
        })
    }

    /// Loads stored records (`(table, id, doc)`), skipping and naming those that no longer
    /// read.
    pub fn from_rows(rows: Vec<(Table, String, String)>) -> (Snapshot, Vec<String>) {
        let mut users = BTreeMap::new();
        let mut groups = BTreeMap::new();
        let mut requests = BTreeMap::new();
        let mut bad = Vec::new();
        for (table, id, d) in rows {
            let ok = match table {
                Table::Users => serde_json::from_str::<User>(&d).map(|u| {
                    users.insert(id.clone(), u);
                }),
                Table::Groups => serde_json::from_str::<Group>(&d).map(|g| {
                    groups.insert(id.clone(), g);
                }),
                Table::JoinRequests => serde_json::from_str::<JoinRequest>(&d).map(|r| {
                    requests.insert(id.clone(), r);
                }),
            };
            if let Err(e) = ok {
                bad.push(format!("{} {id:?}: {e}", table.as_str()));
            }
        }
        (Snapshot::build(users, groups, requests), bad)
    }

    /// Puts the users and groups of the start-up file and of `[[directory.groups]]` into
    /// the directory (replacing records with the same ids), checked like API changes:
    /// users first, then groups in an order where inner groups come first.
    pub fn seed(&self, users: Vec<User>, groups: Vec<Group>) -> Result<Plan, DirError> {
        let mut snap = self.clone();
        let mut changes = Vec::new();
        for u in users {
            let id = u.id.clone();
            let p = snap.put_user(&id, u, false).map_err(|e| DirError {
                message: format!("user {id:?}: {}", e.message),
                ..e
            })?;
            changes.extend(p.changes);
            snap = p.snap;
        }
        let mut pending = groups;
        while !pending.is_empty() {
            let before = pending.len();
            let mut next = Vec::new();
            let mut last_err = None;
            for g in pending {
                let id = g.id.clone();
                match snap.put_group(&id, g.clone(), false) {
                    Ok(p) => {
                        changes.extend(p.changes);
                        snap = p.snap;
                    }
                    Err(e) => {
                        last_err = Some(DirError {
                            message: format!("group {id:?}: {}", e.message),
                            ..e
                        });
                        next.push(g);
                    }
                }
            }
            if next.len() == before {
                // Groups that wait on each other form a cycle: say so, with its path.
                let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                for g in &next {
                    for m in &g.members {
                        if let Member::Group(inner) = m {
                            edges.entry(g.id.as_str()).or_default().push(inner.as_str());
                        }
                    }
                }
                if let Some(path) = next.iter().find_map(|g| cycle_from(&edges, &g.id)) {
                    return Err(DirError::new(
                        "cycle",
                        format!("groups {} would form a cycle", path.join(" → ")),
                    ));
                }
                return Err(last_err.unwrap_or_else(|| DirError::new("invalid", "groups")));
            }
            pending = next;
        }
        Ok(Plan {
            changes,
            snap,
            notices: Vec::new(),
            request: None,
        })
    }
}

fn effective_limit(g: &Group) -> usize {
    match g.limit {
        0 => MAX_MEMBERS,
        n => (n as usize).min(MAX_MEMBERS),
    }
}

fn over_limit(limit: usize) -> DirError {
    DirError::new(
        "over_limit",
        format!("the group holds at most {limit} members"),
    )
}

fn name_of(m: &Member) -> String {
    match m {
        Member::User(s) | Member::Group(s) => s.clone(),
        Member::Address(a) => a.to_string(),
    }
}

/// The groups of `[[directory.groups]]` as directory records (unparsable members left out;
/// `check-config` names them).
pub fn config_groups(cfg: &DirectoryConfig) -> Vec<Group> {
    cfg.groups
        .iter()
        .map(|g| Group {
            id: g.name.clone(),
            name: g.name.clone(),
            creator: None,
            admins: Vec::new(),
            members: g
                .members
                .iter()
                .filter_map(|m| match Address::parse_user(m).ok()? {
                    Address::Group(inner) => Some(Member::Group(inner)),
                    a @ (Address::Sms(_) | Address::Mail(_) | Address::Im(_)) => {
                        Some(Member::Address(a))
                    }
                    _ => None,
                })
                .collect(),
            limit: 0,
        })
        .collect()
}

/// The start-up file: `{"users": {id: user}, "groups": {id: group}}`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SeedFile {
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, Group>,
}

impl SeedFile {
    /// The file's records, with their ids from the keys.
    pub fn records(self) -> (Vec<User>, Vec<Group>) {
        (
            self.users
                .into_iter()
                .map(|(id, mut u)| {
                    u.id = id;
                    u
                })
                .collect(),
            self.groups
                .into_iter()
                .map(|(id, mut g)| {
                    g.id = id;
                    g
                })
                .collect(),
        )
    }
}
