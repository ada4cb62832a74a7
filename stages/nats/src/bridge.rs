//! The bridge on NATS: the feed as the bridge box's [`Outlet`] (JetStream publishes with
//! `Nats-Msg-Id` deduplication; poison messages to the dead-letter stream), and the
//! `roller-bridge` process: pollers of one or more SQS queues, health and metrics, graceful
//! shutdown.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::Context;
use async_nats::HeaderMap;
use clap::Parser;
use roller_bridge::{
    Outlet, OutletError, Poller, PollerConfig, Published, QueueError, QueueErrorKind, QueueMessage,
};
use roller_bus::metrics::Counter;
use roller_proto::subjects::headers;
use roller_proto::Subjects;
use roller_sqs::{SqsQueue, SqsSettings};

use crate::consume::header_text;
use crate::health::{self, Health, HealthSet};
use crate::run::{init_logging, until_signalled};
use crate::settings::NatsSettings;
use crate::shutdown::Shutdown;
use crate::topology::{connect, setup_feed, TopologyError};

/// The binary's name (and its `stage` label in metrics).
pub const BINARY: &str = "roller-bridge";

/// The feed on JetStream.
#[derive(Debug, Clone)]
pub struct JetStreamFeed {
    js: Context,
    subjects: Subjects,
}

impl JetStreamFeed {
    /// The feed of the streams under `subjects`' prefix.
    pub fn new(js: Context, subjects: Subjects) -> Self {
        Self { js, subjects }
    }

    /// Publishes once and waits for the stream's acknowledgement (the client's request
    /// timeout bounds the wait when NATS is down).
    async fn store(
        &self,
        subject: String,
        body: &str,
        id: String,
        headers: HeaderMap,
    ) -> Result<Published, OutletError> {
        let message = PublishMessage::build()
            .payload(body.to_owned().into())
            .headers(headers)
            .message_id(id);
        let failed = |e: Box<dyn std::error::Error + Send + Sync>| OutletError {
            detail: e.to_string(),
            source: e,
        };
        let ack = self
            .js
            .send_publish(subject, message)
            .await
            .map_err(|e| failed(Box::new(e)))?
            .await
            .map_err(|e| failed(Box::new(e)))?;
        Ok(if ack.duplicate {
            Published::Duplicate
        } else {
            Published::Stored
        })
    }
}

impl Outlet for JetStreamFeed {
    async fn publish(&self, body: &str, id: &str) -> Result<Published, OutletError> {
        self.store(self.subjects.feed(), body, id.to_owned(), HeaderMap::new())
            .await
    }

    async fn dead_letter(
        &self,
        message: &QueueMessage,
        queue: &str,
        reason: &str,
    ) -> Result<Published, OutletError> {
        let mut head = HeaderMap::new();
        head.insert(headers::STAGE, "bridge");
        head.insert(headers::REASON, header_text(reason).as_str());
        head.insert(headers::ORIGINAL_SUBJECT, self.subjects.feed().as_str());
        head.insert(headers::QUEUE, header_text(queue).as_str());
        head.insert(headers::QUEUE_MESSAGE_ID, header_text(&message.id).as_str());
        if let Some(count) = message.receive_count {
            head.insert(headers::QUEUE_RECEIVE_COUNT, count.to_string().as_str());
        }
        if let Some(sent) = message.sent_at_ms {
            head.insert(headers::QUEUE_SENT_TIMESTAMP, sent.to_string().as_str());
        }
        // One dead letter per queue message, however often the queue hands it out.
        let id = format!("dead:bridge:{}", message.id);
        self.store(
            self.subjects.dead("bridge", "feed"),
            &message.body,
            id,
            head,
        )
        .await
    }
}

/// Command line of `roller-bridge`.
#[derive(Debug, Clone, Parser)]
#[command(
    about = "The zarr-roller bridge: moves the publisher's notices from SQS queues onto the feed subject on NATS JetStream. NATS settings come from NATS_URL, NATS_CREDS, ROLLER_STREAM_PREFIX; AWS credentials and region from the standard AWS chain (see the README)."
)]
pub struct BridgeArgs {
    /// An SQS queue to poll (repeatable; comma-separated in the environment).
    #[arg(long = "queue-url", env = "ROLLER_QUEUE_URLS", value_delimiter = ',', required = true, value_parser = queue_url)]
    pub queue_urls: Vec<String>,
    /// Pollers per queue, each taking up to 10 messages at a time.
    #[arg(long, env = "ROLLER_BRIDGE_POLLERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub pollers: u16,
    /// Seconds a received message stays hidden from other receivers (extended while its
    /// publish is slow).
    #[arg(long, env = "ROLLER_BRIDGE_VISIBILITY_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(2..=43_200))]
    pub visibility_timeout: u64,
    /// Seconds a receive waits for messages (long polling, at most 20).
    #[arg(long, env = "ROLLER_BRIDGE_WAIT", default_value_t = 20, value_parser = clap::value_parser!(u64).range(0..=20))]
    pub wait: u64,
    /// An SQS-compatible endpoint instead of AWS's (or AWS_ENDPOINT_URL_SQS).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// The AWS region (or AWS_REGION; default eu-west-2).
    #[arg(long)]
    pub region: Option<String>,
}

/// Every environment variable `roller-bridge` reads, besides the AWS SDK's standard ones
/// (credentials, `AWS_REGION`, `AWS_ENDPOINT_URL_SQS`).
pub fn environment_variables() -> Vec<String> {
    use clap::CommandFactory as _;
    crate::run::variables_read_by(&BridgeArgs::command())
}

/// A queue URL must be an http(s) URL.
fn queue_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.starts_with("https://") || text.starts_with("http://") {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "`{text}` is not a queue URL (https://sqs.<region>.amazonaws.com/<account>/<queue>)"
        ))
    }
}

/// Runs the bridge until `shutdown`: pollers per queue, then finishes their batches.
pub async fn run_bridge(
    args: BridgeArgs,
    settings: NatsSettings,
    shutdown: Shutdown,
) -> Result<(), BridgeError> {
    let window = settings.dedup_window.as_secs();
    if args.visibility_timeout >= window {
        return Err(BridgeError::VisibilityBeyondDedup {
            visibility: args.visibility_timeout,
            window,
        });
    }
    let health = Health::new(BINARY, "feed");
    {
        let (health, stop) = (health.clone(), shutdown.stop_pulling.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            health.set_draining();
        });
    }
    if let Some(address) = settings.health_listen {
        health::start(address, HealthSet::new(vec![health.clone()]), &shutdown)
            .await
            .map_err(|e| {
                BridgeError::Topology(TopologyError::Setup {
                    what: format!("health endpoints on {address} (ROLLER_HEALTH_LISTEN)"),
                    reason: e.to_string(),
                })
            })?;
    }
    let client = connect(&settings, BINARY).await?;
    let js = setup_feed(client.clone(), &settings).await?;
    health.set_ready(client);
    let feed = Arc::new(JetStreamFeed::new(js, settings.subjects.clone()));
    let sqs = roller_sqs::client(&SqsSettings {
        endpoint_url: args.endpoint_url.clone(),
        region: args.region.clone(),
    })
    .await;
    let config = PollerConfig {
        batch: 10,
        wait: Duration::from_secs(args.wait),
        visibility: Duration::from_secs(args.visibility_timeout),
    };
    let mut pollers = tokio::task::JoinSet::new();
    for url in &args.queue_urls {
        let queue = Arc::new(SqsQueue::new(sqs.clone(), url.clone()));
        // A queue that refuses us (no such queue, no permission) is a configuration error;
        // one that does not answer yet is retried by the pollers.
        match queue.depth().await {
            Ok((visible, in_flight)) => {
                tracing::info!(queue = %url, visible, in_flight, "queue reachable");
            }
            Err(e) if e.kind == QueueErrorKind::Refused => return Err(BridgeError::Queue(e)),
            Err(e) => tracing::warn!(error = %e, "the queue does not answer yet; polling anyway"),
        }
        for _ in 0..args.pollers {
            let poller = Poller::new(queue.clone(), feed.clone(), config, health.counters());
            let stop = shutdown.stop_pulling.clone();
            pollers.spawn(async move { poller.run(&stop).await });
        }
        tracing::info!(queue = %url, pollers = args.pollers, feed = %settings.subjects.feed(), "bridging the queue onto the feed");
    }
    let failed = supervise(pollers, &shutdown, settings.shutdown_grace).await;
    let counters = health.counters();
    tracing::info!(
        received = counters.get(Counter::QueueReceived),
        published = counters.get(Counter::FeedPublished),
        duplicates = counters.get(Counter::FeedDuplicates),
        dead_lettered = counters.get(Counter::QueueDeadLettered),
        deleted = counters.get(Counter::QueueDeleted),
        queue_errors = counters.get(Counter::QueueErrors),
        "bridge stopped"
    );
    failed.map_or(Ok(()), |reason| Err(BridgeError::Poller(reason)))
}

/// Waits for the pollers to finish after a shutdown; a poller that ends before it (a panic)
/// triggers the shutdown and is reported. Once the grace has passed, pollers still moving a
/// batch are abandoned: its messages come back to the queue after the visibility timeout.
async fn supervise(
    mut pollers: tokio::task::JoinSet<()>,
    shutdown: &Shutdown,
    grace: Duration,
) -> Option<String> {
    let mut failed = None;
    let joined = async {
        while let Some(done) = pollers.join_next().await {
            let early = !shutdown.stop_pulling.is_cancelled();
            if let Err(e) = &done {
                tracing::error!(error = %e, "a poller failed; stopping the bridge");
            }
            if early || done.is_err() {
                failed.get_or_insert_with(|| match done {
                    Err(e) => e.to_string(),
                    Ok(()) => "a poller stopped before the bridge was told to".to_owned(),
                });
                shutdown.trigger(grace);
            }
        }
    };
    tokio::select! {
        () = joined => {}
        () = shutdown.give_up.cancelled() => {
            tracing::warn!("shutdown grace passed; abandoning the batches in hand (their messages come back to the queue)");
        }
    }
    failed
}

/// Why the bridge could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A message that came back after the dedup window would be stored twice.
    #[error("--visibility-timeout ({visibility} s) must be shorter than ROLLER_DEDUP_WINDOW ({window} s): a message the queue hands out again after the window would be stored on the feed twice")]
    VisibilityBeyondDedup {
        /// The visibility timeout, seconds.
        visibility: u64,
        /// The dedup window, seconds.
        window: u64,
    },
    /// NATS could not be reached or set up.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// A queue refused the bridge.
    #[error("{0}. Check the queue URL, the region and that the credentials may call sqs:ReceiveMessage, sqs:DeleteMessage, sqs:ChangeMessageVisibility and sqs:GetQueueAttributes on it")]
    Queue(#[source] QueueError),
    /// A poller stopped unexpectedly.
    #[error("a poller stopped unexpectedly: {0}")]
    Poller(String),
}

/// The whole `main` of `roller-bridge`: exit 2 on bad settings, 1 if NATS is unreachable or a
/// queue refuses the bridge at start (or a poller fails), 0 after a graceful shutdown.
pub fn main() -> ExitCode {
    let args = BridgeArgs::parse();
    init_logging();
    let settings = match NatsSettings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{BINARY}: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(result) = until_signalled(BINARY, settings.shutdown_grace, |shutdown| {
        run_bridge(args, settings, shutdown)
    }) else {
        return ExitCode::FAILURE;
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ BridgeError::VisibilityBeyondDedup { .. }) => {
            eprintln!("{BINARY}: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{BINARY}: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_urls_come_from_flags_or_a_comma_separated_list() {
        let args = BridgeArgs::try_parse_from([
            BINARY,
            "--queue-url",
            "http://127.0.0.1:5000/123456789012/a,https://sqs.eu-west-2.amazonaws.com/1/b",
            "--pollers",
            "4",
        ])
        .expect("parses");
        assert_eq!(args.queue_urls.len(), 2);
        assert_eq!(
            (args.pollers, args.visibility_timeout, args.wait),
            (4, 60, 20)
        );
        let bad =
            BridgeArgs::try_parse_from([BINARY, "--queue-url", "my-queue"]).expect_err("not a URL");
        assert!(bad.to_string().contains("is not a queue URL"), "{bad}");
        assert!(
            BridgeArgs::try_parse_from([BINARY, "--queue-url", "http://q", "--wait", "30"])
                .is_err()
        );
    }
}
