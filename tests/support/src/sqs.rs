//! A real SQS-compatible server for tests: moto's standalone server (`moto_server`, PyPI
//! `moto[server]`, installed by the README's test command) as its own process on a free
//! loopback port, killed on drop. It keeps its queues in memory.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use roller_sqs::{SqsQueue, SqsSettings};

use crate::nats::{free_port, kill, spawn_isolated};

/// The `moto_server` binary: `ROLLER_MOTO_SERVER`, the test venv's, or the one on `PATH`.
pub fn moto_server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("ROLLER_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let venv = crate::workspace_root().join(".venv/bin/moto_server");
    if venv.exists() {
        return venv;
    }
    PathBuf::from("moto_server")
}

/// The endpoint URL of a server on `port`.
pub fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The URL moto gives the queue `name` on `port` (its default account).
pub fn queue_url(port: u16, name: &str) -> String {
    format!("{}/123456789012/{name}", endpoint(port))
}

/// A running moto server.
#[derive(Debug)]
pub struct SqsServer {
    child: Option<Child>,
    port: u16,
}

impl SqsServer {
    /// Starts a server, logging into `dir`, and waits until it answers.
    pub fn start(dir: &Path) -> Self {
        Self::start_on(dir, free_port())
    }

    /// Starts a server on `port` (e.g. one a bridge is already trying to reach).
    pub fn start_on(dir: &Path, port: u16) -> Self {
        std::fs::create_dir_all(dir).expect("create the moto dir");
        let log = std::fs::File::create(dir.join("moto.log")).expect("moto log");
        let child = spawn_isolated(
            Command::new(moto_server_binary())
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdout(Stdio::null())
                .stderr(log),
        )
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}; run `./dev test` (it installs moto[server] into .venv) or set ROLLER_MOTO_SERVER",
                moto_server_binary().display()
            )
        });
        let server = Self {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on {port} within 60 s; see {}",
                dir.join("moto.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The endpoint URL.
    pub fn url(&self) -> String {
        endpoint(self.port)
    }

    /// The environment a bridge needs to reach this server (credentials moto accepts).
    pub fn env(&self) -> Vec<(String, String)> {
        env_for(self.port)
    }

    /// Creates the queue `name` (on `rt`) and returns it.
    pub fn queue(&self, rt: &tokio::runtime::Runtime, name: &str) -> SqsQueue {
        rt.block_on(async {
            let settings = SqsSettings {
                endpoint_url: Some(self.url()),
                region: Some("eu-west-2".into()),
            };
            let client =
                roller_sqs::client_with_static_credentials(&settings, "testing", "testing").await;
            SqsQueue::create(client, name).await.expect("create queue")
        })
    }
}

/// The environment a bridge needs to reach a moto server on `port` (started or not).
pub fn env_for(port: u16) -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
        ("AWS_REGION", "eu-west-2".to_owned()),
        ("AWS_ENDPOINT_URL_SQS", endpoint(port)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

impl Drop for SqsServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
