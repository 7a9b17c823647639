//! A push, decided against a directory snapshot: its body, who it reaches (a user, a
//! user's friends, a group's people) and on which address each person gets it.

use serde::{Deserialize, Serialize};

use super::AppError;
use super::config::AppsConfig;
use crate::address::{Address, Channel};
use crate::directory::{App, AppTarget, Member, Snapshot, User};
use crate::message::AppMode;

/// What an app pushes (`POST /v1/apps/{appid}/messages`, or one item of a pull's answer).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PushBody {
    pub target: Target,
    pub mode: AppMode,
    /// One well-formed XML element.
    pub content: String,
    /// What people whose network cannot show the payload read (SMS, mail); the text
    /// inside the content when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Delivery reports go to the app's `callback_url`.
    #[serde(default)]
    pub report: bool,
}

/// Whom a push is for.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Target {
    /// One user (who has installed the app, unless it is a platform app).
    User(String),
    /// A user's friends (the user has installed the app, unless it is a platform app);
    /// never the user.
    FriendsOf(String),
    /// The people inside a group, through nested groups.
    Group(String),
}

impl Target {
    pub fn kind(&self) -> AppTarget {
        match self {
            Target::User(_) => AppTarget::User,
            Target::FriendsOf(_) => AppTarget::Friends,
            Target::Group(_) => AppTarget::Group,
        }
    }
}

/// The people a push reaches.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fanout {
    /// Users whose stacks keep it.
    pub users: Vec<String>,
    /// Where it is delivered, each once.
    pub to: Vec<Address>,
    /// People it is not delivered to: only a phone number, and the app may not use phones.
    pub unreachable: usize,
}

/// Where a user gets an app's messages: their first address, passing over phone numbers
/// when the app may not reach phones.
pub fn reach(app: &App, u: &User) -> Option<Address> {
    u.addresses
        .iter()
        .find(|a| app.phones || a.channel() != Channel::Sms)
        .cloned()
}

/// Who a push to `target` reaches.
pub fn fan_out(
    snap: &Snapshot,
    cfg: &AppsConfig,
    app: &App,
    target: &Target,
) -> Result<Fanout, AppError> {
    if !app.may_target.contains(&target.kind()) {
        return Err(AppError::new(
            "target_not_allowed",
            format!(
                "app {:?} may not push to {}",
                app.id,
                match target.kind() {
                    AppTarget::User => "a user",
                    AppTarget::Friends => "a user's friends",
                    AppTarget::Group => "a group",
                }
            ),
        ));
    }
    let platform = cfg.platform.contains(&app.id);
    let user = |id: &str| {
        snap.users
            .get(id)
            .ok_or_else(|| AppError::new("unknown_user", format!("no user {id:?}")))
    };
    let installed = |id: &str| {
        if platform || snap.apps.installed(id, &app.id) {
            Ok(())
        } else {
            Err(AppError::new(
                "not_installed",
                format!("user {id:?} has not installed app {:?}", app.id),
            ))
        }
    };
    let mut out = Fanout::default();
    let add = |u: &User, out: &mut Fanout| {
        if out.users.contains(&u.id) {
            return;
        }
        out.users.push(u.id.clone());
        match reach(app, u) {
            Some(a) if !out.to.contains(&a) => out.to.push(a),
            Some(_) => {}
            None => out.unreachable += 1,
        }
    };
    match target {
        Target::User(id) => {
            let u = user(id)?;
            installed(id)?;
            add(u, &mut out);
        }
        Target::FriendsOf(id) => {
            let u = user(id)?;
            installed(id)?;
            for f in &u.friends {
                if f != id
                    && let Some(friend) = snap.users.get(f)
                {
                    add(friend, &mut out);
                }
            }
        }
        Target::Group(g) => {
            if !snap.groups.contains_key(g) {
                return Err(AppError::new("unknown_group", format!("no group {g:?}")));
            }
            for m in snap.people(g) {
                match &m {
                    Member::User(id) => {
                        if let Some(u) = snap.users.get(id) {
                            add(u, &mut out);
                        }
                    }
                    Member::Address(a) => match snap.user_of(a) {
                        Some(u) => add(u, &mut out),
                        None if app.phones || a.channel() != Channel::Sms => {
                            if !out.to.contains(a) {
                                out.to.push(a.clone());
                            }
                        }
                        None => out.unreachable += 1,
                    },
                    Member::Group(_) => {}
                }
            }
        }
    }
    let people = out.users.len().max(out.to.len());
    if people > cfg.max_recipients_per_push {
        return Err(AppError::new(
            "too_many_recipients",
            format!(
                "the push reaches {people} people; at most {} per push",
                cfg.max_recipients_per_push
            ),
        ));
    }
    Ok(out)
}
