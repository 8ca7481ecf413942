//! Persist as a loadable SQLite extension: encrypted tables queried with plain
//! SQL, plus crypto and key functions.
//!
//! ```sql
//! .load ./target/release/libpersist
//! SELECT persist_init('my-app');
//! CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, title TEXT, body TEXT);
//! INSERT INTO notes VALUES (1, 'groceries', 'milk, eggs');
//! SELECT body FROM notes WHERE id = 1;
//! ```
//!
//! [`sqlite3_persist_init`] registers every function and the `persist`
//! module in one place. Formats and keys come from `persist-core`; this crate
//! only translates between SQLite values and core calls, and owns the shadow
//! tables.

pub mod affinity;
#[cfg(feature = "loadable")]
mod api;
pub mod db;
pub mod error;
pub mod functions;
pub mod pairing;
pub mod rotation;
pub mod state;
pub mod store;
pub mod sync;
pub mod vtab;

use std::sync::Arc;

use rusqlite::ffi;

use crate::db::Db;
use crate::state::Connection;

/// The entry point SQLite looks for when loading `libpersist`.
///
/// # Safety
///
/// Called by SQLite with a valid connection, error slot and API table.
#[cfg(feature = "loadable")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sqlite3_persist_init(
    db: *mut ffi::sqlite3,
    err: *mut *mut std::ffi::c_char,
    api: *mut ffi::sqlite3_api_routines,
) -> std::ffi::c_int {
    let result = std::panic::catch_unwind(|| {
        api::set(api);
        // SAFETY: the arguments are those SQLite passed to the entry point.
        unsafe { rusqlite::Connection::extension_init2(db, err, api, init) }
    });
    result.unwrap_or(ffi::SQLITE_ERROR)
}

/// Registers the extension on a connection: the SQL functions and the
/// `persist` module, sharing one [`Connection`] state.
///
/// # Errors
///
/// SQLite's error when a function or the module cannot be registered.
pub fn init(db: rusqlite::Connection) -> rusqlite::Result<bool> {
    // SAFETY: the handle is the connection the extension is being loaded
    // into; it outlives every callback registered on it.
    let raw = Db::from_raw(unsafe { db.handle() });
    let conn = Arc::new(Connection::new(raw));
    functions::register(&db, &conn)?;
    vtab::register(raw, &conn).map_err(|err| {
        rusqlite::Error::SqliteFailure(ffi::Error::new(err.code()), Some(err.to_string()))
    })?;
    Ok(false)
}
