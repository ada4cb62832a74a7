//! The fetch stage on NATS: takes a notification (JSON) from the dataset's ingest subject,
//! checks it (parses, matches the dataset, source allowed, size), copies the object into
//! scratch and passes a [`FetchedFile`] on to decode.

use std::sync::Arc;

use roller_core::config::DatasetConfig;
use roller_core::fetch::Fetcher;
use roller_core::matching::matches;
use roller_core::scratch::{Scratch, FETCHED};
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

/// Handles one notification.
pub async fn handle(stage: Arc<FetchStage>, message: Incoming) -> Outcome {
    let permanent =
        |reason: String, source: Option<String>| Err((Failure::Permanent(reason), source));
    let Ok(text) = std::str::from_utf8(&message.payload) else {
        return permanent("the notification is not UTF-8 text".into(), None);
    };
    let note = match Notification::from_json(text) {
        Ok(note) => note,
        Err(e) => return permanent(format!("not a valid notification: {e}"), None),
    };
    let source = note.id();
    let config = &stage.config;
    if !matches(&config.matching, &note) {
        return permanent(
            format!(
                "notification for model `{}`, field `{}` does not match dataset `{}` (match.model = `{}`, match.name = `{}`); publish it on the right dataset's subject",
                note.model, note.name, config.name, config.matching.model, config.matching.name
            ),
            Some(source),
        );
    }
    let copy = {
        let stage = stage.clone();
        let note = note.clone();
        tokio::task::spawn_blocking(move || {
            let source = stage.fetcher.fetch(&note).map_err(|e| {
                if e.is_permanent() {
                    Failure::Permanent(e.to_string())
                } else {
                    Failure::Transient(e.to_string())
                }
            })?;
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
    Ok(Handled {
        consumed: Vec::new(),
        source: Some(source),
    })
}
