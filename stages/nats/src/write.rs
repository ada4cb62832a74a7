//! The write stage on NATS: takes a [`SlabTicket`], reads the slab from scratch, encodes and
//! stores its chunks, and reports to commit. The slab's scratch object is removed once the
//! ticket is acked.

use std::sync::Arc;

use roller_bus::scratch::Scratch;
use roller_proto::{wire, SlabTicket};
use roller_storage::Key;
use roller_write::Writer;

use crate::consume::{Failure, Handled, Incoming, Outcome};
use crate::publish::{publish, Outgoing};
use crate::shutdown::Shutdown;
use crate::topology::Topology;

/// What the write handler needs.
#[derive(Debug)]
pub struct WriteStage {
    /// Encodes and stores chunks.
    pub writer: Writer,
    /// Claim-checks.
    pub scratch: Scratch,
    /// Streams and subjects.
    pub topology: Topology,
    /// Shutdown signals.
    pub shutdown: Shutdown,
}

/// Handles one slab ticket.
pub async fn handle(stage: Arc<WriteStage>, message: Incoming) -> Outcome {
    let ticket: SlabTicket = match wire::decode(&message.payload) {
        Ok(t) => t,
        Err(e) => return Err((Failure::Permanent(e.to_string()), None)),
    };
    let source = ticket.source.clone();
    let fail = |f: Failure| Err((f, Some(source.clone())));
    let key = match Key::new(ticket.scratch_key.clone()) {
        Ok(key) => key,
        Err(e) => return fail(Failure::Permanent(e.to_string())),
    };
    let work = {
        let stage = stage.clone();
        let ticket = ticket.clone();
        tokio::task::spawn_blocking(move || {
            let slab = stage
                .scratch
                .get_slab(&ticket)
                .map_err(|e| Failure::of(&e))?;
            stage.writer.write(&slab).map_err(|e| Failure::of(&e))
        })
    };
    let report = match work.await {
        Ok(Ok(report)) => report,
        Ok(Err(failure)) => return fail(failure),
        Err(e) => return fail(Failure::Transient(format!("write task failed: {e}"))),
    };
    let out = Outgoing::new(
        stage.topology.subjects.report(&ticket.dataset),
        wire::encode(&report),
        format!(
            "report:{}:{}:{}",
            ticket.dataset, ticket.source, ticket.part
        ),
    );
    if publish(&stage.topology.js, &out, &stage.shutdown.give_up)
        .await
        .is_err()
    {
        return fail(Failure::Transient("shutting down".into()));
    }
    Ok(Handled {
        consumed: vec![key],
        source: Some(source),
        unmatched: false,
        ..Handled::default()
    })
}
