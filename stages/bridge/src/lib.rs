//! The bridge box: moves the publisher's notices from its queue (SQS) onto the feed, and
//! removes a message from the queue only once the feed has stored it, so nothing is lost when
//! either side fails.
//!
//! The box sees the queue and the feed through two small traits, [`Queue`] and [`Outlet`]:
//! the SQS side lives in `roller-sqs`, the JetStream side in `roller-nats` (which also holds
//! the `roller-bridge` binary). What the box decides is here:
//! - the deduplication id of each message ([`feed_id`]), so a message the queue hands out twice
//!   (a retry, a crash between publish and delete, two bridges) is stored on the feed once;
//! - a body that no form of the feed parses is a *poison* message: dead-lettered with its queue
//!   attributes and deleted, so it does not cycle through the queue forever;
//! - a message whose publish fails stays in the queue (it becomes visible again after the
//!   visibility timeout), and the poller backs off;
//! - a slow publish has its message's visibility extended, so no other poller takes it.

pub mod outlet;
pub mod poller;
pub mod queue;

pub use outlet::{Outlet, OutletError, Published};
pub use poller::{feed_id, Poller, PollerConfig};
pub use queue::{Queue, QueueError, QueueErrorKind, QueueMessage};
