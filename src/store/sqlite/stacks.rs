//! The app platform's per-user message stacks: each user's newest app messages, written
//! in the same transaction as the message itself, so a push the gateway accepted is in
//! every target user's stack; the oldest beyond the stack size are evicted then.

use rusqlite::{Connection, params};

use crate::message::{AppMessage, Envelope};
use crate::store::{StackEntry, StoreError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS app_messages (
    user TEXT NOT NULL,
    id INTEGER NOT NULL,
    app TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (user, id)
) WITHOUT ROWID;
";

/// Puts `env` (an app message) on the stacks of its users; evicts beyond `app.keep`.
pub(super) fn push(c: &Connection, env: &Envelope, app: &AppMessage) -> Result<(), StoreError> {
    let entry = StackEntry::of(env, app);
    let doc = serde_json::to_string(&entry)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode an app message: {e}")))?;
    let mut evicted = 0usize;
    for user in &app.users {
        c.prepare_cached(
            "INSERT OR REPLACE INTO app_messages (user, id, app, doc) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![user, env.id.0 as i64, app.app, doc])?;
        evicted += c
            .prepare_cached(
                "DELETE FROM app_messages WHERE user = ?1 AND id <= (
                     SELECT id FROM app_messages WHERE user = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            )?
            .execute(params![user, app.keep.max(1)])?;
    }
    if evicted > 0 {
        metrics::counter!("switchboard_app_stack_evicted_total").increment(evicted as u64);
    }
    Ok(())
}

/// A user's app messages after `since` (an id), oldest first, `limit` at most.
pub(super) fn after(
    c: &Connection,
    user: &str,
    since: u64,
    limit: usize,
) -> Result<Vec<StackEntry>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT doc FROM app_messages WHERE user = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = st.query_map(params![user, since as i64, limit as i64], |r| {
        r.get::<_, String>(0)
    })?;
    let mut out = Vec::new();
    for doc in rows {
        let doc = doc?;
        out.push(
            serde_json::from_str(&doc)
                .map_err(|e| StoreError::Corrupt(format!("stored app message: {e}")))?,
        );
    }
    Ok(out)
}

/// Removes a user's stack (the user was deleted or erased).
pub(super) fn drop_user(c: &Connection, user: &str) -> Result<usize, StoreError> {
    Ok(
        c.prepare_cached("DELETE FROM app_messages WHERE user = ?1")?
            .execute([user])?,
    )
}
