//! MMS from phones: the SDP simulator sends `notifyMessageReception`, with the content
//! attached or named for `getMessage`; the gateway takes it in only once the content is
//! stored, routes it like an MO SMS and passes the parts on: to mail as attachments, to the
//! IM webhook as parts, to XMPP users as signed, expiring links (tests/xmpp.rs).

mod common;
mod mail_peers;

use std::time::Duration;

use common::*;
use mail_parser::{MessageParser, MimeHeaders};
use mail_peers::SmtpSink;
use serde_json::Value;
use switchboard::content::media::{MediaConfig, MediaLinks};
use switchboard::message::{MsgId, Part, b64};
use switchboard::sim::MmsMoRequest;

const SECRET: &str = "media-secret-for-tests-0123456789";

fn photo() -> Part {
    let mut bytes = b"\xff\xd8\xff\xe0JFIF".to_vec();
    bytes.extend((0..20_000).map(|i| (i * 13 % 256) as u8));
    Part {
        content_type: "image/jpeg".into(),
        name: Some("beach.jpg".into()),
        bytes,
    }
}

fn mms(text: &str, inline: bool) -> MmsMoRequest {
    MmsMoRequest {
        from: "+8613800000070".into(),
        to: "10658000".into(),
        subject: Some("Holiday".into()),
        text: text.into(),
        parts: vec![photo()],
        inline,
        notify_url: None,
    }
}

async fn start() -> Harness {
    Harness::start(|cfg, _| {
        cfg.content.media.secret = SECRET.into();
    })
    .await
}

/// The MMS as the IM webhook received it.
async fn at_webhook(h: &Harness, text: &str) -> Value {
    h.hooks
        .wait("im", "the MMS at the IM webhook", |v| v["text"] == text)
        .await
}

fn check_parts(got: &Value) {
    let parts = got["parts"].as_array().expect("parts");
    // The SMIL presentation and the text part are not passed on as parts.
    assert_eq!(parts.len(), 1, "{got}");
    assert_eq!(parts[0]["content_type"], "image/jpeg");
    assert_eq!(parts[0]["name"], "beach.jpg");
    let bytes = b64::decode(parts[0]["bytes"].as_str().unwrap()).unwrap();
    assert_eq!(bytes, photo().bytes);
}

#[tokio::test]
async fn an_mms_named_by_reference_is_fetched_and_reaches_the_im_webhook_with_its_parts() {
    let h = start().await;
    let (status, resp) = h
        .sim
        .mo_mms(&mms("alice@im.example.org Look at this", false))
        .await;
    assert_eq!(status, 200, "{resp}");
    assert!(
        resp["message_identifier"]
            .as_str()
            .is_some_and(|s| s.starts_with("mm-")),
        "{resp}"
    );
    let got = at_webhook(&h, "Look at this").await;
    assert_eq!(got["from"], "sms:+8613800000070");
    assert_eq!(got["to"], "im:alice@im.example.org");
    assert_eq!(got["subject"], "Holiday");
    check_parts(&got);
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("switchboard_mo_received_total{route=\"first_word\",kind=\"mms\"}"),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test]
async fn parts_attached_to_the_notification_are_taken_without_a_fetch() {
    let h = start().await;
    // getMessage would fail: the content must come from the notification itself.
    h.sim
        .control(serde_json::json!({"transient_error_rate": 1.0}))
        .await;
    let (status, resp) = h
        .sim
        .mo_mms(&mms("alice@im.example.org Attached", true))
        .await;
    assert_eq!(status, 200, "{resp}");
    let got = at_webhook(&h, "Attached").await;
    check_parts(&got);
    h.stop().await;
}

#[tokio::test]
async fn a_failed_fetch_is_not_acknowledged_and_the_next_notification_is_stored() {
    let h = start().await;
    h.sim
        .control(serde_json::json!({"transient_error_rate": 1.0}))
        .await;
    let (status, resp) = h
        .sim
        .mo_mms(&mms("alice@im.example.org Try one", false))
        .await;
    // The simulator reports what the gateway answered: a SVC0001 fault, so the SDP keeps
    // the notification and sends it again.
    assert_eq!(status, 502, "{resp}");
    assert_eq!(resp["status"], 500, "{resp}");
    assert!(
        resp["body"].as_str().unwrap_or("").contains("SVC0001"),
        "{resp}"
    );
    assert_eq!(
        h.stored_messages(),
        0,
        "a message was stored without its content"
    );
    assert!(
        h.metrics()
            .await
            .contains("switchboard_mms_fetch_failures_total{kind=\"unavailable\"}")
    );

    h.sim
        .control(serde_json::json!({"transient_error_rate": 0.0}))
        .await;
    let (status, resp) = h
        .sim
        .mo_mms(&mms("alice@im.example.org Try two", false))
        .await;
    assert_eq!(status, 200, "{resp}");
    check_parts(&at_webhook(&h, "Try two").await);
    assert_eq!(h.stored_messages(), 1);
    h.stop().await;
}

#[tokio::test]
async fn an_unknown_reference_is_refused_and_nothing_is_stored() {
    let h = start().await;
    let soap = switchboard::connectors::sdp::parlayx::mms::encode_notify_message_reception(
        &switchboard::connectors::sdp::parlayx::mms::MessageReception {
            correlator: "c-1".into(),
            message: switchboard::connectors::sdp::parlayx::mms::MessageReference {
                message_identifier: Some("no-such-message".into()),
                activation_number: "tel:10658000".into(),
                sender_address: "tel:+8613800000071".into(),
                priority: "Normal".into(),
                ..Default::default()
            },
        },
    );
    let r = h
        .sdp_auth(h.http.post(format!(
            "{}{}",
            h.base,
            switchboard::connectors::sdp::MMS_NOTIFY_PATH
        )))
        .header("content-type", "text/xml; charset=utf-8")
        .body(soap)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("SVC0001") && body.contains("no-such-message"),
        "{body}"
    );
    assert_eq!(h.stored_messages(), 0);
    assert!(
        h.metrics()
            .await
            .contains("switchboard_mms_fetch_failures_total{kind=\"permanent\"}")
    );
    h.stop().await;
}

#[tokio::test]
async fn media_links_are_served_only_when_signed_and_until_they_expire() {
    let h = start().await;
    let (status, _) = h
        .sim
        .mo_mms(&mms("alice@im.example.org Linked", false))
        .await;
    assert_eq!(status, 200);
    let got = at_webhook(&h, "Linked").await;
    let msg = MsgId::parse(&got["id"].as_str().unwrap()[..16]).unwrap();
    let links = MediaLinks::new(
        &MediaConfig {
            secret: SECRET.into(),
            ..MediaConfig::default()
        },
        &h.base,
    );
    let get = |url: String| {
        let http = h.http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            let status = r.status().as_u16();
            let ct = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            (status, ct, r.bytes().await.unwrap().to_vec())
        }
    };
    let url = links.url(msg, 0, "beach.jpg");
    let (status, ct, bytes) = get(url.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(ct.as_deref(), Some("image/jpeg"));
    assert_eq!(bytes, photo().bytes);

    // A changed signature, another part, an expired link, a part that is not there.
    let tampered = format!("{}0", &url[..url.len() - 1]);
    let tampered = if tampered == url {
        format!("{}1", &url[..url.len() - 1])
    } else {
        tampered
    };
    assert_eq!(get(tampered).await.0, 403);
    assert_eq!(
        get(url.replace("/0/beach.jpg", "/1/beach.jpg")).await.0,
        403
    );
    assert_eq!(
        get(links.url_until(msg, 0, "beach.jpg", 1_000)).await.0,
        410
    );
    assert_eq!(get(links.url(msg, 5, "x.jpg")).await.0, 404);
    // Signed with another key: refused.
    let other = MediaLinks::new(&MediaConfig::default(), &h.base);
    assert_eq!(get(other.url(msg, 0, "beach.jpg")).await.0, 403);
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("switchboard_media_requests_total{outcome=\"served\"}"),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test]
async fn an_mms_from_a_phone_reaches_mail_with_its_subject_and_attachment() {
    let Some(sink) = SmtpSink::start(&[]).await else {
        return;
    };
    let h = Harness::start(|cfg, _| {
        cfg.mail.hostname = "gw.example.org".into();
        cfg.mail.smarthost = sink.addr.to_string();
    })
    .await;
    let (status, resp) = h
        .sim
        .mo_mms(&mms("bob@example.org Greetings from the beach", false))
        .await;
    assert_eq!(status, 200, "{resp}");
    let raw = sink
        .wait_mail("the MMS as a mail", |m| {
            m.contains("Greetings from the beach")
        })
        .await;
    assert!(raw.contains("X-Rcpt-Args: <bob@example.org>"), "{raw}");
    let mail = MessageParser::default().parse(raw.as_bytes()).unwrap();
    assert_eq!(mail.subject(), Some("Holiday"));
    assert_eq!(
        mail.body_text(0).as_deref().map(str::trim),
        Some("Greetings from the beach")
    );
    let att: Vec<_> = mail.attachments().collect();
    assert_eq!(att.len(), 1, "{raw}");
    assert_eq!(att[0].attachment_name(), Some("beach.jpg"));
    assert_eq!(
        att[0].content_type().and_then(|c| c.subtype()),
        Some("jpeg")
    );
    assert_eq!(att[0].contents(), photo().bytes.as_slice());
    wait_for(
        Duration::from_secs(10),
        "the recipient to be delivered",
        || {
            let n = count_where_delivered(&h);
            async move { (n == 1).then_some(()) }
        },
    )
    .await;
    h.stop().await;
}

fn count_where_delivered(h: &Harness) -> i64 {
    let c = rusqlite::Connection::open_with_flags(
        &h.cfg.store.path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    c.query_row(
        "SELECT COUNT(*) FROM recipients WHERE address = 'mail:bob@example.org' AND state IN ('delivered', 'sent')",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}
