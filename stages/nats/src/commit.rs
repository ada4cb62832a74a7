//! The commit stage on NATS: the only writer of a dataset's metadata. It waits for the commit
//! lease, then folds write reports and roll events in batches (whatever has queued up, up to
//! [`MAX_BATCH`]) and publishes one commit per batch; the batch's messages are acked only after
//! the commit is durable, so a crash replays them into the same state (invariants 2 and 5).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::Message;
use futures::StreamExt;
use roller_bus::Stage;
use roller_commit::{CommitError, Committer, Event};
use roller_model::config::DatasetConfig;
use roller_proto::{wire, CommitEvent, StreamKind, WireError};
use roller_storage::expiry::Expiry;
use roller_storage::Storage;

use crate::consume::dead_letter;
use crate::health::{Health, Outcome};
use crate::lease::Lease;
use crate::members::Members;
use crate::publish::{publish, Outgoing};
use crate::shutdown::Shutdown;
use crate::topology::{Topology, TopologyError};
use roller_storage::retry::Retryable as _;

pub use roller_commit::MAX_BATCH;

/// Longest wait for a pull's answer before pulling again.
const PULL_DEADLINE: Duration = Duration::from_secs(5);

/// Why the commit stage stopped.
#[derive(Debug, thiserror::Error)]
pub enum CommitStageError {
    /// NATS objects are missing.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The dataset cannot be committed (config incompatible with the store, corrupt record).
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// What the commit stage needs.
#[derive(Debug)]
pub struct CommitStage {
    /// The dataset.
    pub config: DatasetConfig,
    /// Its store.
    pub store: Arc<dyn Storage>,
    /// What happens to chunks that roll out of the window.
    pub expiry: Arc<dyn Expiry>,
    /// Streams and subjects.
    pub topology: Topology,
    /// Shutdown signals.
    pub shutdown: Shutdown,
    /// Lease lifetime.
    pub lease_ttl: Duration,
    /// Counts the messages this stage folds, like every stage's (`/metrics`).
    pub health: Arc<Health>,
    /// Who this instance is (host and process), for the lease and commit events.
    pub holder: String,
    /// The commit replicas present, which the datasets' leases spread over.
    pub members: Arc<Members>,
}

/// Runs until shutdown: stand by for the lease, lead while holding it, repeat.
pub async fn run(stage: Arc<CommitStage>) -> Result<(), CommitStageError> {
    let topology = &stage.topology;
    let bucket = |name: String| {
        let js = topology.js.clone();
        async move {
            js.get_key_value(&name)
                .await
                .map_err(|e| TopologyError::Setup {
                    what: format!("bucket {name}"),
                    reason: e.to_string(),
                })
        }
    };
    let leases = bucket(topology.subjects.lease_bucket()).await?;
    let generations = bucket(topology.subjects.generation_bucket()).await?;
    let consumer = topology.consumer("commit", StreamKind::Events).await?;
    let stop = stage.shutdown.stop_pulling.clone();
    while !stop.is_cancelled() {
        let Some(mut lease) = Lease::acquire(
            leases.clone(),
            generations.clone(),
            &stage.config.name,
            &stage.holder,
            stage.lease_ttl,
            &stage.members,
            &stop,
        )
        .await
        else {
            break;
        };
        let led = lead(&stage, &consumer, &mut lease).await;
        if !matches!(led, Ok(Led::HandedBack)) {
            stage.members.gave_up();
        }
        lease.release().await;
        led?;
    }
    Ok(())
}

/// How leading a dataset ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Led {
    /// Shutdown, or the lease was lost.
    Stopped,
    /// Handed back to the dataset's preferred replica (this one led more than its share).
    HandedBack,
}

/// Commits while the lease is held. Returns on shutdown or when the lease is lost.
async fn lead(
    stage: &CommitStage,
    consumer: &PullConsumer,
    lease: &mut Lease,
) -> Result<Led, CommitStageError> {
    let mut committer = tokio::task::block_in_place(|| {
        Committer::for_dataset(&stage.config, stage.store.clone(), stage.expiry.clone())
    })?
    .with_metrics(stage.health.counters());
    let led = commit_while_leading(stage, consumer, lease, &mut committer).await;
    // Dropping the committer finishes its last reference file: blocking work.
    tokio::task::block_in_place(|| drop(committer));
    led
}

/// The body of [`lead`].
async fn commit_while_leading(
    stage: &CommitStage,
    consumer: &PullConsumer,
    lease: &mut Lease,
    committer: &mut Committer,
) -> Result<Led, CommitStageError> {
    let stop = &stage.shutdown.stop_pulling;
    // Publish what opening found (a changed window or visibility); pending expiries are
    // carried out by `tidy` once released.
    if !publish_commits(stage, committer, lease, Vec::new()).await? {
        return Ok(Led::Stopped);
    }
    while !stop.is_cancelled() && lease.is_held() {
        if stage.members.should_hand_back(&stage.config.name) {
            tracing::info!(
                dataset = %stage.config.name,
                "leading more than this replica's share; handing the lease to the preferred replica"
            );
            return Ok(Led::HandedBack);
        }
        let batch = pull_batch(consumer).await;
        if batch.is_empty() {
            if !tidy(committer, lease).await {
                return Ok(Led::Stopped);
            }
            continue;
        }
        let mut sources = Vec::new();
        let mut folded = Vec::with_capacity(batch.len());
        for message in batch {
            match fold(stage, committer, &message) {
                Ok(source) => {
                    sources.extend(source);
                    folded.push(message);
                }
                // A storage failure, or a report come before the file dims it was cut for
                // could be read: taken again later.
                Err(Refused::Commit(e)) if e.is_transient() => {
                    tracing::warn!(error = %e, "cannot fold the event yet; it is retried");
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                    stage.health.count(Outcome::Retried);
                }
                Err(refused) => {
                    let reason = refused.to_string();
                    let letter =
                        dead_letter(&stage.topology, Stage::Commit, &message, &reason, None);
                    tracing::warn!(%reason, "dead letter");
                    if publish(&stage.topology.js, &letter, &stage.shutdown.give_up)
                        .await
                        .is_ok()
                    {
                        let _ = message.ack_with(AckKind::Term).await;
                        stage.health.count(Outcome::DeadLettered);
                    }
                }
            }
        }
        if !publish_commits(stage, committer, lease, sources).await? {
            for message in folded {
                let _ = message.ack_with(AckKind::Nak(None)).await;
                stage.health.count(Outcome::Retried);
            }
            return Ok(Led::Stopped);
        }
        for message in folded {
            match message.double_ack().await {
                Ok(()) => stage.health.count(Outcome::Acked),
                // Redelivered later and folded again: harmless.
                Err(e) => tracing::warn!(error = %e, "ack after commit failed"),
            }
        }
    }
    Ok(Led::Stopped)
}

/// When idle: removes what the grace has released, then records it (same generation) right
/// after fencing, so a lease lost during long removals cannot let this instance overwrite a
/// newer leader's record. Returns false if the lease was lost.
async fn tidy(committer: &mut Committer, lease: &mut Lease) -> bool {
    if !committer.needs_tidy() {
        return true;
    }
    tokio::task::block_in_place(|| committer.remove_released_now());
    if !committer.has_unrecorded_removals() {
        return true;
    }
    if let Err(e) = lease.fence(committer.record().generation).await {
        tracing::error!(error = %e, "stepping down");
        return false;
    }
    if let Err(e) = tokio::task::block_in_place(|| committer.record_removals()) {
        tracing::warn!(error = %e, "recording removed chunks failed; will retry");
    }
    true
}

/// Waits up to two seconds for one message, then takes whatever else is queued. Every wait is
/// bounded: a pull request lost with a server restart must not stall the stage.
async fn pull_batch(consumer: &PullConsumer) -> Vec<Message> {
    let mut batch = Vec::new();
    let first = async {
        let mut messages = consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(2))
            .messages()
            .await?;
        while let Some(Ok(message)) = messages.next().await {
            batch.push(message);
        }
        Ok::<_, async_nats::Error>(())
    };
    match tokio::time::timeout(PULL_DEADLINE, first).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "pulling failed; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(_) => tracing::warn!("a pull got no answer; pulling again"),
    }
    if batch.is_empty() {
        return batch;
    }
    let rest = async {
        if let Ok(mut messages) = consumer
            .fetch()
            .max_messages(MAX_BATCH - 1)
            .messages()
            .await
        {
            while let Some(Ok(message)) = messages.next().await {
                batch.push(message);
            }
        }
    };
    let _ = tokio::time::timeout(PULL_DEADLINE, rest).await;
    batch
}

/// Why a message on the commit stage's consumer is a dead letter.
#[derive(Debug, thiserror::Error)]
enum Refused {
    /// It is on neither the report nor the roll subject of the dataset.
    #[error("unexpected subject `{subject}` for the commit stage of `{dataset}`")]
    Subject {
        /// The message's subject.
        subject: String,
        /// The dataset.
        dataset: String,
    },
    /// Its body is not a report or roll event.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The committer refuses it (another dataset's, a roll too far ahead).
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// Folds one message; returns the source it reported on, or why it is a dead letter.
fn fold(
    stage: &CommitStage,
    committer: &mut Committer,
    message: &Message,
) -> Result<Option<String>, Refused> {
    let subjects = &stage.topology.subjects;
    let dataset = &stage.config.name;
    let event = if message.subject.as_str() == subjects.report(dataset) {
        Event::Report(wire::decode(&message.payload)?)
    } else if message.subject.as_str() == subjects.roll(dataset) {
        Event::Roll(wire::decode(&message.payload)?)
    } else {
        return Err(Refused::Subject {
            subject: message.subject.to_string(),
            dataset: dataset.clone(),
        });
    };
    committer.fold(&event)?;
    Ok(match event {
        Event::Report(report) => Some(report.source),
        Event::Roll(_) => None,
    })
}

/// Commits until nothing is left to publish (expiry after a commit makes one more). Returns
/// false if the lease was lost (nothing was published after that).
async fn publish_commits(
    stage: &CommitStage,
    committer: &mut Committer,
    lease: &mut Lease,
    sources: Vec<String>,
) -> Result<bool, CommitError> {
    let mut sources = Some(sources);
    let mut delay = Duration::from_millis(100);
    while committer.is_dirty() {
        if let Err(e) = lease.fence(committer.record().generation + 1).await {
            tracing::error!(error = %e, "stepping down");
            return Ok(false);
        }
        let committed = match tokio::task::block_in_place(|| committer.commit()) {
            Ok(Some(committed)) => committed,
            Ok(None) => break,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, "commit failed; retrying");
                if stage.shutdown.give_up.is_cancelled() {
                    return Ok(false);
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(e) => return Err(e),
        };
        let record = committer.record();
        let event = CommitEvent {
            dataset: stage.config.name.clone(),
            generation: committed.generation,
            offset: committed.offset,
            head: committed.head,
            committed_at: record.committed_at.clone(),
            holder: stage.holder.clone(),
            sources: sources.take().unwrap_or_default(),
        };
        let out = Outgoing::new(
            stage.topology.subjects.committed(&stage.config.name),
            wire::encode(&event),
            format!(
                "commit:{}:{}:{}",
                stage.config.name, committed.generation, stage.holder
            ),
        );
        // The commit is durable already; the event is informational.
        if publish(&stage.topology.js, &out, &stage.shutdown.give_up)
            .await
            .is_err()
        {
            tracing::warn!(
                generation = committed.generation,
                "commit event not published (shutting down)"
            );
        }
        tracing::info!(
            dataset = %stage.config.name,
            generation = committed.generation,
            offset = committed.offset,
            head = ?committed.head,
            "committed"
        );
    }
    Ok(true)
}
