//! The `[directory]` section: opt-outs, who may send in at each door, the groups kept in
//! the config, and the optional file of users and groups loaded at start.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::address::Address;
use crate::config::spelled;

spelled! {
    /// Who may send in through a door: anybody, or only addresses bound to a user.
    SenderPolicy {
        Any = "any",
        Known = "known",
    }
}

/// The directory's config.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Recipients that opted out: messages to them fail with `opted_out`.
    pub opt_outs: Vec<String>,
    /// Most messages per second one origin may send (0: no limit).
    pub rate_per_origin: u32,
    /// XMPP senders: `known` (bound to a user; the default) or `any`.
    pub im_senders: SenderPolicy,
    /// Mail senders: `any` (the default) or `known`.
    pub mail_senders: SenderPolicy,
    /// Phones sending MO: `any` (the default) or `known`.
    pub mo_senders: SenderPolicy,
    /// The networks anybody may be reached on; on the others only users' addresses.
    pub open_networks: Vec<String>,
    /// Users and groups (JSON: `{"users": {id: user}, "groups": {id: group}}`) put into the
    /// directory at start, for trials.
    pub file: Option<PathBuf>,
    /// Groups kept in the config, put into the directory at start.
    pub groups: Vec<GroupConfig>,
}

impl Default for DirectoryConfig {
    fn default() -> Self {
        DirectoryConfig {
            opt_outs: Vec::new(),
            rate_per_origin: 0,
            im_senders: SenderPolicy::Known,
            mail_senders: SenderPolicy::Any,
            mo_senders: SenderPolicy::Any,
            open_networks: vec!["sms".into(), "mail".into(), "im".into()],
            file: None,
            groups: Vec::new(),
        }
    }
}

/// `[[directory.groups]]`: a group of addresses and other groups.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    /// The group's id (`group:<name>`), also the name shown to others.
    pub name: String,
    /// Addresses (`sms:…`, `mail:…`, `im:…`) and groups (`group:…`).
    pub members: Vec<String>,
}

impl DirectoryConfig {
    /// Problems with `directory.…`.
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        for (i, a) in self.opt_outs.iter().enumerate() {
            if Address::parse_user(a).is_err() {
                e.push(format!("directory.opt_outs[{i}]: {a:?} is not an address"));
            }
        }
        for (key, p) in [
            ("im_senders", &self.im_senders),
            ("mail_senders", &self.mail_senders),
            ("mo_senders", &self.mo_senders),
        ] {
            if let SenderPolicy::Other(w) = p {
                e.push(format!(
                    "directory.{key}: {w:?} is neither \"any\" nor \"known\""
                ));
            }
        }
        for (i, n) in self.open_networks.iter().enumerate() {
            if !matches!(n.as_str(), "sms" | "mail" | "im") {
                e.push(format!(
                    "directory.open_networks[{i}]: {n:?} is not sms, mail or im"
                ));
            }
        }
        let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (i, g) in self.groups.iter().enumerate() {
            if Address::parse_user(&format!("group:{}", g.name)).is_err() {
                e.push(format!(
                    "directory.groups[{i}].name: {:?} is not a group name",
                    g.name
                ));
            }
            for (j, m) in g.members.iter().enumerate() {
                match Address::parse_user(m) {
                    Ok(Address::Group(inner)) => {
                        if !self.groups.iter().any(|o| o.name == inner) {
                            e.push(format!(
                                "directory.groups[{i}].members[{j}]: no group {inner:?} in the config"
                            ));
                        }
                        edges
                            .entry(g.name.as_str())
                            .or_default()
                            .push(m.trim_start_matches("group:"));
                    }
                    Ok(Address::App(_)) | Ok(Address::Url(_)) => e.push(format!(
                        "directory.groups[{i}].members[{j}]: {m:?} is neither a person's address nor a group"
                    )),
                    Ok(_) => {}
                    Err(err) => e.push(format!("directory.groups[{i}].members[{j}]: {err}")),
                }
            }
        }
        if let Err(err) = self.check_file() {
            e.push(err);
        }
        for g in &self.groups {
            if let Some(path) = cycle_from(&edges, &g.name) {
                e.push(format!(
                    "directory.groups: {} would form a cycle (a group may not contain itself)",
                    path.join(" → ")
                ));
                break;
            }
        }
        e
    }
}

impl DirectoryConfig {
    /// `directory.file` reads, and its users and groups (with `[[directory.groups]]`) go
    /// into an empty directory: unknown members, taken addresses and cycles are named.
    fn check_file(&self) -> Result<(), String> {
        if self.file.is_none() {
            return Ok(());
        }
        let (users, groups) = super::Directory::seed_records(self)?;
        super::Snapshot::default()
            .seed(users, groups)
            .map(|_| ())
            .map_err(|e| format!("directory.file: {}", e.message))
    }
}

/// A path of group ids from `start` back to itself, if there is one.
pub(crate) fn cycle_from<'a>(
    edges: &BTreeMap<&'a str, Vec<&'a str>>,
    start: &'a str,
) -> Option<Vec<&'a str>> {
    fn dfs<'a>(
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        start: &'a str,
        at: &'a str,
        path: &mut Vec<&'a str>,
        seen: &mut std::collections::HashSet<&'a str>,
    ) -> bool {
        for &next in edges.get(at).map(Vec::as_slice).unwrap_or(&[]) {
            if next == start {
                path.push(next);
                return true;
            }
            if seen.insert(next) {
                path.push(next);
                if dfs(edges, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start];
    let mut seen = std::collections::HashSet::new();
    dfs(edges, start, start, &mut path, &mut seen).then_some(path)
}
