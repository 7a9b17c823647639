//! Join requests: a user or a whole group asking to join a group, and the creator's or an
//! admin's answer; decided against a snapshot like every other change ([`super::ops`]).

use std::collections::HashSet;

use super::Snapshot;
use super::model::{Change, JoinRequest, JoinState, Member, Table};
use super::ops::{DirError, Notice, Plan, doc, effective_limit, name_of, over_limit};

impl Snapshot {
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
            snap: self.rebuild(self.users.clone(), self.groups.clone(), requests),
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
            snap: self.rebuild(self.users.clone(), groups, requests),
            notices,
            request: Some(req),
        })
    }
}
