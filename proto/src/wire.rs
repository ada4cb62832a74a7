//! The messages between distributed stages and their binary encoding: one version byte, then
//! bincode. Bulk bytes never travel here: a [`FetchedFile`] or [`SlabTicket`] names an object in
//! scratch storage (claim-check), so every message stays a few kilobytes at most.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::messages::FileSchema;
use crate::notification::Notification;

/// Version of the encoding; bumped on any incompatible change to these types.
pub const WIRE_VERSION: u8 = 2;

/// Why a message could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The message is empty.
    #[error("the message is empty")]
    Empty,
    /// Written by an incompatible version of zarr-roller.
    #[error("message encoding version {found} is not {WIRE_VERSION}: the sender runs an incompatible zarr-roller version; upgrade all stages together")]
    Version {
        /// The version byte found.
        found: u8,
    },
    /// The bytes do not decode as the expected type.
    #[error("the message does not decode as {what}: {reason}")]
    Malformed {
        /// The expected type.
        what: &'static str,
        /// The decoder's message.
        reason: String,
    },
}

/// Encodes a message: version byte, then bincode.
pub fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut out = vec![WIRE_VERSION];
    // Serialising plain data structs into a Vec cannot fail.
    bincode::serialize_into(&mut out, message)
        .unwrap_or_else(|e| unreachable!("bincode serialisation of a plain struct failed: {e}"));
    out
}

/// Decodes a message written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    let (&version, body) = bytes.split_first().ok_or(WireError::Empty)?;
    if version != WIRE_VERSION {
        return Err(WireError::Version { found: version });
    }
    bincode::deserialize(body).map_err(|e| WireError::Malformed {
        what: std::any::type_name::<T>(),
        reason: e.to_string(),
    })
}

/// Fetch -> decode: the notification, and where its object now sits in scratch storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchedFile {
    /// Dataset name.
    pub dataset: String,
    /// The notification, parsed and checked.
    pub notification: Notification,
    /// Scratch key of the copied object.
    pub scratch_key: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// Decode -> write: one slab of one file, its elements in scratch storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlabTicket {
    /// Dataset name.
    pub dataset: String,
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
    /// The file's schema (part 0 only).
    pub schema: Option<FileSchema>,
    /// Scratch key of the slab's body (elements and static coordinate chunks).
    pub scratch_key: String,
}

/// Commit -> anyone: a commit was published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitEvent {
    /// Dataset name.
    pub dataset: String,
    /// Generation of the record.
    pub generation: u64,
    /// Offset after the commit.
    pub offset: i64,
    /// Head after the commit.
    pub head: Option<i64>,
    /// When it was committed (RFC 3339).
    pub committed_at: String,
    /// Which commit instance published it.
    pub holder: String,
    /// Identities of the files whose reports this commit folded in.
    pub sources: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{AttrValue, RollEvent, WriteReport};

    #[test]
    fn round_trips_with_a_version_byte() {
        let report = WriteReport {
            dataset: "d".into(),
            source: "a/b.nc".into(),
            abs: 7,
            slot: 1,
            part: 0,
            parts: 2,
            chunks: 3,
            bytes: 99,
            schema: Some(FileSchema {
                variable_attrs: vec![("units".into(), AttrValue::Text("K".into()))],
                coords: vec![],
                grid_mapping: None,
                global_attrs: vec![("x".into(), AttrValue::Floats(vec![1.5]))],
            }),
        };
        let bytes = encode(&report);
        assert_eq!(bytes[0], WIRE_VERSION);
        assert_eq!(decode::<WriteReport>(&bytes).expect("decodes"), report);
        let roll = RollEvent {
            dataset: "d".into(),
            until: 10,
        };
        assert_eq!(decode::<RollEvent>(&encode(&roll)).expect("decodes"), roll);
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        let mut bytes = encode(&RollEvent {
            dataset: "d".into(),
            until: 1,
        });
        bytes[0] = 9;
        assert!(matches!(
            decode::<RollEvent>(&bytes),
            Err(WireError::Version { found: 9 })
        ));
        assert!(matches!(decode::<RollEvent>(&[]), Err(WireError::Empty)));
        assert!(matches!(
            decode::<RollEvent>(&[WIRE_VERSION, 200]),
            Err(WireError::Malformed { .. })
        ));
    }
}
