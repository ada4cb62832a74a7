//! `roller setup`, `roller replay` and `roller roll --via nats` against a real nats-server.

use std::process::{Command, Output, Stdio};

use roller_test_support::nats::{spawn_isolated, NatsServer};
use roller_test_support::{small_files, TestDataset};

fn roller(args: &[&str], nats: &NatsServer) -> Output {
    spawn_isolated(
        Command::new(env!("CARGO_BIN_EXE_roller"))
            .args(args)
            .env("NATS_URL", nats.url())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    )
    .and_then(std::process::Child::wait_with_output)
    .expect("run roller")
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn setup_replay_and_roll_publish_on_the_dataset_subjects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("src");
    let files = small_files(&src, 2, 1, 20, 30);
    let config = TestDataset::new("cli")
        .extra(&format!(
            "[scratch]\npath = \"{}\"\n",
            dir.path().join("scratch").display()
        ))
        .config(&dir.path().join("store"), &src);
    let config_path = dir.path().join("cli.toml");
    roller_synth::write_config(&config, &config_path).expect("config");
    let config_arg = config_path.to_str().expect("utf-8 path");
    let nats = NatsServer::start(&dir.path().join("nats"));

    let setup = stdout_of(&roller(&["setup", "--config", config_arg], &nats));
    assert!(
        setup.contains("stream ROLLER_INGEST (roller.ingest.>, roller.feed)"),
        "{setup}"
    );
    assert!(
        setup.contains("ingest subject: roller.ingest.cli"),
        "{setup}"
    );

    // Both files, the first one again, and a line that is not JSON.
    let list = dir.path().join("replay.jsonl");
    let lines = [
        files[0].notification.clone(),
        files[1].notification.clone(),
        files[0].notification.clone(),
        "not json".to_string(),
    ];
    std::fs::write(&list, lines.join("\n")).expect("write list");
    let replay = stdout_of(&roller(
        &[
            "replay",
            "--config",
            config_arg,
            list.to_str().expect("utf-8"),
        ],
        &nats,
    ));
    assert!(
        replay.contains("published 4 notifications (1 dropped as duplicates, 1 unparseable"),
        "{replay}"
    );

    let roll = stdout_of(&roller(
        &[
            "roll",
            "--config",
            config_arg,
            "--via",
            "nats",
            "--until",
            "2024-01-02T00:00:00Z",
        ],
        &nats,
    ));
    assert!(
        roll.contains("published a roll event to 2024-01-02T00:00:00Z on roller.events.roll.cli"),
        "{roll}"
    );
}
