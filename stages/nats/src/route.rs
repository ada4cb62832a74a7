//! Routing the feed: every fetch process also runs the router, one durable consumer on the
//! feed subject per set of datasets (its name holds a hash of their names, so processes serving
//! the same catalog share it and split the work). Each message on the feed is read once
//! ([`roller_fetch::feed::route`]) and published, as it came, on the ingest subject of every
//! dataset that takes a file of it, where that dataset's own fetch consumer takes it; its
//! deduplication id is the one `roller replay` gives the same notice, so a notice both routed
//! and published straight to a dataset is stored once. A message for no dataset is acked and
//! counted as unmatched; one that does not parse is dead-lettered once, on
//! `{prefix}.dead.fetch.feed`.
//!
//! Without the router every dataset's fetch consumer would read the whole feed: with a whole
//! model's 51 datasets, 51 deliveries of every message.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use roller_bus::metrics::Metrics;
use roller_fetch::feed::route;
use roller_model::config::MatchConfig;
use roller_proto::{StreamKind, Subjects};

use crate::consume::{Failure, Handled, Incoming, Outcome};
use crate::members::group_of;
use crate::publish::{publish, Outgoing};
use crate::replay::ingest_msg_id;
use crate::settings::NatsSettings;
use crate::shutdown::Shutdown;
use crate::topology::{Topology, TopologyError};

/// The name the router's dead letters and metrics go under, in place of a dataset's.
pub const FEED: &str = "feed";

/// A router consumer nobody has pulled from for this long (its catalog changed) is removed.
const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 3600);

/// What the router needs.
#[derive(Debug)]
pub struct RouteStage {
    /// Every dataset this process serves, with what it takes.
    pub datasets: Vec<(String, MatchConfig)>,
    /// Streams and subjects (its dataset is [`FEED`]).
    pub topology: Topology,
    /// Shutdown signals.
    pub shutdown: Shutdown,
    /// The router's counters.
    pub metrics: Arc<Metrics>,
}

/// The name of the router's durable consumer for processes serving `datasets` (on the ingest
/// stream): `route_feed-<hash of the names>`, as `roller check` prints it for KEDA.
pub fn consumer_name(subjects: &Subjects, datasets: &[String]) -> String {
    subjects.consumer("route", &format!("{FEED}-{}", group_of(datasets)))
}

/// Creates or updates the router's durable consumer for processes serving `datasets` and
/// returns it.
pub async fn setup_router(
    js: &jetstream::Context,
    settings: &NatsSettings,
    datasets: &[String],
) -> Result<consumer::PullConsumer, TopologyError> {
    let subjects = &settings.subjects;
    let name = consumer_name(subjects, datasets);
    let stream = subjects.stream(StreamKind::Ingest);
    js.create_consumer_on_stream(
        consumer::pull::Config {
            durable_name: Some(name.clone()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: settings.ack_wait,
            max_deliver: settings.max_deliver,
            filter_subject: subjects.feed(),
            max_ack_pending: 1000,
            inactive_threshold: ABANDONED_AFTER,
            ..Default::default()
        },
        &stream,
    )
    .await
    .map_err(|e| TopologyError::Setup {
        what: format!("consumer {name} on {stream}"),
        reason: e.to_string(),
    })
}

/// Routes one feed message to the ingest subjects of the datasets that take a file of it.
pub async fn handle(stage: Arc<RouteStage>, message: Incoming) -> Outcome {
    let Ok(text) = std::str::from_utf8(&message.payload) else {
        return Err((
            Failure::Permanent("the notification is not UTF-8 text".into()),
            None,
        ));
    };
    let routed = match route(text, &stage.datasets, &stage.metrics) {
        Ok(routed) => routed,
        Err(e) => {
            return Err((
                Failure::Permanent(format!("not a valid notification: {e}")),
                None,
            ))
        }
    };
    let subjects = &stage.topology.subjects;
    let mut first = None;
    for (dataset, note) in &routed.to {
        let out = Outgoing::new(
            subjects.ingest(dataset),
            message.payload.clone(),
            ingest_msg_id(dataset, note),
        );
        let source = note.id();
        if publish(&stage.topology.js, &out, &stage.shutdown.give_up)
            .await
            .is_err()
        {
            // Routed again after a redelivery: deduplicated where it was stored already.
            return Err((Failure::Transient("shutting down".into()), Some(source)));
        }
        first.get_or_insert(source);
    }
    Ok(Handled {
        consumed: Vec::new(),
        source: first,
        unmatched: routed.to.is_empty() && routed.unmatched > 0,
    })
}
