//! The fetch stage on NATS: takes a message of the feed (any form [`feed::parse`] reads) from
//! the dataset's ingest subject, checks each notice it holds (matches the dataset, source
//! allowed, size), copies each object into scratch and passes a [`FetchedFile`] on to decode.
//! Events that announce no file are acked and logged.

use std::sync::Arc;

use roller_bus::scratch::{Scratch, FETCHED};
use roller_fetch::Fetcher;
use roller_model::config::DatasetConfig;
use roller_model::matching::matches;
use roller_proto::feed::{self, Notice};
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
}

/// Handles one message: every file it announces for this dataset is fetched and passed on
/// (a redelivery fetches them all again; decode and write are idempotent).
pub async fn handle(stage: Arc<FetchStage>, message: Incoming) -> Outcome {
    let permanent =
        |reason: String, source: Option<String>| Err((Failure::Permanent(reason), source));
    let Ok(text) = std::str::from_utf8(&message.payload) else {
        return permanent("the notification is not UTF-8 text".into(), None);
    };
    let notices = match feed::parse(text) {
        Ok(notices) => notices,
        Err(e) => return permanent(format!("not a valid notification: {e}"), None),
    };
    let mut files = Vec::new();
    for notice in notices {
        match notice {
            Notice::File(note) => files.push(*note),
            Notice::Skipped { event } => {
                tracing::info!(event, "feed event announces no file; skipped");
            }
        }
    }
    let config = &stage.config;
    let (mine, others): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|note| matches(&config.matching, note));
    if mine.is_empty() {
        if let Some(note) = others.first() {
            // Embedded mode does the same: counted (`/metrics`, outcome "unmatched") and
            // dropped, since a feed carries parameters no dataset takes.
            tracing::warn!(
                source = %note.id(),
                model = %note.model,
                name = %note.name,
                "notice matches no dataset here (match.model = `{}`, match.name = `{}`); dropped",
                config.matching.model,
                config.matching.name
            );
            return Ok(Handled {
                consumed: Vec::new(),
                source: Some(note.id()),
                unmatched: true,
            });
        }
    }
    let mut first = None;
    for note in mine {
        let source = fetch_one(&stage, note).await?;
        first.get_or_insert(source);
    }
    Ok(Handled {
        consumed: Vec::new(),
        source: first,
        unmatched: false,
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
