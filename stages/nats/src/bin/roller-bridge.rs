//! `roller-bridge`: moves the publisher's notices from SQS queues onto the feed (see the README).

fn main() -> std::process::ExitCode {
    roller_nats::bridge::main()
}
