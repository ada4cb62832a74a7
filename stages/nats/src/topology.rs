//! Connecting to NATS and creating (idempotently) the streams, durable consumers and key-value
//! buckets a dataset needs. Every stage runs [`setup`] at start, and so does `roller setup`.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use roller_model::config::DatasetConfig;
use roller_proto::subjects::SubjectError;
use roller_proto::{StreamKind, Subjects};

use crate::settings::NatsSettings;

/// How long notifications, events and dead letters are kept.
const KEEP_EVENTS: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long dead letters are kept.
const KEEP_DEAD: Duration = Duration::from_secs(30 * 24 * 3600);

/// Why NATS could not be reached or set up.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The server cannot be reached or refused the credentials.
    #[error("cannot connect to NATS at {url}: {reason}. Is nats-server running with JetStream (-js), and are NATS_URL / NATS_CREDS right?")]
    Connect {
        /// The URL.
        url: String,
        /// The client's message.
        reason: String,
    },
    /// A stream, consumer or bucket could not be created.
    #[error("setting up JetStream {what}: {reason}")]
    Setup {
        /// Which object.
        what: String,
        /// The server's message.
        reason: String,
    },
    /// The dataset name cannot be a subject token.
    #[error("dataset name: {0}")]
    Name(#[from] SubjectError),
}

/// A NATS URL without any `user:password@` or `token@` part, for display.
pub fn without_credentials(url: &str) -> String {
    url.split(',')
        .map(|server| match server.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{host}")
            }
            None => server
                .rsplit_once('@')
                .map_or(server, |(_, host)| host)
                .to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Connects with the settings' URL and credentials; fails at once if the server is unreachable
/// (afterwards the client reconnects on its own, forever).
pub async fn connect(
    settings: &NatsSettings,
    name: &str,
) -> Result<async_nats::Client, TopologyError> {
    let fail = |reason: String| TopologyError::Connect {
        url: without_credentials(&settings.url),
        reason,
    };
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Disconnected => {
                    tracing::warn!("disconnected from NATS; reconnecting")
                }
                async_nats::Event::Connected => tracing::info!("connected to NATS"),
                other => tracing::debug!(event = %other, "NATS event"),
            }
        });
    if let Some(creds) = &settings.creds {
        options = options
            .credentials_file(creds)
            .await
            .map_err(|e| fail(format!("reading credentials file {}: {e}", creds.display())))?;
    }
    options
        .connect(settings.url.as_str())
        .await
        .map_err(|e| fail(e.to_string()))
}

/// Handles on everything a dataset uses.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The JetStream context.
    pub js: jetstream::Context,
    /// Subject names.
    pub subjects: Subjects,
    /// Dataset name.
    pub dataset: String,
}

fn setup_error(what: impl Into<String>) -> impl FnOnce(String) -> TopologyError {
    let what = what.into();
    move |reason| TopologyError::Setup { what, reason }
}

/// Creates or updates the streams, the dataset's durable consumers and the commit buckets.
pub async fn setup(
    client: async_nats::Client,
    settings: &NatsSettings,
    config: &DatasetConfig,
) -> Result<Topology, TopologyError> {
    Subjects::check_dataset(&config.name)?;
    let js = jetstream::new(client);
    let subjects = settings.subjects.clone();
    let dataset = config.name.clone();
    let work_age = config
        .scratch
        .as_ref()
        .map_or(Duration::from_secs(24 * 3600), |s| {
            Duration::from_secs(s.max_age.0.unsigned_abs())
        });
    for kind in StreamKind::ALL {
        ensure_stream(&js, settings, kind, work_age).await?;
    }
    let consumers = [
        // The feed reaches it through the router (`route`).
        ("fetch", StreamKind::Ingest, vec![subjects.ingest(&dataset)]),
        ("decode", StreamKind::Work, vec![subjects.fetched(&dataset)]),
        ("write", StreamKind::Work, vec![subjects.slab(&dataset)]),
        (
            "commit",
            StreamKind::Events,
            vec![subjects.report(&dataset), subjects.roll(&dataset)],
        ),
    ];
    for (stage, kind, filters) in consumers {
        let name = subjects.consumer(stage, &dataset);
        let stream_name = subjects.stream(kind);
        let (filter_subject, filter_subjects) = if filters.len() == 1 {
            (filters[0].clone(), Vec::new())
        } else {
            (String::new(), filters)
        };
        js.create_consumer_on_stream(
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: settings.ack_wait,
                max_deliver: settings.max_deliver,
                filter_subject,
                filter_subjects,
                // The commit stage folds a batch before acking it.
                max_ack_pending: if stage == "commit" { 4096 } else { 1000 },
                ..Default::default()
            },
            &stream_name,
        )
        .await
        .map_err(|e| setup_error(format!("consumer {name} on {stream_name}"))(e.to_string()))?;
    }
    ensure_bucket(
        &js,
        subjects.lease_bucket(),
        "commit leases: one writer per dataset",
        settings.lease_ttl,
    )
    .await?;
    ensure_bucket(
        &js,
        subjects.generation_bucket(),
        "committed generation per dataset (fencing token)",
        Duration::ZERO,
    )
    .await?;
    Ok(Topology {
        js,
        subjects,
        dataset,
    })
}

/// Creates or updates the key-value bucket `bucket` (on file, the newest value of each key),
/// its entries expiring after `max_age` unless that is zero; returns it.
pub async fn ensure_bucket(
    js: &jetstream::Context,
    bucket: String,
    description: &str,
    max_age: Duration,
) -> Result<kv::Store, TopologyError> {
    js.create_or_update_key_value(kv::Config {
        bucket: bucket.clone(),
        description: description.to_owned(),
        history: 1,
        max_age,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| setup_error(format!("bucket {bucket}"))(e.to_string()))
}

/// Creates or updates one stream; `work_age` is how long work messages are kept.
async fn ensure_stream(
    js: &jetstream::Context,
    settings: &NatsSettings,
    kind: StreamKind,
    work_age: Duration,
) -> Result<(), TopologyError> {
    let subjects = &settings.subjects;
    let (retention, max_age) = match kind {
        StreamKind::Work => (stream::RetentionPolicy::WorkQueue, work_age),
        StreamKind::Dead => (stream::RetentionPolicy::Limits, KEEP_DEAD),
        StreamKind::Ingest | StreamKind::Events => (stream::RetentionPolicy::Limits, KEEP_EVENTS),
    };
    let name = subjects.stream(kind);
    js.create_or_update_stream(stream::Config {
        name: name.clone(),
        subjects: subjects.stream_subjects(kind),
        retention,
        max_age,
        duplicate_window: settings.dedup_window.min(max_age),
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| setup_error(format!("stream {name}"))(e.to_string()))?;
    Ok(())
}

/// Creates or updates what the feed needs, for the bridge (which serves no dataset): the
/// ingest stream, which holds the feed subject, and the dead-letter stream.
pub async fn setup_feed(
    client: async_nats::Client,
    settings: &NatsSettings,
) -> Result<jetstream::Context, TopologyError> {
    let js = jetstream::new(client);
    for kind in [StreamKind::Ingest, StreamKind::Dead] {
        // (work_age is only used by the work stream)
        ensure_stream(&js, settings, kind, KEEP_EVENTS).await?;
    }
    Ok(js)
}

impl Topology {
    /// The durable pull consumer of `stage` for this dataset.
    pub async fn consumer(
        &self,
        stage: &str,
        kind: StreamKind,
    ) -> Result<consumer::PullConsumer, TopologyError> {
        let name = self.subjects.consumer(stage, &self.dataset);
        self.js
            .get_consumer_from_stream(&name, &self.subjects.stream(kind))
            .await
            .map_err(|e| setup_error(format!("consumer {name}"))(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::without_credentials;

    #[test]
    fn credentials_never_reach_logs_or_pages() {
        assert_eq!(
            without_credentials("nats://user:secret@nats:4222,tls://tok@other:4222"),
            "nats://nats:4222,tls://other:4222"
        );
        assert_eq!(without_credentials("a:b@host:4222"), "host:4222");
        assert_eq!(without_credentials("nats://host:4222"), "nats://host:4222");
    }
}
