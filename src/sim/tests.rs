use super::*;
use crate::connectors::sdp::parlayx::{
    Notification, ReceiptRequest, RequestHeader, SendSms, SoapError,
};

struct Running {
    base: String,
    sim: Arc<Simulator>,
    token: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    client: reqwest::Client,
}

impl Running {
    async fn stop(self) {
        self.token.cancel();
        let r = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        assert!(matches!(r, Ok(Ok(Ok(())))), "server did not stop cleanly");
    }

    async fn post(&self, path: &str, body: String) -> (StatusCode, String) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .header(header::CONTENT_TYPE, parlayx::CONTENT_TYPE)
            .body(body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.text().await.unwrap())
    }

    async fn get_json(&self, path: &str) -> serde_json::Value {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        serde_json::from_str(&r.text().await.unwrap()).unwrap()
    }
}

async fn start(cfg: SimConfig) -> Running {
    assert!(cfg.validate().is_empty(), "{:?}", cfg.validate());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sim = Simulator::new(cfg);
    let token = CancellationToken::new();
    let task = tokio::spawn(serve_with(listener, sim.clone(), token.clone()));
    Running {
        base,
        sim,
        token,
        task,
        client: reqwest::Client::new(),
    }
}

/// A tiny gateway-side receiver: forwards each body to a channel, answers 200.
async fn receiver() -> (String, mpsc::UnboundedReceiver<String>, CancellationToken) {
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    let app = Router::new().route(
        "/notify",
        post(move |body: String| {
            let tx = tx.clone();
            async move {
                let kind = match parlayx::decode_notification(body.as_bytes()) {
                    Ok(n) => n.kind(),
                    Err(_) => return (StatusCode::BAD_REQUEST, String::new()),
                };
                let _ = tx.send(body);
                (
                    StatusCode::OK,
                    parlayx::encode_notify_response(Version::V2_2, kind),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { t.cancelled().await })
            .await
    });
    (url, rx, token)
}

fn request(correlator: &str, endpoint: Option<&str>) -> String {
    let req = SendSms {
        addresses: vec!["tel:+8613800000001".into(), "tel:+8613800000002".into()],
        sender_name: Some("10658000".into()),
        message: "hello <sim> & co".into(),
        receipt_request: endpoint.map(|e| ReceiptRequest {
            endpoint: e.into(),
            interface_name: "SmsNotification".into(),
            correlator: correlator.into(),
        }),
        header: Some(RequestHeader::with_password(
            "sp1",
            "secret",
            "svc",
            "20240101000000",
            "tel:+8613800000001",
            "tel:+8613800000001",
        )),
    };
    parlayx::encode_send_sms(Version::V2_2, &req)
}

fn quiet() -> SimConfig {
    SimConfig {
        send_receipts: false,
        ..SimConfig::default()
    }
}

#[test]
fn probes_are_parsed_and_summarised() {
    assert_eq!(
        probe_time("probe:1700000000000000;hello"),
        Some(1_700_000_000_000_000)
    );
    assert_eq!(probe_time("probe:12x;hello"), None);
    assert_eq!(probe_time("probe:12"), None);
    assert_eq!(probe_time("hello probe:12;"), None);
    let mut p = Probes::default();
    assert_eq!(p.summary(), SimLatency::default());
    let now = unix_us();
    for ms in 1..=100u64 {
        p.record(now - ms * 1000);
    }
    let s = p.summary();
    assert_eq!((s.count, s.kept), (100, 100));
    assert!(s.p50_ms >= 50.0 && s.p50_ms < 60.0, "{s:?}");
    assert!(s.p99_ms >= 99.0 && s.max_ms >= 100.0, "{s:?}");
    assert!(s.first_at_us >= now && s.last_at_us >= s.first_at_us);
}

#[tokio::test]
async fn send_sms_round_trip_and_duplicates() {
    let r = start(quiet()).await;
    let (s, body) = r
        .post(SEND_SMS_PATH, request("c-1", Some("http://127.0.0.1:1/x")))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let id1 = parlayx::decode_send_sms_response(body.as_bytes()).unwrap();
    // Alias path, same correlator → duplicate.
    let (s, body) = r
        .post("/SendSms", request("c-1", Some("http://127.0.0.1:1/x")))
        .await;
    assert_eq!(s, StatusCode::OK);
    let id2 = parlayx::decode_send_sms_response(body.as_bytes()).unwrap();
    assert_ne!(id1, id2);
    let st = r.sim.stats();
    assert_eq!(st.received, 4);
    assert_eq!(st.unique_correlators, 1);
    assert_eq!(st.duplicates, 1);

    let stats = r.get_json("/sim/stats").await;
    assert_eq!(stats["received"], 4);
    assert_eq!(stats["duplicates"], 1);
    let msgs = r.get_json("/sim/messages").await;
    assert_eq!(msgs.as_array().unwrap().len(), 2);
    assert_eq!(msgs[0]["message"], "hello <sim> & co");
    assert_eq!(msgs[0]["correlator"], "c-1");
    assert_eq!(msgs[0]["sp_id"], "sp1");
    assert_eq!(msgs[0]["sender_name"], "10658000");
    assert_eq!(msgs[0]["addresses"][1], "tel:+8613800000002");

    // Malformed → SVC0002 fault, HTTP 500.
    let (s, body) = r.post(SEND_SMS_PATH, "<nope".into()).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let f = parlayx::decode_fault(body.as_bytes()).unwrap();
    assert_eq!(f.message_id(), Some("SVC0002"));

    let (s, _) = r.post("/sim/reset", String::new()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r.sim.stats(), SimStats::default());
    assert!(r.sim.messages().is_empty());
    r.stop().await;
}

#[tokio::test]
async fn ring_buffer_is_bounded() {
    let r = start(SimConfig {
        keep_messages: 2,
        ..quiet()
    })
    .await;
    for c in ["a", "b", "c"] {
        let (s, _) = r
            .post(SEND_SMS_PATH, request(c, Some("http://x.invalid/")))
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let m = r.sim.messages();
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].correlator.as_deref(), Some("b"));
    assert_eq!(m[1].correlator.as_deref(), Some("c"));
    r.stop().await;
}

#[tokio::test]
async fn transient_errors_give_503() {
    let r = start(SimConfig {
        transient_error_rate: 1.0,
        ..quiet()
    })
    .await;
    let (s, _) = r.post(SEND_SMS_PATH, request("c", None)).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let st = r.sim.stats();
    assert_eq!((st.transient_errors, st.received), (1, 0));
    r.stop().await;
}

#[tokio::test]
async fn permanent_faults_give_pol0001() {
    let r = start(SimConfig {
        permanent_fault_rate: 1.0,
        ..quiet()
    })
    .await;
    let (s, body) = r.post(SEND_SMS_PATH, request("c", None)).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    match parlayx::decode_send_sms_response(body.as_bytes()) {
        Err(SoapError::Fault(f)) => {
            assert_eq!(f.message_id(), Some("POL0001"));
            assert_eq!(
                f.exception.as_ref().map(|e| e.kind),
                Some(parlayx::ExceptionKind::Policy)
            );
        }
        other => panic!("expected a fault, got {other:?}"),
    }
    assert_eq!(r.sim.stats().permanent_faults, 1);
    r.stop().await;
}

#[tokio::test]
async fn receipts_are_posted() {
    let (url, mut rx, rtoken) = receiver().await;
    let r = start(SimConfig {
        receipt_delay_ms: 10,
        ..SimConfig::default()
    })
    .await;
    let (s, _) = r.post(SEND_SMS_PATH, request("corr-42", Some(&url))).await;
    assert_eq!(s, StatusCode::OK);
    let mut got = Vec::new();
    for _ in 0..2 {
        let body = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("receipt within deadline")
            .expect("channel open");
        got.push(parlayx::decode_notification(body.as_bytes()).unwrap());
    }
    got.sort_by_key(|n| format!("{n:?}"));
    for (n, addr) in got.iter().zip(["tel:+8613800000001", "tel:+8613800000002"]) {
        assert_eq!(
            n,
            &Notification::DeliveryReceipt {
                correlator: "corr-42".into(),
                address: addr.into(),
                status: DeliveryStatus::DeliveredToTerminal,
            }
        );
    }
    // receipts_sent is bumped right after the POST returns.
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.sim.stats().receipts_sent < 2 {
        assert!(Instant::now() < deadline, "{:?}", r.sim.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // impossible_rate = 1 via control
    let (s, body) = r
        .post("/sim/control", r#"{"impossible_rate": 1.0}"#.into())
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["impossible_rate"], 1.0);
    assert_eq!(v["stall"], false);
    r.post(SEND_SMS_PATH, request("corr-43", Some(&url))).await;
    let body = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        parlayx::decode_notification(body.as_bytes()).unwrap(),
        Notification::DeliveryReceipt { status: DeliveryStatus::DeliveryImpossible, ref correlator, .. } if correlator == "corr-43"
    ));
    r.stop().await;
    rtoken.cancel();
}

#[tokio::test]
async fn failed_receipts_are_counted() {
    // Nothing listens on the endpoint: every attempt fails.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", dead.local_addr().unwrap());
    drop(dead);
    let r = start(SimConfig {
        receipt_delay_ms: 0,
        ..SimConfig::default()
    })
    .await;
    r.post(SEND_SMS_PATH, request("c", Some(&url))).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while r.sim.stats().receipts_failed < 2 {
        assert!(Instant::now() < deadline, "{:?}", r.sim.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(r.sim.stats().receipts_sent, 0);
    r.stop().await;
}

#[tokio::test]
async fn mo_reaches_the_gateway() {
    let (url, mut rx, rtoken) = receiver().await;
    let r = start(SimConfig {
        notify_url: Some(url.clone()),
        ..quiet()
    })
    .await;
    let (s, body) = r
        .post(
            "/sim/mo",
            r#"{"from": "+8613800000000", "to": "10658000123", "text": "hi <there> & you"}"#.into(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], 200);
    let xml = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    match parlayx::decode_notification(xml.as_bytes()).unwrap() {
        Notification::Reception {
            correlator,
            message,
            sender_address,
            activation_number,
            date_time,
        } => {
            assert!(correlator.is_some_and(|c| c.starts_with("mo-")));
            assert_eq!(message, "hi <there> & you");
            assert_eq!(sender_address, "tel:+8613800000000");
            assert_eq!(activation_number, "tel:10658000123");
            assert!(date_time.is_some());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(r.sim.stats().mo_sent, 1);

    // A gateway answering 4xx/5xx → 502 and mo_failed.
    let (s, body) = r
        .post(
            "/sim/mo",
            format!(
                r#"{{"from": "tel:+1", "to": "tel:2", "text": "x", "notify_url": "{}"}}"#,
                url.replace("/notify", "/missing")
            ),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], 404);
    assert_eq!(r.sim.stats().mo_failed, 1);
    // Bad JSON → 400.
    let (s, _) = r.post("/sim/mo", "{".into()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    r.stop().await;
    rtoken.cancel();
}

#[tokio::test]
async fn stall_holds_requests_until_released() {
    let r = start(quiet()).await;
    let (s, body) = r.post("/sim/control", r#"{"stall": true}"#.into()).await;
    assert_eq!(s, StatusCode::OK);
    assert!(body.contains("\"stall\":true"));
    let client = r.client.clone();
    let url = format!("{}{SEND_SMS_PATH}", r.base);
    let body = request("st-1", None);
    let pending = tokio::spawn(async move {
        let resp = client.post(url).body(body).send().await.unwrap();
        let s = resp.status();
        (s, resp.text().await.unwrap())
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.sim.stalled_requests() < 1 {
        assert!(Instant::now() < deadline, "request never reached the stall");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!pending.is_finished());
    assert_eq!(r.sim.stats().received, 0);
    // Invalid control values are refused and change nothing.
    let (s, body) = r
        .post("/sim/control", r#"{"transient_error_rate": 2}"#.into())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("sim.transient_error_rate"));
    let (s, _) = r.post("/sim/control", r#"{"stall": false}"#.into()).await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s, StatusCode::OK);
    assert!(parlayx::decode_send_sms_response(body.as_bytes()).is_ok());
    assert_eq!(r.sim.stats().received, 2);
    r.stop().await;
}

#[tokio::test]
async fn shutdown_releases_stalled_requests() {
    let r = start(quiet()).await;
    r.sim.set_stall(true);
    let client = r.client.clone();
    let url = format!("{}{SEND_SMS_PATH}", r.base);
    let body = request("st-2", None);
    let pending =
        tokio::spawn(async move { client.post(url).body(body).send().await.map(|r| r.status()) });
    let deadline = Instant::now() + Duration::from_secs(5);
    while r.sim.stalled_requests() < 1 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    r.stop().await;
    let s = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
}
