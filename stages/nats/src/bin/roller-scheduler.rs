//! `roller-scheduler`: the scheduler stage of zarr-roller on NATS JetStream (see the README).

/// mimalloc, as in `roller`: the stages allocate and free megabyte buffers at a high rate.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    roller_nats::run::main(roller_nats::StageKind::Scheduler)
}
