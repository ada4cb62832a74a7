//! `roller-serve`: a read-only HTTP server presenting every configured dataset's logical view
//! as a plain Zarr hierarchy (`/<dataset>/zarr.json`, `/<dataset>/<array>/c/...`, or the v2
//! documents), following new commits without a restart, plus a status page at `/`.
//!
//! The serve box: it reads the stores the commit stage writes and nothing else. It opens no
//! store and connects to no bus itself: its binary (`roller-serve`, in `roller-nats`, and
//! `roller serve`) opens the datasets' stores (local or S3) and hands it the dead-letter counts.

pub mod catalog;
pub mod dead_letters;
pub mod quicklook;
pub mod range;
pub mod request_path;
pub mod server;
pub mod status;

pub use catalog::Catalog;
pub use server::{router, serve, Served};
