//! Wire types of zarr-roller.
//!
//! Everything that crosses a stage boundary is defined here and nowhere else: the Met Office
//! notification that starts the pipeline ([`notification`]), and the small messages the stages
//! exchange ([`messages`]). Bulk bytes never live in these types; they travel by reference.

pub mod messages;
pub mod notification;
pub mod time;

pub use messages::{AttrValue, Attrs, CoordSchema, FileSchema, RollEvent, WriteReport};
pub use notification::{Notification, NotificationError};
