//! Opens what a dataset config names: the dataset store, its expiry and its scratch area, each
//! on local disk or S3 (`s3://bucket/prefix`), sharing one S3 client per process.

use std::sync::Arc;

use roller_bus::scratch::Scratch;
use roller_fetch::{FetchError, Fetcher, ObjectSource};
use roller_model::config::{
    DatasetConfig, ExpiryPolicy, Location, LocationError, ScratchConfig, SourceConfig,
};
use roller_model::layout::Layout;
use roller_model::physical_key::data_chunks_prefix;
use roller_storage::expiry::{DeleteExpired, Expiry};
use roller_storage::{LocalStore, Storage, StorageError};

use crate::client::{ClientError, S3Client};
use crate::expiry::{TagExpired, TaggedAtWrite};
use crate::source::S3Objects;
use crate::store::S3Store;

/// Why a backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// A location setting is not usable.
    #[error("{key}: {source}")]
    Location {
        /// The config key.
        key: &'static str,
        /// Why.
        #[source]
        source: LocationError,
    },
    /// The S3 client could not start.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A local directory could not be created.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A dataset's backends.
#[derive(Debug, Clone)]
pub struct Backends {
    /// The dataset store.
    pub store: Arc<dyn Storage>,
    /// The dataset store when it is on S3 (for tags and lifecycle rules).
    pub s3_store: Option<S3Store>,
    /// What happens to rolled-off chunks.
    pub expiry: Arc<dyn Expiry>,
    /// The S3 client, if anything is on S3.
    pub client: Option<S3Client>,
}

impl Backends {
    /// Opens the store and expiry `config` names (creating an S3 client only if needed).
    pub fn open(config: &DatasetConfig) -> Result<Self, OpenError> {
        Self::open_with(config, None)
    }

    /// Like [`Backends::open`], with this S3 client instead of a new one.
    pub fn open_with(config: &DatasetConfig, client: Option<S3Client>) -> Result<Self, OpenError> {
        let location =
            Location::parse(&config.store.path).map_err(|source| OpenError::Location {
                key: "store.path",
                source,
            })?;
        let needs_s3 = matches!(location, Location::S3 { .. })
            || config
                .scratch
                .as_ref()
                .is_some_and(|s| matches!(Location::parse(&s.path), Ok(Location::S3 { .. })))
            || !config.source.buckets.is_empty();
        let client = match client {
            Some(client) => Some(client),
            None => needs_s3.then(|| S3Client::new(&config.s3)).transpose()?,
        };
        match location {
            Location::Local(path) => Ok(Self {
                store: Arc::new(LocalStore::new(path, config.store.fsync)?),
                s3_store: None,
                expiry: Arc::new(DeleteExpired),
                client,
            }),
            Location::S3 { bucket, prefix } => {
                let client = client.ok_or(ClientError::ShuttingDown)?;
                let mut store = S3Store::new(client.clone(), bucket, prefix);
                let tag = (&config.expiry.tag_key, &config.expiry.tag_value);
                let expiry: Arc<dyn Expiry> = match config.expiry.policy {
                    ExpiryPolicy::OnRollOff => {
                        Arc::new(TagExpired::new(store.clone(), tag.0, tag.1))
                    }
                    ExpiryPolicy::AtWrite => {
                        let data = data_chunks_prefix(&Layout::from_config(config));
                        store = store.tagging_puts_under(&data, tag.0, tag.1);
                        Arc::new(TaggedAtWrite)
                    }
                };
                Ok(Self {
                    store: Arc::new(store.clone()),
                    s3_store: Some(store),
                    expiry,
                    client: Some(client),
                })
            }
        }
    }

    /// The fetch stage's source reader for `source`: local roots, and the buckets in
    /// `source.buckets` through this S3 client (downloads go to the system temp directory).
    pub fn fetcher(&self, source: &SourceConfig) -> Result<Fetcher, FetchError> {
        let fetcher = Fetcher::new(source)?;
        Ok(match self.objects() {
            Some(objects) => fetcher.with_objects(objects, std::env::temp_dir()),
            None => fetcher,
        })
    }

    /// Reads source objects in buckets with this S3 client (`None` when nothing needs S3).
    pub fn objects(&self) -> Option<Arc<dyn ObjectSource>> {
        self.client
            .as_ref()
            .map(|client| Arc::new(S3Objects::new(client.clone())) as Arc<dyn ObjectSource>)
    }

    /// Opens the scratch area `scratch` names, on S3 with this client where it is an S3 URL.
    pub fn scratch(&self, scratch: &ScratchConfig) -> Result<Scratch, OpenError> {
        match Location::parse(&scratch.path).map_err(|source| OpenError::Location {
            key: "scratch.path",
            source,
        })? {
            Location::Local(_) => Ok(Scratch::open(scratch)?),
            Location::S3 { bucket, prefix } => {
                let client = self.client.clone().ok_or(ClientError::ShuttingDown)?;
                Ok(Scratch::new(
                    Arc::new(S3Store::new(client, bucket, prefix)),
                    scratch.max_age.0,
                ))
            }
        }
    }
}
