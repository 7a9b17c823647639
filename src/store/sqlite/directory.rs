//! The directory's tables: one JSON document per user, group and join request, and the
//! address books' entries.

use rusqlite::{Connection, params};

use crate::directory::{BookEntry, Change, Table};
use crate::message::now_ms;
use crate::store::StoreError;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS directory (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS address_books (
    owner TEXT NOT NULL,
    id TEXT NOT NULL,
    entry TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (owner, id)
) WITHOUT ROWID;
";

/// Writes one change set (inside the writer's transaction: all or nothing).
pub(super) fn write(c: &Connection, changes: &[Change]) -> Result<(), StoreError> {
    let now = now_ms();
    for ch in changes {
        match &ch.doc {
            Some(doc) => {
                c.prepare_cached(
                    "INSERT INTO directory (kind, id, doc, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc, updated_at = excluded.updated_at",
                )?
                .execute(params![ch.table.as_str(), ch.id, doc, now])?;
            }
            None => {
                c.prepare_cached("DELETE FROM directory WHERE kind = ?1 AND id = ?2")?
                    .execute(params![ch.table.as_str(), ch.id])?;
                if ch.table == Table::Users {
                    c.prepare_cached("DELETE FROM address_books WHERE owner = ?1")?
                        .execute([&ch.id])?;
                    super::stacks::drop_user(c, &ch.id)?;
                }
            }
        }
    }
    Ok(())
}

/// Every directory record: `(table, id, doc)`.
pub(super) fn rows(c: &Connection) -> Result<Vec<(Table, String, String)>, StoreError> {
    let mut st = c.prepare_cached("SELECT kind, id, doc FROM directory ORDER BY kind, id")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, id, doc) = row?;
        let table = Table::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("directory record of kind {kind:?}")))?;
        out.push((table, id, doc));
    }
    Ok(out)
}

/// Adds an entry to an address book, or replaces the entry with its id.
pub(super) fn put_book_entry(c: &Connection, e: &BookEntry) -> Result<bool, StoreError> {
    let existed = c
        .prepare_cached("SELECT 1 FROM address_books WHERE owner = ?1 AND id = ?2")?
        .exists(params![e.owner, e.id])?;
    c.prepare_cached(
        "INSERT INTO address_books (owner, id, entry, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (owner, id) DO UPDATE SET entry = excluded.entry, updated_at = excluded.updated_at",
    )?
    .execute(params![e.owner, e.id, e.entry.to_string(), now_ms()])?;
    Ok(existed)
}

/// A user's address book, by entry id.
pub(super) fn book(c: &Connection, owner: &str) -> Result<Vec<BookEntry>, StoreError> {
    let mut st =
        c.prepare_cached("SELECT id, entry FROM address_books WHERE owner = ?1 ORDER BY id")?;
    let rows = st.query_map([owner], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, entry) = row?;
        out.push(BookEntry {
            owner: owner.to_string(),
            entry: serde_json::from_str(&entry)
                .map_err(|e| StoreError::Corrupt(format!("address book entry {id:?}: {e}")))?,
            id,
        });
    }
    Ok(out)
}
