//! Status reports to registered apps: a report for an app's push (it asked for them with
//! `report: true`) is POSTed as JSON to the app's `callback_url`, signed with the app's
//! secret like its own requests (`X-App-Timestamp`, `X-App-Nonce`, `X-App-Signature`; see
//! `apps::sign`). Other messages to `app:` recipients go to the IM webhook when there is
//! one, as before.
//!
//! Classification as the webhooks: 2xx delivered; 408, 429, 5xx and transport errors
//! temporary; the rest permanent. An app that is gone, disabled or has no callback URL
//! gets nothing (permanent).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::{Sent, SinkError, classify_reqwest};
use crate::address::Address;
use crate::directory::Directory;
use crate::message::ReportBody;
use crate::pipeline::{Delivery, Sink};

/// The sink of `app:` recipients.
pub struct AppSink {
    directory: Arc<Directory>,
    client: reqwest::Client,
    /// The IM webhook, for messages (not reports) to `app:` addresses.
    im: Option<Arc<dyn Sink>>,
    concurrency: usize,
}

#[derive(Serialize)]
struct Payload<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    report: &'a ReportBody,
}

impl AppSink {
    pub fn new(
        directory: Arc<Directory>,
        timeout: Duration,
        concurrency: usize,
        im: Option<Arc<dyn Sink>>,
    ) -> AppSink {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(concurrency)
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        AppSink {
            directory,
            client,
            im,
            concurrency,
        }
    }

    async fn report(&self, appid: &str, report: &ReportBody) -> Result<Sent, SinkError> {
        let snap = self.directory.snapshot();
        let app = snap
            .apps
            .apps
            .get(appid)
            .filter(|a| a.enabled)
            .ok_or_else(|| SinkError::Permanent(format!("no enabled app {appid:?}")))?;
        let url = app
            .callback_url
            .as_deref()
            .ok_or_else(|| SinkError::Permanent(format!("app {appid:?} has no callback_url")))?;
        let uri: http::Uri = url
            .parse()
            .map_err(|e| SinkError::Permanent(format!("callback_url: {e}")))?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let body = serde_json::to_vec(&Payload {
            kind: "report",
            report,
        })
        .map_err(|e| SinkError::Permanent(format!("cannot encode: {e}")))?;
        let mut req = self
            .client
            .post(url)
            .header(http::header::CONTENT_TYPE, "application/json");
        for (k, v) in crate::apps::sign::headers(&app.secret, "POST", path, &body) {
            req = req.header(k, v);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| classify_reqwest(&e))?;
        let status = resp.status();
        if status.is_success() {
            metrics::counter!("switchboard_app_reports_total", "app" => appid.to_string())
                .increment(1);
            return Ok(Sent {
                remote_id: None,
                final_word: true,
            });
        }
        Err(super::classify_status(status, url))
    }
}

impl Sink for AppSink {
    fn name(&self) -> &'static str {
        "apps"
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn deliver<'a>(
        &'a self,
        d: &'a Delivery,
    ) -> futures::future::BoxFuture<'a, Result<Sent, SinkError>> {
        Box::pin(async move {
            let rcpt = d
                .env
                .recipient(d.idx)
                .ok_or_else(|| SinkError::Permanent(format!("no recipient {}", d.idx)))?;
            match (&d.env.content.report, &rcpt.address) {
                (Some(report), Address::App(appid)) => self.report(appid, report).await,
                _ => match &self.im {
                    Some(im) => im.deliver(d).await,
                    None => Err(SinkError::Permanent(
                        "no IM webhook takes messages to apps ([im] url)".into(),
                    )),
                },
            }
        })
    }
}
