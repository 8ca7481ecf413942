//! A thin safe layer over the raw SQLite handle.
//!
//! Virtual-table callbacks receive a bare `sqlite3*` and must run statements on
//! the shadow tables while the caller's statement is still running, and must
//! keep prepared statements across calls. This module wraps exactly that:
//! preparing, binding, stepping and reading columns, with errors carrying
//! SQLite's own message. Every `unsafe` block in the extension outside the
//! virtual-table entry points is here.

use std::ffi::{CStr, CString, c_char, c_int};
use std::ptr;

use persist_core::codec::ValueRef;
use rusqlite::ffi;

use crate::error::ExtError;

/// A connection handle owned by SQLite, valid for as long as the extension's
/// callbacks run on it.
#[derive(Clone, Copy, Debug)]
pub struct Db(*mut ffi::sqlite3);

// SAFETY: SQLite serializes use of a connection (the default threading mode
// is serialized), and the extension only touches the handle from callbacks
// that SQLite makes on that connection.
unsafe impl Send for Db {}
// SAFETY: as for `Send`: every use goes through SQLite's connection mutex.
unsafe impl Sync for Db {}

impl Db {
    /// Wraps a handle that SQLite passed to a callback.
    pub fn from_raw(handle: *mut ffi::sqlite3) -> Self {
        Self(handle)
    }

    /// The raw handle.
    pub fn raw(self) -> *mut ffi::sqlite3 {
        self.0
    }

    /// Prepares one statement.
    ///
    /// # Errors
    ///
    /// SQLite's error when the SQL does not compile.
    pub fn prepare(self, sql: &str) -> Result<Stmt, ExtError> {
        self.prepare_with(sql, 0)
    }

    /// Prepares a statement that will be kept and reused for a long time.
    ///
    /// # Errors
    ///
    /// SQLite's error when the SQL does not compile.
    pub fn prepare_persistent(self, sql: &str) -> Result<Stmt, ExtError> {
        self.prepare_with(sql, ffi::SQLITE_PREPARE_PERSISTENT)
    }

    fn prepare_with(self, sql: &str, flags: u32) -> Result<Stmt, ExtError> {
        let length = c_int::try_from(sql.len())
            .map_err(|_| ExtError::usage(format!("SQL of {} bytes is too long", sql.len())))?;
        let mut stmt = ptr::null_mut();
        // SAFETY: `self.0` is a live connection; the SQL pointer and length
        // describe a valid UTF-8 buffer that outlives the call.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                self.0,
                sql.as_ptr().cast::<c_char>(),
                length,
                flags,
                &mut stmt,
                ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK {
            return Err(self.error(rc));
        }
        if stmt.is_null() {
            return Err(ExtError::usage(format!("no statement in SQL {sql:?}")));
        }
        Ok(Stmt {
            db: self,
            raw: stmt,
        })
    }

    /// Runs SQL that returns no rows, possibly several statements.
    ///
    /// # Errors
    ///
    /// SQLite's error for the first statement that fails.
    pub fn exec(self, sql: &str) -> Result<(), ExtError> {
        let sql = CString::new(sql).map_err(|_| ExtError::usage("SQL contains a NUL byte"))?;
        // SAFETY: `self.0` is a live connection and `sql` a NUL-terminated
        // string; no callback or error pointer is passed.
        let rc = unsafe {
            ffi::sqlite3_exec(self.0, sql.as_ptr(), None, ptr::null_mut(), ptr::null_mut())
        };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.error(rc))
        }
    }

    /// Builds an error from a result code and the connection's last message,
    /// with the extended result code (such as SQLITE_CONSTRAINT_PRIMARYKEY)
    /// where SQLite has one for it.
    pub fn error(self, rc: c_int) -> ExtError {
        // SAFETY: `self.0` is a live connection.
        let extended = unsafe { ffi::sqlite3_extended_errcode(self.0) };
        let rc = if extended & 0xff == rc & 0xff {
            extended
        } else {
            rc
        };
        // SAFETY: `self.0` is a live connection; sqlite3_errmsg returns a
        // NUL-terminated string owned by SQLite, copied before any other call.
        let message = unsafe {
            let text = ffi::sqlite3_errmsg(self.0);
            if text.is_null() {
                String::from("unknown SQLite error")
            } else {
                CStr::from_ptr(text).to_string_lossy().into_owned()
            }
        };
        ExtError::Sqlite { code: rc, message }
    }

    /// Tells whether the main schema has a table named `name`.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn has_table(self, name: &str) -> Result<bool, ExtError> {
        let mut select =
            self.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1")?;
        select.bind_text(1, name)?;
        Ok(select.step()? == Step::Row)
    }

    /// Tells whether an explicit transaction (BEGIN or SAVEPOINT) is open.
    pub fn in_transaction(self) -> bool {
        // SAFETY: `self.0` is a live connection.
        unsafe { ffi::sqlite3_get_autocommit(self.0) == 0 }
    }

    /// The current ON CONFLICT mode, valid only inside xUpdate.
    pub fn on_conflict(self) -> c_int {
        // SAFETY: called only from xUpdate on this live connection.
        unsafe { ffi::sqlite3_vtab_on_conflict(self.0) }
    }
}

/// A prepared statement, finalized on drop.
#[derive(Debug)]
pub struct Stmt {
    db: Db,
    raw: *mut ffi::sqlite3_stmt,
}

// SAFETY: a statement is used only on its connection's callbacks, which
// SQLite serializes.
unsafe impl Send for Stmt {}

/// The result of one step.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// A row is ready to read.
    Row,
    /// The statement finished.
    Done,
}

impl Stmt {
    /// Binds a value to parameter `index` (1-based).
    ///
    /// # Errors
    ///
    /// SQLite's error, such as a value too large for the connection.
    pub fn bind(&mut self, index: c_int, value: ValueRef<'_>) -> Result<(), ExtError> {
        // SAFETY: `self.raw` is a live statement. Text and blob buffers are
        // copied by SQLite (SQLITE_TRANSIENT) before the call returns.
        let rc = unsafe {
            match value {
                ValueRef::Null => ffi::sqlite3_bind_null(self.raw, index),
                ValueRef::Integer(v) => ffi::sqlite3_bind_int64(self.raw, index, v),
                ValueRef::Real(v) => ffi::sqlite3_bind_double(self.raw, index, v),
                ValueRef::Text(v) => ffi::sqlite3_bind_text64(
                    self.raw,
                    index,
                    v.as_ptr().cast::<c_char>(),
                    v.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                    ffi::SQLITE_UTF8 as u8,
                ),
                ValueRef::Blob(v) => ffi::sqlite3_bind_blob64(
                    self.raw,
                    index,
                    v.as_ptr().cast(),
                    v.len() as u64,
                    ffi::SQLITE_TRANSIENT(),
                ),
            }
        };
        if rc == ffi::SQLITE_OK {
            Ok(())
        } else {
            Err(self.db.error(rc))
        }
    }

    /// Binds a BLOB.
    ///
    /// # Errors
    ///
    /// As [`Stmt::bind`].
    pub fn bind_blob(&mut self, index: c_int, value: &[u8]) -> Result<(), ExtError> {
        self.bind(index, ValueRef::Blob(value))
    }

    /// Binds an INTEGER.
    ///
    /// # Errors
    ///
    /// As [`Stmt::bind`].
    pub fn bind_i64(&mut self, index: c_int, value: i64) -> Result<(), ExtError> {
        self.bind(index, ValueRef::Integer(value))
    }

    /// Binds a TEXT.
    ///
    /// # Errors
    ///
    /// As [`Stmt::bind`].
    pub fn bind_text(&mut self, index: c_int, value: &str) -> Result<(), ExtError> {
        self.bind(index, ValueRef::Text(value))
    }

    /// Runs the statement to its next row.
    ///
    /// # Errors
    ///
    /// SQLite's error, such as a constraint violation or a busy database.
    pub fn step(&mut self) -> Result<Step, ExtError> {
        // SAFETY: `self.raw` is a live statement.
        let rc = unsafe { ffi::sqlite3_step(self.raw) };
        match rc {
            ffi::SQLITE_ROW => Ok(Step::Row),
            ffi::SQLITE_DONE => Ok(Step::Done),
            _ => {
                // SAFETY: as above; reset returns the statement's error and
                // readies it for the next use.
                unsafe { ffi::sqlite3_reset(self.raw) };
                Err(self.db.error(rc))
            }
        }
    }

    /// Runs a statement that returns no rows.
    ///
    /// # Errors
    ///
    /// As [`Stmt::step`].
    pub fn execute(&mut self) -> Result<(), ExtError> {
        let result = self.step().map(|_| ());
        self.reset();
        result
    }

    /// Resets the statement and clears its bindings, ready for reuse.
    pub fn reset(&mut self) {
        // SAFETY: `self.raw` is a live statement.
        unsafe {
            ffi::sqlite3_reset(self.raw);
            ffi::sqlite3_clear_bindings(self.raw);
        }
    }

    /// Reads column `index` of the current row as an INTEGER.
    pub fn column_i64(&self, index: c_int) -> i64 {
        // SAFETY: `self.raw` is a live statement positioned on a row.
        unsafe { ffi::sqlite3_column_int64(self.raw, index) }
    }

    /// Tells whether column `index` of the current row is NULL.
    pub fn column_is_null(&self, index: c_int) -> bool {
        // SAFETY: `self.raw` is a live statement positioned on a row.
        unsafe { ffi::sqlite3_column_type(self.raw, index) == ffi::SQLITE_NULL }
    }

    /// Copies column `index` of the current row as bytes (BLOB or TEXT).
    pub fn column_blob(&self, index: c_int) -> Vec<u8> {
        self.column_bytes(index).to_vec()
    }

    /// Borrows column `index` of the current row as bytes, until the next
    /// step or reset, which need `&mut self` and so end the borrow.
    pub fn column_bytes(&self, index: c_int) -> &[u8] {
        // SAFETY: `self.raw` is a live statement positioned on a row. The
        // pointer from sqlite3_column_blob is valid for the length reported
        // by sqlite3_column_bytes until the statement is stepped, reset or
        // finalized, all of which take `&mut self` or `self`, so the borrow
        // checker ends this slice's life first. The other thing that could
        // move the bytes is a type conversion by sqlite3_column_text; no
        // accessor of this type calls it (text is read through this one).
        unsafe {
            let data = ffi::sqlite3_column_blob(self.raw, index);
            let len = ffi::sqlite3_column_bytes(self.raw, index);
            if data.is_null() || len <= 0 {
                &[]
            } else {
                std::slice::from_raw_parts(data.cast::<u8>(), len as usize)
            }
        }
    }

    /// Copies column `index` of the current row as text.
    pub fn column_text(&self, index: c_int) -> String {
        String::from_utf8_lossy(&self.column_blob(index)).into_owned()
    }

    /// Copies column `index` of the current row with its storage class.
    pub fn column_value(&self, index: c_int) -> persist_core::codec::Value {
        use persist_core::codec::Value;
        // SAFETY: `self.raw` is a live statement positioned on a row.
        let kind = unsafe { ffi::sqlite3_column_type(self.raw, index) };
        match kind {
            ffi::SQLITE_INTEGER => Value::Integer(self.column_i64(index)),
            ffi::SQLITE_FLOAT => {
                // SAFETY: as above.
                Value::Real(unsafe { ffi::sqlite3_column_double(self.raw, index) })
            }
            ffi::SQLITE_TEXT => Value::Text(self.column_text(index)),
            ffi::SQLITE_BLOB => Value::Blob(self.column_blob(index)),
            _ => Value::Null,
        }
    }
}

impl Drop for Stmt {
    fn drop(&mut self) {
        // SAFETY: `self.raw` is a live statement that nothing else owns.
        unsafe {
            ffi::sqlite3_finalize(self.raw);
        }
    }
}

/// Quotes an identifier for SQL.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
