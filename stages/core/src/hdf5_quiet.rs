//! Silences HDF5's automatic error printing on the calling thread.
//!
//! netCDF probes for optional attributes (`_QuantizeBitRoundNumberOfSignificantBits`, ...) that
//! usually do not exist; HDF5 reports each failed probe as an "HDF5-DIAG" stack on stderr on
//! every thread where printing was not switched off. The probes are harmless, so printing is
//! switched off once per thread before the first NetCDF call. Real errors still reach us as
//! return codes through the `netcdf` crate.

#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::{c_int, c_void};

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// `herr_t H5Eset_auto2(hid_t estack_id, H5E_auto2_t func, void *client_data)`.
type SetAuto = unsafe extern "C" fn(i64, *const c_void, *mut c_void) -> c_int;

/// Turns off HDF5's error printing for this thread (idempotent, cheap after the first call).
pub fn silence_this_thread() {
    QUIET.with(|quiet| {
        if quiet.get() {
            return;
        }
        quiet.set(true);
        // SAFETY: `dlsym` with RTLD_DEFAULT looks up a symbol among the libraries already
        // loaded (libhdf5 is loaded as a dependency of libnetcdf); the name is NUL-terminated.
        let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"H5Eset_auto2".as_ptr()) };
        if symbol.is_null() {
            return;
        }
        // SAFETY: the symbol is HDF5's `H5Eset_auto2`, whose C signature `SetAuto` matches
        // (hid_t is 64-bit since HDF5 1.10). H5E_DEFAULT is 0; a null function disables printing.
        unsafe {
            let set_auto: SetAuto = std::mem::transmute::<*mut c_void, SetAuto>(symbol);
            set_auto(0, std::ptr::null(), std::ptr::null_mut());
        }
    });
}
