//! The commit lease: one commit instance per dataset writes metadata at a time (invariant 8).
//!
//! The lease is a key in a JetStream key-value bucket whose entries expire after the lease TTL.
//! An instance takes it with `create` (fails while another holds it) and renews it with a
//! compare-and-set `update` every third of the TTL; if a renewal fails, the lease is lost and
//! the instance stops committing. Holding the lease is checked right before every commit.
//!
//! A second key holds the committed generation and is advanced with compare-and-set before each
//! commit's storage write (a fencing token): an instance that lost the lease without noticing
//! cannot advance it, so it cannot publish a commit either.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::Store;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::members::Members;

/// The lease was lost or could not be checked.
#[derive(Debug, thiserror::Error)]
#[error("commit lease for dataset `{dataset}` lost: {reason}")]
pub struct LeaseLost {
    /// Dataset.
    pub dataset: String,
    /// Why.
    pub reason: String,
}

/// A held lease, renewed in the background until dropped or lost.
#[derive(Debug)]
pub struct Lease {
    dataset: String,
    held: Arc<AtomicBool>,
    /// The lease entry's revision as this holder last wrote it (a release deletes only that).
    revision: Arc<AtomicU64>,
    valid_until: Arc<Mutex<Instant>>,
    stop: CancellationToken,
    leases: Store,
    generations: Store,
    generation_revision: Option<u64>,
    ttl: Duration,
}

impl Lease {
    /// Waits until this instance (`holder`) holds the lease for `dataset`, or `cancel` fires.
    /// It tries at once when `members` says it is the dataset's preferred replica, and
    /// otherwise only once the lease has stayed free for two TTLs.
    pub async fn acquire(
        leases: Store,
        generations: Store,
        dataset: &str,
        holder: &str,
        ttl: Duration,
        members: &Members,
        cancel: &CancellationToken,
    ) -> Option<Self> {
        let mut waiting_logged = false;
        let mut free_since: Option<Instant> = None;
        loop {
            let revision = loop {
                let allowed = members.prefers_me(dataset)
                    || free_since.is_some_and(|t| t.elapsed() >= ttl * 2);
                if !allowed {
                    match leases.get(dataset).await {
                        Ok(None) => {
                            free_since.get_or_insert_with(Instant::now);
                        }
                        Ok(Some(_)) => free_since = None,
                        Err(_) => {}
                    }
                    tokio::select! {
                        () = tokio::time::sleep(ttl / 5) => {}
                        () = cancel.cancelled() => return None,
                    }
                    continue;
                }
                match leases.create(dataset, Bytes::from(holder.to_owned())).await {
                    Ok(revision) => break revision,
                    Err(e) => {
                        free_since = None;
                        if !waiting_logged {
                            let current = leases.get(dataset).await.ok().flatten();
                            tracing::info!(
                                dataset,
                                holder = ?current.map(|b| String::from_utf8_lossy(&b).into_owned()),
                                reason = %e,
                                "another commit instance holds the lease; standing by"
                            );
                            waiting_logged = true;
                        }
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(ttl / 5) => {}
                    () = cancel.cancelled() => return None,
                }
            };
            let acquired_at = Instant::now();
            members.took();
            tracing::info!(dataset, holder, "commit lease acquired");
            let generation_revision = match generations.entry(dataset).await {
                Ok(entry) => entry.map(|e| e.revision),
                Err(e) => {
                    tracing::warn!(dataset, error = %e, "reading the generation fence failed; giving the lease back and trying again");
                    let _ = leases.delete_expect_revision(dataset, Some(revision)).await;
                    members.gave_up();
                    tokio::select! {
                        () = tokio::time::sleep(ttl / 5) => {}
                        () = cancel.cancelled() => return None,
                    }
                    continue;
                }
            };
            let lease = Self {
                dataset: dataset.to_owned(),
                held: Arc::new(AtomicBool::new(true)),
                revision: Arc::new(AtomicU64::new(revision)),
                valid_until: Arc::new(Mutex::new(acquired_at + ttl)),
                stop: CancellationToken::new(),
                leases: leases.clone(),
                generations,
                generation_revision,
                ttl,
            };
            lease.renew_in_background(leases, holder.to_owned());
            return Some(lease);
        }
    }

    fn renew_in_background(&self, leases: Store, holder: String) {
        let (held, revision, valid_until, stop, dataset, ttl) = (
            self.held.clone(),
            self.revision.clone(),
            self.valid_until.clone(),
            self.stop.clone(),
            self.dataset.clone(),
            self.ttl,
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(ttl / 3) => {}
                    () = stop.cancelled() => return,
                }
                let started = Instant::now();
                match leases
                    .update(
                        &dataset,
                        Bytes::from(holder.clone()),
                        revision.load(Ordering::SeqCst),
                    )
                    .await
                {
                    Ok(next) => {
                        revision.store(next, Ordering::SeqCst);
                        *valid_until
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = started + ttl;
                    }
                    Err(e) => {
                        tracing::error!(%dataset, error = %e, "commit lease renewal failed; stepping down");
                        held.store(false, Ordering::SeqCst);
                        return;
                    }
                }
            }
        });
    }

    /// Whether the lease is still held, with a safety margin of a fifth of the TTL.
    pub fn is_held(&self) -> bool {
        let until = *self
            .valid_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.held.load(Ordering::SeqCst) && Instant::now() + self.ttl / 5 < until
    }

    /// Advances the fencing token to `generation` (compare-and-set); call before the commit's
    /// storage write. Fails if another instance advanced it since this lease was taken.
    pub async fn fence(&mut self, generation: u64) -> Result<(), LeaseLost> {
        let lost = |reason: String| LeaseLost {
            dataset: self.dataset.clone(),
            reason,
        };
        if !self.is_held() {
            return Err(lost("the lease expired before the commit".into()));
        }
        let value = Bytes::from(generation.to_string());
        let result = match self.generation_revision {
            Some(revision) => self
                .generations
                .update(&self.dataset, value, revision)
                .await
                .map_err(|e| e.to_string()),
            None => self
                .generations
                .create(&self.dataset, value)
                .await
                .map_err(|e| e.to_string()),
        };
        match result {
            Ok(revision) => {
                self.generation_revision = Some(revision);
                Ok(())
            }
            Err(reason) => {
                self.held.store(false, Ordering::SeqCst);
                Err(lost(format!("the generation fence moved: {reason}")))
            }
        }
    }

    /// Gives the lease up (on shutdown), so a standby takes over at once. Only this holder's
    /// entry is removed: should the lease have passed to another replica meanwhile, it stays.
    pub async fn release(self) {
        self.stop.cancel();
        if self.held.load(Ordering::SeqCst) {
            let revision = self.revision.load(Ordering::SeqCst);
            if let Err(e) = self
                .leases
                .delete_expect_revision(&self.dataset, Some(revision))
                .await
            {
                tracing::warn!(dataset = %self.dataset, error = %e, "releasing the lease failed (it may have passed to another replica); it expires on its own");
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
