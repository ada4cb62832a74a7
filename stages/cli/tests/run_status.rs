//! `roller run` ingests what it can and exits with status 3 when it dead-lettered anything.

use std::process::Command;

use roller_synth::write_config;
use roller_test_support::feed::{match_today, todays_feed, MODEL, PARAMETER};
use roller_test_support::{small_files, TestDataset};

#[test]
fn roller_run_exits_3_when_it_dead_lettered_anything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let files = small_files(&dir.path().join("src"), 1, 1, 20, 30);
    let feed = todays_feed(&files, &dir.path().join("bucket"));
    let config = TestDataset::new("exit")
        .model(MODEL)
        .match_name(PARAMETER)
        .extra(&match_today(&feed.mount))
        .config(&dir.path().join("exit"), dir.path());
    let config_path = dir.path().join("exit.toml");
    write_config(&config, &config_path).expect("config");
    let run = |lines: &[String]| {
        let notices = dir.path().join("notices.jsonl");
        std::fs::write(&notices, lines.join("\n")).expect("notices");
        Command::new(env!("CARGO_BIN_EXE_roller"))
            .args(["run", "--config"])
            .arg(&config_path)
            .arg("--notifications")
            .arg(&notices)
            .output()
            .expect("roller run")
    };
    let clean = run(&feed.forms["s3-event-in-sns"]);
    assert_eq!(clean.status.code(), Some(0), "{clean:?}");
    let mixed = run(&[feed.forms["s3-event"][0].clone(), "not json".to_owned()]);
    assert_eq!(mixed.status.code(), Some(3), "{mixed:?}");
    let stderr = String::from_utf8_lossy(&mixed.stderr);
    assert!(
        stderr.contains("1 notice(s) were dead-lettered"),
        "{stderr}"
    );
}
