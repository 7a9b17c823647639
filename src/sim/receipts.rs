//! Delivery receipts: the delay queue, its worker and the callback POSTs with retries.

use super::*;

/// One delivery receipt waiting for its due time.
pub(super) struct ReceiptJob {
    pub(super) due: Instant,
    pub(super) endpoint: String,
    pub(super) correlator: String,
    pub(super) address: String,
    pub(super) status: DeliveryStatus,
    pub(super) version: Version,
    /// An MMS receipt (`notifyMessageDeliveryReceipt`) rather than an SMS one.
    pub(super) mms: bool,
    pub(super) creds: CallbackCredentials,
}

/// The delay queue: sleeps until each job is due, then POSTs it with bounded concurrency.
pub(super) async fn receipt_worker(
    mut rx: mpsc::UnboundedReceiver<ReceiptJob>,
    client: reqwest::Client,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(RECEIPT_CONCURRENCY));
    loop {
        let job = tokio::select! {
            j = rx.recv() => match j { Some(j) => j, None => break },
            _ = shutdown.cancelled() => break,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(job.due) => {}
            _ = shutdown.cancelled() => break,
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.cancelled() => break,
        };
        let client = client.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            deliver_receipt(&client, &counters, &job).await;
            drop(permit);
        });
    }
    tracing::debug!("sdp-sim: receipt worker stopped");
}

/// POSTs one receipt (with retries) and counts the result.
pub(super) async fn deliver_receipt(
    client: &reqwest::Client,
    counters: &Counters,
    job: &ReceiptJob,
) {
    let body = if job.mms {
        parlayx::mms::encode_notify_message_delivery_receipt(&parlayx::mms::MessageReceipt {
            correlator: job.correlator.clone(),
            address: job.address.clone(),
            status: job.status,
        })
    } else {
        parlayx::encode_notify_delivery_receipt(
            job.version,
            &job.correlator,
            &job.address,
            job.status,
        )
    };
    let body = job.creds.sign_envelope(body);
    let ok = post_soap_with_retries(client, &job.endpoint, Bytes::from(body), &job.creds).await;
    bump(if ok {
        &counters.receipts_sent
    } else {
        &counters.receipts_failed
    });
}

pub(super) async fn post_soap(
    client: &reqwest::Client,
    url: &str,
    body: Bytes,
    creds: &CallbackCredentials,
) -> Result<(StatusCode, String), reqwest::Error> {
    post_typed(client, url, parlayx::CONTENT_TYPE, body, creds).await
}

/// POSTs a SOAP request (plain or with attachments) with the callback credentials and
/// reads the answer.
pub(super) async fn post_typed(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
    creds: &CallbackCredentials,
) -> Result<(StatusCode, String), reqwest::Error> {
    let resp = creds
        .apply(client.post(url))
        .header(header::CONTENT_TYPE, content_type)
        .header("SOAPAction", "\"\"")
        .body(body)
        .send()
        .await?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    Ok((status, text))
}

pub(super) async fn post_soap_with_retries(
    client: &reqwest::Client,
    url: &str,
    body: Bytes,
    creds: &CallbackCredentials,
) -> bool {
    for attempt in 1..=RECEIPT_ATTEMPTS {
        match post_soap(client, url, body.clone(), creds).await {
            Ok((s, _)) if s.is_success() => return true,
            Ok((s, text)) => {
                tracing::debug!(%url, status = %s, attempt, body = %truncate(&text, 200), "sdp-sim: receipt refused");
            }
            Err(e) => tracing::debug!(%url, error = %e, attempt, "sdp-sim: receipt POST failed"),
        }
        if attempt < RECEIPT_ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt * attempt))).await;
        }
    }
    tracing::warn!(%url, "sdp-sim: receipt not delivered after {RECEIPT_ATTEMPTS} attempts");
    false
}
