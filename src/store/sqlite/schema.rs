//! The SQLite tables and the columns added to databases made by older versions.

use rusqlite::Connection;

use super::StoreError;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    origin TEXT NOT NULL,
    client TEXT NOT NULL,
    client_ref TEXT,
    report_to TEXT,
    content TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    note TEXT,
    speaker TEXT
);
CREATE TABLE IF NOT EXISTS recipients (
    msg_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    address TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    remote_id TEXT,
    reported TEXT,
    updated_at INTEGER NOT NULL,
    sms_encoding TEXT,
    sms_parts INTEGER,
    correlator TEXT,
    PRIMARY KEY (msg_id, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS recipients_due ON recipients (next_attempt_at) WHERE state = 'retry';
CREATE INDEX IF NOT EXISTS recipients_unsent ON recipients (state) WHERE state IN ('queued', 'held');
CREATE TABLE IF NOT EXISTS reports (
    msg_id INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    status TEXT NOT NULL,
    state TEXT NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_msg ON reports (msg_id);
CREATE TABLE IF NOT EXISTS delay_watch (
    msg_id INTEGER PRIMARY KEY,
    due_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reply_routes (
    ext INTEGER PRIMARY KEY,
    party TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
";

/// Creates what is missing: the tables, then the columns and indexes added since.
pub(super) fn create(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA)?;
    conn.execute_batch(super::directory::SCHEMA)?;
    conn.execute_batch(super::stacks::SCHEMA)?;
    add_sms_columns(conn)?;
    add_speaker_column(conn)?;
    super::prune::add_columns(conn)?;
    Ok(())
}

/// Databases made before members could speak as a group get the `speaker` column.
fn add_speaker_column(c: &Connection) -> Result<(), StoreError> {
    let has: bool = c
        .prepare("SELECT 1 FROM pragma_table_info('messages') WHERE name = 'speaker'")?
        .exists([])?;
    if !has {
        c.execute_batch("ALTER TABLE messages ADD COLUMN speaker TEXT")?;
    }
    Ok(())
}

/// Databases made before the SMS columns existed get them (empty) at open.
fn add_sms_columns(c: &Connection) -> Result<(), StoreError> {
    let cols: Vec<String> = c
        .prepare("SELECT name FROM pragma_table_info('recipients')")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if !cols.iter().any(|n| n == "sms_encoding") {
        c.execute_batch("ALTER TABLE recipients ADD COLUMN sms_encoding TEXT")?;
    }
    if !cols.iter().any(|n| n == "sms_parts") {
        c.execute_batch("ALTER TABLE recipients ADD COLUMN sms_parts INTEGER")?;
    }
    if !cols.iter().any(|n| n == "correlator") {
        c.execute_batch("ALTER TABLE recipients ADD COLUMN correlator TEXT")?;
    }
    c.execute_batch(
        "CREATE INDEX IF NOT EXISTS recipients_correlator ON recipients (correlator)
         WHERE correlator IS NOT NULL",
    )?;
    Ok(())
}
