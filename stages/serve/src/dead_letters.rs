//! Dead-letter counts for the status page, when the server is told where NATS is (`NATS_URL`).
//!
//! The server must serve data whether or not NATS is up, so it connects in the background and
//! keeps trying; until it is connected the page says the count is unavailable. A count is the
//! number of messages in the dead-letter stream on `{prefix}.dead.*.{dataset}` (every stage).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use roller_nats::settings::NatsSettings;
use roller_nats::topology;
use roller_proto::{StreamKind, Subjects};
use tokio::sync::RwLock;

/// How long a count may take before the page gives up on it.
const COUNT_TIMEOUT: Duration = Duration::from_secs(2);

/// Time between connection attempts while NATS is unreachable.
const RETRY: Duration = Duration::from_secs(5);

/// A dataset's dead letters, as the page shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadCount {
    /// The server was not given a NATS URL.
    NotConfigured,
    /// NATS is configured but the count could not be read (the reason).
    Unavailable(String),
    /// Messages in the dead-letter stream for the dataset.
    Count(u64),
}

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

    /// The number of dead letters of `dataset`.
    pub async fn count(&self, dataset: &str) -> DeadCount {
        let Some(js) = self.js.read().await.clone() else {
            return DeadCount::Unavailable(format!("not connected to NATS at {}", self.url));
        };
        let stream = self.subjects.stream(StreamKind::Dead);
        let filter = format!("{}.dead.*.{dataset}", self.subjects.prefix());
        let counted = async {
            let stream = js
                .get_stream(&stream)
                .await
                .map_err(|e| format!("stream {stream}: {e}"))?;
            let mut subjects = stream
                .info_with_subjects(&filter)
                .await
                .map_err(|e| e.to_string())?;
            let mut total = 0u64;
            while let Some(entry) = futures::StreamExt::next(&mut subjects).await {
                let (_, count) = entry.map_err(|e| e.to_string())?;
                total += u64::try_from(count).unwrap_or(u64::MAX);
            }
            Ok::<u64, String>(total)
        };
        match tokio::time::timeout(COUNT_TIMEOUT, counted).await {
            Ok(Ok(total)) => DeadCount::Count(total),
            Ok(Err(reason)) => DeadCount::Unavailable(reason),
            Err(_) => DeadCount::Unavailable("NATS did not answer in time".into()),
        }
    }
}
