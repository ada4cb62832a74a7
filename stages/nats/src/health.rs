//! Health and metrics over HTTP for a stage process, for container health checks, Kubernetes
//! probes and Prometheus. Off unless `ROLLER_HEALTH_LISTEN` names an address (several stages
//! on one host would otherwise fight over a port).
//!
//! - `GET /healthz`: 200 while the process runs (liveness).
//! - `GET /readyz`: 200 once the stage has set up its streams and while the NATS connection is
//!   up, until shutdown begins; 503 otherwise (readiness).
//! - `GET /metrics`: Prometheus text: messages by outcome, the counters every stage reports
//!   (`roller_bus::metrics`, counted by the boxes), NATS connection and readiness.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use roller_bus::metrics::Metrics;

use crate::shutdown::Shutdown;

/// What became of a handled message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Handled and acked.
    Acked,
    /// Failed transiently and handed back for a later delivery.
    Retried,
    /// Sent to the dead-letter stream.
    DeadLettered,
    /// Acked with nothing done: the message announced nothing this dataset takes.
    Unmatched,
}

/// A stage process's health and counters, shared by its workers and the HTTP endpoint.
#[derive(Debug)]
pub struct Health {
    stage: &'static str,
    dataset: String,
    ready: AtomicBool,
    draining: AtomicBool,
    acked: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    unmatched: AtomicU64,
    counters: Arc<Metrics>,
    client: std::sync::OnceLock<async_nats::Client>,
}

impl Health {
    /// Health of `stage` (its binary's name) for `dataset`: alive, not ready yet.
    pub fn new(stage: &'static str, dataset: &str) -> Arc<Self> {
        Arc::new(Self {
            stage,
            dataset: dataset.to_owned(),
            ready: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            acked: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            counters: Arc::default(),
            client: std::sync::OnceLock::new(),
        })
    }

    /// The counters the stage's box counts into (reported with the message outcomes).
    pub fn counters(&self) -> Arc<Metrics> {
        self.counters.clone()
    }

    /// The stage has set up its streams on this connection: ready while it stays connected.
    pub fn set_ready(&self, client: async_nats::Client) {
        let _ = self.client.set(client);
        self.ready.store(true, Ordering::Relaxed);
    }

    /// The stage stopped pulling (shutdown): not ready any more, so no new work is routed here.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Counts one handled message.
    pub fn count(&self, outcome: Outcome) {
        let counter = match outcome {
            Outcome::Acked => &self.acked,
            Outcome::Retried => &self.retried,
            Outcome::DeadLettered => &self.dead_lettered,
            Outcome::Unmatched => &self.unmatched,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn connected(&self) -> bool {
        self.client
            .get()
            .is_some_and(|c| c.connection_state() == async_nats::connection::State::Connected)
    }

    /// Whether the stage is ready to work.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
            && !self.draining.load(Ordering::Relaxed)
            && self.connected()
    }

    /// The metrics in Prometheus' text format: message outcomes, the boxes' counters (the same
    /// set in every stage, as embedded mode reports them), connection and readiness.
    pub fn metrics(&self) -> String {
        let labels = format!(
            "stage=\"{}\",dataset=\"{}\"",
            self.stage,
            self.dataset.replace(['\\', '"', '\n'], "_")
        );
        let mut text = String::from(
            "# HELP roller_messages_total Messages handled by this stage process, by outcome.\n# TYPE roller_messages_total counter\n",
        );
        for (outcome, counter) in [
            ("acked", &self.acked),
            ("retried", &self.retried),
            ("dead_lettered", &self.dead_lettered),
            ("unmatched", &self.unmatched),
        ] {
            text.push_str(&format!(
                "roller_messages_total{{{labels},outcome=\"{outcome}\"}} {}\n",
                counter.load(Ordering::Relaxed)
            ));
        }
        text.push_str(&self.counters.prometheus(&labels));
        text.push_str(&format!(
            "# HELP roller_nats_connected 1 while the NATS connection is up.\n# TYPE roller_nats_connected gauge\nroller_nats_connected{{{labels}}} {}\n# HELP roller_ready 1 while the stage is ready (streams set up, NATS connected).\n# TYPE roller_ready gauge\nroller_ready{{{labels}}} {}\n",
            u8::from(self.connected()),
            u8::from(self.is_ready()),
        ));
        text
    }
}

/// The health of every dataset a process serves, on one endpoint: ready when every dataset's
/// stage is, metrics of all of them with their `dataset` labels.
#[derive(Debug, Clone)]
pub struct HealthSet(Arc<std::sync::RwLock<Vec<Arc<Health>>>>);

impl HealthSet {
    /// The set of `datasets`' health.
    pub fn new(datasets: Vec<Arc<Health>>) -> Self {
        Self(Arc::new(std::sync::RwLock::new(datasets)))
    }

    /// Adds a dataset's health (one made from the feed).
    pub fn add(&self, health: Arc<Health>) {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(health);
    }

    /// The datasets' health, as it is now.
    fn each(&self) -> Vec<Arc<Health>> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Marks every dataset's stage as draining (shutting down).
    pub fn set_draining(&self) {
        for health in self.each() {
            health.set_draining();
        }
    }

    /// Whether every dataset's stage is ready.
    pub fn is_ready(&self) -> bool {
        self.each().iter().all(|h| h.is_ready())
    }

    /// Every dataset's metrics, each metric family once (its help and type, then one line per
    /// dataset), as Prometheus' text format requires.
    pub fn metrics(&self) -> String {
        merge_families(self.each().iter().map(|h| h.metrics()))
    }
}

/// Merges Prometheus texts of the same families: each family's `# HELP` and `# TYPE` once, then
/// every text's samples of it, families in their first order.
fn merge_families(texts: impl IntoIterator<Item = String>) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut families: std::collections::HashMap<String, (Vec<String>, Vec<String>)> =
        std::collections::HashMap::new();
    for text in texts {
        for line in text.lines() {
            let (family, is_comment) = match line.strip_prefix("# ") {
                Some(rest) => (
                    rest.split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned(),
                    true,
                ),
                None => (
                    line.split(['{', ' ']).next().unwrap_or_default().to_owned(),
                    false,
                ),
            };
            let entry = families.entry(family.clone()).or_insert_with(|| {
                order.push(family);
                (Vec::new(), Vec::new())
            });
            if is_comment {
                if !entry.0.iter().any(|l| l == line) {
                    entry.0.push(line.to_owned());
                }
            } else {
                entry.1.push(line.to_owned());
            }
        }
    }
    let mut out = String::new();
    for family in order {
        if let Some((comments, samples)) = families.get(&family) {
            for line in comments.iter().chain(samples) {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(health): State<HealthSet>) -> Response {
    if health.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: streams not set up yet, or NATS is disconnected\n",
        )
            .into_response()
    }
}

async fn metrics(State(health): State<HealthSet>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        health.metrics(),
    )
        .into_response()
}

/// The endpoints over `health`.
pub fn router(health: HealthSet) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

/// Serves the endpoints on `address` until the stage stops pulling. Returns once listening.
pub async fn start(
    address: SocketAddr,
    health: HealthSet,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    tracing::info!(address = %listener.local_addr()?, "health endpoints listening");
    let stop = shutdown.give_up.clone();
    tokio::spawn(async move {
        let served = axum::serve(listener, router(health))
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the health endpoints stopped");
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_count_outcomes_and_report_not_ready_before_setup() {
        let health = Health::new("roller-fetch", "ukv\"x");
        health.count(Outcome::Acked);
        health.count(Outcome::Acked);
        health.count(Outcome::DeadLettered);
        let text = health.metrics();
        assert!(text.contains(
            "roller_messages_total{stage=\"roller-fetch\",dataset=\"ukv_x\",outcome=\"acked\"} 2"
        ));
        assert!(text.contains("outcome=\"dead_lettered\"} 1"));
        assert!(text.contains("outcome=\"retried\"} 0"));
        health
            .counters()
            .add(roller_bus::metrics::Counter::Chunks, 3);
        assert!(health
            .metrics()
            .contains("roller_chunks_total{stage=\"roller-fetch\",dataset=\"ukv_x\"} 3"));
        assert!(text.contains("roller_ready{stage=\"roller-fetch\",dataset=\"ukv_x\"} 0"));
        assert!(!health.is_ready());
    }

    #[test]
    fn a_process_serving_several_datasets_reports_each_family_once() {
        let (a, b) = (
            Health::new("roller-write", "a"),
            Health::new("roller-write", "b"),
        );
        b.counters().add(roller_bus::metrics::Counter::Chunks, 5);
        let text = HealthSet::new(vec![a, b]).metrics();
        assert_eq!(
            text.matches("# HELP roller_chunks_total ").count(),
            1,
            "{text}"
        );
        let chunks: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("roller_chunks_total{"))
            .collect();
        assert_eq!(
            chunks,
            [
                "roller_chunks_total{stage=\"roller-write\",dataset=\"a\"} 0",
                "roller_chunks_total{stage=\"roller-write\",dataset=\"b\"} 5"
            ]
        );
        // The family's help and type come right before its samples.
        let help = text.find("# HELP roller_chunks_total").expect("help");
        let first = text.find("roller_chunks_total{").expect("sample");
        assert!(help < first && !text[help..first].contains("roller_files_total{"));
    }
}
