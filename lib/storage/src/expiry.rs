//! What happens to chunks that rolled out of the window. On local disk they are deleted; the
//! seam exists so that object stores can tag them for lifecycle expiry instead.

use std::fmt;

use crate::{Key, Storage, StorageError};

/// Removes (or marks for removal) chunks that are out of the window. Must be idempotent.
pub trait Expiry: Send + Sync + fmt::Debug {
    /// Expires every key; a key that does not exist is not an error.
    fn expire(&self, storage: &dyn Storage, keys: &[Key]) -> Result<(), StorageError>;
}

/// Deletes expired chunks at once.
#[derive(Debug, Default, Clone, Copy)]
pub struct DeleteExpired;

impl Expiry for DeleteExpired {
    fn expire(&self, storage: &dyn Storage, keys: &[Key]) -> Result<(), StorageError> {
        keys.iter().try_for_each(|k| storage.delete(k))
    }
}
