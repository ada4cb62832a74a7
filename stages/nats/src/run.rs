//! Starting a stage: load and check everything, connect, set up the streams, then run the
//! stage's loop until SIGTERM. The stage binaries are one call to [`main`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use futures::{FutureExt as _, StreamExt as _};
use roller_bus::scratch::Scratch;
use roller_bus::Stage;
use roller_decode::Decoder;
use roller_model::catalog::{Catalog, Discoveries};
use roller_model::config::DatasetConfig;
use roller_model::layout::Layout;
use roller_proto::StreamKind;
use roller_s3::Backends;
use roller_write::Writer;

use crate::consume::{run_workers, WorkerSetup};
use crate::discovered::Registry;
use crate::health::{self, Health, HealthSet};
use crate::members::Members;
use crate::settings::NatsSettings;
use crate::shutdown::Shutdown;
use crate::topology::{connect, setup, setup_feed};
use crate::{commit, decode, fetch, route, scheduler, write};

/// Which stage a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageKind {
    /// Notifications to scratch copies.
    Fetch,
    /// Scratch copies to slabs.
    Decode,
    /// Slabs to chunks and write reports.
    Write,
    /// Reports and roll events to commits.
    Commit,
    /// The clock: roll events and the scratch sweep.
    Scheduler,
}

impl StageKind {
    /// The binary's name.
    pub fn binary(self) -> &'static str {
        match self {
            Self::Fetch => "roller-fetch",
            Self::Decode => "roller-decode",
            Self::Write => "roller-write",
            Self::Commit => "roller-commit",
            Self::Scheduler => "roller-scheduler",
        }
    }

    fn default_workers(self) -> usize {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        match self {
            // NetCDF/HDF5 is serialised behind one lock: two overlap I/O with decoding.
            Self::Fetch | Self::Decode => 2,
            Self::Write => cores,
            Self::Commit | Self::Scheduler => 1,
        }
    }
}

/// Why a stage could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The config or environment is unusable.
    #[error("{0}")]
    Config(String),
    /// NATS could not be reached or set up.
    #[error(transparent)]
    Topology(#[from] crate::topology::TopologyError),
    /// The commit stage cannot go on.
    #[error(transparent)]
    Commit(#[from] commit::CommitStageError),
    /// The scheduler's cadence is unusable.
    #[error(transparent)]
    Scheduler(#[from] roller_scheduler::SchedulerError),
}

fn scratch_of(config: &DatasetConfig, backends: &Backends) -> Result<Scratch, StageError> {
    let scratch = config.scratch.as_ref().ok_or_else(|| {
        StageError::Config(format!(
            "dataset `{}` has no [scratch] table: the distributed stages pass files through scratch storage; add `[scratch] path = \"...\"` (or set ROLLER__SCRATCH__PATH)",
            config.name
        ))
    })?;
    backends
        .scratch(scratch)
        .map_err(|e| StageError::Config(format!("opening scratch: {e}")))
}

/// Runs stage `kind` for one dataset until `shutdown` (see [`run_stages`]).
pub async fn run_stage(
    kind: StageKind,
    config: DatasetConfig,
    settings: NatsSettings,
    shutdown: Shutdown,
) -> Result<(), StageError> {
    run_stages(kind, vec![config], settings, shutdown).await
}

/// Runs stage `kind` for every dataset of `configs` in this process until `shutdown` (see
/// [`run_catalog`]).
pub async fn run_stages(
    kind: StageKind,
    configs: Vec<DatasetConfig>,
    settings: NatsSettings,
    shutdown: Shutdown,
) -> Result<(), StageError> {
    let catalog = Catalog {
        datasets: configs,
        discovering: Vec::new(),
    };
    run_catalog(kind, catalog, settings, shutdown).await
}

/// Runs stage `kind` for every dataset of `catalog` in this process until `shutdown`: one NATS
/// connection, one health endpoint, and per dataset its own consumer and workers, so a
/// dataset whose storage fails or whose files are bad retries and dead-letters on its own while
/// the others flow (and a dataset whose stage stops with an error is started again, see
/// [`supervise_dataset`]; a process serving one dataset stops with it instead). Every store is
/// opened before NATS is touched, so a bad location fails fast. When the catalog has templates
/// that make datasets from the feed, the process also serves every dataset they made, as the
/// registry records them ([`crate::discovered`]).
pub async fn run_catalog(
    kind: StageKind,
    catalog: Catalog,
    settings: NatsSettings,
    shutdown: Shutdown,
) -> Result<(), StageError> {
    let config_error = |e: &dyn std::fmt::Display| StageError::Config(e.to_string());
    let mut datasets = Vec::with_capacity(catalog.datasets.len());
    for config in &catalog.datasets {
        let backends = Backends::open(config)
            .map_err(|e| StageError::Config(format!("dataset `{}`: {e}", config.name)))?;
        let health = Health::new(kind.binary(), &config.name);
        datasets.push((config.clone(), backends, health));
    }
    let healths = HealthSet::new(datasets.iter().map(|(_, _, h)| h.clone()).collect());
    // Fetch also routes the feed to its datasets, counted under `feed`.
    let router = (kind == StageKind::Fetch).then(|| {
        let health = Health::new(kind.binary(), route::FEED);
        healths.add(health.clone());
        let rules = datasets
            .iter()
            .map(|(c, _, _)| (c.name.clone(), c.matching.clone()))
            .collect::<Vec<_>>();
        (rules, health)
    });
    {
        let (healths, stop) = (healths.clone(), shutdown.stop_pulling.clone());
        tokio::spawn(async move {
            stop.cancelled().await;
            healths.set_draining();
        });
    }
    if let Some(address) = settings.health_listen {
        health::start(address, healths.clone(), &shutdown)
            .await
            .map_err(|e| {
                config_error(&format!(
                    "cannot serve the health endpoints on {address} (ROLLER_HEALTH_LISTEN): {e}"
                ))
            })?;
    }
    let client = connect(&settings, kind.binary()).await?;
    let js = async_nats::jetstream::new(client.clone());
    let members = match kind {
        StageKind::Commit => Some(
            Members::join(
                &js,
                settings.subjects.members_bucket(),
                &holder_id(),
                &catalog.group_names(),
                datasets.iter().map(|(c, _, _)| c.name.clone()).collect(),
                settings.lease_ttl,
                shutdown.stop_pulling.clone(),
            )
            .await?,
        ),
        _ => None,
    };
    let registry = if catalog.discovering.is_empty() {
        None
    } else {
        Some(Registry::open(&js, settings.subjects.discovered_bucket()).await?)
    };
    let made = Arc::new(Mutex::new(Discoveries::default()));
    let mut found = match &registry {
        Some(registry) => {
            // What earlier routers made counts toward the templates' limits before this
            // process's router makes more.
            for discovered in registry.recorded(&catalog).await? {
                let _ = lock(&made).admit(&catalog, &discovered);
            }
            registry.watch(catalog.clone()).await?.boxed()
        }
        None => futures::stream::empty().boxed(),
    };
    let routing = router.map(|(rules, health)| {
        let stop = shutdown.child();
        let discovery = registry.clone().map(|registry| route::Discovery {
            catalog: catalog.clone(),
            made: made.clone(),
            registry,
            client: client.clone(),
            settings: settings.clone(),
        });
        let task = tokio::spawn(route_feed(
            client.clone(),
            settings.clone(),
            stop.clone(),
            (rules, catalog.group_names()),
            health,
            discovery,
        ));
        (task, stop)
    });
    let context = DatasetRun {
        client,
        settings: &settings,
        shutdown: &shutdown,
        members,
    };
    let served = match (&datasets[..], &registry) {
        // Serving one dataset, the process stops with it (and is restarted).
        ([(config, backends, health)], None) => {
            run_dataset(
                kind,
                config.clone(),
                backends.clone(),
                health.clone(),
                context,
            )
            .await
        }
        _ => {
            let mut runs: futures::stream::FuturesUnordered<futures::future::BoxFuture<'_, ()>> =
                datasets
                    .into_iter()
                    .map(|(config, backends, health)| {
                        supervise_dataset(kind, config, backends, health, context.clone()).boxed()
                    })
                    .collect();
            let stop = shutdown.stop_pulling.clone();
            let mut served_made = std::collections::HashSet::new();
            let mut watching = registry.is_some();
            loop {
                tokio::select! {
                    Some(()) = runs.next() => {}
                    next = found.next(), if watching && !stop.is_cancelled() => {
                        let Some(discovered) = next else {
                            tracing::warn!("the registry of datasets made from the feed stopped answering; datasets made from now on are served after a restart");
                            watching = false;
                            continue;
                        };
                        let name = discovered.config.name.clone();
                        if served_made.contains(&name) {
                            continue;
                        }
                        if let Err(e) = lock(&made).admit(&catalog, &discovered) {
                            tracing::warn!(dataset = %name, error = %e, "not serving a dataset the registry holds");
                            continue;
                        }
                        if let Some(serving) = start_made(kind, discovered.config, &healths, &context) {
                            served_made.insert(name);
                            runs.push(serving);
                        }
                    }
                    () = stop.cancelled(), if runs.is_empty() => break,
                    else => break,
                }
            }
            Ok(())
        }
    };
    if let Some((routing, stop)) = routing {
        if served.is_err() {
            // The process stops with its dataset: messages the router holds are nacked, so
            // whoever routes next takes them at once.
            stop.stop_pulling.cancel();
            stop.give_up.cancel();
        }
        if let Err(e) = routing.await {
            tracing::error!(error = %e, "the feed's router failed");
        }
    }
    served?;
    tracing::info!(stage = kind.binary(), "stopped");
    Ok(())
}

/// `mutex` locked, whether or not a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Routes the feed to `rules`' datasets until shutdown (see [`route`]), as the router of the
/// processes serving `names` ([`Catalog::group_names`]); setting the router up
/// is retried with a backoff (1 s doubling to a minute) while NATS refuses it.
async fn route_feed(
    client: async_nats::Client,
    settings: NatsSettings,
    shutdown: Shutdown,
    (rules, names): (
        Vec<(String, roller_model::config::MatchConfig)>,
        Vec<String>,
    ),
    health: Arc<Health>,
    discovery: Option<route::Discovery>,
) {
    let mut backoff = Duration::from_secs(1);
    let consumer = loop {
        let ready = async {
            let js = setup_feed(client.clone(), &settings).await?;
            let consumer = route::setup_router(&js, &settings, &names).await?;
            Ok::<_, crate::topology::TopologyError>((js, consumer))
        };
        match ready.await {
            Ok(ready) => break ready,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot set up the feed's router; retrying");
                tokio::select! {
                    () = shutdown.stop_pulling.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    };
    let (js, consumer) = consumer;
    health.set_ready(client);
    let topology = crate::topology::Topology {
        js,
        subjects: settings.subjects.clone(),
        dataset: route::FEED.to_owned(),
    };
    let stage = Arc::new(route::RouteStage {
        datasets: rules.into(),
        topology: topology.clone(),
        shutdown: shutdown.clone(),
        metrics: health.counters(),
        discovery,
    });
    let setup = WorkerSetup {
        stage: Stage::Fetch,
        topology,
        consumer,
        workers: settings.workers.unwrap_or(2),
        ack_wait: settings.ack_wait,
        max_deliver: settings.max_deliver,
        scratch: None,
        shutdown,
        health,
    };
    run_workers(setup, move |m| route::handle(stage.clone(), m)).await;
}

/// Starts serving `config`, a dataset a template made from the feed (once per process): its
/// health joins the process's, its lease joins those the commit replicas share. `None`, having
/// said why, when its storage cannot be opened (the registry's other datasets go on).
fn start_made<'a>(
    kind: StageKind,
    config: DatasetConfig,
    healths: &HealthSet,
    context: &DatasetRun<'a>,
) -> Option<futures::future::BoxFuture<'a, ()>> {
    let backends = match Backends::open(&config) {
        Ok(backends) => backends,
        Err(e) => {
            tracing::error!(dataset = %config.name, error = %e, "cannot open the storage of a dataset made from the feed; not serving it");
            return None;
        }
    };
    let health = Health::new(kind.binary(), &config.name);
    healths.add(health.clone());
    if let Some(members) = &context.members {
        members.add(&config.name);
    }
    tracing::info!(dataset = %config.name, stage = kind.binary(), "serving a dataset a template made from the feed");
    Some(supervise_dataset(kind, config, backends, health, context.clone()).boxed())
}

/// Runs one dataset of several until shutdown: when its stage fails (its storage, its
/// streams), it is started again after a backoff (doubling from 1 s to a minute) while the
/// process's other datasets go on.
async fn supervise_dataset(
    kind: StageKind,
    config: DatasetConfig,
    backends: Backends,
    health: Arc<Health>,
    context: DatasetRun<'_>,
) {
    let stop = context.shutdown.stop_pulling.clone();
    let mut delay = Duration::from_secs(1);
    loop {
        let run = run_dataset(
            kind,
            config.clone(),
            backends.clone(),
            health.clone(),
            context.clone(),
        )
        .await;
        let Err(e) = run else { return };
        if stop.is_cancelled() {
            return;
        }
        tracing::error!(
            dataset = %config.name,
            error = %e,
            retry_in_s = delay.as_secs(),
            "this dataset's stage failed; the other datasets go on; starting it again"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stop.cancelled() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(60));
    }
}

/// What a process shares with each dataset it serves.
#[derive(Clone)]
struct DatasetRun<'a> {
    client: async_nats::Client,
    settings: &'a NatsSettings,
    shutdown: &'a Shutdown,
    /// The commit replicas present (commit stage only).
    members: Option<Arc<Members>>,
}

/// Stage `kind` for one dataset, on a process's connection.
async fn run_dataset(
    kind: StageKind,
    config: DatasetConfig,
    backends: Backends,
    health: Arc<Health>,
    context: DatasetRun<'_>,
) -> Result<(), StageError> {
    let DatasetRun {
        client,
        settings,
        shutdown,
        members,
    } = context;
    let config_error = |e: &dyn std::fmt::Display| StageError::Config(e.to_string());
    let scratch = match kind {
        StageKind::Commit => None,
        StageKind::Scheduler => config
            .scratch
            .as_ref()
            .map(|_| scratch_of(&config, &backends))
            .transpose()?,
        _ => Some(scratch_of(&config, &backends)?),
    };
    let topology = setup(client.clone(), settings, &config).await?;
    health.set_ready(client);
    let layout = Layout::from_config(&config);
    let workers = settings.workers.unwrap_or_else(|| kind.default_workers());
    let worker_setup = |stage: Stage, consumer, scratch: &Option<Scratch>| WorkerSetup {
        stage,
        topology: topology.clone(),
        consumer,
        workers,
        ack_wait: settings.ack_wait,
        max_deliver: settings.max_deliver,
        scratch: scratch.clone(),
        shutdown: shutdown.clone(),
        health: health.clone(),
    };
    let scratch_or = |s: &Option<Scratch>| {
        s.clone()
            .ok_or_else(|| StageError::Config("scratch".into()))
    };
    match kind {
        StageKind::Fetch => {
            let stage = Arc::new(fetch::FetchStage {
                fetcher: backends
                    .fetcher(&config.source)
                    .map_err(|e| config_error(&e))?,
                scratch: scratch_or(&scratch)?,
                topology: topology.clone(),
                shutdown: shutdown.clone(),
                metrics: health.counters(),
                config: config.clone(),
            });
            let consumer = topology.consumer("fetch", StreamKind::Ingest).await?;
            run_workers(worker_setup(Stage::Fetch, consumer, &None), move |m| {
                fetch::handle(stage.clone(), m)
            })
            .await;
        }
        StageKind::Decode => {
            let store = backends.store.clone();
            let stage = Arc::new(decode::DecodeStage {
                decoder: Decoder::new(layout, store.clone()).with_metrics(health.counters()),
                store,
                scratch: scratch_or(&scratch)?,
                topology: topology.clone(),
                shutdown: shutdown.clone(),
            });
            let consumer = topology.consumer("decode", StreamKind::Work).await?;
            run_workers(worker_setup(Stage::Decode, consumer, &scratch), move |m| {
                decode::handle(stage.clone(), m)
            })
            .await;
        }
        StageKind::Write => {
            let store = backends.store.clone();
            let stage = Arc::new(write::WriteStage {
                writer: Writer::new(layout, store)
                    .map_err(|e| config_error(&e))?
                    .with_metrics(health.counters()),
                scratch: scratch_or(&scratch)?,
                topology: topology.clone(),
                shutdown: shutdown.clone(),
            });
            let consumer = topology.consumer("write", StreamKind::Work).await?;
            run_workers(worker_setup(Stage::Write, consumer, &scratch), move |m| {
                write::handle(stage.clone(), m)
            })
            .await;
        }
        StageKind::Commit => {
            let stage = Arc::new(commit::CommitStage {
                store: backends.store.clone(),
                expiry: backends.expiry.clone(),
                topology,
                shutdown: shutdown.clone(),
                lease_ttl: settings.lease_ttl,
                health: health.clone(),
                holder: holder_id(),
                members: members
                    .ok_or_else(|| StageError::Config("commit replicas not joined".into()))?,
                config,
            });
            commit::run(stage).await?;
        }
        StageKind::Scheduler => {
            scheduler::run(&config, &topology, scratch, shutdown).await?;
        }
    }
    Ok(())
}

/// This process's identity: host name and process id.
fn holder_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}-{}", std::process::id())
}

/// Every environment variable a stage binary reads (besides `ROLLER__*` config overrides and
/// the AWS SDK's standard credential and region variables): its config path, the NATS and
/// tuning settings, and `RUST_LOG`. Deployment checks compare their environments with this.
pub fn environment_variables() -> Vec<String> {
    use clap::CommandFactory as _;
    variables_read_by(&Args::command())
}

/// The variables a binary with the command line `command` reads: its arguments' and the NATS
/// settings', and `RUST_LOG`.
pub(crate) fn variables_read_by(command: &clap::Command) -> Vec<String> {
    let mut names: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    names.push("RUST_LOG".to_owned());
    let read = std::sync::Mutex::new(Vec::new());
    let _ = NatsSettings::from_vars(|name| {
        read.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(name.to_owned());
        None
    });
    names.extend(
        read.into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    names
}

/// Command line of every stage binary.
#[derive(Debug, Parser)]
#[command(
    about = "A zarr-roller stage on NATS JetStream. Connection settings come from NATS_URL, NATS_CREDS, ROLLER_STREAM_PREFIX (see the README)."
)]
struct Args {
    /// A dataset's TOML config or a catalog; repeat for several (comma-separated in the
    /// environment). Every key can be overridden with ROLLER__SECTION__KEY.
    #[arg(
        long = "config",
        env = "ROLLER_CONFIG",
        value_delimiter = ',',
        required = true
    )]
    configs: Vec<PathBuf>,
}

/// Runs `work` on a multi-threaded runtime with a shutdown that SIGTERM or Ctrl-C triggers
/// (giving up after `grace`); `None`, having said why, when the runtime cannot start.
pub(crate) fn until_signalled<F: std::future::Future>(
    name: &str,
    grace: Duration,
    work: impl FnOnce(Shutdown) -> F,
) -> Option<F::Output> {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return None;
        }
    };
    Some(runtime.block_on(async {
        let shutdown = Shutdown::new();
        shutdown.on_signals(grace);
        work(shutdown).await
    }))
}

/// Sets up logging from `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// The whole `main` of a stage binary: exit 2 on bad config, 1 if NATS is unreachable at start
/// or the stage fails, 0 after a graceful shutdown.
pub fn main(kind: StageKind) -> ExitCode {
    let args = Args::parse();
    init_logging();
    let name = kind.binary();
    let catalog = match roller_model::catalog::load_catalog(&args.configs) {
        Ok(catalog) => catalog,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let settings = match NatsSettings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(result) = until_signalled(name, settings.shutdown_grace, |shutdown| {
        run_catalog(kind, catalog, settings, shutdown)
    }) else {
        return ExitCode::FAILURE;
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e @ (StageError::Config(_) | StageError::Scheduler(_))) => {
            eprintln!("{name}: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}
