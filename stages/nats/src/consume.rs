//! The loop every work-taking stage runs: pull one message per worker from the stage's durable
//! consumer, keep it alive with in-progress acks while the handler works, then ack it (after
//! the handler has published its outputs), dead-letter it (permanent failure, or transient
//! failure on its last delivery), or nak it with a backoff (transient failure).
//!
//! A message is acked only after everything it produced is stored by JetStream, so a crash at
//! any point leads to redelivery, never to loss; handlers are idempotent, so redelivery is
//! harmless (invariants 2 and 5).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::AckKind;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use roller_bus::scratch::Scratch;
use roller_bus::Stage;
use roller_proto::subjects::headers;
use roller_storage::Key;

use crate::health::{Health, Outcome as HealthOutcome};
use crate::publish::{publish, Outgoing};
use crate::shutdown::Shutdown;
use crate::topology::Topology;

/// How long one pull waits for a message before checking for shutdown.
const PULL_WAIT: Duration = Duration::from_secs(2);

/// Longest reason put in a dead-letter header.
const MAX_REASON: usize = 2000;

/// Why a handler could not process a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Retrying cannot help (bad input): dead-letter now.
    Permanent(String),
    /// Might work later (storage or NATS hiccup): nak, dead-letter after the last delivery.
    Transient(String),
}

impl Failure {
    /// The failure an error stands for: transient (redelivered later) or permanent
    /// (dead-lettered), as the error itself says.
    pub fn of(error: &impl roller_storage::retry::Retryable) -> Self {
        if error.is_transient() {
            Self::Transient(error.to_string())
        } else {
            Self::Permanent(error.to_string())
        }
    }
}

/// A message handed to a handler.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// The subject it was published on.
    pub subject: String,
    /// Its body.
    pub payload: Bytes,
    /// How many times it has been delivered (1 on the first delivery).
    pub delivered: i64,
}

/// What a handler did with a message.
#[derive(Debug, Default)]
pub struct Handled {
    /// Scratch objects to remove once the message is acked (the claim-check it consumed).
    pub consumed: Vec<Key>,
    /// The notification identity, for logs.
    pub source: Option<String>,
    /// Nothing in the message was for this dataset: acked and counted as unmatched, not
    /// dead-lettered (a feed carries parameters nobody configured).
    pub unmatched: bool,
    /// Part of the message could not be handled though the rest was (why): a copy is
    /// dead-lettered with this reason before the message is acked.
    pub refused: Option<String>,
}

/// Outcome of a handler, with the notification identity when known (for dead-letter headers).
pub type Outcome = Result<Handled, (Failure, Option<String>)>;

/// What a worker loop needs besides its handler.
#[derive(Debug, Clone)]
pub struct WorkerSetup {
    /// Which stage (for dead letters and logs).
    pub stage: Stage,
    /// Streams and subjects.
    pub topology: Topology,
    /// The stage's consumer.
    pub consumer: PullConsumer,
    /// Messages handled at once.
    pub workers: usize,
    /// Redelivery timeout (in-progress acks are sent at a third of it).
    pub ack_wait: Duration,
    /// Deliveries before dead-lettering.
    pub max_deliver: i64,
    /// Where consumed claim-checks are removed.
    pub scratch: Option<Scratch>,
    /// Shutdown signals.
    pub shutdown: Shutdown,
    /// Where outcomes are counted.
    pub health: Arc<Health>,
}

/// Runs `workers` loops until shutdown; returns when all in-flight work is acked or naked.
pub async fn run_workers<H, F>(setup: WorkerSetup, handler: H)
where
    H: Fn(Incoming) -> F + Send + Sync + 'static,
    F: Future<Output = Outcome> + Send + 'static,
{
    let setup = Arc::new(setup);
    let handler = Arc::new(handler);
    let mut tasks = Vec::new();
    for _ in 0..setup.workers.max(1) {
        let (setup, handler) = (setup.clone(), handler.clone());
        tasks.push(tokio::spawn(async move {
            worker(&setup, handler.as_ref()).await
        }));
    }
    for task in tasks {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "a worker task failed");
        }
    }
}

async fn worker<H, F>(setup: &WorkerSetup, handler: &H)
where
    H: Fn(Incoming) -> F,
    F: Future<Output = Outcome>,
{
    while !setup.shutdown.stop_pulling.is_cancelled() {
        // Every wait is bounded: a pull request lost with a server restart must not stall us.
        let pulled = tokio::time::timeout(
            PULL_WAIT * 2,
            setup
                .consumer
                .batch()
                .max_messages(1)
                .expires(PULL_WAIT)
                .messages(),
        )
        .await;
        let mut batch = match pulled {
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => {
                tracing::warn!(stage = %setup.stage, error = %e, "pulling failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => continue,
        };
        loop {
            match tokio::time::timeout(PULL_WAIT * 2, batch.next()).await {
                Ok(Some(Ok(message))) => handle(setup, handler, message).await,
                Ok(Some(Err(e))) => {
                    tracing::debug!(stage = %setup.stage, error = %e, "pull ended");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(stage = %setup.stage, "a pull got no answer; pulling again");
                    break;
                }
            }
        }
    }
}

async fn handle<H, F>(setup: &WorkerSetup, handler: &H, message: async_nats::jetstream::Message)
where
    H: Fn(Incoming) -> F,
    F: Future<Output = Outcome>,
{
    let delivered = message.info().map_or(1, |info| info.delivered);
    let incoming = Incoming {
        subject: message.subject.to_string(),
        payload: message.payload.clone(),
        delivered,
    };
    let work = handler(incoming);
    tokio::pin!(work);
    let mut beat = tokio::time::interval(setup.ack_wait / 3);
    beat.tick().await;
    let outcome = loop {
        tokio::select! {
            outcome = &mut work => break Some(outcome),
            _ = beat.tick() => {
                if let Err(e) = message.ack_with(AckKind::Progress).await {
                    tracing::debug!(error = %e, "in-progress ack failed");
                }
            }
            () = setup.shutdown.give_up.cancelled() => break None,
        }
    };
    match outcome {
        None => {
            tracing::warn!(stage = %setup.stage, subject = %message.subject, "shutdown deadline passed; handing the message back");
            let _ = message.ack_with(AckKind::Nak(None)).await;
        }
        Some(Ok(handled)) => {
            if let Some(reason) = &handled.refused {
                let letter = dead_letter(
                    &setup.topology,
                    setup.stage,
                    &message,
                    reason,
                    handled.source.as_deref(),
                );
                tracing::warn!(stage = %setup.stage, source = ?handled.source, %reason, "dead letter for part of a message");
                if publish(&setup.topology.js, &letter, &setup.shutdown.give_up)
                    .await
                    .is_err()
                {
                    // Handled again on redelivery (what it published is deduplicated).
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                    return;
                }
                setup.health.count(HealthOutcome::DeadLettered);
            }
            if let Err(e) = message.double_ack().await {
                // Not acked: it will be redelivered and handled again, harmlessly. Keep its
                // claim-check for that delivery.
                tracing::warn!(stage = %setup.stage, error = %e, "ack failed; the message will be redelivered");
                return;
            }
            // A message part of which was dead-lettered is counted once, as dead-lettered.
            if handled.refused.is_none() {
                setup.health.count(if handled.unmatched {
                    HealthOutcome::Unmatched
                } else {
                    HealthOutcome::Acked
                });
            }
            tracing::debug!(stage = %setup.stage, source = ?handled.source, "done");
            if let Some(scratch) = &setup.scratch {
                let (scratch, keys) = (scratch.clone(), handled.consumed);
                let removed = tokio::task::spawn_blocking(move || {
                    keys.iter().try_for_each(|k| scratch.delete(k))
                })
                .await;
                if let Ok(Err(e)) = removed {
                    tracing::warn!(error = %e, "removing a consumed scratch object failed; the sweep will");
                }
            }
        }
        Some(Err((Failure::Transient(reason), source))) if delivered < setup.max_deliver => {
            let delay = redelivery_delay(delivered);
            tracing::warn!(stage = %setup.stage, ?source, delivered, %reason, "transient failure; will retry");
            setup.health.count(HealthOutcome::Retried);
            let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
        }
        Some(Err((failure, source))) => {
            let reason = match failure {
                Failure::Permanent(reason) => reason,
                Failure::Transient(reason) => {
                    format!("gave up after {delivered} deliveries: {reason}")
                }
            };
            let letter = dead_letter(
                &setup.topology,
                setup.stage,
                &message,
                &reason,
                source.as_deref(),
            );
            tracing::warn!(stage = %setup.stage, ?source, %reason, "dead letter");
            match publish(&setup.topology.js, &letter, &setup.shutdown.give_up).await {
                Ok(_) => {
                    setup.health.count(HealthOutcome::DeadLettered);
                    let _ = message.ack_with(AckKind::Term).await;
                }
                Err(_) => {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                }
            }
        }
    }
}

/// `text` fit for a header value: control characters made spaces, at most 2000 characters.
pub fn header_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON)
        .collect()
}

/// Builds a dead letter for `message`: its payload on `{p}.dead.{stage}.{dataset}` with
/// headers naming the stage, the reason, the original subject, the source and the delivery
/// count. Its `Nats-Msg-Id` is the original's stream position, so a retried publish of the same
/// dead letter is stored once.
pub fn dead_letter(
    topology: &Topology,
    stage: Stage,
    message: &async_nats::jetstream::Message,
    reason: &str,
    source: Option<&str>,
) -> Outgoing {
    let mut map = HeaderMap::new();
    let clean = header_text;
    let (delivered, position) = message.info().map_or((1, None), |info| {
        (
            info.delivered,
            Some(format!("dead:{}:{}", info.stream, info.stream_sequence)),
        )
    });
    map.insert(headers::STAGE, stage.to_string().as_str());
    map.insert(headers::REASON, clean(reason).as_str());
    map.insert(headers::ORIGINAL_SUBJECT, clean(&message.subject).as_str());
    if let Some(source) = source {
        map.insert(headers::SOURCE, clean(source).as_str());
    }
    map.insert(headers::DELIVERIES, delivered.to_string().as_str());
    Outgoing {
        subject: topology.subjects.dead(stage, &topology.dataset),
        payload: message.payload.clone(),
        msg_id: position,
        headers: map,
    }
}

/// How long a transiently failed message waits before its next delivery: doubling from 1 s
/// (after the first delivery) up to a minute, so the default 10 deliveries ride out about four
/// minutes of a storage or network outage before the message is dead-lettered.
pub fn redelivery_delay(delivered: i64) -> Duration {
    let exponent = u32::try_from(delivered.clamp(1, 7) - 1).unwrap_or(0);
    Duration::from_secs((1u64 << exponent).min(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivery_waits_double_up_to_a_minute() {
        let delays: Vec<u64> = (1..=10).map(|d| redelivery_delay(d).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        assert_eq!(redelivery_delay(0).as_secs(), 1);
    }
}
