//! Where messages travel on NATS JetStream: subject, stream, consumer and bucket names, all
//! derived from one prefix (`ROLLER_STREAM_PREFIX`, default `roller`) so several deployments
//! can share a NATS account.
//!
//! ```text
//! {p}.feed                       the feed: any notice in any form, for every dataset (the bridge
//!                                 publishes here; fetch routes each notice to the datasets it matches)
//! {p}.ingest.{dataset}            notifications for one dataset, JSON (`nats pub`, `roller replay`)
//! {p}.work.fetched.{dataset}      fetch -> decode   (FetchedFile, bincode)
//! {p}.work.slab.{dataset}         decode -> write   (SlabTicket, bincode)
//! {p}.events.report.{dataset}     write -> commit   (WriteReport, bincode)
//! {p}.events.roll.{dataset}       scheduler / `roller roll` -> commit (RollEvent, bincode)
//! {p}.events.commit.{dataset}     commit -> anyone  (CommitEvent, bincode)
//! {p}.dead.{stage}.{dataset}      dead letters: the original payload plus Roller-* headers
//! ```

use std::fmt;

/// Why a prefix or dataset name cannot be used in subjects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` cannot be used as a NATS {what}: {reason}")]
pub struct SubjectError {
    /// The refused value.
    pub value: String,
    /// What it was for (stream prefix, dataset name).
    pub what: &'static str,
    /// Why.
    pub reason: &'static str,
}

/// The streams zarr-roller uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// Notifications as they arrive (limits retention: kept for replay and audit).
    Ingest,
    /// Work between stages (work-queue retention: a message is gone once acked).
    Work,
    /// Write reports, roll events and commits.
    Events,
    /// Messages no stage could process.
    Dead,
}

impl StreamKind {
    /// Every stream.
    pub const ALL: [Self; 4] = [Self::Ingest, Self::Work, Self::Events, Self::Dead];

    fn suffix(self) -> &'static str {
        match self {
            Self::Ingest => "INGEST",
            Self::Work => "WORK",
            Self::Events => "EVENTS",
            Self::Dead => "DEAD",
        }
    }

    fn token(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Work => "work",
            Self::Events => "events",
            Self::Dead => "dead",
        }
    }
}

/// The name the feed's router goes under where a dataset's name would (its dead letters on
/// `{prefix}.dead.fetch.feed`, its metrics and health under `dataset="feed"`): no dataset may
/// take it.
pub const FEED: &str = "feed";

/// Subject and stream names for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

fn check_token(value: &str, what: &'static str) -> Result<(), SubjectError> {
    let refuse = |reason| {
        Err(SubjectError {
            value: value.chars().take(100).collect(),
            what,
            reason,
        })
    };
    if value.is_empty() {
        return refuse("it is empty");
    }
    if value.len() > 64 {
        return refuse("it is longer than 64 characters");
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return refuse(
            "only ASCII letters, digits, `-` and `_` are allowed (`.` separates subject tokens)",
        );
    }
    Ok(())
}

impl Subjects {
    /// Names under `prefix` (letters, digits, `-`, `_`).
    pub fn new(prefix: &str) -> Result<Self, SubjectError> {
        check_token(prefix, "stream prefix")?;
        Ok(Self {
            prefix: prefix.to_owned(),
        })
    }

    /// Checks that a dataset name can be one subject token, and is not [`FEED`] (the name the
    /// feed's router files its dead letters and metrics under).
    pub fn check_dataset(dataset: &str) -> Result<(), SubjectError> {
        check_token(dataset, "dataset name in subjects")?;
        if dataset == FEED {
            return Err(SubjectError {
                value: dataset.to_owned(),
                what: "dataset name in subjects",
                reason: "it is reserved for the feed's router (its dead letters and metrics); choose another name",
            });
        }
        Ok(())
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Name of a stream, e.g. `ROLLER_INGEST`.
    pub fn stream(&self, kind: StreamKind) -> String {
        format!("{}_{}", self.prefix.to_ascii_uppercase(), kind.suffix())
    }

    /// Every subject a stream holds, e.g. `roller.work.>`; the ingest stream also holds the
    /// feed subject.
    pub fn stream_subjects(&self, kind: StreamKind) -> Vec<String> {
        let all = format!("{}.{}.>", self.prefix, kind.token());
        match kind {
            StreamKind::Ingest => vec![all, self.feed()],
            _ => vec![all],
        }
    }

    /// The feed: every notice the publisher sends, in any form, for whichever datasets match it.
    pub fn feed(&self) -> String {
        format!("{}.feed", self.prefix)
    }

    /// Where notifications for `dataset` are published.
    pub fn ingest(&self, dataset: &str) -> String {
        format!("{}.ingest.{dataset}", self.prefix)
    }

    /// Fetched files waiting for decode.
    pub fn fetched(&self, dataset: &str) -> String {
        format!("{}.work.fetched.{dataset}", self.prefix)
    }

    /// Slab tickets waiting for write.
    pub fn slab(&self, dataset: &str) -> String {
        format!("{}.work.slab.{dataset}", self.prefix)
    }

    /// Write reports for commit.
    pub fn report(&self, dataset: &str) -> String {
        format!("{}.events.report.{dataset}", self.prefix)
    }

    /// Roll events for commit.
    pub fn roll(&self, dataset: &str) -> String {
        format!("{}.events.roll.{dataset}", self.prefix)
    }

    /// Published commits.
    pub fn committed(&self, dataset: &str) -> String {
        format!("{}.events.commit.{dataset}", self.prefix)
    }

    /// Dead letters of one stage for one dataset.
    pub fn dead(&self, stage: impl fmt::Display, dataset: &str) -> String {
        format!("{}.dead.{stage}.{dataset}", self.prefix)
    }

    /// Every dead letter.
    pub fn all_dead(&self) -> String {
        format!("{}.{}.>", self.prefix, StreamKind::Dead.token())
    }

    /// Durable consumer name of a stage for a dataset, e.g. `decode_ukv-air-temperature`.
    pub fn consumer(&self, stage: impl fmt::Display, dataset: &str) -> String {
        format!("{stage}_{dataset}")
    }

    /// Key-value bucket recording the datasets templates made from the feed (see
    /// `roller_nats::discovered`).
    pub fn discovered_bucket(&self) -> String {
        format!("{}_DISCOVERED", self.prefix.to_ascii_uppercase())
    }

    /// Key-value bucket holding commit leases (entries expire when not renewed).
    pub fn lease_bucket(&self) -> String {
        format!("{}_COMMIT_LEASE", self.prefix.to_ascii_uppercase())
    }

    /// Key-value bucket of the commit replicas present (the leases spread over them).
    pub fn members_bucket(&self) -> String {
        format!("{}_COMMIT_MEMBERS", self.prefix.to_ascii_uppercase())
    }

    /// Key-value bucket holding each dataset's committed generation (the fencing token).
    pub fn generation_bucket(&self) -> String {
        format!("{}_COMMIT_GENERATION", self.prefix.to_ascii_uppercase())
    }
}

/// Headers a dead letter carries.
pub mod headers {
    /// The stage that gave up (`fetch`, `decode`, ...).
    pub const STAGE: &str = "Roller-Stage";
    /// Why, in words a person can act on.
    pub const REASON: &str = "Roller-Reason";
    /// The subject the message was first published on.
    pub const ORIGINAL_SUBJECT: &str = "Roller-Original-Subject";
    /// The notification's identity, when known.
    pub const SOURCE: &str = "Roller-Source";
    /// How many times the message had been delivered.
    pub const DELIVERIES: &str = "Roller-Deliveries";
    /// The queue a message came from (dead letters of the bridge).
    pub const QUEUE: &str = "Roller-Queue";
    /// The queue's id of the message (SQS `MessageId`).
    pub const QUEUE_MESSAGE_ID: &str = "Roller-Queue-Message-Id";
    /// How many times the queue had handed the message out (SQS `ApproximateReceiveCount`).
    pub const QUEUE_RECEIVE_COUNT: &str = "Roller-Queue-Receive-Count";
    /// When the message was sent to the queue, milliseconds since the epoch (SQS `SentTimestamp`).
    pub const QUEUE_SENT_TIMESTAMP: &str = "Roller-Queue-Sent-Timestamp";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let s = Subjects::new("roller").expect("valid");
        assert_eq!(s.stream(StreamKind::Ingest), "ROLLER_INGEST");
        assert_eq!(s.stream_subjects(StreamKind::Work), ["roller.work.>"]);
        assert_eq!(
            s.stream_subjects(StreamKind::Ingest),
            ["roller.ingest.>", "roller.feed"]
        );
        assert_eq!(s.ingest("ukv"), "roller.ingest.ukv");
        assert_eq!(s.dead("decode", "ukv"), "roller.dead.decode.ukv");
        assert_eq!(s.consumer("write", "ukv"), "write_ukv");
    }

    #[test]
    fn dots_and_wildcards_are_refused() {
        for bad in ["", "a.b", "a*", "a>", "a b"] {
            assert!(Subjects::new(bad).is_err(), "{bad}");
            assert!(Subjects::check_dataset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_routers_name_is_reserved() {
        let refused = Subjects::check_dataset(FEED).expect_err("reserved");
        assert!(refused.to_string().contains("reserved"), "{refused}");
        Subjects::check_dataset("feed-temperature").expect("only the exact name is reserved");
    }
}
