//! The bus layer, beneath the boxes (JetStream's implementation is in `roller-nats`): how stages
//! hand work to each other, and the counters they report ([`metrics`]). A stage's code takes its
//! input as a value and sends what
//! it produces to an [`Outbox`]; what it cannot process goes to a [`DeadLetterSink`] with a
//! reason. The embedded runner connects stages with bounded in-process channels; a message
//! broker implementation plugs in behind the same two traits. Across processes, bulk bytes
//! travel through [`scratch`] storage and messages carry its keys (claim-checks).

pub mod metrics;
pub mod scratch;

use std::fmt;
use std::sync::Mutex;

/// The stage a dead letter came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Parsing and matching notifications.
    Ingest,
    /// Resolving and checking the source object.
    Fetch,
    /// Reading and checking the NetCDF file.
    Decode,
    /// Encoding and storing chunks.
    Write,
    /// Folding reports into the dataset state.
    Commit,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ingest => "ingest",
            Self::Fetch => "fetch",
            Self::Decode => "decode",
            Self::Write => "write",
            Self::Commit => "commit",
        })
    }
}

/// A message that could not be processed, with what a person needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Where it failed.
    pub stage: Stage,
    /// What it was (notification id, or `line N` for unparseable input).
    pub source: String,
    /// Why.
    pub reason: String,
}

impl fmt::Display for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.stage, self.source, self.reason)
    }
}

/// The receiving end is gone (the run is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the next stage has shut down")]
pub struct Closed;

/// Where a stage sends its output.
pub trait Outbox<T>: Send + Sync {
    /// Sends one message, waiting while the next stage's queue is full.
    fn send(&self, message: T) -> Result<(), Closed>;
}

impl<T: Send> Outbox<T> for crossbeam_channel::Sender<T> {
    fn send(&self, message: T) -> Result<(), Closed> {
        crossbeam_channel::Sender::send(self, message).map_err(|_| Closed)
    }
}

/// Where a stage sends what it cannot process.
pub trait DeadLetterSink: Send + Sync {
    /// Records one dead letter.
    fn dead_letter(&self, letter: DeadLetter);
}

/// Keeps dead letters in memory (the embedded runner reports them at the end).
#[derive(Debug, Default)]
pub struct CollectedDeadLetters(Mutex<Vec<DeadLetter>>);

impl CollectedDeadLetters {
    /// How many have been collected so far.
    pub fn count(&self) -> u64 {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len() as u64
    }

    /// Everything collected so far.
    pub fn take(&self) -> Vec<DeadLetter> {
        std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl DeadLetterSink for CollectedDeadLetters {
    fn dead_letter(&self, letter: DeadLetter) {
        tracing::warn!(stage = %letter.stage, source = %letter.source, reason = %letter.reason, "dead letter");
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(letter);
    }
}
