//! The library behind every zarr-roller stage.
//!
//! One module per box of the design (`fetch`, `decode`, `write`, `commit`), the state they
//! share (`state`, `layout`, `config`), the storage abstraction (`storage`, `physical_key`,
//! `expiry`), the read side (`rolling_store`, `metadata`), and the embedded runner that wires
//! the stages together in one process (`embedded`, over `bus`).

pub mod bus;
pub mod cf_time;
pub mod chunk_codec;
pub mod clock;
pub mod commit;
pub mod config;
pub mod decode;
pub mod duration;
pub mod embedded;
pub mod expiry;
pub mod fetch;
pub mod hdf5_direct;
pub mod hdf5_quiet;
pub mod inspect;
pub mod layout;
pub mod matching;
pub mod metadata;
pub mod physical_key;
pub mod reference;
pub mod retry;
pub mod rolling_store;
pub mod schedule;
pub mod scratch;
pub mod snapshot;
pub mod state;
pub mod storage;
pub mod write;
