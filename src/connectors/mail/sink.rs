//! The mail sink as the pipeline's port for the `mail` channel.

use futures::future::BoxFuture;

use super::MailSink;
use crate::pipeline::{Delivery, Sent, Sink, SinkError};

impl Sink for MailSink {
    fn name(&self) -> &'static str {
        "smtp"
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }

    fn deliver<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<Sent, SinkError>> {
        Box::pin(MailSink::deliver(self, &d.env, d.idx, d.voice.as_deref()))
    }
}
