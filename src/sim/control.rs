//! The JSON control and statistics endpoints under `/sim/` and MO injection (`/sim/mo`).

use super::*;

/// Body of `POST /sim/control`; every field optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimControl {
    pub transient_error_rate: Option<f64>,
    pub permanent_fault_rate: Option<f64>,
    pub service_error_rate: Option<f64>,
    pub impossible_rate: Option<f64>,
    pub receipt_delay_ms: Option<u64>,
    pub send_receipts: Option<bool>,
    pub stall: Option<bool>,
}

/// Answer of `POST /sim/control`: the resulting configuration plus `stall`.
#[derive(Clone, Debug, Serialize)]
pub struct SimControlState {
    #[serde(flatten)]
    pub config: SimConfig,
    pub stall: bool,
}

/// Body of `POST /sim/mo`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoRequest {
    /// Subscriber, `+8613800000000` or `tel:+86…`.
    pub from: String,
    /// Service number (+ extension), `tel:` optional.
    pub to: String,
    pub text: String,
    /// Overrides the configured `notify_url`.
    #[serde(default)]
    pub notify_url: Option<String>,
}

pub(super) fn json_response<T: Serialize>(status: StatusCode, v: &T) -> Response {
    match serde_json::to_string(v) {
        Ok(s) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            s,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

pub(super) fn bad_json(e: &serde_json::Error) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "error": e.to_string() }),
    )
}

pub(super) async fn stats(State(sim): State<Arc<Simulator>>) -> Response {
    json_response(StatusCode::OK, &sim.stats())
}

pub(super) async fn latency(State(sim): State<Arc<Simulator>>) -> Response {
    json_response(StatusCode::OK, &sim.latency())
}

pub(super) async fn messages(State(sim): State<Arc<Simulator>>) -> Response {
    json_response(StatusCode::OK, &sim.messages())
}

pub(super) async fn control(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    let c: SimControl = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return bad_json(&e),
    };
    match sim.apply_control(&c) {
        Ok(state) => {
            tracing::info!(?c, "sdp-sim: control");
            json_response(StatusCode::OK, &state)
        }
        Err(errors) => json_response(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "errors": errors }),
        ),
    }
}

pub(super) async fn reset(State(sim): State<Arc<Simulator>>) -> Response {
    sim.reset();
    json_response(StatusCode::OK, &sim.stats())
}

pub(super) async fn mo(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    let req: MoRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_json(&e),
    };
    let (configured, version) = {
        let c = read_lock(&sim.cfg);
        (c.notify_url.clone(), c.version)
    };
    let Some(url) = req.notify_url.clone().or(configured) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &serde_json::json!({ "error": "no notify_url configured or given" }),
        );
    };
    let correlator = format!("mo-{}", sim.next_request_id());
    let now = chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, false);
    let xml = parlayx::encode_notify_sms_reception(
        version,
        &correlator,
        &req.text,
        &tel(&req.from),
        &tel(&req.to),
        Some(&now),
    );
    let creds = read_lock(&sim.cfg).callbacks.clone();
    let xml = creds.sign_envelope(xml);
    let sent = post_soap(&sim.client, &url, Bytes::from(xml), &creds).await;
    mo_answer(&sim, sent, serde_json::json!({ "correlator": correlator }))
}

/// The answer of `/sim/mo` and `/sim/mo-mms`: what the gateway said to the notification
/// (`ok` plus the status when it took it, else 502 with its status and answer).
pub(super) fn mo_answer(
    sim: &Simulator,
    sent: Result<(StatusCode, String), reqwest::Error>,
    mut ok: serde_json::Value,
) -> Response {
    match sent {
        Ok((status, _)) if status.is_success() => {
            bump(&sim.counters.mo_sent);
            ok["status"] = status.as_u16().into();
            json_response(StatusCode::OK, &ok)
        }
        Ok((status, text)) => {
            bump(&sim.counters.mo_failed);
            json_response(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({
                    "status": status.as_u16(),
                    "body": truncate(&text, MAX_ERROR_BODY),
                }),
            )
        }
        Err(e) => {
            bump(&sim.counters.mo_failed);
            json_response(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({ "status": null, "error": e.to_string() }),
            )
        }
    }
}
