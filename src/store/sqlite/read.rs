//! The read side's SQL, run on the read-only connections: envelopes, status reports,
//! reply routes, correlators and state counts.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension};

use super::{CorrelatorHit, bad_state};
use crate::address::Address;
use crate::message::Encoding;
use crate::message::SmsInfo;
use crate::message::{Content, Envelope, Kind, MsgId, Recipient, RecipientId, State, StatusReport};
use crate::store::StoreError;

pub(super) fn load_envelope(c: &Connection, id: MsgId) -> Result<Option<Envelope>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT kind, origin, client, client_ref, report_to, content, created_at, expires_at, note, speaker
             FROM messages WHERE id = ?1",
        )?
        .query_row([id.0 as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, Option<String>>(8)?,
                r.get::<_, Option<String>>(9)?,
            ))
        })
        .optional()?;
    let Some((
        kind,
        origin,
        client,
        client_ref,
        report_to,
        content,
        created_at,
        expires_at,
        note,
        speaker,
    )) = row
    else {
        return Ok(None);
    };
    let origin =
        Address::parse_stored(&origin).map_err(|e| StoreError::Corrupt(format!("origin: {e}")))?;
    let content: Content = serde_json::from_str(&content)
        .map_err(|e| StoreError::Corrupt(format!("content of {id}: {e}")))?;
    let mut st = c.prepare_cached(
        "SELECT idx, address, state, attempts, next_attempt_at, last_error, remote_id,
                sms_encoding, sms_parts, correlator
         FROM recipients WHERE msg_id = ?1 ORDER BY idx",
    )?;
    let rows = st.query_map([id.0 as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, Option<i64>>(8)?,
            r.get::<_, Option<String>>(9)?,
        ))
    })?;
    let mut recipients = Vec::new();
    for row in rows {
        let (
            idx,
            address,
            state,
            attempts,
            next_attempt_at,
            last_error,
            remote_id,
            enc,
            parts,
            correlator,
        ) = row?;
        let sms = match (enc.as_deref().and_then(Encoding::parse), parts) {
            (Some(encoding), Some(parts)) => Some(SmsInfo {
                encoding,
                parts: u32::try_from(parts).unwrap_or(0),
            }),
            _ => None,
        };
        recipients.push(Recipient {
            idx: idx as u32,
            address: Address::parse_stored(&address)
                .map_err(|e| StoreError::Corrupt(format!("recipient of {id}: {e}")))?,
            state: State::parse(&state).ok_or_else(|| bad_state(&state))?,
            attempts: attempts as u32,
            next_attempt_at,
            last_error,
            remote_id,
            sms,
            correlator,
        });
    }
    Ok(Some(Envelope {
        id,
        kind: Kind::parse(&kind),
        origin,
        client,
        client_ref,
        report_to: report_to
            .map(|a| Address::parse_stored(&a))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("report_to of {id}: {e}")))?,
        recipients,
        content,
        created_at,
        expires_at,
        note,
        speaker: speaker
            .map(|a| Address::parse_stored(&a))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("speaker of {id}: {e}")))?,
    }))
}

/// The status reports received for a message's recipients, in arrival order.
pub(super) fn reports(c: &Connection, id: MsgId) -> Result<Vec<StatusReport>, StoreError> {
    let mut st = c.prepare_cached(
        "SELECT idx, status, state, received_at FROM reports WHERE msg_id = ?1 ORDER BY rowid",
    )?;
    let rows = st.query_map([id.0 as i64], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (idx, status, state, at) = row?;
        out.push(StatusReport {
            recipient: idx as u32,
            status,
            state: State::parse(&state).ok_or_else(|| bad_state(&state))?,
            received_at: at,
        });
    }
    Ok(out)
}

/// The party behind a reply extension.
pub(super) fn reply_party(c: &Connection, ext: u32) -> Result<Option<String>, StoreError> {
    Ok(
        c.prepare_cached("SELECT party FROM reply_routes WHERE ext = ?1")?
            .query_row([ext], |r| r.get(0))
            .optional()?,
    )
}

/// The recipient a receipt's correlator names, if any.
pub(super) fn find_correlator(
    c: &Connection,
    correlator: &str,
) -> Result<Option<CorrelatorHit>, StoreError> {
    let row = c
        .prepare_cached(
            "SELECT msg_id, idx, address, state, attempts, remote_id
             FROM recipients WHERE correlator = ?1",
        )?
        .query_row([correlator], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })
        .optional()?;
    let Some((msg, idx, address, state, attempts, remote_id)) = row else {
        return Ok(None);
    };
    Ok(Some(CorrelatorHit {
        rid: RecipientId {
            msg: MsgId(msg as u64),
            idx: idx as u32,
        },
        address: Address::parse_stored(&address)
            .map_err(|e| StoreError::Corrupt(format!("stored address: {e}")))?,
        state: State::parse(&state).ok_or_else(|| bad_state(&state))?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        remote_id,
    }))
}

/// How many recipients are in each state.
pub(super) fn state_counts(c: &Connection) -> Result<BTreeMap<String, u64>, StoreError> {
    let mut st = c.prepare_cached("SELECT state, COUNT(*) FROM recipients GROUP BY state")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (s, n) = row?;
        out.insert(s, n as u64);
    }
    Ok(out)
}
