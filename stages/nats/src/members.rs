//! The commit replicas present, so that the datasets' commit leases spread over them (issue
//! "the whole feed in one deployment"): two replicas each lead about half the datasets, and
//! when one dies the other takes its datasets once its lease and its membership expire.
//!
//! Each commit process keeps a key (its holder id) in the `{P}_COMMIT_MEMBERS` bucket, whose
//! entries expire after the lease TTL unless renewed. Every dataset has a *preferred* replica
//! among those present: the one with the highest hash of (dataset, holder), so each replica
//! prefers about `1/n` of the datasets and a replica joining or leaving moves only its share
//! (rendezvous hashing). The preference only steers who takes a lease; the lease itself still
//! decides who writes (invariant 8):
//! - a replica tries to take a free lease at once when it is the preferred one, and otherwise
//!   only once the lease has stayed free for two TTLs (the preferred one may be gone);
//! - a replica that leads more than its fair share (`ceil(datasets / replicas)`) hands a
//!   dataset it is not preferred for back, between two commits, so a replica started later
//!   gets its share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::topology::TopologyError;

/// The replicas present and this one's share of the leases.
#[derive(Debug)]
pub struct Members {
    holder: String,
    datasets: usize,
    live: Mutex<Vec<String>>,
    leading: AtomicUsize,
}

/// A stable 64-bit hash (FNV-1a), the same in every build, so all replicas agree.
fn fnv(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The replica of `members` preferred for `dataset` (rendezvous hashing).
pub fn preferred<'a>(dataset: &str, members: &'a [String]) -> Option<&'a str> {
    members
        .iter()
        .max_by_key(|m| (fnv(&[dataset, m]), m.as_str()))
        .map(String::as_str)
}

impl Members {
    /// Joins the replicas present as `holder`, serving `datasets` datasets: keeps the
    /// membership key renewed every third of `ttl` (and the list of replicas fresh) until
    /// `stop`, then removes it.
    pub async fn join(
        js: &jetstream::Context,
        bucket: String,
        holder: &str,
        datasets: usize,
        ttl: Duration,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, TopologyError> {
        let store = js
            .create_or_update_key_value(kv::Config {
                bucket: bucket.clone(),
                description: "commit replicas present: the leases spread over them".into(),
                history: 1,
                max_age: ttl,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| TopologyError::Setup {
                what: format!("bucket {bucket}"),
                reason: e.to_string(),
            })?;
        let members = Arc::new(Self {
            holder: holder.to_owned(),
            datasets,
            live: Mutex::new(vec![holder.to_owned()]),
            leading: AtomicUsize::new(0),
        });
        members.beat(&store).await;
        let this = members.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(ttl / 3) => this.beat(&store).await,
                    () = stop.cancelled() => {
                        let _ = store.delete(&this.holder).await;
                        return;
                    }
                }
            }
        });
        Ok(members)
    }

    /// Renews this replica's key and re-reads who is present (alone when the bucket cannot be
    /// read: the leases still keep one writer per dataset).
    async fn beat(&self, store: &kv::Store) {
        if let Err(e) = store.put(&self.holder, Bytes::from_static(b"1")).await {
            tracing::warn!(error = %e, "renewing the commit membership failed");
        }
        let mut present = Vec::new();
        match store.keys().await {
            Ok(mut keys) => {
                while let Some(key) = keys.next().await {
                    match key {
                        Ok(key) => present.push(key),
                        Err(e) => {
                            tracing::warn!(error = %e, "listing the commit replicas failed");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing the commit replicas failed"),
        }
        if !present.contains(&self.holder) {
            present.push(self.holder.clone());
        }
        present.sort();
        *self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = present;
    }

    /// The replicas present (this one included).
    pub fn live(&self) -> Vec<String> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether this replica is the preferred one for `dataset`.
    pub fn prefers_me(&self, dataset: &str) -> bool {
        preferred(dataset, &self.live()) == Some(self.holder.as_str())
    }

    /// Counts a lease taken.
    pub fn took(&self) {
        self.leading.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a lease given up (other than by [`Members::should_hand_back`]).
    pub fn gave_up(&self) {
        let _ = self
            .leading
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Whether to hand `dataset`'s lease back: this replica is not preferred for it and leads
    /// more than its fair share. When it says yes, the lease is already counted as given up.
    pub fn should_hand_back(&self, dataset: &str) -> bool {
        let live = self.live();
        if live.len() < 2 || preferred(dataset, &live) == Some(self.holder.as_str()) {
            return false;
        }
        let share = self.datasets.div_ceil(live.len());
        self.leading
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n > share).then(|| n - 1)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_replica_is_preferred_for_about_its_share_and_a_departure_moves_only_its_own() {
        let two = vec!["host-a-1".to_owned(), "host-b-2".to_owned()];
        let datasets: Vec<String> = (0..51).map(|i| format!("ukv-parameter-{i}")).collect();
        let a = datasets
            .iter()
            .filter(|d| preferred(d, &two) == Some("host-a-1"))
            .count();
        assert!((15..=36).contains(&a), "{a} of 51 preferred by one of two");
        let three = vec![two[0].clone(), two[1].clone(), "host-c-3".to_owned()];
        for d in &datasets {
            let now = preferred(d, &three).expect("one");
            if now != "host-c-3" {
                assert_eq!(Some(now), preferred(d, &two), "{d} moved between survivors");
            }
        }
        assert_eq!(preferred("x", &[]), None);
    }
}
