//! `roller-demo` works on a clean checkout and shows the rolled window.

use std::process::Command;

#[test]
fn demo_exits_zero_and_prints_the_visible_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_roller-demo"))
        .arg("--dir")
        .arg(dir.path().join("demo"))
        .output()
        .expect("run roller-demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("the window rolls forward"), "{stdout}");
    // After the explicit roll the newest run has no data and the oldest two are gone.
    assert!(
        stdout.contains("[0] forecast_reference_time 2024-01-01T18:00:00Z"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[2] forecast_reference_time 2024-01-02T06:00:00Z  no data yet"),
        "{stdout}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("HDF5-DIAG"),
        "HDF5 diagnostics leak to stderr"
    );
    // Running it again replaces its own directory.
    let again = Command::new(env!("CARGO_BIN_EXE_roller-demo"))
        .arg("--dir")
        .arg(dir.path().join("demo"))
        .output()
        .expect("run roller-demo again");
    assert!(again.status.success());
}
