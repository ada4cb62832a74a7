//! The registry of datasets made from the feed: when the router meets a parameter that a
//! catalog's discovering template takes and no dataset does, it makes the dataset
//! ([`roller_model::catalog::Discoveries`]), sets up its streams and consumers, records it here
//! and then routes the notice to it. Every stage process serving the catalog watches the
//! registry ([`Registry::watch`]) and starts serving each dataset recorded in it, as if its
//! catalog had listed it, so one set of stage processes serves datasets nobody listed.
//!
//! Entries are `dataset name -> {"parameter"}` in the `{P}_DISCOVERED` bucket; a process
//! rebuilds the dataset from its own copy of the catalog
//! ([`roller_model::catalog::Catalog::rediscover`]: the template that makes that name for that
//! parameter), so every process serving one catalog serves the same datasets whatever the order
//! of its `--config` files, and an entry of another catalog is ignored. Entries are never
//! removed by the system: a dataset made once keeps its store and its window rolls on (remove
//! the entry, and the store, then restart the processes to forget it).

use async_nats::jetstream::{self, kv};
use futures::{Stream, StreamExt, TryStreamExt};
use roller_model::catalog::{Catalog, Discovered};
use serde::{Deserialize, Serialize};

use crate::topology::TopologyError;

/// What the registry holds for a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The parameter token the dataset was made for.
    pub parameter: String,
}

/// The registry bucket.
#[derive(Clone)]
pub struct Registry {
    store: kv::Store,
}

impl Registry {
    /// Opens (creating if need be) the registry bucket `bucket`.
    pub async fn open(js: &jetstream::Context, bucket: String) -> Result<Self, TopologyError> {
        let store = crate::topology::ensure_bucket(
            js,
            bucket,
            "datasets templates made from the feed",
            std::time::Duration::ZERO,
        )
        .await?;
        Ok(Self { store })
    }

    /// Records `discovered`; recording a dataset already there is no change.
    pub async fn record(&self, discovered: &Discovered) -> Result<(), TopologyError> {
        let entry = Entry {
            parameter: discovered.parameter.clone(),
        };
        let body = serde_json::to_vec(&entry).unwrap_or_default();
        match self
            .store
            .create(&discovered.config.name, body.into())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(TopologyError::Setup {
                what: format!("recording dataset {}", discovered.config.name),
                reason: e.to_string(),
            }),
        }
    }

    /// Every dataset of `catalog` the registry holds now.
    pub async fn recorded(&self, catalog: &Catalog) -> Result<Vec<Discovered>, TopologyError> {
        let failed = |e: &dyn std::fmt::Display| TopologyError::Setup {
            what: "reading the registry of discovered datasets".into(),
            reason: e.to_string(),
        };
        let names: Vec<String> = match self.store.keys().await {
            Ok(keys) => keys.try_collect().await.map_err(|e| failed(&e))?,
            Err(e) => return Err(failed(&e)),
        };
        let mut found = Vec::with_capacity(names.len());
        for name in names {
            if let Some(value) = self.store.get(&name).await.map_err(|e| failed(&e))? {
                found.extend(of_entry(catalog, &name, &value));
            }
        }
        Ok(found)
    }

    /// Every dataset of `catalog` the registry holds, those recorded already first, then each
    /// as it is recorded, until the watch ends. Entries this catalog would not make are
    /// skipped (another catalog's); a dataset may come more than once.
    pub async fn watch(
        &self,
        catalog: Catalog,
    ) -> Result<impl Stream<Item = Discovered> + Send + 'static, TopologyError> {
        let entries =
            self.store
                .watch_with_history(">")
                .await
                .map_err(|e| TopologyError::Setup {
                    what: "watching the registry of discovered datasets".into(),
                    reason: e.to_string(),
                })?;
        Ok(entries.filter_map(move |entry| {
            let found = match entry {
                Ok(entry) if entry.operation == kv::Operation::Put => {
                    of_entry(&catalog, &entry.key, &entry.value)
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the registry of discovered datasets");
                    None
                }
            };
            futures::future::ready(found)
        }))
    }
}

/// The dataset `catalog` makes for the registry's entry `name` = `value`, if it is one of its.
fn of_entry(catalog: &Catalog, name: &str, value: &[u8]) -> Option<Discovered> {
    let entry: Entry = match serde_json::from_slice(value) {
        Ok(entry) => entry,
        Err(e) => {
            tracing::warn!(dataset = name, error = %e, "a registry entry does not parse; ignored");
            return None;
        }
    };
    let found = catalog.rediscover(name, &entry.parameter);
    if found.is_none() {
        tracing::debug!(
            dataset = name,
            parameter = %entry.parameter,
            "a registry entry no template of this catalog makes (another catalog's); ignored"
        );
    }
    found
}
