//! Where the directory comes from at start: the stored records, then the start-up file and
//! `[[directory.groups]]` put over them, checked like API changes.

use std::collections::BTreeMap;

use super::Snapshot;
use super::config::{DirectoryConfig, cycle_from};
use super::model::{Change, Group, JoinRequest, Member, Table, User};
use super::ops::{DirError, Plan};
use crate::address::Address;

impl Snapshot {
    /// Loads stored records (`(table, id, doc)`), skipping and naming those that no longer
    /// read.
    pub fn from_rows(rows: Vec<(Table, String, String)>) -> (Snapshot, Vec<String>) {
        let mut users = BTreeMap::new();
        let mut groups = BTreeMap::new();
        let mut requests = BTreeMap::new();
        let mut apps = super::AppBook::default();
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
                Table::Apps => serde_json::from_str::<super::App>(&d).map(|a| {
                    apps.apps.insert(id.clone(), a);
                }),
                Table::Installs => serde_json::from_str::<super::Install>(&d).map(|i| {
                    apps.installs.insert((i.user.clone(), i.app.clone()), i);
                }),
            };
            if let Err(e) = ok {
                bad.push(format!("{} {id:?}: {e}", table.as_str()));
            }
        }
        (
            Snapshot::build(users, groups, requests).with_apps(apps),
            bad,
        )
    }

    /// Puts the users and groups of the start-up file and of `[[directory.groups]]` into
    /// the directory (replacing records with the same ids), checked like API changes:
    /// users first, then groups in an order where inner groups come first.
    pub fn seed(&self, users: Vec<User>, groups: Vec<Group>) -> Result<Plan, DirError> {
        let mut snap = self.clone();
        let mut changes: Vec<Change> = Vec::new();
        // Friends may be listed before they are put (the file's users come in id order, and
        // friendships go both ways): such a user is put first with the friends known so far,
        // then again, whole, once every user of the file is in.
        let mut again = Vec::new();
        for u in users {
            let id = u.id.clone();
            let mut first = u.clone();
            first
                .friends
                .retain(|f| *f == id || snap.users.contains_key(f));
            if first.friends.len() != u.friends.len() {
                again.push(u);
            }
            let p = snap.put_user(&id, first, false).map_err(|e| DirError {
                message: format!("user {id:?}: {}", e.message),
                ..e
            })?;
            changes.extend(p.changes);
            snap = p.snap;
        }
        for u in again {
            let id = u.id.clone();
            let p = snap.put_user(&id, u, false).map_err(|e| DirError {
                message: format!("user {id:?}: {}", e.message),
                ..e
            })?;
            changes.retain(|c| !(c.table == Table::Users && c.id == id));
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
