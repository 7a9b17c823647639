//! The SQLite side of retention and erasure (see `retention`): each function runs inside
//! one writer transaction.

use rusqlite::{Connection, OptionalExtension, params};

use crate::address::Address;
use crate::store::StoreError;
use crate::store::retention::Deleted;

/// States in which a recipient still has work ahead of it here.
const UNFINISHED: &str = "('queued', 'retry', 'held')";

/// The reply-extension high-water mark's key in `meta`.
pub(super) const REPLY_EXT_HIGH: &str = "reply_ext_high";

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Databases made before reply routes recorded their last use get the column at open.
pub(super) fn add_columns(c: &Connection) -> Result<(), StoreError> {
    c.execute_batch(SCHEMA)?;
    let has: bool = c
        .prepare("SELECT 1 FROM pragma_table_info('reply_routes') WHERE name = 'used_at'")?
        .exists([])?;
    if !has {
        c.execute_batch("ALTER TABLE reply_routes ADD COLUMN used_at INTEGER")?;
    }
    Ok(())
}

/// The next reply extension: above every one ever handed out, deleted ones included.
pub(super) fn next_reply_ext(c: &Connection) -> Result<i64, StoreError> {
    let max: i64 = c.query_row("SELECT COALESCE(MAX(ext), 0) FROM reply_routes", [], |r| {
        r.get(0)
    })?;
    let high: i64 = c
        .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([REPLY_EXT_HIGH], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let next = max.max(high) + 1;
    c.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
        .execute(params![REPLY_EXT_HIGH, next])?;
    Ok(next)
}

/// The smallest message id made at or after `ms` (ids are time-ordered).
fn first_id_at(ms: i64) -> i64 {
    let since = (ms - crate::message::EPOCH_2024_MS).max(0) as u64;
    (since << 22).min(i64::MAX as u64) as i64
}

fn delete_message(c: &Connection, id: i64, d: &mut Deleted) -> Result<(), StoreError> {
    d.recipients += c
        .prepare_cached("DELETE FROM recipients WHERE msg_id = ?1")?
        .execute([id])? as u64;
    d.reports += c
        .prepare_cached("DELETE FROM reports WHERE msg_id = ?1")?
        .execute([id])? as u64;
    c.prepare_cached("DELETE FROM delay_watch WHERE msg_id = ?1")?
        .execute([id])?;
    d.messages += c
        .prepare_cached("DELETE FROM messages WHERE id = ?1")?
        .execute([id])? as u64;
    Ok(())
}

/// One batch: up to `batch` finished messages created before `finished_before`, and up to
/// `batch` reply routes unused since `idle_before`.
pub(super) fn prune(
    c: &Connection,
    finished_before: Option<i64>,
    idle_before: Option<i64>,
    batch: usize,
) -> Result<Deleted, StoreError> {
    let mut d = Deleted::default();
    if let Some(before) = finished_before {
        let ids: Vec<i64> = c
            .prepare_cached(&format!(
                "SELECT m.id FROM messages m WHERE m.id < ?1 AND NOT EXISTS (
                     SELECT 1 FROM recipients r WHERE r.msg_id = m.id AND r.state IN {UNFINISHED})
                 ORDER BY m.id LIMIT ?2"
            ))?
            .query_map(params![first_id_at(before), batch as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for id in ids {
            delete_message(c, id, &mut d)?;
        }
    }
    if let Some(before) = idle_before {
        d.reply_routes += c
            .prepare_cached(
                "DELETE FROM reply_routes WHERE ext IN (
                     SELECT ext FROM reply_routes WHERE COALESCE(used_at, created_at) < ?1 LIMIT ?2)",
            )?
            .execute(params![before, batch as i64])? as u64;
    }
    Ok(d)
}

/// Everything about one address: the messages it sent (reports about it included, whose
/// origin it is), the messages only it received, its recipient rows in messages it shared
/// with others (with their reports), and its reply route. For an IM address, every
/// resource of that bare JID.
pub(super) fn erase(c: &Connection, addr: &Address) -> Result<Deleted, StoreError> {
    let exact = addr.to_string();
    // `im:alice@x.org` also stands for `im:alice@x.org/phone`; no other kind of stored
    // address has a `/` after its value, so the prefix matches nothing else.
    let prefix = format!("{exact}/");
    let is = |col: &str| format!("({col} = ?1 OR substr({col}, 1, length(?2)) = ?2)");
    let mut d = Deleted::default();
    let sent: Vec<i64> = c
        .prepare(&format!("SELECT id FROM messages WHERE {}", is("origin")))?
        .query_map(params![exact, prefix], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let only: Vec<i64> = c
        .prepare(&format!(
            "SELECT DISTINCT r.msg_id FROM recipients r WHERE {} AND NOT EXISTS (
                 SELECT 1 FROM recipients o WHERE o.msg_id = r.msg_id AND NOT {})",
            is("r.address"),
            is("o.address")
        ))?
        .query_map(params![exact, prefix], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in sent.into_iter().chain(only) {
        delete_message(c, id, &mut d)?;
    }
    let shared: Vec<(i64, i64)> = c
        .prepare(&format!(
            "SELECT msg_id, idx FROM recipients WHERE {}",
            is("address")
        ))?
        .query_map(params![exact, prefix], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (msg, idx) in shared {
        d.reports += c
            .prepare_cached("DELETE FROM reports WHERE msg_id = ?1 AND idx = ?2")?
            .execute(params![msg, idx])? as u64;
        d.recipients += c
            .prepare_cached("DELETE FROM recipients WHERE msg_id = ?1 AND idx = ?2")?
            .execute(params![msg, idx])? as u64;
    }
    d.reply_routes += c
        .prepare(&format!("DELETE FROM reply_routes WHERE {}", is("party")))?
        .execute(params![exact, prefix])? as u64;
    Ok(d)
}
