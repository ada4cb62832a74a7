//! zarr-roller's distributed stages on NATS JetStream: the bus on JetStream (consumers, acks,
//! redelivery, dead letters, claim-checks through scratch, leases) and every stage binary's
//! wiring (`roller-fetch` ... `roller-scheduler`, `roller-serve`'s in [`serve`] and
//! `roller-bridge`'s in [`bridge`]).
//!
//! The same stage code as the embedded runner (the boxes' crates: `roller-fetch`,
//! `roller-decode`, `roller-write`, `roller-commit`), driven by durable pull consumers instead of
//! in-process channels:
//!
//! ```text
//! SQS ─► bridge ─► {p}.feed ─► route (in fetch) ─┐
//! `nats pub`, `roller replay` ─────────────────► {p}.ingest.D ─► fetch ─► {p}.work.fetched.D
//!     ─► decode ─► {p}.work.slab.D ─► write
//!     ─► {p}.events.report.D ─► commit ◄─ {p}.events.roll.D ◄─ scheduler / `roller roll`
//! ```
//!
//! Bulk bytes go through scratch storage ([`roller_bus::scratch`]); messages carry keys.
//! [`topology`] creates the streams and consumers, [`consume`] is the ack/nak/dead-letter loop
//! every work stage shares, [`route`] hands the feed to the datasets, [`lease`] keeps one commit writer per dataset, and [`run`] is the
//! `main` of each binary.

pub mod bridge;
pub mod commit;
pub mod consume;
pub mod dead_letters;
pub mod decode;
pub mod discovered;
pub mod fetch;
pub mod health;
pub mod lease;
pub mod members;
pub mod publish;
pub mod replay;
pub mod route;
pub mod run;
pub mod scheduler;
pub mod serve;
pub mod settings;
pub mod shutdown;
pub mod topology;
pub mod write;

pub use run::{run_stage, StageKind};
pub use settings::NatsSettings;
