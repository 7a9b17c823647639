//! The directory: who the gateway knows. Users (one person, addresses on several
//! networks, friends), groups (whose members are people or whole groups), join requests,
//! and opt-outs. Every connector asks it the same questions: who sent this, may they speak
//! for that group, who is inside a group, may this sender reach that recipient.
//!
//! The records live in the store (see [`model::Change`]); this module holds the snapshot
//! the stages read, and decides every change ([`ops`]) before the caller commits it and
//! installs the new snapshot. Imports only the address model and its own config.

pub mod config;
mod join;
pub mod model;
pub mod ops;
pub mod seed;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use crate::address::Address;
use config::{DirectoryConfig, SenderPolicy};
pub use model::{
    App, AppTarget, BookEntry, Change, Group, Install, JoinRequest, JoinState, Member, Table, User,
};
pub use ops::DirError;

/// The directory as the stages read it: swapped whole after each committed change.
pub struct Directory {
    snap: RwLock<Arc<Snapshot>>,
    opt_outs: HashSet<Address>,
    policy: Policy,
    /// Networks anybody may be reached on (`sms`, `mail`, `im`).
    open: HashSet<String>,
}

/// Who may send in, by the door they came through (`[directory]`).
#[derive(Clone, Debug)]
struct Policy {
    im: SenderPolicy,
    mail: SenderPolicy,
    sms: SenderPolicy,
}

/// The door a message came in through: the sender check depends on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Door {
    /// An API client: its token and sender patterns already said who it may send as.
    Api,
    /// The XMPP component link: the IM server's users.
    Xmpp,
    /// The SMTP server: anybody's mail to the gateway's domains.
    Smtp,
    /// The SDP: phones.
    Sdp,
    /// The gateway itself (notices, reports).
    Gateway,
}

/// One consistent view of users, groups and join requests.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, Group>,
    pub requests: BTreeMap<String, JoinRequest>,
    /// The app platform's registry and the users' app lists.
    pub apps: Arc<AppBook>,
    /// Address → the user it is bound to (IM addresses bare).
    bindings: HashMap<Address, String>,
}

/// Registered apps and who installed which.
#[derive(Clone, Debug, Default)]
pub struct AppBook {
    pub apps: BTreeMap<String, App>,
    /// By `(user, app)`.
    pub installs: BTreeMap<(String, String), Install>,
}

impl AppBook {
    pub fn installed(&self, user: &str, app: &str) -> bool {
        self.installs
            .contains_key(&(user.to_string(), app.to_string()))
    }

    /// A user's app list, in appid order.
    pub fn installs_of<'a>(&'a self, user: &'a str) -> impl Iterator<Item = &'a Install> + 'a {
        self.installs
            .range((user.to_string(), String::new())..)
            .take_while(move |((u, _), _)| u == user)
            .map(|(_, i)| i)
    }
}

/// A recipient named a group the directory does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no group {name:?}")]
pub struct UnknownGroup {
    /// Its place among the recipients given.
    pub index: usize,
    pub name: String,
}

/// Why a sender was refused at the door.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SenderRefused {
    #[error("{0} is not in the directory")]
    Unknown(Address),
    #[error("{who} is not a member of group {group:?}")]
    NotAMember { who: Address, group: String },
    #[error("no group {0:?}")]
    UnknownGroup(String),
}

impl SenderRefused {
    /// The stable code (API error code, metric reason).
    pub fn code(&self) -> &'static str {
        match self {
            SenderRefused::Unknown(_) => "unknown_sender",
            SenderRefused::NotAMember { .. } => "not_a_member",
            SenderRefused::UnknownGroup(_) => "unknown_group",
        }
    }
}

/// The key an address is bound by: IM addresses without their resource.
pub fn binding_key(a: &Address) -> Address {
    match a {
        Address::Im(jid) => Address::Im(jid.split('/').next().unwrap_or(jid).to_string()),
        a => a.clone(),
    }
}

impl Snapshot {
    pub(crate) fn build(
        users: BTreeMap<String, User>,
        groups: BTreeMap<String, Group>,
        requests: BTreeMap<String, JoinRequest>,
    ) -> Snapshot {
        let bindings = users
            .values()
            .flat_map(|u| u.addresses.iter().map(|a| (binding_key(a), u.id.clone())))
            .collect();
        Snapshot {
            users,
            groups,
            requests,
            apps: Arc::default(),
            bindings,
        }
    }

    /// [`Snapshot::build`], keeping this snapshot's apps.
    pub(crate) fn rebuild(
        &self,
        users: BTreeMap<String, User>,
        groups: BTreeMap<String, Group>,
        requests: BTreeMap<String, JoinRequest>,
    ) -> Snapshot {
        Snapshot {
            apps: self.apps.clone(),
            ..Snapshot::build(users, groups, requests)
        }
    }

    /// This snapshot with other apps and app lists.
    pub(crate) fn with_apps(&self, apps: AppBook) -> Snapshot {
        Snapshot {
            apps: Arc::new(apps),
            ..self.clone()
        }
    }

    /// The user an address is bound to.
    pub fn user_of(&self, a: &Address) -> Option<&User> {
        self.bindings
            .get(&binding_key(a))
            .and_then(|id| self.users.get(id))
    }

    /// Where a member is reached: a user at their first address.
    pub fn reach(&self, m: &Member) -> Option<Address> {
        match m {
            Member::User(id) => self.users.get(id)?.addresses.first().cloned(),
            Member::Address(a) => Some(a.clone()),
            Member::Group(_) => None,
        }
    }

    /// The people inside `group`, through nested groups, each once, in order; a group met
    /// twice on one path (a cycle) is not entered again.
    pub fn people(&self, group: &str) -> Vec<Member> {
        let mut out = Vec::new();
        let mut seen_people = HashSet::new();
        let mut seen_groups = HashSet::new();
        self.walk(group, &mut seen_groups, &mut seen_people, &mut out);
        out
    }

    fn walk(
        &self,
        group: &str,
        seen_groups: &mut HashSet<String>,
        seen_people: &mut HashSet<String>,
        out: &mut Vec<Member>,
    ) {
        if !seen_groups.insert(group.to_string()) {
            metrics::counter!("switchboard_directory_cycles_skipped_total").increment(1);
            return;
        }
        let Some(g) = self.groups.get(group) else {
            return;
        };
        for m in &g.members {
            match m {
                Member::Group(inner) => self.walk(inner, seen_groups, seen_people, out),
                person => {
                    if seen_people.insert(self.person_key(person)) {
                        out.push(person.clone());
                    }
                }
            }
        }
    }

    /// One key per person: the user id, or the address of a person with no user.
    fn person_key(&self, m: &Member) -> String {
        match m {
            Member::User(id) => format!("u:{id}"),
            Member::Address(a) => match self.user_of(a) {
                Some(u) => format!("u:{}", u.id),
                None => format!("a:{}", binding_key(a)),
            },
            Member::Group(g) => format!("g:{g}"),
        }
    }

    fn person_of(&self, a: &Address) -> String {
        match self.user_of(a) {
            Some(u) => format!("u:{}", u.id),
            None => format!("a:{}", binding_key(a)),
        }
    }

    /// Whether the person at `a` is inside `group` (directly or through nested groups).
    pub fn is_member(&self, group: &str, a: &Address) -> bool {
        let me = self.person_of(a);
        self.people(group).iter().any(|m| self.person_key(m) == me)
    }

    /// How a party is named to others: a user's name, else its address.
    pub fn display_name(&self, a: &Address) -> String {
        match (a, self.user_of(a)) {
            (_, Some(u)) => u.name.clone(),
            (Address::Group(g), None) => self
                .groups
                .get(g)
                .map(|g| g.name.clone())
                .unwrap_or_else(|| g.clone()),
            (a, None) => a.value().to_string(),
        }
    }
}

impl Directory {
    /// The directory with only what `[directory]` says (its groups, opt-outs, policy); the
    /// stored records are installed later ([`Directory::install`]).
    pub fn new(cfg: &DirectoryConfig) -> Directory {
        let groups = seed::config_groups(cfg)
            .into_iter()
            .map(|g| (g.id.clone(), g))
            .collect();
        Directory {
            snap: RwLock::new(Arc::new(Snapshot::build(
                BTreeMap::new(),
                groups,
                BTreeMap::new(),
            ))),
            opt_outs: cfg
                .opt_outs
                .iter()
                .filter_map(|a| Address::parse_user(a).ok())
                .collect(),
            policy: Policy {
                im: cfg.im_senders.clone(),
                mail: cfg.mail_senders.clone(),
                sms: cfg.mo_senders.clone(),
            },
            open: cfg.open_networks.iter().cloned().collect(),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snap.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the snapshot (after its changes are committed).
    pub fn install(&self, snap: Snapshot) {
        *self.snap.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
    }

    pub fn has_group(&self, name: &str) -> bool {
        self.snapshot().groups.contains_key(name)
    }

    /// The recipients `to` stands for: each group replaced by the people inside it
    /// (through nested groups, each person once, at their first address), the `speaker`
    /// (when a member speaks as the group) left out; every address once, its first place
    /// winning. Each comes with the index in `to` it came from. Groups are expanded when a
    /// message is received, before it is stored, so a later change of a group does not
    /// alter accepted work.
    pub fn expand(
        &self,
        to: &[Address],
        speaker: Option<&Address>,
    ) -> Result<Vec<(Address, usize)>, UnknownGroup> {
        let snap = self.snapshot();
        let me = speaker.map(|s| snap.person_of(s));
        let mut out: Vec<(Address, usize)> = Vec::with_capacity(to.len());
        let mut people: HashSet<String> = HashSet::new();
        let mut push = |a: Address, key: String, i: usize, out: &mut Vec<(Address, usize)>| {
            if Some(&key) == me.as_ref() || !people.insert(key) {
                return;
            }
            if !out.iter().any(|(b, _)| *b == a) {
                out.push((a, i));
            }
        };
        for (i, a) in to.iter().enumerate() {
            match a {
                Address::Group(name) => {
                    if !snap.groups.contains_key(name) {
                        return Err(UnknownGroup {
                            index: i,
                            name: name.clone(),
                        });
                    }
                    for m in snap.people(name) {
                        if let Some(addr) = snap.reach(&m) {
                            let key = snap.person_key(&m);
                            push(addr, key, i, &mut out);
                        }
                    }
                }
                a => {
                    let key = format!("a:{}", binding_key(a));
                    push(a.clone(), key, i, &mut out);
                }
            }
        }
        Ok(out)
    }

    /// The door's sender check: whether `origin` may send in through `door`
    /// (`[directory] im_senders`, `mail_senders`, `mo_senders`: `any` or `known`).
    pub fn check_sender(&self, origin: &Address, door: Door) -> Result<(), SenderRefused> {
        let policy = match door {
            Door::Api | Door::Gateway => return Ok(()),
            Door::Xmpp => &self.policy.im,
            Door::Smtp => &self.policy.mail,
            Door::Sdp => &self.policy.sms,
        };
        if *policy == SenderPolicy::Known && self.snapshot().user_of(origin).is_none() {
            return Err(SenderRefused::Unknown(origin.clone()));
        }
        Ok(())
    }

    /// Speaking as a group: `who` must be a person inside `group`.
    pub fn check_member(&self, group: &str, who: &Address) -> Result<(), SenderRefused> {
        let snap = self.snapshot();
        if !snap.groups.contains_key(group) {
            return Err(SenderRefused::UnknownGroup(group.to_string()));
        }
        if !snap.is_member(group, who) {
            return Err(SenderRefused::NotAMember {
                who: who.clone(),
                group: group.to_string(),
            });
        }
        Ok(())
    }

    /// The auth stage's recipient check, on one snapshot: [`Directory::reachable`], then
    /// [`Directory::may_reach`].
    pub fn check_recipient(&self, from: &Address, to: &Address) -> Result<(), &'static str> {
        let snap = self.snapshot();
        self.reachable_in(&snap, to)?;
        may_reach_in(&snap, from, to)
    }

    /// Whether `from` may reach `to`: refused (`not_a_friend`) only when `to` is a user who
    /// takes messages from friends only and `from` is neither a friend nor a group `to` is
    /// in.
    pub fn may_reach(&self, from: &Address, to: &Address) -> Result<(), &'static str> {
        may_reach_in(&self.snapshot(), from, to)
    }

    /// Whether `to` may be reached at all: on an open network, or as a user's address
    /// (`unknown_recipient`).
    pub fn reachable(&self, to: &Address) -> Result<(), &'static str> {
        self.reachable_in(&self.snapshot(), to)
    }

    fn reachable_in(&self, snap: &Snapshot, to: &Address) -> Result<(), &'static str> {
        match to {
            Address::Sms(_) | Address::Mail(_) | Address::Im(_)
                if !self.open.contains(to.channel().as_str()) && snap.user_of(to).is_none() =>
            {
                Err("unknown_recipient")
            }
            _ => Ok(()),
        }
    }

    /// The users and groups to put into the directory at start: `[directory] file`, then
    /// `[[directory.groups]]`.
    pub fn seed_records(cfg: &DirectoryConfig) -> Result<(Vec<User>, Vec<Group>), String> {
        let (users, mut groups) = match &cfg.file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("directory.file {}: {e}", path.display()))?;
                let f: seed::SeedFile = serde_json::from_str(&text)
                    .map_err(|e| format!("directory.file {}: {e}", path.display()))?;
                f.records()
            }
            None => (Vec::new(), Vec::new()),
        };
        groups.extend(seed::config_groups(cfg));
        Ok((users, groups))
    }

    /// Whether a recipient is a known user's binding.
    pub fn is_known(&self, a: &Address) -> bool {
        self.snapshot().user_of(a).is_some()
    }

    /// How a party is named to others.
    pub fn display_name(&self, a: &Address) -> String {
        self.snapshot().display_name(a)
    }

    /// The recipient accepts no messages from this gateway.
    pub fn opted_out(&self, a: &Address) -> bool {
        self.opt_outs.contains(a)
    }
}

fn may_reach_in(snap: &Snapshot, from: &Address, to: &Address) -> Result<(), &'static str> {
    let Some(target) = snap.user_of(to) else {
        return Ok(());
    };
    if !target.friends_only {
        return Ok(());
    }
    let ok = match from {
        Address::Group(g) => snap.is_member(g, to),
        // The app platform chose an app message's people itself (app lists, friends).
        Address::App(a) => snap.apps.apps.contains_key(a),
        from => snap
            .user_of(from)
            .is_some_and(|u| u.id == target.id || target.friends.contains(&u.id)),
    };
    if ok { Ok(()) } else { Err("not_a_friend") }
}
