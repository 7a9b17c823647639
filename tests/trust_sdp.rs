//! The SDP's doors, tried as an attacker would: forged MO and receipts without a
//! credential, blind receipts with one, lenient SOAP, MO relays to phones, and each callback
//! authentication method on its own. Also: a receipt that overtakes its sendSms answer
//! keeps the attempt, remote id and encoding.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use switchboard::config::Config;
use switchboard::connectors::sdp::NOTIFY_PATH;
use switchboard::connectors::sdp::callbacks::{
    BasicAuth, CallbackConfig, NotifyHeaderAuth, PasswordAlgorithm,
};
use switchboard::connectors::sdp::parlayx::{self, DeliveryStatus, Version};

const PHONE: &str = "+8613800000051";
const VICTIM: &str = "+8613911112222";

fn forged_mo(text: &str) -> String {
    parlayx::encode_notify_sms_reception(
        Version::V2_2,
        "1",
        text,
        "tel:+8613800000001",
        "tel:10658000",
        None,
    )
}

fn receipt(correlator: &str, address: &str) -> String {
    parlayx::encode_notify_delivery_receipt(
        Version::V2_2,
        correlator,
        &format!("tel:{address}"),
        DeliveryStatus::DeliveredToTerminal,
    )
}

/// POSTs `body` to `path` with only what the caller gives: no credential unless `basic`.
async fn post_raw(
    h: &Harness,
    path: &str,
    body: String,
    basic: Option<(&str, &str)>,
) -> (reqwest::StatusCode, String) {
    let mut req = h
        .http
        .post(format!("{}{path}", h.base))
        .header("content-type", "text/xml; charset=utf-8")
        .header("SOAPAction", "\"\"")
        .body(body);
    if let Some((u, p)) = basic {
        req = req.basic_auth(u, Some(p));
    }
    let r = req.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

/// A counter's value on a `/metrics` page (0 when absent). Counters are process-wide and
/// tests run side by side, so callers compare before and after.
fn metric(metrics: &str, key: &str) -> u64 {
    let key = format!("{key} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn refused_count(metrics: &str, reason: &str) -> u64 {
    metric(
        metrics,
        &format!("switchboard_callbacks_refused_total{{reason=\"{reason}\"}}"),
    )
}

fn sms(to: &str, text: &str) -> Value {
    json!({"from": "im:alice@im.example.org", "to": [to], "text": text})
}

#[tokio::test]
async fn a_forged_mo_without_credential_is_refused_and_sends_nothing() {
    let h = Harness::start(|_, _| {}).await;
    let before = refused_count(&h.metrics().await, "basic_auth");
    for basic in [None, Some((CALLBACK_USER, "wrong-password-000"))] {
        let (status, body) = post_raw(
            &h,
            NOTIFY_PATH,
            forged_mo(&format!("sms:{VICTIM} FREE")),
            basic,
        )
        .await;
        assert_eq!(status, 401, "{body}");
        assert!(body.contains("Fault"), "{body}");
        assert!(!body.contains(CALLBACK_PASSWORD), "{body}");
    }
    // The MMS door is closed the same way.
    let (status, _) = post_raw(
        &h,
        switchboard::connectors::sdp::MMS_NOTIFY_PATH,
        forged_mo("x"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(h.stored_messages(), 0);
    assert!(h.sim.sim.messages().is_empty());
    assert!(refused_count(&h.metrics().await, "basic_auth") >= before + 3);
    h.stop().await;
}

#[tokio::test]
async fn an_authenticated_mo_never_relays_to_a_phone_unless_allowed() {
    let h = Harness::start(|_, _| {}).await;
    let relay_refused = |m: &str| {
        metric(
            m,
            "switchboard_mo_relay_refused_total{route=\"first_word\"}",
        )
    };
    let before = relay_refused(&h.metrics().await);
    let (status, body) = h.soap(forged_mo(&format!("sms:{VICTIM} FREE"))).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = h.soap(forged_mo(&format!("tel:{VICTIM} FREE"))).await;
    assert_eq!(status, 200);
    // Both are stored (never dropped), with no recipient: nothing can be sent.
    assert_eq!(h.stored_messages(), 2);
    assert_eq!(count_rows(&h.cfg.store.path, "recipients"), 0);
    assert!(relay_refused(&h.metrics().await) >= before + 2);
    assert!(h.sim.sim.messages().is_empty());
    h.stop().await;

    // A phone as the default route is refused the same way.
    let h = Harness::start(|cfg, _| cfg.mo.default_route = Some(format!("sms:{VICTIM}"))).await;
    let (status, _) = h.soap(forged_mo("hello")).await;
    assert_eq!(status, 200);
    assert_eq!(h.stored_messages(), 1);
    assert_eq!(count_rows(&h.cfg.store.path, "recipients"), 0);
    h.stop().await;

    // Relaying on, but only to +44: a +86 number is still not reached; a +44 one is.
    let h = Harness::start(|cfg, _| {
        cfg.mo.relay_to_phones = true;
        cfg.mo.relay_networks = vec!["+44".into()];
    })
    .await;
    let (status, _) = h.soap(forged_mo(&format!("sms:{VICTIM} FREE"))).await;
    assert_eq!(status, 200);
    assert_eq!(count_rows(&h.cfg.store.path, "recipients"), 0);
    let (status, _) = h.soap(forged_mo("sms:+447700900123 allowed")).await;
    assert_eq!(status, 200);
    let sent = wait_for(Duration::from_secs(10), "the allowed relay", || {
        let found = h
            .sim
            .sim
            .messages()
            .into_iter()
            .find(|m| m.addresses == vec!["tel:+447700900123".to_string()]);
        async move { found }
    })
    .await;
    assert_eq!(sent.message, "allowed");
    assert!(
        h.sim
            .sim
            .messages()
            .iter()
            .all(|m| m.addresses != vec![format!("tel:{VICTIM}")])
    );
    h.stop().await;
}

#[tokio::test]
async fn forged_and_blind_receipts_change_nothing() {
    let h = Harness::start(|cfg, sim| {
        sim.send_receipts = false;
        // No IM webhook and no smarthost: im: and mail: recipients are held.
        cfg.im.url = String::new();
    })
    .await;
    let id = h.submit_ok(sms(&format!("sms:{PHONE}"), "a secret")).await;
    h.wait_state(&id, 0, "sent").await;
    let held = h
        .submit_ok(json!({
            "from": "im:alice@im.example.org",
            "to": ["mail:bob@example.org", "im:carol@im.example.org"],
            "text": "held",
        }))
        .await;
    h.wait_state(&held, 0, "held").await;
    h.wait_state(&held, 1, "held").await;
    let correlator = h.correlator(&id, 0);
    let refused_before = refused_count(&h.metrics().await, "receipt_not_applicable");
    assert_eq!(correlator.len(), 32, "{correlator}");
    assert!(
        !correlator.starts_with(&id),
        "the correlator is not random: {correlator}"
    );

    // Forged: the real correlator, but no credential.
    let (status, _) = post_raw(&h, NOTIFY_PATH, receipt(&correlator, PHONE), None).await;
    assert_eq!(status, 401);

    // Blind, with the credential: guessed and other recipients' correlators, the old
    // id-based form, a mismatched address. One answer for all, naming none.
    let guesses = [
        receipt("0123456789abcdef0123456789abcdef", PHONE),
        receipt(&format!("{id}0000"), PHONE),
        receipt(&format!("{held}0000"), PHONE),
        receipt(&format!("{held}0001"), PHONE),
        receipt(&correlator, "+8613800000099"),
        receipt("", PHONE),
    ];
    let mut answers = Vec::new();
    for g in guesses {
        let (status, body) = h.soap(g).await;
        assert_eq!(status, 500, "{body}");
        assert!(!body.contains(&correlator) && !body.contains(&id) && !body.contains(&held));
        answers.push(body);
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "refusals differ: {answers:?}"
    );
    let m = h.message(&id).await;
    assert_eq!(m["recipients"][0]["state"], "sent");
    assert_eq!(m["reports"].as_array().unwrap().len(), 0);
    let m = h.message(&held).await;
    for r in m["recipients"].as_array().unwrap() {
        assert_eq!(r["state"], "held", "{m}");
        assert_eq!(r["attempts"], 0, "{m}");
    }
    assert_eq!(count_rows(&h.cfg.store.path, "reports"), 0);
    assert!(refused_count(&h.metrics().await, "receipt_not_applicable") >= refused_before + 6);

    // The genuine receipt still applies.
    let (status, body) = h.soap(receipt(&correlator, PHONE)).await;
    assert_eq!(status, 200, "{body}");
    h.wait_state(&id, 0, "delivered").await;
    h.stop().await;
}

#[tokio::test]
async fn lenient_soap_is_refused_with_a_fault() {
    let h = Harness::start(|_, _| {}).await;
    let id = h.submit_ok(sms(&format!("sms:{PHONE}"), "x")).await;
    h.wait_state(&id, 0, "delivered").await;
    let before = h.stored_messages();
    let op = |ns: &str| {
        format!(
            r#"<ns1:notifySmsReception xmlns:ns1="{ns}"><ns1:correlator>1</ns1:correlator><ns1:message><message>bob@example.org hi</message><senderAddress>tel:+8613800000001</senderAddress><smsServiceActivationNumber>tel:10658000</smsServiceActivationNumber></ns1:message></ns1:notifySmsReception>"#
        )
    };
    let notify = parlayx::NS_NOTIFICATION_V2_2;
    let undeclared = format!(
        r#"<soapenv:Envelope xmlns:soapenv="{}"><soapenv:Body><x:wrap>{}</x:wrap></soapenv:Body></soapenv:Envelope>"#,
        parlayx::NS_SOAP,
        op(notify)
    );
    let undeclared_op = format!(
        r#"<soapenv:Envelope xmlns:soapenv="{}"><soapenv:Body><ns9:notifySmsReception><ns9:correlator>1</ns9:correlator></ns9:notifySmsReception></soapenv:Body></soapenv:Envelope>"#,
        parlayx::NS_SOAP
    );
    let send_ns = format!(
        r#"<soapenv:Envelope xmlns:soapenv="{}"><soapenv:Body>{}</soapenv:Body></soapenv:Envelope>"#,
        parlayx::NS_SOAP,
        op(parlayx::NS_SEND_V2_2)
    );
    let soap12 = format!(
        r#"<env:Envelope xmlns:env="{}"><env:Body>{}</env:Body></env:Envelope>"#,
        parlayx::NS_SOAP12,
        op(notify)
    );
    for (what, body) in [
        ("undeclared prefix", undeclared),
        ("undeclared operation prefix", undeclared_op),
        ("send namespace", send_ns),
        ("SOAP 1.2", soap12),
    ] {
        let (status, text) = h.soap(body).await;
        assert_eq!(status, 500, "{what}: {text}");
        let fault = parlayx::decode_fault(text.as_bytes()).expect("a fault");
        assert_eq!(fault.message_id(), Some("SVC0002"), "{what}: {fault}");
    }
    let must = |value: &str, header: &str| {
        format!(
            r#"<soapenv:Envelope xmlns:soapenv="{}"><soapenv:Header>{header}</soapenv:Header><soapenv:Body>{}</soapenv:Body></soapenv:Envelope>"#,
            parlayx::NS_SOAP,
            op(notify)
        )
        .replace("MU", value)
    };
    for value in ["1", "true"] {
        let body = must(
            value,
            r#"<t:Transaction xmlns:t="urn:example:tx" soapenv:mustUnderstand="MU">5</t:Transaction>"#,
        );
        let (status, text) = h.soap(body).await;
        assert_eq!(status, 500, "{text}");
        let fault = parlayx::decode_fault(text.as_bytes()).expect("a fault");
        assert_eq!(fault.faultcode, "soapenv:MustUnderstand", "{text}");
    }
    assert_eq!(h.stored_messages(), before);
    // An unknown header that need not be understood is ignored.
    let body = must(
        "0",
        r#"<t:Transaction xmlns:t="urn:example:tx" soapenv:mustUnderstand="MU">5</t:Transaction>"#,
    );
    let (status, text) = h.soap(body).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(h.stored_messages(), before + 1);
    h.stop().await;
}

#[tokio::test]
async fn a_receipt_before_the_send_answer_keeps_attempt_remote_id_and_encoding() {
    const N: usize = 200;
    let h = Harness::start(|_, sim| sim.receipt_before_response = true).await;
    let mut ids = Vec::with_capacity(N);
    for i in 0..N {
        ids.push(
            h.submit_ok(sms(&format!("sms:+86138{:08}", 10_000 + i), "early"))
                .await,
        );
    }
    let gw = &h;
    for id in &ids {
        gw.wait_state(id, 0, "delivered").await;
        // The receipt made it final; the send's outcome, recorded after, adds the attempt.
        let m = wait_for(
            Duration::from_secs(15),
            "the send's outcome to be recorded",
            || async move {
                let m = gw.message(id).await;
                (m["recipients"][0]["attempts"].as_u64().unwrap_or(0) >= 1).then_some(m)
            },
        )
        .await;
        let r = &m["recipients"][0];
        assert_eq!(r["state"], "delivered", "{m}");
        assert!(r["attempts"].as_u64().unwrap_or(0) >= 1, "{m}");
        assert!(
            r["remote_id"].as_str().is_some_and(|s| !s.is_empty()),
            "{m}"
        );
        assert_eq!(r["sms_encoding"], "gsm7", "{m}");
        assert_eq!(m["reports"][0]["status"], "DeliveredToTerminal", "{m}");
    }
    // Every receipt came before its answer: the in-flight recipient took it.
    let stats = h.sim.sim.stats();
    assert_eq!(stats.receipts_sent as usize, N, "{stats:?}");
    h.stop().await;
}

fn header_auth() -> NotifyHeaderAuth {
    NotifyHeaderAuth {
        sp_rev_id: "sp-rev-7".into(),
        sp_id: "000201".into(),
        password: "header-password".into(),
        algorithm: PasswordAlgorithm::Md5Upper,
        ..NotifyHeaderAuth::default()
    }
}

fn only(cb: CallbackConfig) -> impl FnOnce(&mut Config, &mut switchboard::sim::SimConfig) {
    move |cfg, _| cfg.sdp.callbacks = cb
}

#[tokio::test]
async fn the_notify_header_password_and_timestamp_are_checked() {
    let auth = header_auth();
    let h = Harness::start(only(CallbackConfig {
        header: Some(auth.clone()),
        ..CallbackConfig::default()
    }))
    .await;
    let now = chrono::Local::now().naive_local();
    let ts = |secs: i64| {
        (now - chrono::Duration::seconds(secs))
            .format("%Y%m%d%H%M%S")
            .to_string()
    };
    let signed = |h: parlayx::NotifyHeader| parlayx::insert_notify_header(forged_mo("x"), &h);
    let mut wrong = auth.make_header(&ts(0));
    wrong.sp_rev_password = wrong.sp_rev_password.to_ascii_lowercase();
    let mut other_sp = auth.make_header(&ts(0));
    other_sp.sp_id = "000999".into();
    let stale = auth.make_header(&ts(3600));
    let future = auth.make_header(&ts(-3600));
    let wrong_secret = NotifyHeaderAuth {
        password: "guessed-password".into(),
        ..auth.clone()
    }
    .make_header(&ts(0));
    for (what, body, reason) in [
        ("no header", forged_mo("x"), "header"),
        ("wrong case", signed(wrong), "header"),
        ("other spId", signed(other_sp), "header"),
        ("wrong password", signed(wrong_secret), "header"),
        ("stale timeStamp", signed(stale), "stale_timestamp"),
        ("future timeStamp", signed(future), "stale_timestamp"),
    ] {
        let before = refused_count(&h.metrics().await, reason);
        let (status, text) = post_raw(&h, NOTIFY_PATH, body, None).await;
        assert_eq!(status, 403, "{what}: {text}");
        assert!(!text.contains("header-password"), "{text}");
        assert!(
            refused_count(&h.metrics().await, reason) > before,
            "{what}: not counted"
        );
    }
    assert_eq!(h.stored_messages(), 0);
    // The right header is taken, and the simulator signs its receipts with it.
    let (status, text) = post_raw(&h, NOTIFY_PATH, signed(auth.make_header(&ts(0))), None).await;
    assert_eq!(status, 200, "{text}");
    let id = h.submit_ok(sms(&format!("sms:{PHONE}"), "signed")).await;
    h.wait_state(&id, 0, "delivered").await;
    h.stop().await;
}

#[tokio::test]
async fn the_source_allowlist_refuses_other_networks_even_with_a_credential() {
    let h = Harness::start(|cfg, _| {
        cfg.sdp.callbacks.allow_networks = vec!["10.0.0.0/8".into(), "::1/128".into()];
    })
    .await;
    let before = refused_count(&h.metrics().await, "source");
    let (status, text) = h.soap(forged_mo("bob@example.org hi")).await;
    assert_eq!(status, 403, "{text}");
    assert!(refused_count(&h.metrics().await, "source") > before);
    assert_eq!(h.stored_messages(), 0);
    h.stop().await;
    // Allowed from loopback: taken.
    let h = Harness::start(|cfg, _| {
        cfg.sdp.callbacks.allow_networks = vec!["127.0.0.0/8".into()];
    })
    .await;
    let (status, text) = h.soap(forged_mo("bob@example.org hi")).await;
    assert_eq!(status, 200, "{text}");
    h.stop().await;
}

#[tokio::test]
async fn basic_auth_is_required_when_configured() {
    let h = Harness::start(only(CallbackConfig {
        basic: Some(BasicAuth {
            user: "operator-sdp".into(),
            password: "basic-password-1".into(),
        }),
        ..CallbackConfig::default()
    }))
    .await;
    for (what, basic) in [
        ("none", None),
        ("wrong password", Some(("operator-sdp", "basic-password-2"))),
        ("wrong user", Some(("sdp", "basic-password-1"))),
    ] {
        let (status, text) = post_raw(&h, NOTIFY_PATH, forged_mo("x"), basic).await;
        assert_eq!(status, 401, "{what}: {text}");
    }
    assert_eq!(h.stored_messages(), 0);
    let (status, _) = post_raw(
        &h,
        NOTIFY_PATH,
        forged_mo("x"),
        Some(("operator-sdp", "basic-password-1")),
    )
    .await;
    assert_eq!(status, 200);
    h.stop().await;
}

#[tokio::test]
async fn the_secret_path_is_required_and_the_bare_path_refused() {
    let secret = "s3cret-path-segment-0001";
    let h = Harness::start(only(CallbackConfig {
        secret_path: Some(secret.into()),
        ..CallbackConfig::default()
    }))
    .await;
    for path in [
        NOTIFY_PATH.to_string(),
        format!("{NOTIFY_PATH}/s3cret-path-segment-0002"),
        format!("{NOTIFY_PATH}/"),
        format!(
            "{}/{}",
            switchboard::connectors::sdp::MMS_NOTIFY_PATH,
            "guess"
        ),
    ] {
        let (status, text) = post_raw(&h, &path, forged_mo("x"), None).await;
        assert!(status == 403 || status == 404, "{path}: {status} {text}");
    }
    assert_eq!(h.stored_messages(), 0);
    let (status, text) =
        post_raw(&h, &format!("{NOTIFY_PATH}/{secret}"), forged_mo("x"), None).await;
    assert_eq!(status, 200, "{text}");
    // The SDP is told the secret path in receiptRequest, so its receipts arrive.
    let id = h.submit_ok(sms(&format!("sms:{PHONE}"), "path")).await;
    h.wait_state(&id, 0, "delivered").await;
    h.stop().await;
}

#[tokio::test]
async fn without_any_credential_every_callback_is_refused() {
    // A gateway with no SDP and no callback credential (check-config would accept it, as
    // no SDP is configured): its callbacks are closed all the same.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.sdp.callbacks = CallbackConfig::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(switchboard::gateway::run(
        cfg.clone(),
        switchboard::gateway::Listeners {
            http: listener,
            callbacks: None,
            admin: None,
            sim: None,
            smtp: None,
        },
        stop.clone(),
    ));
    let http = reqwest::Client::new();
    let ready = format!("{base}/readyz");
    let page = |http: reqwest::Client, base: String| async move {
        http.get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    wait_for(Duration::from_secs(10), "the gateway to be ready", || {
        let (http, ready) = (http.clone(), ready.clone());
        async move {
            http.get(&ready)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        }
    })
    .await;
    let before = refused_count(&page(http.clone(), base.clone()).await, "no_credential");
    for path in [NOTIFY_PATH, switchboard::connectors::sdp::MMS_NOTIFY_PATH] {
        let r = http
            .post(format!("{base}{path}"))
            .basic_auth(CALLBACK_USER, Some(CALLBACK_PASSWORD))
            .header("content-type", "text/xml; charset=utf-8")
            .body(forged_mo("bob@example.org hi"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
    }
    let metrics = page(http.clone(), base.clone()).await;
    assert!(
        refused_count(&metrics, "no_credential") >= before + 2,
        "{metrics}"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(count_rows(&cfg.store.path, "messages"), 0);
}

#[test]
fn shipped_configs_enable_a_callback_credential() {
    for path in ["config/switchboard.toml", "config/production.toml"] {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let cfg = Config::load(&p).unwrap_or_else(|e| panic!("{path}: {e}"));
        let cb = &cfg.sdp.callbacks;
        assert!(
            cb.basic.is_some() || cb.secret_path.is_some() || cb.header.is_some(),
            "{path}: no callback credential"
        );
        assert!(!cfg.mo.relay_to_phones, "{path}");
        let mut open = cfg.clone();
        open.sdp.callbacks = CallbackConfig {
            allow_networks: cb.allow_networks.clone(),
            ..CallbackConfig::default()
        };
        let errors = open.validate();
        assert!(
            errors.iter().any(|e| e.starts_with("sdp.callbacks:")),
            "{path}: an allowlist alone passes: {errors:?}"
        );
    }
}

/// The directory for the MO sender checks: al (+8613800000002) is in group crew; the
/// forged MO's sender (+8613800000001) is nobody.
fn crew(cfg: &mut Config) {
    seed_directory(
        cfg,
        json!({
            "users": {"al": {"name": "Al", "addresses": ["sms:+8613800000002"]}},
            "groups": {"crew": {"name": "Crew", "members": [{"user": "al"}, {"address": "sms:+8613800000003"}]}}
        }),
    );
}

#[tokio::test]
async fn mo_from_outside_a_restricted_directory_or_from_a_non_member_gets_a_policy_fault() {
    let refused = |m: &str, reason: &str| {
        metric(
            m,
            &format!("switchboard_messages_refused_total{{stage=\"auth\",reason=\"{reason}\"}}"),
        )
    };
    let h = Harness::start(|cfg, _| {
        cfg.directory.mo_senders = "known".into();
        crew(cfg);
    })
    .await;
    let before = refused(&h.metrics().await, "unknown_sender");
    let (status, body) = h.soap(forged_mo("im:alice@im.example.org hello")).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("POL0001"), "{body}");
    assert!(body.contains("is not in the directory"), "{body}");
    assert_eq!(h.stored_messages(), 0, "a refused MO is not stored");
    assert_eq!(refused(&h.metrics().await, "unknown_sender"), before + 1);
    h.stop().await;

    // Any phone may send MO, but only members write to a group (spoken as the group).
    let h = Harness::start(|cfg, _| crew(cfg)).await;
    let before = refused(&h.metrics().await, "not_a_member");
    let (status, body) = h.soap(forged_mo("group:crew free SMS for all")).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.contains("POL0001") && body.contains("not a member"),
        "{body}"
    );
    assert_eq!(h.stored_messages(), 0);
    assert_eq!(refused(&h.metrics().await, "not_a_member"), before + 1);
    // A member's MO to the group reaches the other member, from the group.
    let member = parlayx::encode_notify_sms_reception(
        Version::V2_2,
        "1",
        "group:crew standup in 5",
        "tel:+8613800000002",
        "tel:10658000",
        None,
    );
    let (status, body) = h.soap(member).await;
    assert_eq!(status, 200, "{body}");
    let sent = wait_for(Duration::from_secs(10), "the group SMS", || {
        let found = h
            .sim
            .sim
            .messages()
            .into_iter()
            .find(|m| m.addresses == vec!["tel:+8613800000003".to_string()]);
        async move { found }
    })
    .await;
    assert!(sent.message.ends_with("standup in 5"), "{}", sent.message);
    assert!(
        h.sim
            .sim
            .messages()
            .iter()
            .all(|m| m.addresses != vec!["tel:+8613800000002".to_string()]),
        "the speaker is not sent their own message"
    );
    h.stop().await;
}
