//! The commit replicas present, so that the datasets' commit leases spread over them (issue
//! "the whole feed in one deployment"): two replicas each lead about half the datasets, and
//! when one dies the other takes its datasets once its lease and its membership expire.
//!
//! Each commit process keeps a key in the `{P}_COMMIT_MEMBERS` bucket, whose entries expire
//! after the lease TTL unless renewed: `<group>.<holder>`, where the group is a hash of the
//! dataset names it serves and its templates (`Catalog::group_names`), so only replicas serving the same datasets count for each other
//! (processes of other catalogs, or Helm releases of one dataset each, share the prefix).
//! Every dataset has a *preferred* replica among those present: datasets are dealt out in name
//! order, each to the replica with the highest hash of (dataset, holder) that has fewer than
//! `ceil(datasets / replicas)` already, so every replica computes the same, balanced
//! assignment. The preference only steers who takes a lease; the lease itself still decides who
//! writes (invariant 8):
//! - a replica tries to take a free lease at once when it is the preferred one, and otherwise
//!   only once the lease has stayed free for two TTLs (the preferred one may be gone);
//! - a replica that leads more than its fair share (`ceil(datasets / replicas)`) hands a
//!   dataset it is not preferred for back, between two commits, so a replica started later
//!   gets its share.

use std::collections::HashMap;
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
    group: String,
    /// The datasets served: the catalog's, then those made from the feed ([`Members::add`]).
    datasets: Mutex<Vec<String>>,
    state: Mutex<Present>,
    leading: AtomicUsize,
}

/// The replicas present at the last beat, and which datasets each is preferred for.
#[derive(Debug, Default)]
struct Present {
    live: Vec<String>,
    preferred: HashMap<String, String>,
}

/// The group of processes serving exactly `datasets` (in any order): a hash of their names,
/// shared by every replica serving the same catalog.
pub fn group_of(datasets: &[String]) -> String {
    let mut names: Vec<&str> = datasets.iter().map(String::as_str).collect();
    names.sort_unstable();
    format!("{:016x}", fnv(&names))
}

/// A stable 64-bit hash (FNV-1a) of `parts`, the same in every build, so all replicas agree.
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

/// Which replica of `members` is preferred for each of `datasets`: in name order, each dataset
/// goes to the replica with the highest hash of (dataset, replica) among those with fewer than
/// `ceil(datasets / replicas)`.
pub fn assign(datasets: &[String], members: &[String]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    if members.is_empty() {
        return out;
    }
    let share = datasets.len().div_ceil(members.len());
    let mut taken: HashMap<&str, usize> = HashMap::new();
    let mut sorted: Vec<&String> = datasets.iter().collect();
    sorted.sort();
    for dataset in sorted {
        let mut candidates: Vec<&String> = members.iter().collect();
        candidates.sort_by_key(|m| std::cmp::Reverse((fnv(&[dataset, m]), m.as_str())));
        let chosen = candidates
            .iter()
            .find(|m| taken.get(m.as_str()).copied().unwrap_or(0) < share)
            .or(candidates.first());
        if let Some(chosen) = chosen {
            *taken.entry(chosen.as_str()).or_default() += 1;
            out.insert(dataset.clone(), (*chosen).clone());
        }
    }
    out
}

impl Members {
    /// Joins the replicas present as `holder`, serving `datasets` for the catalog whose
    /// [`roller_model::catalog::Catalog::group_names`] are `group`: keeps the membership key
    /// renewed every third of `ttl` (and the list of replicas fresh) until `stop`, then removes
    /// it.
    pub async fn join(
        js: &jetstream::Context,
        bucket: String,
        holder: &str,
        group: &[String],
        datasets: Vec<String>,
        ttl: Duration,
        stop: CancellationToken,
    ) -> Result<Arc<Self>, TopologyError> {
        let store = crate::topology::ensure_bucket(
            js,
            bucket,
            "commit replicas present: the leases spread over them",
            ttl,
        )
        .await?;
        let members = Arc::new(Self {
            holder: holder.to_owned(),
            group: group_of(group),
            state: Mutex::new(Present {
                live: vec![holder.to_owned()],
                preferred: assign(&datasets, &[holder.to_owned()]),
            }),
            datasets: Mutex::new(datasets),
            leading: AtomicUsize::new(0),
        });
        members.beat(&store).await;
        let this = members.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(ttl / 3) => this.beat(&store).await,
                    () = stop.cancelled() => {
                        let _ = store.delete(this.key()).await;
                        return;
                    }
                }
            }
        });
        Ok(members)
    }

    /// This replica's key in the bucket.
    fn key(&self) -> String {
        format!("{}.{}", self.group, self.holder)
    }

    /// Renews this replica's key and re-reads who is present (alone when the bucket cannot be
    /// read: the leases still keep one writer per dataset).
    async fn beat(&self, store: &kv::Store) {
        if let Err(e) = store.put(self.key(), Bytes::from_static(b"1")).await {
            tracing::warn!(error = %e, "renewing the commit membership failed");
        }
        let mut present = Vec::new();
        match store.keys().await {
            Ok(mut keys) => {
                while let Some(key) = keys.next().await {
                    match key {
                        Ok(key) => present.extend(
                            key.strip_prefix(&format!("{}.", self.group))
                                .map(str::to_owned),
                        ),
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
        self.deal(present);
    }

    /// The datasets served.
    fn datasets(&self) -> Vec<String> {
        self.datasets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Deals the datasets out to the replicas `present` again.
    fn deal(&self, present: Vec<String>) {
        let preferred = assign(&self.datasets(), &present);
        *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Present {
            live: present,
            preferred,
        };
    }

    /// Adds `dataset` (made from the feed) to those whose leases spread over the replicas; the
    /// group stays the catalog's, so replicas serving it keep counting for each other (each adds
    /// the same datasets, from the registry).
    pub fn add(&self, dataset: &str) {
        {
            let mut datasets = self
                .datasets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if datasets.iter().any(|d| d == dataset) {
                return;
            }
            datasets.push(dataset.to_owned());
        }
        let live = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .live
            .clone();
        self.deal(live);
    }

    /// How many replicas are present, and whether this one is preferred for `dataset`.
    fn view(&self, dataset: &str) -> (usize, bool) {
        let state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (
            state.live.len(),
            state.preferred.get(dataset) == Some(&self.holder),
        )
    }

    /// Whether this replica is the preferred one for `dataset`.
    pub fn prefers_me(&self, dataset: &str) -> bool {
        self.view(dataset).1
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
        let (live, mine) = self.view(dataset);
        if live < 2 || mine {
            return false;
        }
        let share = self.datasets().len().div_ceil(live);
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
    fn datasets_are_dealt_out_evenly_and_every_replica_deals_the_same() {
        let datasets: Vec<String> = (0..51).map(|i| format!("ukv-parameter-{i}")).collect();
        let two = vec!["host-a-1".to_owned(), "host-b-2".to_owned()];
        let dealt = assign(&datasets, &two);
        assert_eq!(dealt.len(), 51);
        let a = dealt.values().filter(|m| *m == "host-a-1").count();
        assert!((25..=26).contains(&a), "{a} of 51 to one of two");
        let mut reversed = datasets.clone();
        reversed.reverse();
        assert_eq!(
            assign(&reversed, &two),
            dealt,
            "the order they are listed in does not matter"
        );
        for four in [4, 5, 7] {
            let few: Vec<String> = datasets[..four].to_vec();
            let dealt = assign(&few, &two);
            let a = dealt.values().filter(|m| *m == "host-a-1").count();
            assert!(a.abs_diff(four - a) <= 1, "{four}: {dealt:?}");
        }
        let one = vec!["host-a-1".to_owned()];
        assert!(assign(&datasets, &one).values().all(|m| m == "host-a-1"));
        assert!(assign(&datasets, &[]).is_empty());
    }
}
