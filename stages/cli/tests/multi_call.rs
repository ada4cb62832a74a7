//! The image ships one `roller` binary linked under every stage's name: called by such a name
//! it is that stage.

use std::path::{Path, PathBuf};
use std::process::Command;

/// `roller` linked as `name` in `dir`.
fn linked(dir: &Path, name: &str) -> PathBuf {
    let link = dir.join(name);
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_roller"), &link).expect("symlink");
    link
}

#[test]
fn called_by_a_stage_name_it_is_that_stage() {
    let dir = tempfile::tempdir().expect("tempdir");
    for stage in ["fetch", "decode", "write", "commit", "scheduler"] {
        let name = format!("roller-{stage}");
        let out = Command::new(linked(dir.path(), &name))
            .args(["--config", "/nonexistent/dataset.toml"])
            .output()
            .expect("run the linked binary");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{name}: bad config exits 2: {stderr}"
        );
        assert!(stderr.starts_with(&format!("{name}: ")), "{name}: {stderr}");
    }
}

#[test]
fn called_as_roller_serve_it_takes_the_servers_arguments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let serve = linked(dir.path(), "roller-serve");
    let out = Command::new(&serve)
        .arg("--help")
        .output()
        .expect("run roller-serve");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("--listen"), "{stdout}");
    let version = Command::new(&serve)
        .arg("--version")
        .output()
        .expect("run roller-serve --version");
    assert!(
        String::from_utf8_lossy(&version.stdout).starts_with("roller-serve "),
        "{}",
        String::from_utf8_lossy(&version.stdout)
    );
    let roller = Command::new(env!("CARGO_BIN_EXE_roller"))
        .arg("--help")
        .output()
        .expect("run roller");
    assert!(
        String::from_utf8_lossy(&roller.stdout).contains("synth"),
        "under its own name it is still the CLI"
    );
}

#[test]
fn called_as_roller_bridge_it_is_the_bridge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bridge = linked(dir.path(), "roller-bridge");
    let help = Command::new(&bridge)
        .arg("--help")
        .output()
        .expect("run roller-bridge --help");
    let stdout = String::from_utf8_lossy(&help.stdout);
    assert!(help.status.success(), "{stdout}");
    assert!(stdout.contains("--queue-url"), "{stdout}");
    // NATS unreachable at start: exit 1 with what to check.
    let closed = format!(
        "nats://127.0.0.1:{}",
        roller_test_support::nats::free_port()
    );
    let out = Command::new(&bridge)
        .args(["--queue-url", "http://127.0.0.1:9/123456789012/q"])
        .env("NATS_URL", closed)
        .output()
        .expect("run roller-bridge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot connect to NATS"), "{stderr}");
    // A visibility timeout past the dedup window would let a redelivery be stored twice.
    let out = Command::new(&bridge)
        .args(["--queue-url", "http://127.0.0.1:9/123456789012/q"])
        .args(["--visibility-timeout", "600"])
        .output()
        .expect("run roller-bridge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ROLLER_DEDUP_WINDOW"), "{stderr}");
}
