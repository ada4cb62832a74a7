//! The decode stage on NATS: takes a [`FetchedFile`], decodes the copy in scratch part by part,
//! leaves each slab in scratch and passes a [`SlabTicket`](roller_proto::SlabTicket) per part on to write. The fetched
//! copy is removed once the message is acked.

use std::sync::Arc;

use roller_bus::scratch::Scratch;
use roller_decode::{Decoded, Decoder};
use roller_model::record::load_record;
use roller_proto::{wire, FetchedFile};
use roller_storage::{Key, Storage, StorageError};
use tokio::runtime::Handle;

use crate::consume::{Failure, Handled, Incoming, Outcome};
use crate::publish::{publish, Outgoing};
use crate::shutdown::Shutdown;
use crate::topology::Topology;

/// What the decode handler needs.
#[derive(Debug)]
pub struct DecodeStage {
    /// Decodes and checks files (and remembers the static coordinates already stored).
    pub decoder: Decoder,
    /// The dataset's store (to read the committed offset).
    pub store: Arc<dyn Storage>,
    /// Claim-checks.
    pub scratch: Scratch,
    /// Streams and subjects.
    pub topology: Topology,
    /// Shutdown signals.
    pub shutdown: Shutdown,
}

/// Why emitting a slab stopped.
enum EmitError {
    /// Scratch storage refused the slab.
    Storage(StorageError),
    /// Shutting down: the publish was given up.
    Abandoned,
}

/// Handles one fetched file.
pub async fn handle(stage: Arc<DecodeStage>, message: Incoming) -> Outcome {
    let fetched: FetchedFile = match wire::decode(&message.payload) {
        Ok(f) => f,
        Err(e) => return Err((Failure::Permanent(e.to_string()), None)),
    };
    let source = fetched.notification.id();
    let fail = |f: Failure| Err((f, Some(source.clone())));
    let key = match Key::new(fetched.scratch_key.clone()) {
        Ok(key) => key,
        Err(e) => return fail(Failure::Permanent(e.to_string())),
    };
    let runtime = Handle::current();
    let work = {
        let (stage, key) = (stage.clone(), key.clone());
        tokio::task::spawn_blocking(move || decode_file(&stage, &runtime, &fetched, &key))
    };
    match work.await {
        Ok(Ok(())) => Ok(Handled {
            consumed: vec![key],
            source: Some(source),
            unmatched: false,
            ..Handled::default()
        }),
        Ok(Err(failure)) => fail(failure),
        Err(e) => fail(Failure::Transient(format!("decode task failed: {e}"))),
    }
}

fn decode_file(
    stage: &DecodeStage,
    runtime: &Handle,
    fetched: &FetchedFile,
    key: &Key,
) -> Result<(), Failure> {
    let note = &fetched.notification;
    let dataset = &fetched.dataset;
    let offset = match load_record(stage.store.as_ref()) {
        Ok(Some(record)) if record.head.is_some() => Some(record.offset),
        Ok(_) => None,
        Err(e) => {
            return Err(Failure::Transient(format!(
                "reading the commit record: {e}"
            )))
        }
    };
    let copy = stage.scratch.local_copy(key).map_err(|e| Failure::of(&e))?;
    let subjects = &stage.topology.subjects;
    let result = stage.decoder.decode(copy.path(), note, offset, |slab| {
        let ticket = stage
            .scratch
            .put_slab(dataset, &slab)
            .map_err(EmitError::Storage)?;
        let out = Outgoing::new(
            subjects.slab(dataset),
            wire::encode(&ticket),
            format!("slab:{dataset}:{}:{}", slab.source, slab.part),
        );
        runtime
            .block_on(publish(&stage.topology.js, &out, &stage.shutdown.give_up))
            .map(|_| ())
            .map_err(|_| EmitError::Abandoned)
    });
    match result {
        Ok(Ok(Decoded::Emitted { .. } | Decoded::BelowWindow { .. })) => Ok(()),
        // The error names the scratch key; retried only if storage says it may pass.
        Ok(Err(EmitError::Storage(e))) => Err(Failure::of(&e)),
        Ok(Err(EmitError::Abandoned)) => Err(Failure::Transient("shutting down".into())),
        Err(e) => Err(Failure::of(&e)),
    }
}
