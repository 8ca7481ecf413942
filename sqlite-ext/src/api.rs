//! Calls that the loadable-extension bindings cannot make.
//!
//! `sqlite3_vtab_config` is variadic, and the generated wrapper for loadable
//! extensions passes no variadic arguments, so SQLITE_VTAB_CONSTRAINT_SUPPORT
//! would read an undefined value. The extension keeps the API routine table
//! that SQLite passes to the entry point and calls the function through it.

use std::ffi::c_int;
use std::sync::atomic::{AtomicPtr, Ordering};

use rusqlite::ffi;

static API: AtomicPtr<ffi::sqlite3_api_routines> = AtomicPtr::new(std::ptr::null_mut());

/// Remembers the API routine table passed to the entry point.
pub fn set(api: *mut ffi::sqlite3_api_routines) {
    API.store(api, Ordering::Release);
}

/// Calls `sqlite3_vtab_config(db, SQLITE_VTAB_CONSTRAINT_SUPPORT, 1)`.
pub fn vtab_config_constraint_support(db: *mut ffi::sqlite3) {
    let api = API.load(Ordering::Acquire);
    if api.is_null() {
        return;
    }
    // SAFETY: `api` is the routine table SQLite passed to the entry point,
    // valid for the life of the process; `db` is the connection of the
    // xCreate or xConnect call this runs in.
    unsafe {
        if let Some(vtab_config) = (*api).vtab_config {
            vtab_config(db, ffi::SQLITE_VTAB_CONSTRAINT_SUPPORT, 1 as c_int);
        }
    }
}
