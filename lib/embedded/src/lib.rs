//! The embedded runner, beside the NATS stages (`roller-nats`) as the other way to run the boxes.
//! Embedded mode: fetch, decode, write and commit in one process, connected by bounded
//! in-process channels, on local disk. The same stage code the distributed binaries run.
//!
//! ```text
//! lines ─► [ingest] ─► decode workers (fetch + decode) ─► write workers ─► [commit]
//!              bounded queues: memory is bounded by queue depth x slab size
//! ```

pub mod discover;

use std::io;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver, TryRecvError};
use roller_proto::{Notification, RollEvent, WriteReport};

use roller_bus::metrics::{Counter, Metrics};
use roller_bus::{CollectedDeadLetters, DeadLetter, DeadLetterSink, Outbox, Stage};
use roller_commit::{CommitError, Committed, Committer, Event, MAX_BATCH};
use roller_decode::Decoder;
use roller_fetch::feed::files_for;
use roller_fetch::{FetchError, Fetcher, ObjectSource};
use roller_model::clock::Clock;
use roller_model::config::DatasetConfig;
use roller_model::layout::Layout;
use roller_model::slab::Slab;
use roller_model::state::CommitRecord;
use roller_storage::expiry::{DeleteExpired, Expiry};
use roller_storage::retry::retry;
use roller_storage::{LocalStore, Storage, StorageError};
use roller_write::{WriteError, Writer};

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The dataset's store could not be opened.
    #[error("opening the dataset store: {0}")]
    Storage(#[from] StorageError),
    /// The source roots are unusable.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The commit stage failed (storage down, incompatible config...).
    #[error(transparent)]
    Commit(#[from] CommitError),
    /// The writer could not be set up.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// Reading the notifications failed.
    #[error("reading notifications: {0}")]
    Input(#[from] io::Error),
    /// A roll of a dataset that has no file dims yet: nothing can be committed before its
    /// first file fixes them.
    #[error("dataset `{0}` leaves its file dims to its first file, and none has come: nothing to roll yet (ingest a file first)")]
    NotFixed(String),
}

/// Progress of a run, reported after every commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Files fully handed to the writers.
    pub files: u64,
    /// Messages dead-lettered so far.
    pub failed: u64,
    /// Generation of the last commit.
    pub generation: u64,
}

/// Callback receiving [`Progress`].
pub type ProgressFn = Box<dyn Fn(Progress) + Send + Sync>;

/// Tuning of an embedded run.
pub struct RunOptions {
    /// Threads fetching and decoding files (NetCDF/HDF5 is serialised; 2 overlaps I/O).
    pub decode_workers: usize,
    /// Threads encoding and storing chunks (defaults to twice the number of cores: a writer
    /// waits on every fsync, and the others keep the cores busy meanwhile).
    pub write_workers: usize,
    /// Slabs waiting between decode and write (bounds memory).
    pub queue_depth: usize,
    /// Called after every commit.
    pub on_progress: Option<ProgressFn>,
    /// What happens to chunks that roll out of the window (default: deleted).
    pub expiry: Arc<dyn Expiry>,
    /// Reads sources in buckets (`source.buckets`); without one, only local sources are read.
    pub objects: Option<Arc<dyn ObjectSource>>,
    /// The clock commits and the grace of rolled-out chunks are measured by.
    pub clock: Arc<dyn Clock>,
}

impl Default for RunOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        Self {
            decode_workers: 2,
            write_workers: 2 * cores,
            queue_depth: 2 * cores,
            on_progress: None,
            expiry: Arc::new(DeleteExpired),
            objects: None,
            clock: roller_model::clock::system(),
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("decode_workers", &self.decode_workers)
            .field("write_workers", &self.write_workers)
            .field("queue_depth", &self.queue_depth)
            .finish_non_exhaustive()
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// Notifications read (non-blank lines).
    pub notifications: u64,
    /// Notifications for other datasets (ignored).
    pub unmatched: u64,
    /// Feed events that announce no file (S3 test events, removals): counted and dropped.
    pub skipped: u64,
    /// Files whose field was read on the fast path (chunks inflated outside HDF5's lock).
    pub direct_reads: u64,
    /// Files decoded and written.
    pub files: u64,
    /// Files older than the window (skipped).
    pub below_window: u64,
    /// Decoded bytes handed to the writers.
    pub decoded_bytes: u64,
    /// Chunk objects stored.
    pub chunks: u64,
    /// Encoded bytes stored.
    pub stored_bytes: u64,
    /// Commits published.
    pub commits: u64,
    /// Everything that could not be processed, with reasons.
    pub dead_letters: Vec<DeadLetter>,
    /// The dataset state after the last commit.
    pub record: CommitRecord,
}

/// Opens the local store a config points at (an `s3://` store is refused: see `roller-s3`).
pub fn open_store(config: &DatasetConfig) -> Result<Arc<dyn Storage>, StorageError> {
    if let Ok(roller_model::config::Location::S3 { .. }) =
        roller_model::config::Location::parse(&config.store.path)
    {
        return Err(StorageError::Backend {
            operation: "opening the store".into(),
            key: config.store.path.display().to_string(),
            reason: "this is an S3 location; open it with roller_s3::Backends".into(),
        });
    }
    Ok(Arc::new(LocalStore::new(
        &config.store.path,
        config.store.fsync,
    )?))
}

/// Ingests notifications (JSON, one per line) into the dataset in `storage`.
pub fn run(
    config: &DatasetConfig,
    storage: Arc<dyn Storage>,
    lines: impl Iterator<Item = io::Result<String>>,
    options: &RunOptions,
) -> Result<RunSummary, RunError> {
    let layout = Layout::from_config(config);
    let metrics = Arc::new(Metrics::default());
    let mut committer = Committer::for_dataset(config, storage.clone(), options.expiry.clone())?
        .with_clock(options.clock.clone())
        .with_metrics(metrics.clone());
    let mut fetcher = Fetcher::new(&config.source)?;
    if let Some(objects) = &options.objects {
        fetcher = fetcher.with_objects(objects.clone(), std::env::temp_dir());
    }
    let decoder = Decoder::new(layout.clone(), storage.clone()).with_metrics(metrics.clone());
    let writer = Writer::new(layout, storage)?.with_metrics(metrics.clone());
    let dead = CollectedDeadLetters::default();
    let offset = AtomicI64::new(visible_offset(committer.record()));
    let depth = options.queue_depth.max(1);
    let (note_tx, note_rx) = bounded::<Notification>(depth);
    let (slab_tx, slab_rx) = bounded::<Slab>(depth);
    let (report_tx, report_rx) = bounded::<WriteReport>(depth * 4);

    let outcome = std::thread::scope(|scope| {
        for _ in 0..options.decode_workers.max(1) {
            let (rx, tx) = (note_rx.clone(), slab_tx.clone());
            let (fetcher, decoder, dead, offset) = (&fetcher, &decoder, &dead, &offset);
            scope.spawn(move || decode_worker(&rx, &tx, fetcher, decoder, dead, offset));
        }
        for _ in 0..options.write_workers.max(1) {
            let (rx, tx) = (slab_rx.clone(), report_tx.clone());
            let (writer, dead) = (&writer, &dead);
            scope.spawn(move || write_worker(&rx, &tx, writer, dead));
        }
        drop((note_rx, slab_tx, slab_rx, report_tx));
        let committing = scope.spawn(|| {
            commit_loop(&mut committer, &report_rx, &dead, &offset, |generation| {
                if let Some(progress) = &options.on_progress {
                    progress(Progress {
                        files: metrics.get(Counter::Files),
                        failed: dead.count(),
                        generation,
                    });
                }
            })
        });
        let read = ingest(lines, config, &note_tx, &dead, &metrics);
        drop(note_tx);
        let committed = committing
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let unparsed = read.map_err(RunError::from)?;
        committed.map_err(RunError::from)?;
        Ok::<_, RunError>(unparsed)
    });
    let unparsed = outcome?;
    let count = |counter| metrics.get(counter);
    Ok(RunSummary {
        notifications: count(Counter::Notices) + unparsed,
        unmatched: count(Counter::Unmatched),
        skipped: count(Counter::Skipped),
        direct_reads: count(Counter::DirectReads),
        files: count(Counter::Files),
        below_window: count(Counter::BelowWindow),
        decoded_bytes: count(Counter::DecodedBytes),
        chunks: count(Counter::Chunks),
        stored_bytes: count(Counter::StoredBytes),
        commits: count(Counter::Commits),
        dead_letters: dead.take(),
        record: committer.record().clone(),
    })
}

/// Moves the window so that `until` (seconds since the epoch) is visible, and commits.
pub fn roll(
    config: &DatasetConfig,
    storage: Arc<dyn Storage>,
    expiry: Arc<dyn Expiry>,
    until: i64,
) -> Result<CommitRecord, RunError> {
    let mut committer = Committer::for_dataset(config, storage, expiry)?;
    if !committer.record().layout.is_fixed() {
        return Err(RunError::NotFixed(config.name.clone()));
    }
    let roll = RollEvent {
        dataset: config.name.clone(),
        until,
    };
    committer.fold(&Event::Roll(roll))?;
    while committer.commit()?.is_some() {}
    committer.tidy()?;
    Ok(committer.record().clone())
}

fn visible_offset(record: &CommitRecord) -> i64 {
    if record.head.is_some() {
        record.offset
    } else {
        i64::MIN
    }
}

/// Reads the lines, hands the files this dataset takes to the decode workers and returns how
/// many lines did not parse (each a dead letter).
fn ingest(
    lines: impl Iterator<Item = io::Result<String>>,
    config: &DatasetConfig,
    out: &impl Outbox<Notification>,
    dead: &impl DeadLetterSink,
    metrics: &Metrics,
) -> io::Result<u64> {
    let mut unparsed = 0;
    for (n, line) in lines.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match files_for(&line, &config.matching, metrics) {
            Ok(sorted) => {
                for note in sorted.files {
                    if out.send(note).is_err() {
                        return Ok(unparsed);
                    }
                }
            }
            Err(e) => {
                unparsed += 1;
                dead.dead_letter(DeadLetter {
                    stage: Stage::Ingest,
                    source: format!("line {}", n + 1),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(unparsed)
}

fn decode_worker(
    rx: &Receiver<Notification>,
    out: &impl Outbox<Slab>,
    fetcher: &Fetcher,
    decoder: &Decoder,
    dead: &impl DeadLetterSink,
    offset: &AtomicI64,
) {
    for note in rx {
        let fail = |stage, reason: String| {
            dead.dead_letter(DeadLetter {
                stage,
                source: note.id(),
                reason,
            });
        };
        let source = match retry(|| fetcher.fetch(&note)) {
            Ok(source) => source,
            Err(e) => {
                fail(Stage::Fetch, e.to_string());
                continue;
            }
        };
        let path = source.path();
        let current = offset.load(Ordering::Relaxed);
        let known = (current != i64::MIN).then_some(current);
        match retry(|| decoder.decode(path, &note, known, |slab| out.send(slab))) {
            Ok(Ok(_)) => {}
            Ok(Err(_closed)) => return,
            Err(e) => fail(Stage::Decode, e.to_string()),
        }
    }
}

fn write_worker(
    rx: &Receiver<Slab>,
    out: &impl Outbox<WriteReport>,
    writer: &Writer,
    dead: &impl DeadLetterSink,
) {
    for slab in rx {
        match retry(|| writer.write(&slab)) {
            Ok(report) => {
                if out.send(report).is_err() {
                    return;
                }
            }
            Err(e) => dead.dead_letter(DeadLetter {
                stage: Stage::Write,
                source: slab.source.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Folds reports as they come, committing once per batch (whatever has queued up while the
/// previous commit was being written, up to [`MAX_BATCH`]); a report the committer refuses is a
/// dead letter.
fn commit_loop(
    committer: &mut Committer,
    reports: &Receiver<WriteReport>,
    dead: &impl DeadLetterSink,
    offset: &AtomicI64,
    on_commit: impl Fn(u64),
) -> Result<(), CommitError> {
    let publish = |committer: &mut Committer| -> Result<bool, CommitError> {
        match retry(|| committer.commit())? {
            Some(Committed { generation, .. }) => {
                offset.store(visible_offset(committer.record()), Ordering::Relaxed);
                on_commit(generation);
                Ok(true)
            }
            None => Ok(false),
        }
    };
    let fold = |committer: &mut Committer, report: WriteReport| {
        let source = report.source.clone();
        let event = Event::Report(report);
        if let Err(e) = retry(|| committer.fold(&event)) {
            dead.dead_letter(DeadLetter {
                stage: Stage::Commit,
                source,
                reason: e.to_string(),
            });
        }
    };
    while let Ok(first) = reports.recv() {
        fold(committer, first);
        for _ in 1..MAX_BATCH {
            match reports.try_recv() {
                Ok(report) => fold(committer, report),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        publish(committer)?;
    }
    while publish(committer)? {}
    // Record what expiry removed after the last commit (the view does not change).
    retry(|| committer.tidy())?;
    Ok(())
}
