//! The SendSms endpoint: `sendSms` answered by the configured rates, receipts queued.

use super::*;

pub(super) async fn send_sms(State(sim): State<Arc<Simulator>>, body: Bytes) -> Response {
    if !sim.wait_unstalled().await {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    let req = match parlayx::decode_send_sms(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(error = %e, "sdp-sim: bad sendSms");
            let fault = Fault::service(
                "SVC0002",
                "Invalid input value for message part %1",
                vec![truncate(&e.to_string(), 200)],
            );
            return soap_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                parlayx::encode_fault(&fault),
            );
        }
    };
    let (transient, permanent, impossible, send_receipts, delay, version, keep, service) = {
        let c = read_lock(&sim.cfg);
        (
            c.transient_error_rate,
            c.permanent_fault_rate,
            c.impossible_rate,
            c.send_receipts,
            c.receipt_delay_ms,
            c.version,
            c.keep_messages,
            c.service_error_rate,
        )
    };
    let (creds, before) = {
        let c = read_lock(&sim.cfg);
        (c.callbacks.clone(), c.receipt_before_response)
    };
    if let Some(refused) = simulated_503(&sim, transient) {
        return refused;
    }
    if service > 0.0 && rand::random::<f64>() < service {
        bump(&sim.counters.transient_errors);
        let fault = Fault::service(
            "SVC0001",
            "A service error occurred. Error code is %1",
            vec!["simulated".into()],
        );
        return soap_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            parlayx::encode_fault(&fault),
        );
    }
    if permanent > 0.0 && rand::random::<f64>() < permanent {
        bump(&sim.counters.permanent_faults);
        let fault = Fault::policy(
            "POL0001",
            "A policy error occurred. Error code is %1",
            vec!["simulated".into()],
        );
        return soap_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            parlayx::encode_fault(&fault),
        );
    }
    sim.counters
        .received
        .fetch_add(req.addresses.len() as u64, Ordering::Relaxed);
    let correlator = req.receipt_request.as_ref().map(|r| r.correlator.clone());
    if let Some(c) = &correlator {
        let fresh = lock(&sim.correlators).insert(correlator_hash(c));
        bump(if fresh {
            &sim.counters.unique_correlators
        } else {
            &sim.counters.duplicates
        });
    }
    if let Some(sent_us) = probe_time(&req.message) {
        lock(&sim.probes).record(sent_us);
    }
    let request_id = sim.next_request_id();
    if send_receipts && let Some(rr) = &req.receipt_request {
        sim.ensure_worker();
        let due = Instant::now() + Duration::from_millis(delay);
        for address in &req.addresses {
            let status = if impossible > 0.0 && rand::random::<f64>() < impossible {
                DeliveryStatus::DeliveryImpossible
            } else {
                DeliveryStatus::DeliveredToTerminal
            };
            let job = ReceiptJob {
                due,
                endpoint: rr.endpoint.clone(),
                correlator: rr.correlator.clone(),
                address: address.clone(),
                status,
                version,
                mms: false,
                creds: creds.clone(),
            };
            if before {
                deliver_receipt(&sim.client, &sim.counters, &job).await;
            } else if sim.receipts_tx.send(job).is_err() {
                bump(&sim.counters.receipts_failed);
            }
        }
    }
    let response = parlayx::encode_send_sms_response(version, &request_id);
    if keep > 0 {
        let msg = SimMessage {
            request_id,
            sp_id: req.header.map(|h| h.sp_id),
            addresses: req.addresses,
            sender_name: req.sender_name,
            message: req.message,
            correlator,
        };
        let mut ring = lock(&sim.messages);
        while ring.len() >= keep {
            ring.pop_front();
        }
        ring.push_back(msg);
    }
    soap_response(StatusCode::OK, response)
}

/// With probability `rate`: a 503 answer (counted as a transient error).
pub(super) fn simulated_503(sim: &Simulator, rate: f64) -> Option<Response> {
    (rate > 0.0 && rand::random::<f64>() < rate).then(|| {
        bump(&sim.counters.transient_errors);
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "service unavailable (simulated)",
        )
            .into_response()
    })
}
