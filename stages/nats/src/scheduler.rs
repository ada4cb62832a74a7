//! The scheduler: emits a roll event for the dataset on the cron cadence of `schedule.cron`, so
//! the window follows the clock even when no data comes, and sweeps orphaned scratch objects.

use roller_bus::scratch::Scratch;
use roller_model::config::DatasetConfig;
use roller_proto::{wire, RollEvent};
use roller_scheduler::{Scheduler, SchedulerError};

use crate::publish::{publish, Abandoned, Outgoing};
use crate::shutdown::Shutdown;
use crate::topology::Topology;

/// Publishes a roll event for the commit stage.
pub async fn publish_roll(
    topology: &Topology,
    event: &RollEvent,
    shutdown: &Shutdown,
) -> Result<(), Abandoned> {
    let out = Outgoing::new(
        topology.subjects.roll(&event.dataset),
        wire::encode(event),
        format!("roll:{}:{}", event.dataset, event.until),
    );
    publish(&topology.js, &out, &shutdown.give_up)
        .await
        .map(|_| ())
}

/// Runs until shutdown.
pub async fn run(
    config: &DatasetConfig,
    topology: &Topology,
    scratch: Option<Scratch>,
    shutdown: &Shutdown,
) -> Result<(), SchedulerError> {
    let scheduler = Scheduler::new(config)?;
    loop {
        if let Some(scratch) = &scratch {
            let scratch = scratch.clone();
            match tokio::task::spawn_blocking(move || scratch.sweep()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "scratch sweep failed"),
                Err(e) => tracing::warn!(error = %e, "scratch sweep task failed"),
            }
        }
        let now = roller_proto::time::now();
        let next = scheduler.next_fire(now)?;
        tracing::info!(
            next = %roller_proto::time::format_instant(next),
            "next roll event"
        );
        let wait = std::time::Duration::from_secs((next - now).unsigned_abs());
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.stop_pulling.cancelled() => return Ok(()),
        }
        let event = scheduler.roll_event(roller_proto::time::now());
        tracing::info!(
            until = %roller_proto::time::format_instant(event.until),
            "emitting roll event"
        );
        if publish_roll(topology, &event, shutdown).await.is_err() {
            return Ok(());
        }
    }
}
