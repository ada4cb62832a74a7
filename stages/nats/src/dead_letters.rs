//! Dead-letter counts for `roller-serve`'s status page, read from JetStream when the server is
//! told where NATS is (`NATS_URL`).
//!
//! The server must serve data whether or not NATS is up, so it connects in the background and
//! keeps trying; until it is connected the page says the count is unavailable. A count is the
//! number of messages in the dead-letter stream on `{prefix}.dead.*.{dataset}` (every stage);
//! one request gives every dataset's. The page never shows credentials from `NATS_URL`, and
//! JetStream's own error messages go to the log, not the page.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use roller_proto::{StreamKind, Subjects};
use roller_serve::dead_letters::{Counts, DeadLetterCounts, Unavailable};
use tokio::sync::RwLock;

use crate::settings::NatsSettings;
use crate::topology::{self, without_credentials};

/// How long a count may take before the page gives up on it.
const COUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// Time between connection attempts while NATS is unreachable.
const RETRY: Duration = Duration::from_secs(5);

/// Reads dead-letter counts from JetStream.
#[derive(Debug)]
pub struct DeadLetters {
    url: String,
    subjects: Subjects,
    js: RwLock<Option<jetstream::Context>>,
}

impl DeadLetters {
    /// Starts connecting to the NATS in `settings`, in the background, until it succeeds.
    /// Must be called inside a Tokio runtime.
    pub fn start(settings: NatsSettings) -> Arc<Self> {
        let this = Arc::new(Self {
            url: settings.url.clone(),
            subjects: settings.subjects.clone(),
            js: RwLock::new(None),
        });
        let connecting = this.clone();
        tokio::spawn(async move {
            loop {
                match topology::connect(&settings, "roller-serve").await {
                    Ok(client) => {
                        *connecting.js.write().await = Some(jetstream::new(client));
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "dead-letter counts unavailable; retrying");
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        });
        this
    }

    /// The number of dead letters of every dataset that has any (one request to JetStream);
    /// `Err` says why the counts are unavailable.
    async fn read_counts(&self) -> Result<Counts, Unavailable> {
        let Some(js) = self.js.read().await.clone() else {
            return Err(Unavailable(format!(
                "not connected to NATS at {}",
                without_credentials(&self.url)
            )));
        };
        let stream = self.subjects.stream(StreamKind::Dead);
        let counted = async {
            let stream = js
                .get_stream(&stream)
                .await
                .map_err(|e| format!("stream {stream}: {e}"))?;
            let mut subjects = stream
                .info_with_subjects(self.subjects.all_dead())
                .await
                .map_err(|e| e.to_string())?;
            let mut counts = HashMap::new();
            while let Some(entry) = futures::StreamExt::next(&mut subjects).await {
                let (subject, count) = entry.map_err(|e| e.to_string())?;
                // `{prefix}.dead.{stage}.{dataset}`: a dataset name is one subject token.
                if let Some(dataset) = subject.rsplit('.').next() {
                    *counts.entry(dataset.to_owned()).or_insert(0) +=
                        u64::try_from(count).unwrap_or(u64::MAX);
                }
            }
            Ok::<_, String>(counts)
        };
        match tokio::time::timeout(COUNT_TIMEOUT, counted).await {
            Ok(Ok(counts)) => Ok(counts),
            Ok(Err(reason)) => {
                tracing::warn!(reason, "cannot count dead letters");
                Err(Unavailable(
                    "JetStream did not give the counts (see the server's log)".into(),
                ))
            }
            Err(_) => Err(Unavailable("NATS did not answer in time".into())),
        }
    }
}

impl DeadLetterCounts for DeadLetters {
    fn counts(&self) -> Pin<Box<dyn Future<Output = Result<Counts, Unavailable>> + Send + '_>> {
        Box::pin(self.read_counts())
    }
}
