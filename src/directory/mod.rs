//! The directory: who the gateway knows. Today: groups (expanded into their members when a
//! message is received) and opt-outs (recipients that accept no messages). The one place
//! that grows into users, group identities and apps.
//!
//! Imports only the address model and its own config.

pub mod config;

use std::collections::{HashMap, HashSet};

use crate::address::Address;
use config::DirectoryConfig;

/// Groups and opt-outs, read from `[directory]` at start.
pub struct Directory {
    /// Each group's members, in the order configured (unparsable members left out).
    groups: HashMap<String, Vec<Address>>,
    opt_outs: HashSet<Address>,
}

/// A recipient named a group the directory does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no group {name:?}")]
pub struct UnknownGroup {
    /// Its place among the recipients given.
    pub index: usize,
    pub name: String,
}

impl Directory {
    pub fn new(cfg: &DirectoryConfig) -> Directory {
        Directory {
            groups: cfg
                .groups
                .iter()
                .map(|g| {
                    let members = g
                        .members
                        .iter()
                        .filter_map(|m| Address::parse_user(m).ok())
                        .collect();
                    (g.name.clone(), members)
                })
                .collect(),
            opt_outs: cfg
                .opt_outs
                .iter()
                .filter_map(|a| Address::parse_user(a).ok())
                .collect(),
        }
    }

    pub fn has_group(&self, name: &str) -> bool {
        self.groups.contains_key(name)
    }

    /// The recipients `to` stands for: each group replaced by its members, in order, every
    /// address once (its first place wins). Each comes with the index in `to` it came from.
    /// Groups are expanded when a message is received, before it is stored, so a later
    /// change of a group does not alter accepted work.
    pub fn expand(&self, to: &[Address]) -> Result<Vec<(Address, usize)>, UnknownGroup> {
        let mut out: Vec<(Address, usize)> = Vec::with_capacity(to.len());
        let push = |a: &Address, i: usize, out: &mut Vec<(Address, usize)>| {
            if !out.iter().any(|(b, _)| b == a) {
                out.push((a.clone(), i));
            }
        };
        for (i, a) in to.iter().enumerate() {
            match a {
                Address::Group(name) => {
                    let members = self.groups.get(name).ok_or_else(|| UnknownGroup {
                        index: i,
                        name: name.clone(),
                    })?;
                    for m in members {
                        push(m, i, &mut out);
                    }
                }
                a => push(a, i, &mut out),
            }
        }
        Ok(out)
    }

    /// The recipient accepts no messages from this gateway.
    pub fn opted_out(&self, a: &Address) -> bool {
        self.opt_outs.contains(a)
    }
}

#[cfg(test)]
mod tests {
    use super::config::GroupConfig;
    use super::*;

    fn dir() -> Directory {
        Directory::new(&DirectoryConfig {
            opt_outs: vec!["sms:+8613800000009".into()],
            groups: vec![GroupConfig {
                name: "team".into(),
                members: vec![
                    "sms:+8613800000001".into(),
                    "mail:bob@example.org".into(),
                    "not an address".into(),
                ],
            }],
            ..DirectoryConfig::default()
        })
    }

    #[test]
    fn groups_expand_in_order_each_address_once() {
        let d = dir();
        let to = vec![
            Address::Mail("bob@example.org".into()),
            Address::Group("team".into()),
            Address::Sms("+8613800000001".into()),
        ];
        let got = d.expand(&to).unwrap();
        assert_eq!(
            got,
            vec![
                (Address::Mail("bob@example.org".into()), 0),
                (Address::Sms("+8613800000001".into()), 1),
            ]
        );
        assert!(d.has_group("team"));
        assert!(!d.has_group("other"));
    }

    #[test]
    fn an_unknown_group_is_named_with_its_place() {
        let to = vec![
            Address::Sms("+8613800000001".into()),
            Address::Group("nobody".into()),
        ];
        assert_eq!(
            dir().expand(&to),
            Err(UnknownGroup {
                index: 1,
                name: "nobody".into()
            })
        );
    }

    #[test]
    fn opt_outs_are_read_as_addresses() {
        let d = dir();
        assert!(d.opted_out(&Address::Sms("+8613800000009".into())));
        assert!(!d.opted_out(&Address::Sms("+8613800000001".into())));
    }
}
