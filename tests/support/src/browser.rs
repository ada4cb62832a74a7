//! Headless Chromium (Debian's `chromium`, installed by the README's test command) for tests
//! of the pages the server renders.

use std::path::Path;
use std::process::{Command, Stdio};

/// The Chromium binary: `ROLLER_CHROMIUM`, else `chromium` on `PATH`.
fn chromium() -> String {
    std::env::var("ROLLER_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// A headless Chromium command; `profile` is a fresh directory, so runs are independent.
fn headless(profile: &Path, extra: &[&str], url: &str) -> Command {
    let mut command = Command::new(chromium());
    // No sandbox: tests run as root in CI.
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--window-size=1280,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null());
    command
}

/// The DOM of `url` after it loaded (images included), as Chromium serialises it.
pub fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = headless(
        profile.path(),
        &["--dump-dom", "--virtual-time-budget=5000"],
        url,
    )
    .output()
    .expect("run chromium (apt-get install chromium; ./dev test installs it)");
    assert!(
        out.status.success(),
        "chromium --dump-dom failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Saves a screenshot of `url` as a PNG at `path`.
pub fn screenshot(url: &str, path: &Path) {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = headless(
        profile.path(),
        &[
            &format!("--screenshot={}", path.display()),
            "--virtual-time-budget=5000",
        ],
        url,
    )
    .output()
    .expect("run chromium (apt-get install chromium; ./dev test installs it)");
    assert!(
        out.status.success() && path.exists(),
        "chromium --screenshot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
