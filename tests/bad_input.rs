//! Bad input gets a clear error and stores nothing: the submit API and the SDP's SOAP
//! notification endpoint.

mod common;

use common::*;
use serde_json::json;
use switchboard::connectors::sdp::parlayx::{self, DeliveryStatus, Version};

#[tokio::test]
async fn bad_submissions_are_refused_with_stable_codes_and_nothing_is_stored() {
    let h = Harness::start(|cfg, _| cfg.http.max_body_bytes = 4096).await;
    let url = format!("{}/v1/messages", h.base);
    let post = |token: Option<&str>, body: String| {
        let mut r = h
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await.unwrap();
            (status, v)
        }
    };
    let good =
        json!({"from": "im:alice@im.example.org", "to": ["sms:+8613800000000"], "text": "hi"});
    let cases: Vec<(Option<&str>, String, u16, &str)> = vec![
        (Some(TOKEN), "{\"from\": \"im:alice@im.example.org\", \"to\": [".into(), 400, "invalid_json"),
        (Some(TOKEN), "[1, 2, 3]".into(), 400, "invalid_json"),
        (
            Some(TOKEN),
            json!({"from": "im:alice@im.example.org", "to": ["fax:+8613800000000"], "text": "hi"}).to_string(),
            400,
            "invalid_address",
        ),
        (
            Some(TOKEN),
            json!({"from": "im:alice@im.example.org", "to": ["sms:13800000000"], "text": "hi"}).to_string(),
            400,
            "invalid_phone_number",
        ),
        (
            Some(TOKEN),
            json!({"from": "im:alice@im.example.org", "to": ["sms:+86abc"], "text": "hi"}).to_string(),
            400,
            "invalid_phone_number",
        ),
        (
            Some(TOKEN),
            json!({"from": "im:alice@im.example.org", "to": ["sms:+8613800000000"], "text": "x".repeat(10_000)})
                .to_string(),
            413,
            "payload_too_large",
        ),
        (
            Some(TOKEN),
            json!({"from": "im:alice@im.example.org", "to": [], "text": "hi"}).to_string(),
            400,
            "no_recipients",
        ),
        (
            Some(TOKEN),
            json!({"from": "im:alice@im.example.org", "to": ["sms:+8613800000000"]}).to_string(),
            400,
            "empty_message",
        ),
        (
            Some(TOKEN),
            json!({"from": "im:alice@im.example.org", "to": ["sms:+8613800000000"], "text": "hi", "report_url": "ftp://x"})
                .to_string(),
            400,
            "invalid_report_url",
        ),
        (
            Some(TOKEN),
            json!({"from": "im:alice@im.example.org", "to": ["group:nope"], "text": "hi"}).to_string(),
            400,
            "unknown_group",
        ),
        (None, good.to_string(), 401, "unauthorized"),
        (Some("wrong-token-123"), good.to_string(), 401, "unauthorized"),
        (Some(OTHER_TOKEN), good.to_string(), 403, "sender_not_allowed"),
    ];
    for (token, body, want_status, want_code) in cases {
        let (status, v) = post(token, body).await;
        assert_eq!(status, want_status, "{want_code}: {v}");
        assert_eq!(v["code"], want_code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    // Unknown fields are refused too (a typo must not be silently ignored).
    let (status, v) = post(
        Some(TOKEN),
        json!({"from": "im:alice@im.example.org", "to": ["sms:+8613800000000"], "txt": "hi"})
            .to_string(),
    )
    .await;
    assert_eq!(
        (status, v["code"].as_str()),
        (400, Some("invalid_json")),
        "{v}"
    );

    assert_eq!(h.stored_messages(), 0);
    assert_eq!(h.sim.sim.stats().received, 0);

    // Reading: unknown ids, malformed ids and other clients' messages are all 404.
    let (status, resp) = h.submit(good.clone()).await;
    assert_eq!(status, 202);
    let id = resp["id"].as_str().unwrap();
    for (token, path, want) in [
        (TOKEN, "0000000000000001".to_string(), 404),
        (TOKEN, "not-an-id".to_string(), 404),
        (OTHER_TOKEN, id.to_string(), 404),
        ("wrong-token-123", id.to_string(), 401),
        (TOKEN, id.to_string(), 200),
    ] {
        let r = h
            .http
            .get(format!("{}/v1/messages/{path}", h.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "GET {path} as {token}");
    }
    h.stop().await;
}

#[tokio::test]
async fn bad_soap_is_answered_with_faults_and_nothing_is_stored() {
    let h = Harness::start(|_, sim| sim.send_receipts = false).await;
    let billion_laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<ns1:notifySmsReception xmlns:ns1="http://www.csapi.org/schema/parlayx/sms/notification/v2_2/local">
<ns1:correlator>1</ns1:correlator><ns1:message><message>&lol3;</message>
<senderAddress>tel:8613800000001</senderAddress><smsServiceActivationNumber>tel:10658000</smsServiceActivationNumber>
</ns1:message></ns1:notifySmsReception></soapenv:Body></soapenv:Envelope>"#;
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>
<ns1:notifySmsReception xmlns:ns1="http://www.csapi.org/schema/parlayx/sms/notification/v2_2/local">
<ns1:message><message>&xxe;</message><senderAddress>tel:8613800000001</senderAddress>
<smsServiceActivationNumber>tel:10658000</smsServiceActivationNumber></ns1:message>
</ns1:notifySmsReception></soapenv:Body></soapenv:Envelope>"#;
    let unknown_correlator = parlayx::encode_notify_delivery_receipt(
        Version::V2_2,
        "054eff5973800000ffff",
        "tel:+8613800000000",
        DeliveryStatus::DeliveredToTerminal,
    );
    let garbage_correlator = parlayx::encode_notify_delivery_receipt(
        Version::V2_2,
        "no-such-thing",
        "tel:+8613800000000",
        DeliveryStatus::DeliveredToTerminal,
    );
    let bad_sender = parlayx::encode_notify_sms_reception(
        Version::V2_2,
        "1",
        "hello",
        "tel:not-a-number",
        "tel:10658000",
        Some("2026-01-01T00:00:00Z"),
    );
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "malformed XML",
            "<soapenv:Envelope><unclosed>".into(),
            "SVC0002",
        ),
        ("not XML at all", "hello".into(), "SVC0002"),
        ("billion laughs", billion_laughs.into(), "DOCTYPE"),
        ("external entity", xxe.into(), "DOCTYPE"),
        ("unknown correlator", unknown_correlator, "correlator"),
        ("garbage correlator", garbage_correlator, "correlator"),
        ("bad MO sender", bad_sender, "senderAddress"),
        (
            "unexpected operation",
            parlayx::encode_send_sms_response(Version::V2_2, "1"),
            "SVC0002",
        ),
    ];
    for (what, body, needle) in cases {
        let (status, text) = h.soap(body).await;
        assert_eq!(status, 500, "{what}: {text}");
        assert!(text.contains("Fault"), "{what}: {text}");
        assert!(
            text.contains(needle),
            "{what}: expected {needle:?} in {text}"
        );
        let fault = parlayx::decode_fault(text.as_bytes()).expect("a decodable SOAP fault");
        assert_eq!(fault.message_id(), Some("SVC0002"), "{what}: {fault}");
        assert!(!text.contains("lollol"), "{what}: an entity was expanded");
        assert!(
            !text.contains("054eff5973800000ffff") && !text.contains("no-such-thing"),
            "{what}: the correlator is echoed: {text}"
        );
        assert!(
            !text.contains("root:"),
            "{what}: an external entity was read"
        );
    }
    assert_eq!(h.stored_messages(), 0);
    assert_eq!(count_rows(&h.cfg.store.path, "reports"), 0);
    let m = h.metrics().await;
    assert!(
        m.contains("switchboard_soap_faults_total{reason=\"doctype\"} 2"),
        "{m}"
    );
    h.stop().await;
}
