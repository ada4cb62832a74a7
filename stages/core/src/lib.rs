//! The library behind every zarr-roller stage.
pub mod cf_time;
pub mod chunk_codec;
pub mod commit;
pub mod config;
pub mod decode;
pub mod duration;
pub mod expiry;
pub mod layout;
pub mod metadata;
pub mod physical_key;
pub mod state;
pub mod storage;
pub mod write;
