//! A slab: one part of one decoded file, the message decode hands to write. Embedded mode
//! passes it in memory; across processes it travels through scratch storage (a claim-check).

use bytes::Bytes;
use roller_proto::FileSchema;
use roller_storage::Key;

/// One part of one file, decoded, masked to the dataset's fill value, ready to be written.
#[derive(Debug, Clone)]
pub struct Slab {
    /// Identity of the notification.
    pub source: String,
    /// Abs index along the rolling dim.
    pub abs: i64,
    /// Slot along the message dims.
    pub slot: u32,
    /// Which part of the target.
    pub part: u32,
    /// How many parts the target has.
    pub parts: u32,
    /// Shape of the slab (per file dim).
    pub shape: Vec<u64>,
    /// Native-endian elements in C order.
    pub data: Bytes,
    /// The file's schema (part 0 only).
    pub schema: Option<FileSchema>,
    /// Static coordinate chunks still to be stored (part 0 only).
    pub statics: Vec<(Key, Bytes)>,
}
