//! The fetch stage on NATS: takes a message from the dataset's ingest subject (published there
//! directly, or routed from the feed by [`crate::route`]), keeps the files this dataset takes
//! ([`files_for`], as embedded mode does), checks each (source allowed, size), copies it into
//! scratch and passes a [`FetchedFile`] on to decode. A message with nothing for this dataset
//! is acked and counted.

use std::sync::Arc;

use roller_bus::metrics::Metrics;
use roller_bus::scratch::{Scratch, FETCHED};
use roller_fetch::feed::files_for;
use roller_fetch::Fetcher;
use roller_model::config::DatasetConfig;
use roller_proto::{wire, FetchedFile, Notification};

use crate::consume::{Failure, Handled, Incoming, Outcome};
use crate::publish::{publish, Outgoing};
use crate::shutdown::Shutdown;
use crate::topology::Topology;

/// What the fetch handler needs.
#[derive(Debug)]
pub struct FetchStage {
    /// The dataset.
    pub config: DatasetConfig,
    /// Checks and resolves sources.
    pub fetcher: Fetcher,
    /// Where copies go.
    pub scratch: Scratch,
    /// Streams and subjects.
    pub topology: Topology,
    /// Shutdown signals.
    pub shutdown: Shutdown,
    /// The process's counters.
    pub metrics: Arc<Metrics>,
}

/// Handles one message: every file it announces for this dataset is fetched and passed on
/// (a redelivery fetches them all again; decode and write are idempotent).
pub async fn handle(stage: Arc<FetchStage>, message: Incoming) -> Outcome {
    let permanent =
        |reason: String, source: Option<String>| Err((Failure::Permanent(reason), source));
    let Ok(text) = std::str::from_utf8(&message.payload) else {
        return permanent("the notification is not UTF-8 text".into(), None);
    };
    let sorted = match files_for(text, &stage.config.matching, &stage.metrics) {
        Ok(sorted) => sorted,
        Err(e) => return permanent(format!("not a valid notification: {e}"), None),
    };
    if sorted.files.is_empty() {
        // Nothing here for this dataset (counted by `files_for`): acked, and counted as an
        // unmatched message when it announced files for other datasets.
        return Ok(Handled {
            consumed: Vec::new(),
            source: None,
            unmatched: sorted.unmatched > 0,
            ..Handled::default()
        });
    }
    let mut first = None;
    for note in sorted.files {
        let source = fetch_one(&stage, note).await?;
        first.get_or_insert(source);
    }
    Ok(Handled {
        consumed: Vec::new(),
        source: first,
        unmatched: false,
        ..Handled::default()
    })
}

/// Fetches one file into scratch and passes it on; returns its source id.
async fn fetch_one(
    stage: &Arc<FetchStage>,
    note: Notification,
) -> Result<String, (Failure, Option<String>)> {
    let source = note.id();
    let config = &stage.config;
    let copy = {
        let stage = stage.clone();
        let note = note.clone();
        tokio::task::spawn_blocking(move || {
            let source = stage.fetcher.fetch(&note).map_err(|e| Failure::of(&e))?;
            let key = Scratch::new_key(FETCHED, &stage.config.name)
                .map_err(|e| Failure::Permanent(e.to_string()))?;
            let bytes = source.size();
            stage
                .scratch
                .put_file(&key, source.path())
                .map_err(|e| Failure::Transient(format!("copying into scratch: {e}")))?;
            Ok((key, bytes))
        })
        .await
    };
    let (key, bytes) = match copy {
        Ok(Ok(copied)) => copied,
        Ok(Err(failure)) => return Err((failure, Some(source))),
        Err(e) => {
            return Err((
                Failure::Transient(format!("fetch task failed: {e}")),
                Some(source),
            ))
        }
    };
    let fetched = FetchedFile {
        dataset: config.name.clone(),
        notification: note,
        scratch_key: key.to_string(),
        bytes,
    };
    let out = Outgoing::new(
        stage.topology.subjects.fetched(&config.name),
        wire::encode(&fetched),
        format!("fetched:{}:{source}", config.name),
    );
    if publish(&stage.topology.js, &out, &stage.shutdown.give_up)
        .await
        .is_err()
    {
        // Not passed on: the notification is naked and fetched again; this copy is an orphan
        // the sweep removes.
        return Err((Failure::Transient("shutting down".into()), Some(source)));
    }
    Ok(source)
}
