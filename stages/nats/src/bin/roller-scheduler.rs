//! `roller-scheduler`: the scheduler stage of zarr-roller on NATS JetStream (see the README).

fn main() -> std::process::ExitCode {
    roller_nats::run::main(roller_nats::StageKind::Scheduler)
}
