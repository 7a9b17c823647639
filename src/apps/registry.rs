//! Changes to the app registry and the users' app lists, decided against a directory
//! snapshot like every directory change (see `directory::ops`): refused with a stable
//! code, or a plan of records to write and the snapshot after them.

use crate::address::Address;
use crate::directory::ops::{Plan, doc};
use crate::directory::{App, Change, DirError, Install, Snapshot, Table};

/// Most users in an app's `audience`.
pub const MAX_AUDIENCE: usize = 10_000;
/// Shortest secret an operator may give.
pub const MIN_SECRET: usize = 16;
/// Shortest pull interval.
pub const MIN_PULL_SECS: u64 = 5;

fn plan(changes: Vec<Change>, snap: Snapshot) -> Plan {
    Plan {
        changes,
        snap,
        notices: Vec::new(),
        request: None,
    }
}

fn is_http_url(u: &str) -> bool {
    (u.starts_with("http://") || u.starts_with("https://")) && u.parse::<http::Uri>().is_ok()
}

/// A new secret: 256 random bits in hex.
pub fn new_secret() -> String {
    format!(
        "{:032x}{:032x}",
        rand::random::<u128>(),
        rand::random::<u128>()
    )
}

/// Checks an appid: the names `app:` addresses take.
pub fn check_appid(id: &str) -> Result<(), DirError> {
    if Address::parse_user(&format!("app:{id}")).is_err() {
        return Err(DirError::new(
            "invalid_id",
            format!("appid {id:?}: 1-64 letters, digits, '.', '_' or '-'"),
        ));
    }
    Ok(())
}

/// Adds or replaces an app. A missing secret is kept from the app replaced, or made; the
/// made one is returned (the only time it is shown).
pub fn put_app(
    snap: &Snapshot,
    id: &str,
    mut app: App,
    create_only: bool,
) -> Result<(Plan, Option<String>), DirError> {
    check_appid(id)?;
    if !app.id.is_empty() && app.id != id {
        return Err(DirError::new(
            "id_mismatch",
            format!("id: {:?} differs from the path's {id:?}", app.id),
        ));
    }
    app.id = id.to_string();
    let old = snap.apps.apps.get(id);
    if create_only && old.is_some() {
        return Err(DirError::new(
            "duplicate_id",
            format!("there is already an app {id:?}"),
        ));
    }
    if app.name.trim().is_empty()
        || app.name.chars().count() > 128
        || app.name.contains(['\r', '\n'])
    {
        return Err(DirError::new(
            "invalid_name",
            "name: one line of 1-128 characters",
        ));
    }
    for (key, url) in [
        ("icon_url", &app.icon_url),
        ("callback_url", &app.callback_url),
    ] {
        if let Some(u) = url
            && !is_http_url(u)
        {
            return Err(DirError::new(
                "invalid_url",
                format!("{key}: {u:?} is not an http(s) URL"),
            ));
        }
    }
    if app.rate_per_minute == 0 || app.rate_per_minute > 60_000 {
        return Err(DirError::new("invalid_rate", "rate_per_minute: 1-60000"));
    }
    if let Some(every) = app.pull_every_secs {
        if every < MIN_PULL_SECS {
            return Err(DirError::new(
                "invalid_pull",
                format!("pull_every_secs: at least {MIN_PULL_SECS}"),
            ));
        }
        if app.callback_url.is_none() {
            return Err(DirError::new(
                "invalid_pull",
                "pull_every_secs: the app needs a callback_url to be pulled from",
            ));
        }
    }
    if app.audience.len() > MAX_AUDIENCE {
        return Err(DirError::new(
            "invalid_audience",
            format!("audience: at most {MAX_AUDIENCE} users"),
        ));
    }
    if let Some(u) = app.audience.iter().find(|u| !snap.users.contains_key(*u)) {
        return Err(DirError::new(
            "unknown_user",
            format!("audience: no user {u:?}"),
        ));
    }
    if app.max_recipients == Some(0) || app.max_content_bytes == Some(0) {
        return Err(DirError::new(
            "invalid_limit",
            "max_recipients, max_content_bytes: at least 1 (absent: the platform's)",
        ));
    }
    app.may_target.sort_by_key(|t| *t as u8);
    app.may_target.dedup();
    let made = if app.secret.is_empty() {
        match old {
            Some(o) => {
                app.secret = o.secret.clone();
                None
            }
            None => {
                app.secret = new_secret();
                Some(app.secret.clone())
            }
        }
    } else {
        if app.secret.len() < MIN_SECRET || app.secret.chars().any(char::is_control) {
            return Err(DirError::new(
                "invalid_secret",
                format!(
                    "secret: at least {MIN_SECRET} characters, none of them control characters"
                ),
            ));
        }
        None
    };
    let changes = vec![Change {
        table: Table::Apps,
        id: id.to_string(),
        doc: Some(doc(&app)),
    }];
    let mut book = (*snap.apps).clone();
    book.apps.insert(id.to_string(), app);
    Ok((plan(changes, snap.with_apps(book)), made))
}

/// Removes an app and takes it off every app list.
pub fn delete_app(snap: &Snapshot, id: &str) -> Result<Plan, DirError> {
    if !snap.apps.apps.contains_key(id) {
        return Err(DirError::new("not_found", format!("no app {id:?}")));
    }
    let mut book = (*snap.apps).clone();
    book.apps.remove(id);
    let mut changes = vec![Change {
        table: Table::Apps,
        id: id.to_string(),
        doc: None,
    }];
    book.installs.retain(|(user, app), _| {
        let keep = app != id;
        if !keep {
            changes.push(Change {
                table: Table::Installs,
                id: Install::key(user, app),
                doc: None,
            });
        }
        keep
    });
    Ok(plan(changes, snap.with_apps(book)))
}

/// Whether `user` may use `app`: it is enabled and the user is in its audience.
pub fn may_use(app: &App, user: &str) -> Result<(), DirError> {
    if !app.enabled {
        return Err(DirError::new(
            "app_disabled",
            format!("app {:?} is disabled", app.id),
        ));
    }
    if !app.audience.is_empty() && !app.audience.iter().any(|u| u == user) {
        return Err(DirError::new(
            "not_allowed",
            format!("user {user:?} may not use app {:?}", app.id),
        ));
    }
    Ok(())
}

/// Puts an app on a user's list (kept as it was when it is there already); whether it was.
pub fn install(
    snap: &Snapshot,
    user: &str,
    appid: &str,
    now: i64,
) -> Result<(Plan, bool), DirError> {
    if !snap.users.contains_key(user) {
        return Err(DirError::new("not_found", format!("no user {user:?}")));
    }
    let app = snap
        .apps
        .apps
        .get(appid)
        .ok_or_else(|| DirError::new("not_found", format!("no app {appid:?}")))?;
    may_use(app, user)?;
    if snap.apps.installed(user, appid) {
        return Ok((plan(Vec::new(), snap.clone()), true));
    }
    let i = Install {
        user: user.to_string(),
        app: appid.to_string(),
        installed_at: now,
    };
    let changes = vec![Change {
        table: Table::Installs,
        id: Install::key(user, appid),
        doc: Some(doc(&i)),
    }];
    let mut book = (*snap.apps).clone();
    book.installs
        .insert((user.to_string(), appid.to_string()), i);
    Ok((plan(changes, snap.with_apps(book)), false))
}

/// Takes an app off a user's list.
pub fn uninstall(snap: &Snapshot, user: &str, appid: &str) -> Result<Plan, DirError> {
    if !snap.apps.installed(user, appid) {
        return Err(DirError::new(
            "not_found",
            format!("user {user:?} has not installed app {appid:?}"),
        ));
    }
    let mut book = (*snap.apps).clone();
    book.installs.remove(&(user.to_string(), appid.to_string()));
    let changes = vec![Change {
        table: Table::Installs,
        id: Install::key(user, appid),
        doc: None,
    }];
    Ok(plan(changes, snap.with_apps(book)))
}
