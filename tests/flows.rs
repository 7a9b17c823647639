//! Whole flows through real sockets: Internet side → gateway → SDP simulator → receipts →
//! reports, and mobile-originated SMS → Internet side.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use switchboard::config::{GroupConfig, SdpHeaderConfig};
use switchboard::connectors::sdp::parlayx::{self, DeliveryStatus, Version};

fn sms(to: &str, text: &str) -> Value {
    json!({"from": "im:alice@im.example.org", "to": [to], "text": text})
}

#[tokio::test]
async fn im_to_sms_is_delivered_and_reported_to_the_origin() {
    let h = Harness::start(|_, _| {}).await;
    let mut body = sms("sms:+8613800000000", "Dinner at 8? <ok> & \"bring wine\"");
    body["client_ref"] = json!("conv-17");
    body["report_url"] = json!(h.hooks.report_url());
    let id = h.submit_ok(body).await;

    let m = h.wait_state(&id, 0, "delivered").await;
    assert_eq!(m["from"], "im:alice@im.example.org");
    assert_eq!(m["recipients"][0]["attempts"], 1);
    assert!(m["recipients"][0]["remote_id"].is_string(), "{m}");
    assert_eq!(m["reports"][0]["status"], "DeliveredToTerminal");
    assert_eq!(m["reports"][0]["state"], "delivered");

    let sent = h.sent_sms(&id).await;
    assert_eq!(sent.message, "Dinner at 8? <ok> & \"bring wine\"");
    assert_eq!(sent.addresses, vec!["tel:+8613800000000".to_string()]);
    let sender = sent.sender_name.expect("a sender sub-address");
    assert!(
        sender.starts_with("10658000") && sender.len() > 8,
        "{sender}"
    );

    let report = h
        .hooks
        .wait("reports", "the delivery report", |v| {
            v["message_id"] == id.as_str()
        })
        .await;
    assert_eq!(report["type"], "report");
    assert_eq!(report["state"], "delivered");
    assert_eq!(report["detail"], "DeliveredToTerminal");
    assert_eq!(report["client_ref"], "conv-17");
    assert_eq!(report["recipient"], "sms:+8613800000000");

    // A repeated receipt is acknowledged but creates no second report.
    let correlator = sent.correlator.unwrap();
    let (status, _) = h
        .soap(parlayx::encode_notify_delivery_receipt(
            Version::V2_2,
            &correlator,
            "tel:+8613800000000",
            DeliveryStatus::DeliveredToTerminal,
        ))
        .await;
    assert_eq!(status, 200);
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("switchboard_reports_received_total{status=\"DeliveredToTerminal\",outcome=\"duplicate\"}"),
        "{metrics}"
    );
    assert_eq!(h.hooks.posted("reports").len(), 1);
    assert!(metrics.contains("switchboard_messages_sent_total{channel=\"sms\"}"));
    assert!(metrics.contains("switchboard_end_to_end_duration_seconds_bucket"));
    assert!(metrics.contains("switchboard_sdp_request_duration_seconds_bucket"));
    h.stop().await;
}

#[tokio::test]
async fn a_reply_from_the_phone_reaches_the_conversation_party() {
    let h = Harness::start(|_, _| {}).await;
    let id = h
        .submit_ok(sms("sms:+8613800000001", "are you coming?"))
        .await;
    h.wait_state(&id, 0, "delivered").await;
    let sender = h.sent_sms(&id).await.sender_name.unwrap();

    // Another party gets another sub-address.
    let mut other = sms("sms:+8613800000001", "hello from carol");
    other["from"] = json!("im:carol@im.example.org");
    let id2 = h.submit_ok(other).await;
    let sender2 = h.sent_sms(&id2).await.sender_name.unwrap();
    assert_ne!(sender, sender2);

    assert_eq!(h.sim.mo("+8613800000001", &sender, "yes, at 8").await, 200);
    let got = h
        .hooks
        .wait("im", "the reply at the IM webhook", |v| {
            v["text"] == "yes, at 8"
        })
        .await;
    assert_eq!(got["from"], "sms:+8613800000001");
    assert_eq!(got["to"], "im:alice@im.example.org");
    assert_eq!(got["type"], "message");

    assert_eq!(
        h.sim
            .mo("tel:8613800000001", &format!("tel:{sender2}"), "hi carol")
            .await,
        200
    );
    let got = h
        .hooks
        .wait("im", "the reply to carol", |v| v["text"] == "hi carol")
        .await;
    assert_eq!(got["to"], "im:carol@im.example.org");
    h.stop().await;
}

#[tokio::test]
async fn mo_addressed_in_its_first_word_is_routed_by_it() {
    let h = Harness::start(|_, _| {}).await;
    // An IM user of a configured IM domain: delivered through the webhook.
    assert_eq!(
        h.sim
            .mo(
                "+8613800000002",
                "10658000",
                "alice@im.example.org hi there"
            )
            .await,
        200
    );
    let got = h
        .hooks
        .wait("im", "the MO at the IM webhook", |v| {
            v["text"] == "hi there"
        })
        .await;
    assert_eq!(got["to"], "im:alice@im.example.org");
    assert_eq!(got["from"], "sms:+8613800000002");

    // A mail address: queued for the mail channel (held until a mail connector exists).
    assert_eq!(
        h.sim
            .mo("+8613800000002", "10658000", "bob@example.org hello")
            .await,
        200
    );
    let db = h.cfg.store.path.clone();
    let (state, text): (String, String) = wait_for(
        Duration::from_secs(10),
        "the MO for bob to be held for the mail channel",
        || {
            let db = db.clone();
            async move {
                let c = rusqlite::Connection::open(&db).ok()?;
                c.query_row(
                    "SELECT r.state, m.content FROM recipients r JOIN messages m ON m.id = r.msg_id
                     WHERE r.address = 'mail:bob@example.org'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .ok()
                .filter(|(s, _): &(String, String)| s == "held")
            }
        },
    )
    .await;
    assert_eq!(state, "held");
    assert!(text.contains("\"text\":\"hello\""), "{text}");

    // Nothing routes this one: stored with a note, not lost.
    assert_eq!(
        h.sim
            .mo("+8613800000003", "10658000", "what is this number?")
            .await,
        200
    );
    let note: String = wait_for(Duration::from_secs(10), "the unroutable MO", || {
        let db = db.clone();
        async move {
            let c = rusqlite::Connection::open(&db).ok()?;
            c.query_row(
                "SELECT note FROM messages WHERE origin = 'sms:+8613800000003'",
                [],
                |r| r.get(0),
            )
            .ok()
        }
    })
    .await;
    assert!(note.starts_with("unroutable"), "{note}");
    assert!(
        h.metrics()
            .await
            .contains("switchboard_mo_received_total{route=\"unroutable\",kind=\"sms\"} 1")
    );
    h.stop().await;
}

#[tokio::test]
async fn mo_without_any_route_goes_to_the_default_route() {
    let h = Harness::start(|cfg, _| {
        cfg.mo.default_route = Some("im:desk@im.example.org".into());
    })
    .await;
    assert_eq!(h.sim.mo("+8613800000004", "10658000", "stop").await, 200);
    let got = h
        .hooks
        .wait("im", "the MO at the default route", |v| v["text"] == "stop")
        .await;
    assert_eq!(got["to"], "im:desk@im.example.org");
    h.stop().await;
}

#[tokio::test]
async fn transient_sdp_errors_are_retried_until_it_recovers() {
    let h = Harness::start(|_, sim| sim.service_error_rate = 1.0).await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            h.submit_ok(sms(&format!("sms:+86138000010{i:02}"), "retry me"))
                .await,
        );
    }
    // Every message has been refused at least once (SVC0001) before the SDP recovers.
    wait_for(Duration::from_secs(10), "20 refusals", || {
        let n = h.sim.sim.stats().transient_errors;
        async move { (n >= 20).then_some(()) }
    })
    .await;
    h.sim.control(json!({"service_error_rate": 0.0})).await;
    for id in &ids {
        let m = h.wait_state(id, 0, "delivered").await;
        let attempts = m["recipients"][0]["attempts"].as_u64().unwrap();
        assert!(attempts > 1, "{m}");
    }
    let stats = h.sim.sim.stats();
    assert_eq!(stats.unique_correlators, 20);
    assert!(
        h.metrics()
            .await
            .contains("switchboard_retries_total{channel=\"sms\"}")
    );
    h.stop().await;
}

#[tokio::test]
async fn an_sdp_outage_longer_than_the_attempts_allow_loses_nothing() {
    // Two attempts allowed; the SDP answers 503 far more often than that. "Unavailable"
    // spends no attempt: the message waits, then goes out when the SDP is back.
    let h = Harness::start(|cfg, sim| {
        cfg.retry.max_attempts = 2;
        sim.transient_error_rate = 1.0;
    })
    .await;
    let id = h
        .submit_ok(sms("sms:+8613800000007", "through the outage"))
        .await;
    wait_for(Duration::from_secs(15), "six refusals", || {
        let n = h.sim.sim.stats().transient_errors;
        async move { (n >= 6).then_some(()) }
    })
    .await;
    let m = h.message(&id).await;
    // Waiting (or claimed for its next look), never failed, no attempt spent.
    let state = m["recipients"][0]["state"].as_str().unwrap_or("");
    assert!(state == "retry" || state == "queued", "{m}");
    assert_eq!(m["recipients"][0]["attempts"], 0, "{m}");
    let err = m["recipients"][0]["last_error"].as_str().unwrap_or("");
    assert!(
        err.starts_with("unavailable: SDP answered HTTP 503"),
        "{err}"
    );
    h.sim.control(json!({"transient_error_rate": 0.0})).await;
    let m = h.wait_state(&id, 0, "delivered").await;
    assert_eq!(m["recipients"][0]["attempts"], 1, "{m}");
    assert!(
        h.metrics()
            .await
            .contains("switchboard_deferred_total{channel=\"sms\"}")
    );
    h.stop().await;
}

#[tokio::test]
async fn a_permanent_fault_fails_at_once_and_reports() {
    let h = Harness::start(|_, sim| sim.permanent_fault_rate = 1.0).await;
    let mut body = sms("sms:+8613800000005", "never");
    body["report_url"] = json!(h.hooks.report_url());
    let id = h.submit_ok(body).await;
    let m = h.wait_state(&id, 0, "failed").await;
    assert_eq!(m["recipients"][0]["attempts"], 1, "{m}");
    let err = m["recipients"][0]["last_error"].as_str().unwrap();
    assert!(err.contains("POL0001"), "{err}");
    let report = h
        .hooks
        .wait("reports", "the failure report", |v| {
            v["message_id"] == id.as_str()
        })
        .await;
    assert_eq!(report["state"], "failed");
    assert!(
        report["detail"].as_str().unwrap().contains("POL0001"),
        "{report}"
    );

    // No retry: a message sent after the SDP is healthy again goes through, and the failed
    // one was tried exactly once.
    h.sim.control(json!({"permanent_fault_rate": 0.0})).await;
    let id2 = h.submit_ok(sms("sms:+8613800000006", "fine")).await;
    h.wait_state(&id2, 0, "delivered").await;
    assert_eq!(h.sim.sim.stats().permanent_faults, 1);
    let m = h.message(&id).await;
    assert_eq!(m["recipients"][0]["state"], "failed");
    assert_eq!(m["recipients"][0]["attempts"], 1);
    h.stop().await;
}

#[tokio::test]
async fn delivery_impossible_fails_the_recipient() {
    let h = Harness::start(|_, sim| sim.impossible_rate = 1.0).await;
    let mut body = sms("sms:+8613800000007", "switched off");
    body["report_url"] = json!(h.hooks.report_url());
    let id = h.submit_ok(body).await;
    let m = h.wait_state(&id, 0, "failed").await;
    assert_eq!(m["reports"][0]["status"], "DeliveryImpossible");
    let report = h
        .hooks
        .wait("reports", "the report", |v| v["message_id"] == id.as_str())
        .await;
    assert_eq!(report["state"], "failed");
    assert_eq!(report["detail"], "DeliveryImpossible");
    h.stop().await;
}

#[tokio::test]
async fn intermediate_and_uncertain_receipts_map_to_sent() {
    let h = Harness::start(|_, sim| sim.send_receipts = false).await;
    let mut body = sms("sms:+8613800000008", "status walk");
    body["report_url"] = json!(h.hooks.report_url());
    let id = h.submit_ok(body).await;
    h.wait_state(&id, 0, "sent").await;
    let correlator = h.correlator(&id, 0);
    let receipt = |status| {
        parlayx::encode_notify_delivery_receipt(
            Version::V2_2,
            &correlator,
            "tel:+8613800000008",
            status,
        )
    };

    // Not final: no report yet.
    let (status, body) = h.soap(receipt(DeliveryStatus::DeliveredToNetwork)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("notifySmsDeliveryReceiptResponse"), "{body}");
    let (status, _) = h.soap(receipt(DeliveryStatus::MessageWaiting)).await;
    assert_eq!(status, 200);
    let m = h.message(&id).await;
    assert_eq!(m["recipients"][0]["state"], "sent");
    assert_eq!(m["reports"].as_array().unwrap().len(), 2);
    assert!(h.hooks.posted("reports").is_empty());

    // Uncertain: still sent, but the last word, so the origin hears of it.
    let (status, _) = h.soap(receipt(DeliveryStatus::DeliveryUncertain)).await;
    assert_eq!(status, 200);
    let report = h
        .hooks
        .wait("reports", "the uncertain report", |v| {
            v["message_id"] == id.as_str()
        })
        .await;
    assert_eq!(report["state"], "sent");
    assert_eq!(report["detail"], "DeliveryUncertain");

    // A later handset receipt still lands.
    let (status, _) = h.soap(receipt(DeliveryStatus::DeliveredToTerminal)).await;
    assert_eq!(status, 200);
    h.wait_state(&id, 0, "delivered").await;
    h.stop().await;
}

#[tokio::test]
async fn the_china_operator_header_is_sent_when_configured() {
    let h = Harness::start(|cfg, _| {
        cfg.sdp.header = Some(SdpHeaderConfig {
            sp_id: "000201".into(),
            password: "secret".into(),
            service_id: "35000001000001".into(),
            fa: None,
        });
    })
    .await;
    let id = h.submit_ok(sms("sms:+8613800000009", "with header")).await;
    h.wait_state(&id, 0, "delivered").await;
    assert_eq!(h.sent_sms(&id).await.sp_id.as_deref(), Some("000201"));
    h.stop().await;
}

#[tokio::test]
async fn groups_expand_and_opted_out_recipients_fail() {
    let h = Harness::start(|cfg, _| {
        cfg.directory.groups = vec![GroupConfig {
            name: "team".into(),
            members: vec!["sms:+8613800000011".into(), "sms:+8613800000012".into()],
        }];
        cfg.directory.opt_outs = vec!["sms:+8613800000012".into()];
    })
    .await;
    let (status, resp) = h
        .submit(json!({"from": "app:wx1234", "to": ["group:team", "sms:+8613800000011"], "text": "standup"}))
        .await;
    assert_eq!(status, 202, "{resp}");
    let recipients = resp["recipients"].as_array().unwrap();
    assert_eq!(recipients.len(), 2, "{resp}");
    let id = resp["id"].as_str().unwrap();
    h.wait_state(id, 0, "delivered").await;
    let m = h.wait_state(id, 1, "failed").await;
    assert!(
        m["recipients"][1]["last_error"]
            .as_str()
            .unwrap()
            .contains("opted_out")
    );
    h.stop().await;
}

#[tokio::test]
async fn im_recipients_are_posted_to_the_im_webhook() {
    let h = Harness::start(|_, _| {}).await;
    let mut body = json!({"from": "app:wx1234", "to": ["xmpp:bob@im.example.org"], "text": "ping"});
    body["report_url"] = json!(h.hooks.report_url());
    let (status, resp) = h.submit(body).await;
    assert_eq!(status, 202, "{resp}");
    let id = resp["id"].as_str().unwrap().to_string();
    let got = h
        .hooks
        .wait("im", "the IM message", |v| v["text"] == "ping")
        .await;
    assert_eq!(got["to"], "im:bob@im.example.org");
    assert_eq!(got["from"], "app:wx1234");
    h.wait_state(&id, 0, "sent").await;
    let report = h
        .hooks
        .wait("reports", "the report", |v| v["message_id"] == id.as_str())
        .await;
    assert_eq!(report["state"], "sent");
    h.stop().await;
}
