//! Unit tests of the store against a real SQLite file in a temporary folder.

use std::sync::Arc;

use tempfile::TempDir;

use super::{Applied, Outcome, Store};
use crate::address::Address;
use crate::config::StoreConfig;
use crate::message::{
    Content, EPOCH_2024_MS, Envelope, IdGen, Kind, MsgId, Part, Recipient, RecipientId, State,
    now_ms,
};

const DAY_MS: i64 = 86_400_000;

fn config(dir: &TempDir) -> StoreConfig {
    StoreConfig {
        path: dir.path().join("store.db"),
        readers: 2,
        ..StoreConfig::default()
    }
}

fn open(dir: &TempDir) -> Store {
    Store::open(&config(dir), Arc::new(IdGen::new(7)), DAY_MS).unwrap()
}

fn addr(s: &str) -> Address {
    Address::parse_stored(s).unwrap()
}

/// The id a message created at `ms` would have.
fn id_at(ms: i64) -> MsgId {
    MsgId(((ms - EPOCH_2024_MS) as u64) << 22)
}

fn envelope(id: MsgId, origin: &str, to: &[&str]) -> Envelope {
    Envelope {
        id,
        kind: Kind::Message,
        origin: addr(origin),
        client: "api".into(),
        client_ref: Some("ref-1".into()),
        report_to: Some(addr(origin)),
        recipients: to
            .iter()
            .enumerate()
            .map(|(i, a)| Recipient::new(i as u32, addr(a)))
            .collect(),
        content: Content {
            text: "hello".into(),
            subject: Some("greetings".into()),
            ..Content::default()
        },
        created_at: now_ms(),
        expires_at: now_ms() + DAY_MS,
        note: None,
        speaker: None,
    }
}

fn outcome(state: State, attempts: u32) -> Outcome {
    Outcome {
        state,
        attempts,
        next_attempt_at: 0,
        last_error: None,
        remote_id: None,
        final_word: false,
        status: None,
    }
}

fn receipt(state: State, status: &str) -> Outcome {
    Outcome {
        final_word: state.is_final(),
        status: Some(status.into()),
        ..outcome(state, 0)
    }
}

async fn state_of(store: &Store, rid: RecipientId) -> State {
    let env = store.load(rid.msg).await.unwrap().unwrap();
    env.recipient(rid.idx).unwrap().state
}

#[tokio::test]
async fn an_inserted_envelope_loads_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut env = envelope(
        IdGen::new(1).next(),
        "mail:alice@example.com",
        &["sms:+8613800000000", "im:bob@im.example.org/phone"],
    );
    env.content.parts.push(Part {
        content_type: "image/png".into(),
        name: Some("a.png".into()),
        bytes: vec![0, 1, 2, 255],
    });
    env.recipients[1].attempts = 2;
    env.recipients[1].last_error = Some("timeout".into());
    store.insert(Arc::new(env.clone())).await.unwrap();

    assert_eq!(store.load(env.id).await.unwrap(), Some(env.clone()));
    assert_eq!(store.load(MsgId(env.id.0 + 1)).await.unwrap(), None);
    // A second envelope with the same id is refused, not merged.
    assert!(store.insert(Arc::new(env)).await.is_err());
    store.close().await;
}

#[tokio::test]
async fn outcomes_and_receipts_move_a_recipient_forward_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let env = envelope(
        IdGen::new(1).next(),
        "app:wx1",
        &["sms:+8613800000000", "sms:+8613800000001"],
    );
    store.insert(Arc::new(env.clone())).await.unwrap();
    let (a, b) = (env.recipient_id(0), env.recipient_id(1));

    let sent = Outcome {
        remote_id: Some("sdp-1".into()),
        ..outcome(State::Sent, 1)
    };
    assert_eq!(
        store.apply(a, sent).await.unwrap(),
        Applied::Updated { report: None }
    );
    let loaded = store.load(env.id).await.unwrap().unwrap();
    let r = loaded.recipient(0).unwrap();
    assert_eq!(
        (r.state, r.attempts, r.remote_id.as_deref()),
        (State::Sent, 1, Some("sdp-1"))
    );

    // The final receipt makes a report for the origin, stored and due now.
    let Applied::Updated {
        report: Some(report),
    } = store
        .apply(a, receipt(State::Delivered, "DeliveredToTerminal"))
        .await
        .unwrap()
    else {
        panic!("a final receipt makes a report");
    };
    let rep = store.load(report).await.unwrap().unwrap();
    assert_eq!(rep.kind, Kind::Report);
    assert_eq!(rep.origin, addr("sms:+8613800000000"));
    assert_eq!(rep.recipients[0].address, addr("app:wx1"));
    assert_eq!(rep.recipients[0].state, State::Retry);
    let body = rep.content.report.unwrap();
    assert_eq!(
        (body.state, body.message_id.as_str(), body.detail.as_deref()),
        (
            State::Delivered,
            env.id.to_string().as_str(),
            Some("DeliveredToTerminal")
        )
    );
    let reports = store.reports(env.id).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(
        (reports[0].recipient, reports[0].state),
        (0, State::Delivered)
    );

    // A late dispatch outcome cannot undo the receipt, but its attempt count is kept.
    assert_eq!(
        store.apply(a, outcome(State::Failed, 3)).await.unwrap(),
        Applied::Ignored
    );
    let loaded = store.load(env.id).await.unwrap().unwrap();
    let r = loaded.recipient(0).unwrap();
    assert_eq!((r.state, r.attempts), (State::Delivered, 3));

    // A permanent failure is final too.
    let failed = Outcome {
        last_error: Some("unknown subscriber".into()),
        final_word: true,
        ..outcome(State::Failed, 1)
    };
    assert!(matches!(
        store.apply(b, failed).await.unwrap(),
        Applied::Updated { report: Some(_) }
    ));
    assert_eq!(state_of(&store, b).await, State::Failed);
    let counts = store.state_counts().await.unwrap();
    assert_eq!(counts.get("delivered"), Some(&1));
    assert_eq!(counts.get("failed"), Some(&1));
    assert_eq!(counts.get("retry"), Some(&2), "{counts:?}");
    store.close().await;
}

#[tokio::test]
async fn a_duplicate_receipt_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let env = envelope(IdGen::new(1).next(), "app:wx1", &["sms:+8613800000000"]);
    store.insert(Arc::new(env.clone())).await.unwrap();
    let rid = env.recipient_id(0);

    let first = store
        .apply(rid, receipt(State::Delivered, "DeliveredToTerminal"))
        .await
        .unwrap();
    assert!(matches!(first, Applied::Updated { report: Some(_) }));
    let again = store
        .apply(rid, receipt(State::Delivered, "DeliveredToTerminal"))
        .await
        .unwrap();
    assert_eq!(again, Applied::Ignored);
    assert_eq!(store.reports(env.id).await.unwrap().len(), 1);
    // One report envelope, not two.
    assert_eq!(store.state_counts().await.unwrap().get("retry"), Some(&1));

    let unknown = RecipientId {
        msg: env.id,
        idx: 9,
    };
    assert_eq!(
        store.apply(unknown, outcome(State::Sent, 1)).await.unwrap(),
        Applied::Unknown
    );
    store.close().await;
}

#[tokio::test]
async fn claim_due_returns_only_due_retries_earliest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ids = IdGen::new(1);
    let mut due = Vec::new();
    for (at, state) in [
        (300, State::Retry),
        (100, State::Retry),
        (10_000, State::Retry),
        (200, State::Retry),
        (0, State::Queued),
        (0, State::Held),
    ] {
        let mut env = envelope(ids.next(), "app:wx1", &["mail:bob@example.com"]);
        env.recipients[0].state = state;
        env.recipients[0].next_attempt_at = at;
        store.insert(Arc::new(env.clone())).await.unwrap();
        due.push((at, env.recipient_id(0)));
    }
    let want = |ats: &[i64]| -> Vec<RecipientId> {
        ats.iter()
            .map(|a| due.iter().find(|(at, _)| at == a).unwrap().1)
            .collect()
    };

    assert_eq!(store.claim_due(500, 2).await.unwrap(), want(&[100, 200]));
    assert_eq!(store.claim_due(500, 10).await.unwrap(), want(&[300]));
    // Claimed work is not handed out twice; work not due yet stays in the store.
    assert_eq!(store.claim_due(500, 10).await.unwrap(), vec![]);
    assert_eq!(state_of(&store, want(&[100])[0]).await, State::Queued);
    assert_eq!(state_of(&store, want(&[10_000])[0]).await, State::Retry);
    assert_eq!(store.claim_due(10_000, 10).await.unwrap(), want(&[10_000]));
    store.close().await;
}

#[tokio::test]
async fn an_acknowledged_insert_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let env = envelope(
        IdGen::new(1).next(),
        "im:alice@im.example.org",
        &["sms:+8613800000000", "mail:bob@example.com"],
    );
    {
        let store = open(&dir);
        store.insert(Arc::new(env.clone())).await.unwrap();
        // Dropped without `close`: only the commit stands behind the answer.
    }
    let store = open(&dir);
    assert_eq!(store.load(env.id).await.unwrap(), Some(env.clone()));
    // Start-up makes the unsent recipients due now.
    assert_eq!(store.recover().await.unwrap(), 2);
    assert_eq!(
        store.claim_due(now_ms(), 10).await.unwrap().len(),
        2,
        "recovered work is due"
    );
    store.close().await;
}

#[tokio::test]
async fn pruning_removes_only_old_finished_messages_and_idle_routes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let now = now_ms();
    let old_done = envelope(id_at(now - 10 * DAY_MS), "app:wx1", &["mail:a@example.com"]);
    let old_open = envelope(
        id_at(now - 10 * DAY_MS + 1),
        "app:wx1",
        &["mail:a@example.com", "mail:b@example.com"],
    );
    let recent_done = envelope(id_at(now), "app:wx1", &["mail:a@example.com"]);
    for env in [&old_done, &old_open, &recent_done] {
        store.insert(Arc::new(env.clone())).await.unwrap();
    }
    for rid in [old_done.recipient_id(0), recent_done.recipient_id(0)] {
        store
            .apply(rid, receipt(State::Delivered, "delivered"))
            .await
            .unwrap();
    }
    store
        .apply(
            old_open.recipient_id(0),
            receipt(State::Delivered, "delivered"),
        )
        .await
        .unwrap();

    let d = store.prune(Some(now - DAY_MS), None, 100).await.unwrap();
    assert_eq!((d.messages, d.recipients, d.reports), (1, 1, 1));
    assert_eq!(store.load(old_done.id).await.unwrap(), None);
    assert!(store.load(old_open.id).await.unwrap().is_some());
    assert!(store.load(recent_done.id).await.unwrap().is_some());

    let ext = store.reply_ext("mail:a@example.com").await.unwrap();
    assert_eq!(store.reply_ext("mail:a@example.com").await.unwrap(), ext);
    let d = store.prune(None, Some(now - DAY_MS), 100).await.unwrap();
    assert_eq!(d.reply_routes, 0);
    assert_eq!(
        store.reply_party(ext).await.unwrap().as_deref(),
        Some("mail:a@example.com")
    );
    let d = store.prune(None, Some(now_ms() + 1), 100).await.unwrap();
    assert_eq!(d.reply_routes, 1);
    assert_eq!(store.reply_party(ext).await.unwrap(), None);
    // A deleted extension is never handed out again.
    assert!(store.reply_ext("mail:c@example.com").await.unwrap() > ext);
    store.close().await;
}

#[tokio::test]
async fn a_correlator_names_its_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let env = envelope(
        IdGen::new(1).next(),
        "app:wx1",
        &["mail:bob@example.com", "sms:+8613800000000"],
    );
    assert!(env.recipients[0].correlator.is_none());
    let correlator = env.recipients[1].correlator.clone().unwrap();
    store.insert(Arc::new(env.clone())).await.unwrap();
    let rid = env.recipient_id(1);
    let sent = Outcome {
        remote_id: Some("sdp-9".into()),
        ..outcome(State::Sent, 1)
    };
    store.apply(rid, sent).await.unwrap();

    let hit = store.find_correlator(&correlator).await.unwrap().unwrap();
    assert_eq!(hit.rid, rid);
    assert_eq!(hit.address, addr("sms:+8613800000000"));
    assert_eq!(
        (hit.state, hit.attempts, hit.remote_id.as_deref()),
        (State::Sent, 1, Some("sdp-9"))
    );
    assert!(store.find_correlator("0000").await.unwrap().is_none());
    store.close().await;
}

#[tokio::test]
async fn erasing_an_address_keeps_other_parties_data() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ids = IdGen::new(1);
    let from_alice = envelope(ids.next(), "im:alice@im.example.org/phone", &["app:wx1"]);
    let shared = envelope(
        ids.next(),
        "app:wx1",
        &["im:alice@im.example.org", "mail:bob@example.com"],
    );
    let unrelated = envelope(ids.next(), "app:wx1", &["im:alicia@im.example.org"]);
    for env in [&from_alice, &shared, &unrelated] {
        store.insert(Arc::new(env.clone())).await.unwrap();
    }

    let d = store.erase(&addr("im:alice@im.example.org")).await.unwrap();
    assert_eq!((d.messages, d.recipients), (1, 2));
    assert_eq!(store.load(from_alice.id).await.unwrap(), None);
    let left = store.load(shared.id).await.unwrap().unwrap();
    assert_eq!(
        left.recipients
            .iter()
            .map(|r| r.address.to_string())
            .collect::<Vec<_>>(),
        ["mail:bob@example.com"]
    );
    assert_eq!(store.load(unrelated.id).await.unwrap(), Some(unrelated));
    store.close().await;
}

#[tokio::test]
async fn app_messages_stay_on_the_stacks_the_newest_first_evicted_last() {
    let dir = TempDir::new().unwrap();
    let store = open(&dir);
    let ids = IdGen::new(1);
    let mut pushed = Vec::new();
    for i in 0..5 {
        let mut env = envelope(ids.next(), "app:wx1", &["im:u1@example.org"]);
        env.content.text = format!("n{i}");
        env.content.app = Some(crate::message::AppMessage {
            app: "wx1".into(),
            name: "WX".into(),
            kind: crate::message::AppKind::Push,
            mode: crate::message::AppMode::Tip,
            content: "<w/>".into(),
            users: vec!["u1".into(), "u2".into()],
            keep: 3,
            by: None,
        });
        pushed.push(env.id);
        store.insert(Arc::new(env)).await.unwrap();
    }
    for user in ["u1", "u2"] {
        let kept = store.app_messages(user, 0, 10).await.unwrap();
        let texts: Vec<&str> = kept.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["n2", "n3", "n4"], "{user}");
        assert_eq!(kept[0].id, pushed[2].to_string());
    }
    let after = store.app_messages("u1", pushed[3].0, 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].text, "n4");
    assert_eq!(store.app_messages("u1", 0, 2).await.unwrap().len(), 2);
    assert!(
        store
            .app_messages("nobody", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.close().await;
}
