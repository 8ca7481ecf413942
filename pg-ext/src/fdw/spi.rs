//! Every statement on a rows table, run through SPI as the owner of the
//! foreign table.
//!
//! Statements are prepared once per backend and kept (`SPI_keepplan`), keyed
//! by their text; Postgres replans them when the rows table changes. Names
//! are schema-qualified and operators are `OPERATOR(pg_catalog.=)`, so the
//! caller's `search_path` cannot change what runs.
//!
//! Each call switches to the foreign table's owner with
//! `SetUserIdAndSecContext`, as Postgres does for maintenance commands, so a
//! role needs privileges on the foreign table only: the rows table belongs to
//! that owner. The switch is undone when the call returns or unwinds.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;

use persist_core::RecordId;
use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, pg_sys};

use super::table::TableDef;
use crate::error::PgError;

/// Most statements kept per backend before the cache starts over.
const MAX_KEPT_PLANS: usize = 512;

/// A row of a rows table.
pub struct Fetched {
    /// The row's ctid, which identifies it for UPDATE and DELETE.
    pub ctid: pg_sys::ItemPointerData,
    /// The blind record id.
    pub rid: Vec<u8>,
    /// The envelope of the sealed row.
    pub env: Vec<u8>,
}

/// The row lock a scan takes, from `FOR UPDATE` and friends or because the
/// table is the target of UPDATE or DELETE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowLock {
    /// `LockClauseStrength`: none, key share, share, no key update, update.
    pub strength: pg_sys::LockClauseStrength::Type,
    /// `LockWaitPolicy`: block, skip locked, or nowait.
    pub wait: pg_sys::LockWaitPolicy::Type,
}

impl RowLock {
    /// No lock.
    pub const NONE: Self = Self {
        strength: pg_sys::LockClauseStrength::LCS_NONE,
        wait: pg_sys::LockWaitPolicy::LockWaitBlock,
    };

    /// Returns whether a lock is taken.
    pub fn is_some(self) -> bool {
        self.strength != pg_sys::LockClauseStrength::LCS_NONE
    }

    /// Returns the locking clause, such as ` FOR UPDATE NOWAIT`, or an empty
    /// string.
    pub fn sql(self) -> &'static str {
        use pg_sys::LockClauseStrength as Strength;
        use pg_sys::LockWaitPolicy as Wait;
        let wait = match self.wait {
            Wait::LockWaitSkip => 1,
            Wait::LockWaitError => 2,
            _ => 0,
        };
        match (self.strength, wait) {
            (Strength::LCS_NONE, _) => "",
            (Strength::LCS_FORKEYSHARE, 1) => " FOR KEY SHARE SKIP LOCKED",
            (Strength::LCS_FORKEYSHARE, 2) => " FOR KEY SHARE NOWAIT",
            (Strength::LCS_FORKEYSHARE, _) => " FOR KEY SHARE",
            (Strength::LCS_FORSHARE, 1) => " FOR SHARE SKIP LOCKED",
            (Strength::LCS_FORSHARE, 2) => " FOR SHARE NOWAIT",
            (Strength::LCS_FORSHARE, _) => " FOR SHARE",
            (Strength::LCS_FORNOKEYUPDATE, 1) => " FOR NO KEY UPDATE SKIP LOCKED",
            (Strength::LCS_FORNOKEYUPDATE, 2) => " FOR NO KEY UPDATE NOWAIT",
            (Strength::LCS_FORNOKEYUPDATE, _) => " FOR NO KEY UPDATE",
            (_, 1) => " FOR UPDATE SKIP LOCKED",
            (_, 2) => " FOR UPDATE NOWAIT",
            (_, _) => " FOR UPDATE",
        }
    }

    /// Returns a short description for EXPLAIN, such as `FOR UPDATE`.
    pub fn describe(self) -> &'static str {
        self.sql().trim_start()
    }
}

thread_local! {
    static PLANS: RefCell<HashMap<String, usize>> = RefCell::new(HashMap::new());
}

/// Restores the user and security context when dropped.
struct AsOwner {
    user: pg_sys::Oid,
    security_context: i32,
}

impl AsOwner {
    fn switch(owner: pg_sys::Oid) -> Self {
        let mut user = pg_sys::Oid::INVALID;
        let mut security_context = 0;
        // SAFETY: reads and sets two backend globals; Postgres also resets
        // them when a (sub)transaction aborts.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut user, &mut security_context);
            pg_sys::SetUserIdAndSecContext(
                owner,
                security_context
                    | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
            );
        }
        Self {
            user,
            security_context,
        }
    }
}

impl Drop for AsOwner {
    fn drop(&mut self) {
        // SAFETY: restores the values saved in `switch`; this cannot fail.
        unsafe { pg_sys::SetUserIdAndSecContext(self.user, self.security_context) };
    }
}

fn spi_error(what: &str, code: i32) -> PgError {
    // SAFETY: SPI_result_code_string returns a static string for any code.
    let text = unsafe {
        std::ffi::CStr::from_ptr(pg_sys::SPI_result_code_string(code))
            .to_string_lossy()
            .into_owned()
    };
    PgError::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("{what} failed: {text}"),
    )
}

/// Runs `f` inside an SPI connection as `owner`. Allocations in `f` go to
/// the connection's memory context, which SPI_finish frees.
fn with_spi<T>(owner: pg_sys::Oid, f: impl FnOnce() -> Result<T, PgError>) -> Result<T, PgError> {
    // SAFETY: SPI_connect may be nested in any callback that runs in a
    // transaction. If `f` raises a Postgres error, the (sub)transaction's
    // abort closes the connection.
    let code = unsafe { pg_sys::SPI_connect() };
    if code != pg_sys::SPI_OK_CONNECT as i32 {
        return Err(spi_error("SPI_connect", code));
    }
    let owner = AsOwner::switch(owner);
    let result = f();
    drop(owner);
    // SAFETY: closes the connection opened above.
    unsafe { pg_sys::SPI_finish() };
    result
}

/// Returns the kept plan of `sql`, preparing it on first use. Runs inside
/// [`with_spi`].
fn plan(sql: &str, arg_types: &[pg_sys::Oid]) -> Result<pg_sys::SPIPlanPtr, PgError> {
    if let Some(plan) = PLANS.with(|plans| plans.borrow().get(sql).copied()) {
        return Ok(plan as pg_sys::SPIPlanPtr);
    }
    let text = CString::new(sql).map_err(|_| PgError::invalid("SQL text contains NUL"))?;
    // SAFETY: inside an SPI connection; the argument types outlive the call.
    let plan = unsafe {
        let plan = pg_sys::SPI_prepare(
            text.as_ptr(),
            arg_types.len() as i32,
            arg_types.as_ptr().cast_mut(),
        );
        if plan.is_null() {
            return Err(spi_error("SPI_prepare", pg_sys::SPI_result));
        }
        pg_sys::SPI_keepplan(plan);
        plan
    };
    PLANS.with(|plans| {
        let mut plans = plans.borrow_mut();
        if plans.len() >= MAX_KEPT_PLANS {
            for (_, old) in plans.drain() {
                // SAFETY: every cached plan was kept and is freed once.
                unsafe { pg_sys::SPI_freeplan(old as pg_sys::SPIPlanPtr) };
            }
        }
        plans.insert(sql.to_owned(), plan as usize);
    });
    Ok(plan)
}

/// Runs a kept plan; returns the number of rows processed.
fn execute(
    plan: pg_sys::SPIPlanPtr,
    args: &mut [pg_sys::Datum],
    read_only: bool,
    expected: u32,
) -> Result<usize, PgError> {
    let nulls = vec![b' ' as std::ffi::c_char; args.len()];
    // SAFETY: inside an SPI connection; args and nulls match the plan's
    // parameters and outlive the call.
    let code =
        unsafe { pg_sys::SPI_execute_plan(plan, args.as_mut_ptr(), nulls.as_ptr(), read_only, 0) };
    if code != expected as i32 {
        return Err(spi_error("a statement on a rows table", code));
    }
    // SAFETY: set by the SPI_execute_plan call above.
    Ok(unsafe { pg_sys::SPI_processed } as usize)
}

/// Reads column `column` (1-based) of row `row` of the current SPI result.
///
/// # Safety
///
/// Inside an SPI connection after a statement that returned at least
/// `row + 1` rows.
unsafe fn result_datum(row: usize, column: i32) -> Option<pg_sys::Datum> {
    // SAFETY: guaranteed by the caller.
    unsafe {
        let table = pg_sys::SPI_tuptable;
        let tuple = *(*table).vals.add(row);
        let mut is_null = false;
        let datum = pg_sys::SPI_getbinval(tuple, (*table).tupdesc, column, &mut is_null);
        (!is_null).then_some(datum)
    }
}

/// # Safety
///
/// As [`result_datum`], for a bytea column.
unsafe fn result_bytes(row: usize, column: i32) -> Vec<u8> {
    // SAFETY: guaranteed by the caller.
    unsafe { result_datum(row, column) }
        .and_then(|datum| {
            // SAFETY: a bytea datum of the current result.
            unsafe { Vec::<u8>::from_datum(datum, false) }
        })
        .unwrap_or_default()
}

/// Reads the current SPI result of `ctid, rid, env` rows.
///
/// # Safety
///
/// Inside an SPI connection after a statement that returned `count` rows of
/// `(tid, bytea, bytea)`.
unsafe fn read_fetched(count: usize) -> Vec<Fetched> {
    (0..count)
        .map(|row| {
            // SAFETY: guaranteed by the caller.
            unsafe {
                Fetched {
                    ctid: result_ctid(row),
                    rid: result_bytes(row, 2),
                    env: result_bytes(row, 3),
                }
            }
        })
        .collect()
}

/// Runs `f` with `enable_seqscan` off, so that a lookup planned (or
/// replanned) during `f` reads the primary key index even of a small rows
/// table, where a sequential scan would cost less. A lookup thereby never
/// reads other rows than its own, and the index is what the cost model of
/// the wrapper assumes.
fn without_seq_scan<T>(f: impl FnOnce() -> Result<T, PgError>) -> Result<T, PgError> {
    // SAFETY: the GUC nesting protocol, as in values::with_text_form; the
    // setting is valid, so set_config_option cannot fail. A Postgres error
    // in `f` pops the level when the (sub)transaction aborts.
    let level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"enable_seqscan".as_ptr(),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        level
    };
    let result = f();
    // SAFETY: pops the level pushed above.
    unsafe { pg_sys::AtEOXact_GUC(true, level) };
    result
}

/// Looks up the rows of record ids `rids`, with an index scan of the rows
/// table's primary key, taking `lock` on them.
///
/// # Errors
///
/// Errors of SPI; Postgres errors (such as a lock timeout) propagate.
pub fn lookup(table: &TableDef, rids: &[RecordId], lock: RowLock) -> Result<Vec<Fetched>, PgError> {
    if rids.is_empty() {
        return Ok(Vec::new());
    }
    with_spi(table.owner, || {
        let (condition, arg_type) = if rids.len() == 1 {
            ("rid OPERATOR(pg_catalog.=) $1", pg_sys::BYTEAOID)
        } else {
            ("rid OPERATOR(pg_catalog.=) ANY ($1)", pg_sys::BYTEAARRAYOID)
        };
        let sql = format!(
            "SELECT ctid, rid, env FROM {} WHERE {condition}{}",
            table.rows_table_sql(),
            lock.sql()
        );
        let plan = plan(&sql, &[arg_type])?;
        let arg = if rids.len() == 1 {
            rids[0].as_bytes().as_slice().into_datum()
        } else {
            rids.iter()
                .map(|rid| rid.as_bytes().as_slice())
                .collect::<Vec<&[u8]>>()
                .into_datum()
        };
        let mut args = [arg.unwrap_or(pg_sys::Datum::from(0))];
        let count =
            without_seq_scan(|| execute(plan, &mut args, !lock.is_some(), pg_sys::SPI_OK_SELECT))?;
        // SAFETY: the statement returned `count` rows of (tid, bytea, bytea).
        Ok(unsafe { read_fetched(count) })
    })
}

/// Opens a cursor over every row of the rows table, taking `lock` on the
/// rows it returns, and returns the cursor's name. Without a lock it reads
/// with the snapshot of the calling statement.
///
/// # Errors
///
/// Errors of SPI.
pub fn open_cursor(table: &TableDef, lock: RowLock) -> Result<String, PgError> {
    with_spi(table.owner, || {
        let sql = format!(
            "SELECT ctid, rid, env FROM {}{}",
            table.rows_table_sql(),
            lock.sql()
        );
        let plan = plan(&sql, &[])?;
        // SAFETY: inside an SPI connection; the plan takes no parameters. The
        // portal outlives the connection and is dropped by close_cursor or at
        // the end of the transaction.
        unsafe {
            let portal = pg_sys::SPI_cursor_open(
                std::ptr::null(),
                plan,
                std::ptr::null_mut(),
                std::ptr::null(),
                !lock.is_some(),
            );
            if portal.is_null() {
                return Err(spi_error("SPI_cursor_open", pg_sys::SPI_result));
            }
            Ok(std::ffi::CStr::from_ptr((*portal).name)
                .to_string_lossy()
                .into_owned())
        }
    })
}

/// Fetches up to `count` rows from cursor `name`.
///
/// # Errors
///
/// 34000 when the cursor no longer exists.
pub fn fetch(table: &TableDef, name: &str, count: usize) -> Result<Vec<Fetched>, PgError> {
    with_spi(table.owner, || {
        let portal = find_portal(name)?;
        // SAFETY: inside an SPI connection with a live portal.
        unsafe {
            pg_sys::SPI_cursor_fetch(portal, true, count as std::ffi::c_long);
            Ok(read_fetched(pg_sys::SPI_processed as usize))
        }
    })
}

/// Closes cursor `name` if it still exists.
pub fn close_cursor(name: &str) {
    if let Ok(portal) = find_portal(name) {
        // SAFETY: a live portal that this module opened.
        unsafe { pg_sys::SPI_cursor_close(portal) };
    }
}

fn find_portal(name: &str) -> Result<pg_sys::Portal, PgError> {
    let c_name = CString::new(name).map_err(|_| PgError::invalid("cursor name contains NUL"))?;
    // SAFETY: looks the name up in the backend's portal table.
    let portal = unsafe { pg_sys::SPI_cursor_find(c_name.as_ptr()) };
    if portal.is_null() {
        return Err(PgError::new(
            PgSqlErrorCode::ERRCODE_INVALID_CURSOR_NAME,
            format!("the cursor {name:?} of an encrypted table scan no longer exists"),
        ));
    }
    Ok(portal)
}

fn tid_datum(ctid: &pg_sys::ItemPointerData) -> pg_sys::Datum {
    // SAFETY: copies the tid into the current memory context, where the
    // statement that reads it runs.
    unsafe {
        let copy = pg_sys::palloc(std::mem::size_of::<pg_sys::ItemPointerData>())
            .cast::<pg_sys::ItemPointerData>();
        *copy = *ctid;
        pg_sys::Datum::from(copy)
    }
}

fn bytes_datum(bytes: &[u8]) -> pg_sys::Datum {
    bytes.into_datum().unwrap_or(pg_sys::Datum::from(0))
}

/// Inserts a row unless its record id exists; returns the new row's ctid,
/// or `None` when the record id exists. The check waits for a concurrent
/// insert of the same id, as a unique index does.
///
/// # Errors
///
/// Errors of SPI.
pub fn insert(
    table: &TableDef,
    rid: &RecordId,
    env: &[u8],
) -> Result<Option<pg_sys::ItemPointerData>, PgError> {
    with_spi(table.owner, || {
        let sql = format!(
            "INSERT INTO {} (rid, env) VALUES ($1, $2) ON CONFLICT (rid) DO NOTHING \
             RETURNING ctid",
            table.rows_table_sql()
        );
        let plan = plan(&sql, &[pg_sys::BYTEAOID, pg_sys::BYTEAOID])?;
        let mut args = [bytes_datum(rid.as_bytes()), bytes_datum(env)];
        let count = execute(plan, &mut args, false, pg_sys::SPI_OK_INSERT_RETURNING)?;
        // SAFETY: the statement returned `count` rows of one tid.
        Ok((count == 1).then(|| unsafe { result_ctid(0) }))
    })
}

/// Replaces the envelope of the row at `ctid` if that row has record id
/// `rid`. Returns the ctid of the new row version, or `None` when there is no
/// such row.
///
/// # Errors
///
/// Errors of SPI.
pub fn update_envelope(
    table: &TableDef,
    ctid: &pg_sys::ItemPointerData,
    rid: &RecordId,
    env: &[u8],
) -> Result<Option<pg_sys::ItemPointerData>, PgError> {
    with_spi(table.owner, || {
        let sql = format!(
            "UPDATE {} SET env = $3 WHERE ctid OPERATOR(pg_catalog.=) $1 \
             AND rid OPERATOR(pg_catalog.=) $2 RETURNING ctid",
            table.rows_table_sql()
        );
        let plan = plan(&sql, &[pg_sys::TIDOID, pg_sys::BYTEAOID, pg_sys::BYTEAOID])?;
        let mut args = [
            tid_datum(ctid),
            bytes_datum(rid.as_bytes()),
            bytes_datum(env),
        ];
        let count = execute(plan, &mut args, false, pg_sys::SPI_OK_UPDATE_RETURNING)?;
        // SAFETY: the statement returned `count` rows of one tid.
        Ok((count == 1).then(|| unsafe { result_ctid(0) }))
    })
}

/// Reads the tid in column 1 of row `row` of the current SPI result.
///
/// # Safety
///
/// As [`result_datum`], for a tid column.
unsafe fn result_ctid(row: usize) -> pg_sys::ItemPointerData {
    // SAFETY: guaranteed by the caller; a tid datum points to the tid.
    unsafe {
        result_datum(row, 1)
            .map(|datum| *(datum.cast_mut_ptr::<pg_sys::ItemPointerData>()))
            .unwrap_or_default()
    }
}

/// Deletes the row at `ctid` and returns it. Returns `None` when the row is
/// not visible to this statement, because another transaction deleted it or
/// this statement already changed it.
///
/// # Errors
///
/// Errors of SPI.
pub fn delete(
    table: &TableDef,
    ctid: &pg_sys::ItemPointerData,
) -> Result<Option<Fetched>, PgError> {
    with_spi(table.owner, || {
        let sql = format!(
            "DELETE FROM {} WHERE ctid OPERATOR(pg_catalog.=) $1 RETURNING ctid, rid, env",
            table.rows_table_sql()
        );
        let plan = plan(&sql, &[pg_sys::TIDOID])?;
        let mut args = [tid_datum(ctid)];
        let count = execute(plan, &mut args, false, pg_sys::SPI_OK_DELETE_RETURNING)?;
        // SAFETY: the statement returned `count` rows of (tid, bytea, bytea).
        let mut rows = unsafe { read_fetched(count) };
        Ok(rows.pop())
    })
}

/// Empties the rows table, as the table's owner may.
///
/// # Errors
///
/// Errors of SPI.
pub fn truncate(table: &TableDef) -> Result<(), PgError> {
    with_spi(table.owner, || {
        let sql = format!("TRUNCATE {}", table.rows_table_sql());
        let plan = plan(&sql, &[])?;
        execute(plan, &mut [], false, pg_sys::SPI_OK_UTILITY)?;
        Ok(())
    })
}
