//! Routing the feed: every fetch process also runs the router, one durable consumer on the
//! feed subject per catalog (its name holds a hash of its datasets' names and its templates,
//! `Catalog::group_names`, so processes serving the same catalog share it and split the work).
//! Each message on the feed is read once ([`roller_fetch::feed::route`]) and published, as it
//! came, on the ingest subject of every dataset that takes a file of it, where that dataset's
//! own fetch consumer takes it; its deduplication id is the one `roller replay` gives the same
//! notice, so a notice both routed and published straight to a dataset is stored once. A
//! message for no dataset is acked and counted as unmatched; one that does not parse is
//! dead-lettered once, on `{prefix}.dead.fetch.feed`.
//!
//! Without the router every dataset's fetch consumer would read the whole feed: with a whole
//! model's 51 datasets, 51 deliveries of every message.
//!
//! With a catalog whose templates make datasets from the feed ([`Discovery`]), a notice no
//! dataset takes may make one: the router sets its streams and consumers up, records it in the
//! registry ([`crate::discovered`]), where every stage process serving the catalog picks it up,
//! and routes the notice to it. A notice a template would take but cannot make a dataset for
//! (its parameter cannot name one, the template's limit is reached) dead-letters its message;
//! when other notices of it were routed, a copy is dead-lettered and the message acked.
//!
//! A catalog change makes a new router (another hash); it starts where the old one had got to
//! ([`setup_router`]), and the old consumer stays until an operator removes it: NATS could
//! remove idle consumers itself, but a fetch deployment scaled to zero is idle too, and the
//! router's lag is what scales it up again.

use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_nats::jetstream::{self, consumer};
use futures::TryStreamExt;
use roller_bus::metrics::{Counter, Metrics};
use roller_fetch::feed::route;
use roller_model::catalog::{Catalog, Discoveries};
use roller_model::config::MatchConfig;
use roller_proto::{Notification, StreamKind, Subjects};

use crate::consume::{Failure, Handled, Incoming, Outcome};
use crate::discovered::Registry;
use crate::members::group_of;
use crate::publish::{publish, Outgoing};
use crate::replay::for_dataset;
use crate::settings::NatsSettings;
use crate::shutdown::Shutdown;
use crate::topology::{Topology, TopologyError};

pub use roller_proto::subjects::FEED;

/// What the router needs.
pub struct RouteStage {
    /// Every dataset this process serves, with what it takes; those templates make are added.
    pub datasets: RwLock<Vec<(String, MatchConfig)>>,
    /// Streams and subjects (its dataset is [`FEED`]).
    pub topology: Topology,
    /// Shutdown signals.
    pub shutdown: Shutdown,
    /// The router's counters.
    pub metrics: Arc<Metrics>,
    /// Making datasets from the feed, when the catalog has templates for it.
    pub discovery: Option<Discovery>,
}

/// What the router needs to make datasets from the feed.
pub struct Discovery {
    /// The catalog, with its discovering templates.
    pub catalog: Catalog,
    /// The datasets made so far (shared with the process's registry watch).
    pub made: Arc<Mutex<Discoveries>>,
    /// Where made datasets are recorded.
    pub registry: Registry,
    /// The connection and settings to set a made dataset's streams and consumers up with.
    pub client: async_nats::Client,
    /// See `client`.
    pub settings: NatsSettings,
}

impl RouteStage {
    /// The dataset that takes `note`, if one does now.
    fn dataset_for(&self, note: &Notification) -> Option<String> {
        self.datasets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(_, rule)| roller_model::matching::matches(rule, note))
            .map(|(name, _)| name.clone())
    }

    /// The dataset a template makes for `note`, which no dataset took: made (streams,
    /// consumers, registry) if need be; `None` when no template takes it.
    async fn make(&self, note: &Notification) -> Result<Option<String>, Failure> {
        let Some(discovery) = &self.discovery else {
            return Ok(None);
        };
        if let Some(name) = self.dataset_for(note) {
            // Made meanwhile, for an earlier notice.
            return Ok(Some(name));
        }
        let made = discovery
            .made
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .make(&discovery.catalog, note);
        let discovered = match made {
            Ok(Some(discovered)) => discovered,
            Ok(None) => return Ok(None),
            Err(e) => return Err(Failure::Permanent(e.to_string())),
        };
        let name = discovered.config.name.clone();
        let transient = |e: crate::topology::TopologyError| {
            Failure::Transient(format!("making dataset `{name}` for the feed: {e}"))
        };
        crate::topology::setup(
            discovery.client.clone(),
            &discovery.settings,
            &discovered.config,
        )
        .await
        .map_err(|e| match e {
            // The template checked the name; should NATS refuse it still, retrying cannot help.
            crate::topology::TopologyError::Name(e) => Failure::Permanent(e.to_string()),
            e => transient(e),
        })?;
        discovery
            .registry
            .record(&discovered)
            .await
            .map_err(transient)?;
        tracing::info!(
            dataset = %name,
            parameter = %discovered.parameter,
            "a template made a dataset for a parameter of the feed"
        );
        self.datasets
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push((name.clone(), discovered.config.matching));
        Ok(Some(name))
    }
}

/// The name of the router's durable consumer for processes serving the catalog whose
/// `Catalog::group_names` are `datasets` (on the ingest stream): `route_feed-<hash of the
/// names>`, as `roller check` prints it for KEDA.
pub fn consumer_name(subjects: &Subjects, datasets: &[String]) -> String {
    subjects.consumer("route", &format!("{FEED}-{}", group_of(datasets)))
}

/// Creates or updates the router's durable consumer for processes serving the catalog whose
/// group names are `datasets` ([`consumer_name`]) and returns it. A new router starts where the furthest of the stream's other routers (those of
/// other catalogs) has acknowledged, so a catalog change does not route the feed again; the
/// first router of a stream reads all the stream keeps (see [`start_of`]).
pub async fn setup_router(
    js: &jetstream::Context,
    settings: &NatsSettings,
    datasets: &[String],
) -> Result<consumer::PullConsumer, TopologyError> {
    let subjects = &settings.subjects;
    let name = consumer_name(subjects, datasets);
    let stream_name = subjects.stream(StreamKind::Ingest);
    let failed = |what: &str, e: &dyn std::fmt::Display| TopologyError::Setup {
        what: format!("{what} {name} on {stream_name}"),
        reason: e.to_string(),
    };
    let stream = js
        .get_stream(&stream_name)
        .await
        .map_err(|e| failed("the stream of consumer", &e))?;
    let routers: Vec<consumer::Info> = stream
        .consumers()
        .try_filter(|info| futures::future::ready(is_router(subjects, &info.name)))
        .try_collect()
        .await
        .map_err(|e| failed("listing the routers beside", &e))?;
    stream
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.clone()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: settings.ack_wait,
            max_deliver: settings.max_deliver,
            filter_subject: subjects.feed(),
            max_ack_pending: 1000,
            deliver_policy: start_of(&name, &routers),
            ..Default::default()
        })
        .await
        .map_err(|e| failed("consumer", &e))
}

/// Whether `consumer` is a router (of any catalog).
fn is_router(subjects: &Subjects, consumer: &str) -> bool {
    consumer.starts_with(&subjects.consumer("route", &format!("{FEED}-")))
}

/// Where router `name` reads from, given the stream's `routers`: where it did if it exists
/// (NATS refuses to change it), else after the furthest acknowledged message of the others, else
/// (the stream's first router) from the start of what the stream keeps.
fn start_of(name: &str, routers: &[consumer::Info]) -> consumer::DeliverPolicy {
    if let Some(existing) = routers.iter().find(|r| r.name == name) {
        return existing.config.deliver_policy;
    }
    routers
        .iter()
        .map(|r| r.ack_floor.stream_sequence)
        .max()
        .map_or(consumer::DeliverPolicy::All, |floor| {
            consumer::DeliverPolicy::ByStartSequence {
                start_sequence: floor + 1,
            }
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
    // Read under the lock (no await in between): the rules are not copied per message.
    let routed = route(
        text,
        &stage
            .datasets
            .read()
            .unwrap_or_else(PoisonError::into_inner),
        &stage.metrics,
    );
    let mut routed = match routed {
        Ok(routed) => routed,
        Err(e) => {
            return Err((
                Failure::Permanent(format!("not a valid notification: {e}")),
                None,
            ))
        }
    };
    let mut refused = Vec::new();
    for note in std::mem::take(&mut routed.unmatched) {
        match stage.make(&note).await {
            Ok(Some(dataset)) => {
                if !routed.to.iter().any(|(d, _)| *d == dataset) {
                    routed.to.push((dataset, note));
                }
            }
            Ok(None) => {
                stage.metrics.incr(Counter::Unmatched);
                routed.unmatched.push(note);
            }
            Err(Failure::Permanent(reason)) => refused.push(format!("{}: {reason}", note.id())),
            Err(transient) => return Err((transient, Some(note.id()))),
        }
    }
    if !refused.is_empty() && routed.to.is_empty() {
        return Err((Failure::Permanent(refused.join("; ")), None));
    }
    let subjects = &stage.topology.subjects;
    let mut first = None;
    for (dataset, note) in &routed.to {
        // The id `roller replay` gives the message on this dataset's ingest subject.
        let out = Outgoing {
            subject: subjects.ingest(dataset),
            payload: message.payload.clone(),
            msg_id: routed
                .message_id
                .as_deref()
                .map(|id| for_dataset(dataset, id)),
            headers: async_nats::HeaderMap::new(),
        };
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
        unmatched: routed.to.is_empty() && !routed.unmatched.is_empty(),
        // The rest of the message was routed: a copy is dead-lettered for these.
        refused: (!refused.is_empty()).then(|| refused.join("; ")),
    })
}
