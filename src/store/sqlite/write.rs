//! The write side's SQL, run inside a writer transaction: new envelopes, outcomes and the
//! status reports they make, due work, recovery and reply extensions.

use rusqlite::{Connection, OptionalExtension, params};

use super::{bad_state, prune};
use crate::address::Address;
use crate::message::SmsInfo;
use crate::message::{
    Content, Envelope, IdGen, Kind, MailRcpt, MsgId, Recipient, RecipientId, ReportBody, State,
    now_ms,
};
use crate::store::{Applied, Outcome, StoreError};

pub(super) fn insert_envelope(c: &Connection, env: &Envelope) -> Result<(), StoreError> {
    let content = serde_json::to_string(&env.content)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode content: {e}")))?;
    c.prepare_cached(
        "INSERT INTO messages (id, kind, origin, client, client_ref, report_to, content, created_at, expires_at, note, speaker)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        env.id.0 as i64,
        env.kind.as_str(),
        env.origin.to_string(),
        env.client,
        env.client_ref,
        env.report_to.as_ref().map(|a| a.to_string()),
        content,
        env.created_at,
        env.expires_at,
        env.note,
        env.speaker.as_ref().map(|a| a.to_string()),
    ])?;
    let mut st = c.prepare_cached(
        "INSERT INTO recipients (msg_id, idx, address, state, attempts, next_attempt_at, last_error, remote_id, updated_at, correlator)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for r in &env.recipients {
        st.execute(params![
            env.id.0 as i64,
            r.idx,
            r.address.to_string(),
            r.state.as_str(),
            r.attempts,
            r.next_attempt_at,
            r.last_error,
            r.remote_id,
            env.created_at,
            r.correlator,
        ])?;
    }
    if let Some(app) = &env.content.app {
        super::stacks::push(c, env, app)?;
    }
    if let (Some(at), Some(_)) = (
        env.content.mail.as_ref().and_then(|m| m.delay_report_at),
        &env.report_to,
    ) {
        c.prepare_cached("INSERT OR REPLACE INTO delay_watch (msg_id, due_at) VALUES (?1, ?2)")?
            .execute(params![env.id.0 as i64, at])?;
    }
    Ok(())
}

/// Whether the origin wants to hear about this outcome. A mail sender said so per recipient
/// (DSN `NOTIFY`, kept in the content), so no report is made that would only be dropped;
/// every other origin hears of every final outcome.
fn wants_report(
    c: &Connection,
    rid: RecipientId,
    report_to: &str,
    state: State,
) -> Result<bool, StoreError> {
    if !report_to.starts_with("mail:") {
        return Ok(true);
    }
    let rcpt: Option<String> = c
        .prepare_cached(
            "SELECT json_extract(content, '$.mail.rcpts[' || ?2 || ']') FROM messages WHERE id = ?1",
        )?
        .query_row(params![rid.msg.0 as i64, rid.idx], |r| r.get(0))
        .optional()?
        .flatten();
    let Some(r) = rcpt.and_then(|j| serde_json::from_str::<MailRcpt>(&j).ok()) else {
        return Ok(true);
    };
    Ok(match state {
        State::Delivered | State::Sent => r.notify_success,
        State::Failed | State::Expired => r.notify_failure,
        _ => true,
    })
}

/// A recipient still unsent: idx, address, state, last error, report_to, client_ref.
type DelayRow = (
    i64,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// `delayed` reports: for each message whose delay-report time has come, every recipient
/// still unsent (and not reported yet) gets a report envelope in its current state, once.
pub(super) fn delay_reports(
    c: &Connection,
    now: i64,
    limit: usize,
    ids: &IdGen,
    report_ttl_ms: i64,
) -> Result<usize, StoreError> {
    // Ids are time-ordered and the wait is one setting, so id order is due order: read the
    // oldest rows and stop at the first that is not due (no index on due_at to maintain).
    let oldest: Vec<(i64, i64)> = c
        .prepare_cached("SELECT msg_id, due_at FROM delay_watch ORDER BY msg_id LIMIT ?1")?
        .query_map(params![limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let due: Vec<i64> = oldest
        .into_iter()
        .take_while(|&(_, at)| at <= now)
        .map(|(id, _)| id)
        .collect();
    let mut made = 0;
    for msg in due {
        c.prepare_cached("DELETE FROM delay_watch WHERE msg_id = ?1")?
            .execute([msg])?;
        let rows: Vec<DelayRow> = c
            .prepare_cached(
                "SELECT r.idx, r.address, r.state, r.last_error, m.report_to, m.client_ref
                 FROM recipients r JOIN messages m ON m.id = r.msg_id
                 WHERE r.msg_id = ?1 AND r.state IN ('queued', 'retry', 'held')
                   AND r.reported IS NULL AND m.kind = 'message'",
            )?
            .query_map([msg], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        for (idx, address, state, last_error, report_to, client_ref) in rows {
            let Some(to) = report_to else { continue };
            let target = Address::parse_stored(&to)
                .map_err(|e| StoreError::Corrupt(format!("stored report_to: {e}")))?;
            let origin = Address::parse_stored(&address)
                .map_err(|e| StoreError::Corrupt(format!("stored address: {e}")))?;
            let state = State::parse(&state).ok_or_else(|| bad_state(&state))?;
            let mut rcpt = Recipient::new(0, target);
            rcpt.state = State::Retry;
            let env = Envelope {
                id: ids.next(),
                kind: Kind::Report,
                origin,
                client: "switchboard".into(),
                client_ref: None,
                report_to: None,
                recipients: vec![rcpt],
                content: Content {
                    report: Some(ReportBody {
                        message_id: MsgId(msg as u64).to_string(),
                        client_ref,
                        recipient: address,
                        state,
                        detail: last_error,
                        at_ms: now,
                    }),
                    ..Content::default()
                },
                created_at: now,
                expires_at: now + report_ttl_ms,
                note: None,
                speaker: None,
            };
            insert_envelope(c, &env)?;
            c.prepare_cached(
                "UPDATE recipients SET reported = 'delayed' WHERE msg_id = ?1 AND idx = ?2",
            )?
            .execute(params![msg, idx])?;
            made += 1;
        }
    }
    Ok(made)
}

pub(super) fn apply(
    c: &Connection,
    rid: RecipientId,
    o: &Outcome,
    ids: &IdGen,
    report_ttl_ms: i64,
) -> Result<Applied, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT r.state, r.reported, r.address, m.kind, m.report_to, m.client_ref
             FROM recipients r JOIN messages m ON m.id = r.msg_id
             WHERE r.msg_id = ?1 AND r.idx = ?2",
        )?
        .query_row(params![rid.msg.0 as i64, rid.idx], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })
        .optional()?;
    let Some((cur, reported, address, kind, report_to, client_ref)) = row else {
        return Ok(Applied::Unknown);
    };
    let cur = State::parse(&cur).ok_or_else(|| bad_state(&cur))?;
    if cur.is_final() && o.status.is_none() {
        // A dispatch outcome for a recipient a receipt already made final (the receipt
        // came before the send's answer was recorded): the state stays, but the attempt
        // and the SDP's id are kept.
        c.prepare_cached(
            "UPDATE recipients SET attempts = MAX(attempts, ?3), remote_id = COALESCE(remote_id, ?4)
             WHERE msg_id = ?1 AND idx = ?2",
        )?
        .execute(params![rid.msg.0 as i64, rid.idx, o.attempts, o.remote_id])?;
        return Ok(Applied::Ignored);
    }
    if cur.is_final() || (reported.as_deref() == Some(o.state.as_str()) && o.status.is_some()) {
        return Ok(Applied::Ignored);
    }
    let now = now_ms();
    c.prepare_cached(
        "UPDATE recipients SET state = ?3, attempts = MAX(attempts, ?4), next_attempt_at = ?5,
             last_error = COALESCE(?6, last_error), remote_id = COALESCE(?7, remote_id), updated_at = ?8
         WHERE msg_id = ?1 AND idx = ?2",
    )?
    .execute(params![
        rid.msg.0 as i64,
        rid.idx,
        o.state.as_str(),
        o.attempts,
        o.next_attempt_at,
        o.last_error,
        o.remote_id,
        now,
    ])?;
    if let Some(status) = &o.status {
        c.prepare_cached(
            "INSERT INTO reports (msg_id, idx, status, state, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![rid.msg.0 as i64, rid.idx, status, o.state.as_str(), now])?;
    }
    let mut report = None;
    if o.final_word
        && Kind::parse(&kind) == Kind::Message
        && let Some(to) = report_to
        && wants_report(c, rid, &to, o.state)?
    {
        let origin = Address::parse_stored(&address)
            .map_err(|e| StoreError::Corrupt(format!("stored address: {e}")))?;
        let target = Address::parse_stored(&to)
            .map_err(|e| StoreError::Corrupt(format!("stored report_to: {e}")))?;
        let id = ids.next();
        let mut rcpt = Recipient::new(0, target);
        rcpt.state = State::Retry;
        let env = Envelope {
            id,
            kind: Kind::Report,
            origin,
            client: "switchboard".into(),
            client_ref: None,
            report_to: None,
            recipients: vec![rcpt],
            content: Content {
                text: String::new(),
                subject: None,
                parts: Vec::new(),
                report: Some(ReportBody {
                    message_id: rid.msg.to_string(),
                    client_ref,
                    recipient: address,
                    state: o.state,
                    detail: o.status.clone().or_else(|| o.last_error.clone()),
                    at_ms: now,
                }),
                mail: None,
                app: None,
                card: None,
            },
            created_at: now,
            expires_at: now + report_ttl_ms,
            note: None,
            speaker: None,
        };
        insert_envelope(c, &env)?;
        c.prepare_cached("UPDATE recipients SET reported = ?3 WHERE msg_id = ?1 AND idx = ?2")?
            .execute(params![rid.msg.0 as i64, rid.idx, o.state.as_str()])?;
        report = Some(id);
    }
    Ok(Applied::Updated { report })
}

/// Records how a recipient's text went out as SMS (in the outcome's transaction).
pub(super) fn record_sms(
    c: &Connection,
    rid: RecipientId,
    info: SmsInfo,
) -> Result<(), StoreError> {
    c.prepare_cached(
        "UPDATE recipients SET sms_encoding = ?3, sms_parts = ?4 WHERE msg_id = ?1 AND idx = ?2",
    )?
    .execute(params![
        rid.msg.0 as i64,
        rid.idx,
        info.encoding.as_str(),
        info.parts
    ])?;
    Ok(())
}

/// Marks up to `limit` recipients whose next attempt is due as queued, earliest first.
pub(super) fn claim_due(
    c: &Connection,
    now: i64,
    limit: usize,
) -> Result<Vec<RecipientId>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT msg_id, idx FROM recipients WHERE state = 'retry' AND next_attempt_at <= ?1
         ORDER BY next_attempt_at LIMIT ?2",
    )?;
    let ids: Vec<RecipientId> = st
        .query_map(params![now, limit as i64], |r| {
            Ok(RecipientId {
                msg: MsgId(r.get::<_, i64>(0)? as u64),
                idx: r.get::<_, i64>(1)? as u32,
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut up = c.prepare_cached(
        "UPDATE recipients SET state = 'queued', updated_at = ?3 WHERE msg_id = ?1 AND idx = ?2",
    )?;
    let t = now_ms();
    for id in &ids {
        up.execute(params![id.msg.0 as i64, id.idx, t])?;
    }
    Ok(ids)
}

/// Every recipient that was not sent becomes due now.
pub(super) fn recover(c: &Connection) -> Result<usize, StoreError> {
    Ok(c.execute(
        "UPDATE recipients SET state = 'retry', next_attempt_at = 0
         WHERE state IN ('queued', 'held')",
        [],
    )?)
}

/// The reply extension of `party`, created on first use.
pub(super) fn reply_ext(c: &Connection, party: &str) -> Result<u32, StoreError> {
    let found: Option<i64> = c
        .prepare_cached("SELECT ext FROM reply_routes WHERE party = ?1")?
        .query_row([party], |r| r.get(0))
        .optional()?;
    let now = now_ms();
    if let Some(ext) = found {
        // In use: the retention job keeps it.
        c.prepare_cached("UPDATE reply_routes SET used_at = ?2 WHERE ext = ?1")?
            .execute(params![ext, now])?;
        return Ok(ext as u32);
    }
    let next = prune::next_reply_ext(c)?;
    c.execute(
        "INSERT INTO reply_routes (ext, party, created_at, used_at) VALUES (?1, ?2, ?3, ?3)",
        params![next, party, now],
    )?;
    Ok(next as u32)
}
