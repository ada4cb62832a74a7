//! Wire types of zarr-roller.
//!
//! Everything that crosses a stage boundary is defined here and nowhere else: the Met Office
//! notification that starts the pipeline ([`notification`]) and every form the feed delivers it
//! in ([`feed`]), the small messages the stages
//! exchange ([`messages`], [`wire`]), and where they travel on NATS ([`subjects`]). Bulk bytes
//! never live in these types; they travel by reference.

pub mod feed;
pub mod messages;
pub mod notification;
pub mod subjects;
pub mod time;
pub mod wire;

pub use messages::{AttrValue, Attrs, CoordSchema, FileSchema, RollEvent, WriteReport};
pub use notification::{Notification, NotificationError};
pub use subjects::{StreamKind, Subjects};
pub use wire::{CommitEvent, FetchedFile, SlabTicket, WireError};
