//! The dataset model every box shares: what a dataset is (its config and [`layout`]), its
//! commit record and how reports and roll events fold into it ([`state`], read through
//! [`record`]), the Zarr metadata it presents ([`metadata`]), where its objects live
//! ([`physical_key`]), the slabs decode hands to write ([`slab`]), and the read side: snapshots
//! and the rolling view readers open ([`snapshot`], [`rolling_store`]).
//!
//! It does no NetCDF and talks to no bus: storage is reached through `roller_storage`'s trait.

pub mod catalog;
pub mod cf_time;
pub mod chunk_codec;
pub mod clock;
pub mod config;
pub mod duration;
pub mod inferred;
pub mod inspect;
pub mod layout;
pub mod matching;
pub mod metadata;
pub mod physical_key;
pub mod record;
pub mod rolling_store;
pub mod schedule;
pub mod slab;
pub mod snapshot;
pub mod state;
