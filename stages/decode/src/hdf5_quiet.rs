//! Silences HDF5's automatic error printing on the calling thread.
//!
//! netCDF probes for optional attributes (`_QuantizeBitRoundNumberOfSignificantBits`, ...) that
//! usually do not exist; HDF5 reports each failed probe as an "HDF5-DIAG" stack on stderr on
//! every thread where printing was not switched off. The probes are harmless, so printing is
//! switched off once per thread before the first NetCDF call. Real errors still reach us as
//! return codes through the `netcdf` crate.

#![expect(unsafe_code, reason = "silencing HDF5's error stack is a C call")]

use std::cell::Cell;

use hdf5_metno_sys::h5e::{H5Eset_auto2, H5E_DEFAULT};

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Turns off HDF5's error printing for this thread (idempotent, cheap after the first call).
pub fn silence_this_thread() {
    QUIET.with(|quiet| {
        if !quiet.replace(true) {
            let _lock = hdf5_metno_sys::LOCK.lock();
            // SAFETY: H5E_DEFAULT with no handler and no client data disables automatic
            // printing for the default error stack; HDF5 calls are serialised by the lock.
            unsafe {
                H5Eset_auto2(H5E_DEFAULT, None, std::ptr::null_mut());
            }
        }
    });
}
