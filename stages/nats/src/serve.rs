//! Starting `roller-serve` (the serve box, `roller_serve`): read the configs, open the stores
//! (local or S3), connect the status page to the JetStream dead letters, listen, serve until
//! SIGTERM or Ctrl-C. `roller-serve` and `roller serve` are both one call to [`run`]. With
//! `NATS_URL` and a catalog whose templates make datasets from the feed, it also serves every
//! dataset the registry holds ([`crate::discovered`]), as they are made.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use roller_model::duration::{DurationError, Seconds};

use roller_serve::catalog::DEFAULT_SNAPSHOT_CACHE;
use roller_serve::dead_letters::DeadLetterCounts;
use roller_serve::{serve, Catalog, Served};

use crate::dead_letters::DeadLetters;
use crate::NatsSettings;

/// `roller-serve`'s whole command line (name, version, help): its own binary and the multi-call
/// `roller` called by that name parse the same.
#[derive(Debug, clap::Parser)]
#[command(
    name = "roller-serve",
    version,
    about = "Serve rolling Zarr datasets over HTTP, read-only"
)]
pub struct ServeCli {
    /// The server's arguments.
    #[command(flatten)]
    pub args: ServeArgs,
}

/// Command-line arguments of `roller-serve` (and `roller serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Dataset config or catalog (TOML); repeat for several.
    #[arg(
        long = "config",
        required = true,
        env = "ROLLER_CONFIG",
        value_delimiter = ','
    )]
    pub configs: Vec<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "ROLLER_SERVE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// How often a dataset's commit record is re-read (at most), e.g. `1s`.
    #[arg(long, env = "ROLLER_SERVE_REFRESH", default_value = "1s", value_parser = seconds)]
    pub refresh: Duration,
    /// How long clients may cache metadata documents, e.g. `2s`.
    #[arg(long, env = "ROLLER_SERVE_METADATA_MAX_AGE", default_value = "2s", value_parser = seconds)]
    pub metadata_max_age: Duration,
    /// The server's URL as readers reach it (behind a proxy, say), used in snapshot URLs;
    /// default: `http://` and the request's `Host` header.
    #[arg(long, env = "ROLLER_SERVE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Most snapshots (`/<dataset>@<generation>/`) kept open at once.
    #[arg(long, env = "ROLLER_SERVE_SNAPSHOT_CACHE", default_value_t = NonZeroUsize::new(DEFAULT_SNAPSHOT_CACHE).unwrap_or(NonZeroUsize::MIN))]
    pub snapshot_cache: NonZeroUsize,
    /// NATS server for the status page's dead-letter counts (with `NATS_CREDS` and
    /// `ROLLER_STREAM_PREFIX` as for the stages); without it the page does not count them.
    #[arg(long, env = "NATS_URL")]
    pub nats_url: Option<String>,
}

/// Every environment variable `roller-serve` reads (besides `ROLLER__*` config overrides and the
/// AWS SDK's standard variables): its arguments', `RUST_LOG`, and with `NATS_URL` the stages'
/// NATS settings.
pub fn environment_variables() -> Vec<String> {
    use clap::Args as _;
    let command = ServeArgs::augment_args(clap::Command::new("roller-serve"));
    let mut names: Vec<String> = command
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect();
    names.push("RUST_LOG".into());
    names.extend(crate::run::environment_variables());
    names
}

/// A duration argument (`1s`, `2m`): whole seconds, not negative.
fn seconds(text: &str) -> Result<Duration, DurationError> {
    let parsed = Seconds::parse(text)?;
    u64::try_from(parsed.0)
        .map(Duration::from_secs)
        .map_err(|_| DurationError::Negative(text.to_owned()))
}

/// Serves the datasets of `args` until SIGTERM or Ctrl-C.
pub fn run(args: &ServeArgs) -> Result<()> {
    let configs = roller_model::catalog::load_catalog(&args.configs)?;
    let stores = configs
        .datasets
        .iter()
        .cloned()
        .map(|config| {
            let backends = roller_s3::Backends::open(&config)
                .with_context(|| format!("dataset `{}`: opening its store", config.name))?;
            Ok((config, backends.store))
        })
        .collect::<Result<Vec<_>>>()?;
    let catalog =
        Catalog::with_stores(stores, args.refresh)?.with_snapshot_cache(args.snapshot_cache);
    let nats = match &args.nats_url {
        Some(url) => {
            let mut settings = NatsSettings::from_env()?;
            settings.url.clone_from(url);
            Some(settings)
        }
        None => None,
    };
    let discovering = match (&nats, configs.discovering.is_empty()) {
        (_, true) => None,
        (Some(settings), false) => Some((configs, settings.clone())),
        (None, false) => {
            tracing::warn!(
                "the catalog has templates that make datasets from the feed; without NATS_URL they are not served (the registry of made datasets is on NATS)"
            );
            None
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the server's runtime")?;
    runtime.block_on(async {
        let served = Arc::new(Served {
            dead_letters: nats
                .map(|settings| -> Arc<dyn DeadLetterCounts> { DeadLetters::start(settings) }),
            public_url: args.public_url.clone(),
            ..Served::new(catalog, args.metadata_max_age)
        });
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        if let Some((configs, settings)) = discovering {
            tokio::spawn(follow_registry(configs, settings, served.clone()));
        }
        tracing::info!(address = %listener.local_addr()?, "serving");
        serve(listener, served, stop_signal()).await?;
        Ok(())
    })
}

/// Adds each dataset the registry holds for `configs`' discovering templates to what is
/// served, as they are made (with the checks the stages make: the templates' limits, no name or
/// store twice); watched again 10 s after NATS cannot be reached or the watch ends.
async fn follow_registry(
    configs: roller_model::catalog::Catalog,
    settings: NatsSettings,
    served: Arc<Served>,
) {
    let mut made = roller_model::catalog::Discoveries::default();
    loop {
        let watching = async {
            let client = crate::topology::connect(&settings, "roller-serve").await?;
            let js = async_nats::jetstream::new(client);
            crate::discovered::Registry::open(&js, settings.subjects.discovered_bucket())
                .await?
                .watch(configs.clone())
                .await
        };
        let watch = match watching.await {
            Ok(watch) => watch,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the registry of datasets made from the feed; retrying in 10 s");
                tokio::time::sleep(Duration::from_secs(10)).await;
                continue;
            }
        };
        futures::pin_mut!(watch);
        while let Some(discovered) = futures::StreamExt::next(&mut watch).await {
            add_made(&configs, &mut made, discovered, &served);
        }
        tracing::warn!("the watch of the registry of datasets made from the feed ended; watching again in 10 s");
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// Serves `discovered`, a dataset the registry holds, unless served already or refused by the
/// templates' limits (said in the log).
fn add_made(
    configs: &roller_model::catalog::Catalog,
    made: &mut roller_model::catalog::Discoveries,
    discovered: roller_model::catalog::Discovered,
    served: &Served,
) {
    match made.admit(configs, &discovered) {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(dataset = %discovered.config.name, error = %e, "not serving a dataset the registry holds");
            return;
        }
    }
    let config = discovered.config;
    let name = config.name.clone();
    let added = roller_s3::Backends::open(&config)
        .map_err(|e| e.to_string())
        .and_then(|backends| {
            served
                .catalog
                .add(config, backends.store)
                .map_err(|e| e.to_string())
        });
    match added {
        Ok(()) => {
            tracing::info!(dataset = %name, "serving a dataset a template made from the feed")
        }
        Err(e) => {
            tracing::error!(dataset = %name, error = %e, "cannot serve a dataset made from the feed")
        }
    }
}

async fn stop_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("stopping");
}
