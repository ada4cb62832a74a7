//! Helpers shared by this crate's tests (they need the server's own types, so they live here
//! rather than in the test-support crate, which the server's tests depend on).

use std::sync::Arc;
use std::time::Duration;

use roller_serve::catalog::Catalog;
use roller_serve::server::{serve, Served};

/// roller-serve running in this process (so it shares the test's clock), stopped on drop.
pub(crate) struct InProcessServer {
    /// The port it listens on (loopback).
    pub(crate) port: u16,
    runtime: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl InProcessServer {
    /// Serves `catalog` on a free loopback port.
    pub(crate) fn start(catalog: Catalog) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("listen");
        let port = listener.local_addr().expect("address").port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = Arc::new(Served::new(catalog, Duration::ZERO));
        runtime.spawn(serve(listener, served, async {
            let _ = stopped.await;
        }));
        Self {
            port,
            runtime,
            stop: Some(stop),
        }
    }

    /// The URL of `path` on this server.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Let the server finish its connections before the runtime goes.
        self.runtime
            .block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    }
}
