//! The `[directory]` section: the static parts of the user directory (opt-outs, groups).

use serde::{Deserialize, Serialize};

use crate::address::Address;

/// Static parts of the user directory.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectoryConfig {
    /// Recipients that opted out: messages to them fail with `opted_out`.
    pub opt_outs: Vec<String>,
    /// Most messages per second one origin may send (0: no limit).
    pub rate_per_origin: u32,
    /// Groups and their members.
    pub groups: Vec<GroupConfig>,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
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
        for (i, g) in self.groups.iter().enumerate() {
            if Address::parse_user(&format!("group:{}", g.name)).is_err() {
                e.push(format!(
                    "directory.groups[{i}].name: {:?} is not a group name",
                    g.name
                ));
            }
            for (j, m) in g.members.iter().enumerate() {
                match Address::parse_user(m) {
                    Ok(Address::Group(_)) => e.push(format!(
                        "directory.groups[{i}].members[{j}]: groups may not contain groups"
                    )),
                    Ok(_) => {}
                    Err(err) => e.push(format!("directory.groups[{i}].members[{j}]: {err}")),
                }
            }
        }
        e
    }
}
