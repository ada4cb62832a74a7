//! Publishing to JetStream until the server has stored the message: retried with backoff
//! through disconnects (the client reconnects on its own), with `Nats-Msg-Id` deduplication.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

/// Publishing was abandoned because the stage is giving up (shutdown deadline).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("publishing abandoned: the stage is shutting down")]
pub struct Abandoned;

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Subject.
    pub subject: String,
    /// Body.
    pub payload: Bytes,
    /// Deduplication id (`Nats-Msg-Id`), derived from the content's identity.
    pub msg_id: Option<String>,
    /// Extra headers.
    pub headers: HeaderMap,
}

impl Outgoing {
    /// A message with a deduplication id.
    pub fn new(subject: String, payload: impl Into<Bytes>, msg_id: impl Into<String>) -> Self {
        Self {
            subject,
            payload: payload.into(),
            msg_id: Some(msg_id.into()),
            headers: HeaderMap::new(),
        }
    }
}

/// Publishes and waits for the stream's acknowledgement, retrying until it comes or `give_up`
/// is cancelled. Returns the acknowledgement (`duplicate` is set when the id was seen).
pub async fn publish(
    js: &Context,
    message: &Outgoing,
    give_up: &CancellationToken,
) -> Result<PublishAck, Abandoned> {
    let mut delay = Duration::from_millis(100);
    loop {
        let mut publish = PublishMessage::build()
            .payload(message.payload.clone())
            .headers(message.headers.clone());
        if let Some(id) = &message.msg_id {
            publish = publish.message_id(id);
        }
        let attempt = async {
            js.send_publish(message.subject.clone(), publish)
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        };
        match attempt.await {
            Ok(ack) => return Ok(ack),
            Err(reason) => {
                tracing::warn!(subject = %message.subject, error = %reason, "publish failed; retrying");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = give_up.cancelled() => return Err(Abandoned),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
