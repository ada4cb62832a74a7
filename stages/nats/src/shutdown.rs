//! Graceful shutdown: on SIGTERM or Ctrl-C a stage stops pulling at once, lets in-flight work
//! finish for a grace period, then naks whatever is still running and exits 0.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The two moments of a shutdown.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// Stop taking new messages.
    pub stop_pulling: CancellationToken,
    /// Give up on in-flight work: nak it so another replica takes it.
    pub give_up: CancellationToken,
}

impl Shutdown {
    /// A shutdown that nothing has triggered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A shutdown that follows this one and can also be triggered on its own, for a part of
    /// a process that may have to stop before the rest.
    pub fn child(&self) -> Self {
        Self {
            stop_pulling: self.stop_pulling.child_token(),
            give_up: self.give_up.child_token(),
        }
    }

    /// Triggers the shutdown: stop pulling now, give up after `grace`.
    pub fn trigger(&self, grace: Duration) {
        if self.stop_pulling.is_cancelled() {
            return;
        }
        tracing::info!(
            grace_s = grace.as_secs(),
            "shutting down: finishing in-flight work"
        );
        self.stop_pulling.cancel();
        let give_up = self.give_up.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            give_up.cancel();
        });
    }

    /// Triggers the shutdown on SIGTERM or SIGINT.
    pub fn on_signals(&self, grace: Duration) {
        let this = self.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            this.trigger(grace);
            // A second signal gives up at once.
            wait_for_signal().await;
            this.give_up.cancel();
        });
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops this stage");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
