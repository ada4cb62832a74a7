//! S3 for zarr-roller: [`S3Store`] puts datasets and scratch on S3 behind the same storage
//! abstraction as local disk, [`TagExpired`] marks chunks that rolled out of the window with
//! an object tag for a bucket lifecycle rule ([`lifecycle`]), [`S3Objects`] reads source
//! objects for the fetch stage, and [`open`] picks the backend a config's locations name.

pub mod client;
pub mod store;

pub use client::S3Client;
pub use store::S3Store;
pub mod expiry;
pub mod lifecycle;
pub mod open;
pub mod setup;
pub mod source;

pub use expiry::TagExpired;
pub use open::Backends;
pub use source::S3Objects;
