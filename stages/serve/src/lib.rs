//! `roller-serve`: a read-only HTTP server presenting every configured dataset's logical view
//! as a plain Zarr hierarchy (`/<dataset>/zarr.json`, `/<dataset>/<array>/c/...`, or the v2
//! documents), following new commits without a restart, plus a status page at `/`.

pub mod catalog;
pub mod dead_letters;
pub mod quicklook;
pub mod range;
pub mod request_path;
pub mod run;
pub mod server;
pub mod status;

pub use catalog::Catalog;
pub use server::{router, serve, Served};
