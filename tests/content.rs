//! Content reshaping through the whole flow: SMS encoding and parts as the SDP simulator
//! receives them, what is recorded per recipient, and the overflow policies.

mod common;

use common::*;
use serde_json::{Value, json};
use switchboard::content::sms::OverflowPolicy;

async fn submit(h: &Harness, text: &str) -> String {
    let body = json!({
        "from": "im:alice@im.example.org",
        "to": ["sms:+8613800000001"],
        "text": text,
        "report_url": h.hooks.report_url(),
    });
    h.submit_ok(body).await
}

/// The text the simulator received for message `id`.
async fn sim_text(h: &Harness, id: &str) -> String {
    h.sent_sms(id).await.message
}

/// Sends `text`, waits for it to be sent, checks what the SDP got and what is recorded.
async fn check(h: &Harness, text: &str, encoding: &str, parts: u64) -> Value {
    let id = submit(h, text).await;
    assert_eq!(sim_text(h, &id).await, text, "text as received by the SDP");
    let m = h.wait_state(&id, 0, "delivered").await;
    let r = &m["recipients"][0];
    assert_eq!(r["sms_encoding"], encoding, "{text:?}: {m}");
    assert_eq!(r["sms_parts"], parts, "{text:?}: {m}");
    m
}

fn parts_metric(metrics: &str, encoding: &str) -> u64 {
    let key = format!("switchboard_sms_parts_total{{encoding=\"{encoding}\"}}");
    metrics
        .lines()
        .find(|l| l.starts_with(&key))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn sms_encoding_and_parts_follow_the_text() {
    let h = Harness::start(|_, _| {}).await;
    // GSM 7-bit: 160 septets fit one message, 161 need two parts of at most 153.
    check(&h, &"a".repeat(160), "gsm7", 1).await;
    check(&h, &"b".repeat(161), "gsm7", 2).await;
    // `€` is an extension character (two septets): 158 + € = 160 septets, 159 + € = 161.
    check(&h, &format!("{}€", "c".repeat(158)), "gsm7", 1).await;
    check(&h, &format!("{}€", "d".repeat(159)), "gsm7", 2).await;
    // And across a part boundary: 152 + € + 10 does not split the escape sequence.
    check(
        &h,
        &format!("{}€{}", "e".repeat(152), "f".repeat(10)),
        "gsm7",
        2,
    )
    .await;
    // Chinese: UCS-2, 70 characters fit one message, 71 need two.
    check(&h, &"短".repeat(70), "ucs2", 1).await;
    check(&h, &"信".repeat(71), "ucs2", 2).await;
    // Emoji outside the BMP take two UCS-2 units each: 35 fit one message, 36 do not.
    check(&h, &"😀".repeat(35), "ucs2", 1).await;
    check(&h, &format!("{}😀", "g".repeat(100)), "ucs2", 2).await;

    let metrics = h.metrics().await;
    assert!(parts_metric(&metrics, "gsm7") >= 8, "{metrics}");
    assert!(parts_metric(&metrics, "ucs2") >= 6, "{metrics}");
    h.stop().await;
}

async fn with_policy(policy: OverflowPolicy) -> Harness {
    Harness::start(move |cfg, _| {
        cfg.content.sms.max_parts = 2;
        cfg.content.sms.overflow = policy;
    })
    .await
}

#[tokio::test]
async fn over_the_maximum_refuse_fails_with_a_report_and_sends_nothing() {
    let h = with_policy(OverflowPolicy::Refuse).await;
    let id = submit(&h, &"a".repeat(400)).await;
    let m = h.wait_state(&id, 0, "failed").await;
    let err = m["recipients"][0]["last_error"].as_str().unwrap();
    assert!(err.contains("message_too_long"), "{err}");
    assert!(err.contains("needs 3 SMS parts"), "{err}");
    assert!(err.contains("at most 2"), "{err}");
    let report = h
        .hooks
        .wait("reports", "the failure report", |v| {
            v["message_id"] == id.as_str()
        })
        .await;
    assert_eq!(report["state"], "failed");
    assert!(
        report["detail"]
            .as_str()
            .is_some_and(|d| d.contains("message_too_long")),
        "{report}"
    );
    // A text within the maximum still goes out; the refused one never reached the SDP.
    check(&h, &"b".repeat(300), "gsm7", 2).await;
    assert!(
        h.sim.sim.messages().iter().all(|m| m
            .correlator
            .as_ref()
            .is_none_or(|c| h.message_of(c).as_deref() != Some(id.as_str()))),
        "the refused text reached the SDP"
    );
    h.stop().await;
}

#[tokio::test]
async fn over_the_maximum_truncate_sends_the_shortened_text() {
    let h = with_policy(OverflowPolicy::Truncate).await;
    let id = submit(&h, &"a".repeat(400)).await;
    let got = sim_text(&h, &id).await;
    // Two parts of 153 septets: 303 characters of the text and the marker.
    assert_eq!(got, format!("{}...", "a".repeat(303)));
    let m = h.wait_state(&id, 0, "delivered").await;
    assert_eq!(m["recipients"][0]["sms_parts"], 2, "{m}");
    assert_eq!(m["recipients"][0]["sms_encoding"], "gsm7", "{m}");

    // UCS-2: two parts of 67 units, the marker is `…`.
    let id = submit(&h, &"长".repeat(200)).await;
    assert_eq!(sim_text(&h, &id).await, format!("{}…", "长".repeat(133)));
    let m = h.wait_state(&id, 0, "delivered").await;
    assert_eq!(m["recipients"][0]["sms_parts"], 2, "{m}");
    h.stop().await;
}

#[tokio::test]
async fn over_the_maximum_split_sends_every_part() {
    let h = with_policy(OverflowPolicy::Split).await;
    check(&h, &"a".repeat(400), "gsm7", 3).await;
    h.stop().await;
}

#[test]
fn content_config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.content.sms.max_parts = 0;
    cfg.content.sms.overflow = OverflowPolicy::Mms;
    let errors = cfg.validate();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("content.sms.max_parts:")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("content.sms.overflow:")),
        "{errors:?}"
    );
    let parsed: Result<switchboard::config::Config, _> =
        toml::from_str("[content.sms]\nmax_parts = 3\nsplit = true\n");
    assert!(parsed.is_err(), "unknown keys are refused");
}
