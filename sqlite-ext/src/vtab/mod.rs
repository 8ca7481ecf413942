//! The `persist` virtual table module: SQLite's entry points.
//!
//! Every callback here is an `extern "C"` function that SQLite calls. Each one
//! runs its body inside `catch_unwind`, so no panic crosses into SQLite: a
//! panic becomes an SQLITE_ERROR with a message, and the statement fails
//! cleanly. The work itself is done by [`table::Table`] and [`Cursor`].
//!
//! The module is registered with `iVersion = 3` so that SQLite asks
//! `xShadowName`, which marks `T_rows` and `T_config` as shadow tables: in
//! defensive mode SQLite then rejects direct writes to them.

pub mod schema;
pub mod shadow;
pub mod table;

use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use persist_core::codec::ValueRef;
use rusqlite::ffi;

use crate::db::{Db, Step, Stmt};
use crate::error::{CoreContext, ExtError};
use crate::state::Connection;
use schema::Schema;
use shadow::OpenedRow;
use table::{Plan, Table};

/// The virtual table object SQLite holds; `base` must come first.
#[repr(C)]
struct VTable {
    base: ffi::sqlite3_vtab,
    table: Table,
}

/// The cursor object SQLite holds; `base` must come first.
#[repr(C)]
struct VCursor {
    base: ffi::sqlite3_vtab_cursor,
    cursor: Cursor,
}

/// A scan or lookup in progress.
struct Cursor {
    plan: Plan,
    stmt: Option<Stmt>,
    current: Option<CurrentRow>,
    /// For a primary-key lookup, the record id to keep among the rows of its
    /// slots.
    target: Option<persist_core::RecordId>,
}

/// The decrypted row a cursor points at.
struct CurrentRow {
    rowid: i64,
    row: OpenedRow,
    /// For each schema column, its position in `row.spans.columns`, if
    /// present.
    positions: Vec<Option<usize>>,
}

/// Registers the module on `db`, sharing `conn` with the SQL functions.
///
/// # Errors
///
/// SQLite's error when the module cannot be registered.
pub fn register(db: Db, conn: &Arc<Connection>) -> Result<(), ExtError> {
    let aux = Arc::into_raw(Arc::clone(conn)) as *mut c_void;
    // SAFETY: MODULE is a static that lives for the program; `aux` is a
    // leaked Arc that SQLite hands back to `drop_aux` exactly once, when the
    // connection closes or the module is replaced, or at once on failure.
    let rc = unsafe {
        ffi::sqlite3_create_module_v2(
            db.raw(),
            c"persist".as_ptr(),
            &raw const MODULE,
            aux,
            Some(drop_aux),
        )
    };
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(db.error(rc))
    }
}

unsafe extern "C" fn drop_aux(aux: *mut c_void) {
    // SAFETY: `aux` is the pointer made by Arc::into_raw in `register`, and
    // SQLite calls this destructor once.
    let result = catch_unwind(|| unsafe { drop(Arc::from_raw(aux as *const Connection)) });
    // A panic while dropping cannot be reported anywhere; it is contained.
    let _ = result;
}

static MODULE: ffi::sqlite3_module = build_module();

const fn build_module() -> ffi::sqlite3_module {
    // SAFETY: sqlite3_module is a plain C struct of an int and optional
    // function pointers, for which all-zero bytes are a valid value (0 and
    // None); every callback this module implements is set below.
    let mut module: ffi::sqlite3_module = unsafe { std::mem::zeroed() };
    module.iVersion = 3;
    module.xCreate = Some(x_create);
    module.xConnect = Some(x_connect);
    module.xBestIndex = Some(x_best_index);
    module.xDisconnect = Some(x_disconnect);
    module.xDestroy = Some(x_destroy);
    module.xOpen = Some(x_open);
    module.xClose = Some(x_close);
    module.xFilter = Some(x_filter);
    module.xNext = Some(x_next);
    module.xEof = Some(x_eof);
    module.xColumn = Some(x_column);
    module.xRowid = Some(x_rowid);
    module.xUpdate = Some(x_update);
    module.xRename = Some(x_rename);
    module.xShadowName = Some(x_shadow_name);
    // The shadow tables are ordinary tables, so SQLite's own journal undoes
    // their changes; these callbacks only drop caches a rollback makes stale.
    module.xBegin = Some(x_begin);
    module.xSync = Some(x_noop);
    module.xCommit = Some(x_noop);
    module.xRollback = Some(x_rollback);
    module.xSavepoint = Some(x_noop_savepoint);
    module.xRelease = Some(x_noop_savepoint);
    module.xRollbackTo = Some(x_rollback_to);
    module
}

/// Runs `body`, turning an error or a panic into a result code and a message
/// passed to `report`.
fn guard(
    name: &str,
    report: impl FnOnce(&str),
    body: impl FnOnce() -> Result<c_int, ExtError>,
) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(rc)) => rc,
        Ok(Err(err)) => {
            report(&err.to_string());
            err.code()
        }
        Err(_) => {
            report(&format!(
                "persist: internal error in {name}; the statement was not applied"
            ));
            ffi::SQLITE_ERROR
        }
    }
}

/// Copies `message` into memory from sqlite3_malloc, which SQLite frees.
fn sqlite_string(message: &str) -> *mut c_char {
    let bytes = message.as_bytes();
    let len = bytes.len();
    // SAFETY: the buffer has len + 1 bytes; the copy writes len bytes and a
    // NUL terminator. A null result (out of memory) is returned as is.
    unsafe {
        let buf = ffi::sqlite3_malloc64((len + 1) as u64).cast::<u8>();
        if !buf.is_null() {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, len);
            *buf.add(len) = 0;
        }
        buf.cast::<c_char>()
    }
}

/// Sets the error message of a virtual table.
///
/// # Safety
///
/// `vtab` must be a valid virtual table object.
unsafe fn set_vtab_error(vtab: *mut ffi::sqlite3_vtab, message: &str) {
    // SAFETY: guaranteed by the caller; zErrMsg is owned by SQLite's allocator.
    unsafe {
        if !(*vtab).zErrMsg.is_null() {
            ffi::sqlite3_free((*vtab).zErrMsg.cast());
        }
        (*vtab).zErrMsg = sqlite_string(message);
    }
}

/// Reads the module arguments: database name, table name and column
/// definitions.
///
/// # Safety
///
/// `argv` must hold `argc` valid NUL-terminated strings.
unsafe fn read_args(
    argc: c_int,
    argv: *const *const c_char,
) -> Result<(String, String, Vec<String>), ExtError> {
    // SAFETY: guaranteed by the caller.
    let args: Vec<String> = unsafe {
        (0..argc as usize)
            .map(|i| CStr::from_ptr(*argv.add(i)).to_string_lossy().into_owned())
            .collect()
    };
    if args.len() < 3 {
        return Err(ExtError::usage(
            "the persist module received too few arguments",
        ));
    }
    Ok((args[1].clone(), args[2].clone(), args[3..].to_vec()))
}

/// Creates or connects a table and hands it to SQLite.
///
/// # Safety
///
/// The pointers are those of an xCreate or xConnect call.
unsafe fn construct(
    db: *mut ffi::sqlite3,
    aux: *mut c_void,
    argc: c_int,
    argv: *const *const c_char,
    vtab_out: *mut *mut ffi::sqlite3_vtab,
    err_out: *mut *mut c_char,
    create: bool,
) -> c_int {
    let report = |message: &str| {
        // SAFETY: `err_out` is SQLite's error slot for this call.
        unsafe { *err_out = sqlite_string(message) }
    };
    guard(if create { "xCreate" } else { "xConnect" }, report, || {
        // SAFETY: `aux` is the Arc<Connection> registered with the module,
        // alive while the module is; a new strong reference is taken here.
        let conn = unsafe {
            Arc::increment_strong_count(aux as *const Connection);
            Arc::from_raw(aux as *const Connection)
        };
        let db = Db::from_raw(db);
        // SAFETY: argc and argv come from SQLite.
        let (schema_name, name, args) = unsafe { read_args(argc, argv)? };
        let schema = Schema::parse(&name, &args)?;
        let declaration = std::ffi::CString::new(schema.declaration())
            .map_err(|_| ExtError::usage("a column name contains a NUL character"))?;
        let table = if create {
            Table::create(conn, db, &schema_name, &name, schema)?
        } else {
            Table::connect(conn, db, &schema_name, &name, schema)?
        };
        // SAFETY: the declaration is a NUL-terminated CREATE TABLE statement.
        let rc = unsafe { ffi::sqlite3_declare_vtab(db.raw(), declaration.as_ptr()) };
        if rc != ffi::SQLITE_OK {
            return Err(db.error(rc));
        }
        enable_constraint_support(db);
        let boxed = Box::new(VTable {
            // SAFETY: an all-zero sqlite3_vtab is the documented initial state.
            base: unsafe { std::mem::zeroed() },
            table,
        });
        // SAFETY: SQLite takes the pointer and returns it to xDisconnect or
        // xDestroy, which free it.
        unsafe { *vtab_out = Box::into_raw(boxed).cast() };
        Ok(ffi::SQLITE_OK)
    })
}

/// Tells SQLite that xUpdate reports constraint violations before changing
/// anything, so ON CONFLICT modes and statement rollback work.
fn enable_constraint_support(db: Db) {
    #[cfg(feature = "loadable")]
    crate::api::vtab_config_constraint_support(db.raw());
    #[cfg(not(feature = "loadable"))]
    // SAFETY: called from xCreate or xConnect on this connection, with the
    // integer argument that SQLITE_VTAB_CONSTRAINT_SUPPORT takes.
    unsafe {
        ffi::sqlite3_vtab_config(db.raw(), ffi::SQLITE_VTAB_CONSTRAINT_SUPPORT, 1 as c_int);
    }
}

unsafe extern "C" fn x_create(
    db: *mut ffi::sqlite3,
    aux: *mut c_void,
    argc: c_int,
    argv: *const *const c_char,
    vtab: *mut *mut ffi::sqlite3_vtab,
    err: *mut *mut c_char,
) -> c_int {
    // SAFETY: the arguments are SQLite's for xCreate.
    unsafe { construct(db, aux, argc, argv, vtab, err, true) }
}

unsafe extern "C" fn x_connect(
    db: *mut ffi::sqlite3,
    aux: *mut c_void,
    argc: c_int,
    argv: *const *const c_char,
    vtab: *mut *mut ffi::sqlite3_vtab,
    err: *mut *mut c_char,
) -> c_int {
    // SAFETY: the arguments are SQLite's for xConnect.
    unsafe { construct(db, aux, argc, argv, vtab, err, false) }
}

/// The table behind a virtual table pointer.
///
/// # Safety
///
/// `vtab` must be a pointer made by `construct` and not yet freed.
unsafe fn table<'a>(vtab: *mut ffi::sqlite3_vtab) -> &'a Table {
    // SAFETY: guaranteed by the caller; VTable is repr(C) with base first.
    unsafe { &(*vtab.cast::<VTable>()).table }
}

unsafe extern "C" fn x_disconnect(vtab: *mut ffi::sqlite3_vtab) -> c_int {
    let result = catch_unwind(|| {
        // SAFETY: SQLite passes the pointer from construct, once.
        drop(unsafe { Box::from_raw(vtab.cast::<VTable>()) });
    });
    let _ = result;
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_destroy(vtab: *mut ffi::sqlite3_vtab) -> c_int {
    // SAFETY: `vtab` is live until freed at the end of this function.
    let report = |message: &str| unsafe { set_vtab_error(vtab, message) };
    let rc = guard("xDestroy", report, || {
        // SAFETY: as above.
        unsafe { table(vtab) }.destroy()?;
        Ok(ffi::SQLITE_OK)
    });
    if rc == ffi::SQLITE_OK {
        // SAFETY: SQLite will not use the table after a successful xDestroy.
        unsafe { x_disconnect(vtab) };
    }
    rc
}

unsafe extern "C" fn x_rename(vtab: *mut ffi::sqlite3_vtab, new_name: *const c_char) -> c_int {
    // SAFETY: `vtab` is live for this call.
    let report = |message: &str| unsafe { set_vtab_error(vtab, message) };
    guard("xRename", report, || {
        // SAFETY: SQLite passes a NUL-terminated name.
        let new_name = unsafe { CStr::from_ptr(new_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: `vtab` is live for this call.
        unsafe { table(vtab) }.rename(&new_name)?;
        Ok(ffi::SQLITE_OK)
    })
}

unsafe extern "C" fn x_noop(_vtab: *mut ffi::sqlite3_vtab) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_noop_savepoint(_vtab: *mut ffi::sqlite3_vtab, _savepoint: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_begin(vtab: *mut ffi::sqlite3_vtab) -> c_int {
    // SAFETY: `vtab` is live for this call.
    let report = |message: &str| unsafe { set_vtab_error(vtab, message) };
    guard("xBegin", report, || {
        // SAFETY: as above.
        unsafe { table(vtab) }.begin_transaction();
        Ok(ffi::SQLITE_OK)
    })
}

unsafe extern "C" fn x_rollback(vtab: *mut ffi::sqlite3_vtab) -> c_int {
    // SAFETY: `vtab` is live for this call.
    let report = |message: &str| unsafe { set_vtab_error(vtab, message) };
    guard("xRollback", report, || {
        // SAFETY: as above.
        unsafe { table(vtab) }.forget_caches();
        Ok(ffi::SQLITE_OK)
    })
}

unsafe extern "C" fn x_rollback_to(vtab: *mut ffi::sqlite3_vtab, _savepoint: c_int) -> c_int {
    // SAFETY: `vtab` is live for this call.
    unsafe { x_rollback(vtab) }
}

unsafe extern "C" fn x_shadow_name(suffix: *const c_char) -> c_int {
    let result = catch_unwind(|| {
        // SAFETY: SQLite passes a NUL-terminated suffix.
        let suffix = unsafe { CStr::from_ptr(suffix) }.to_bytes();
        c_int::from(suffix == b"rows" || suffix == b"config")
    });
    result.unwrap_or(0)
}

unsafe extern "C" fn x_best_index(
    vtab: *mut ffi::sqlite3_vtab,
    info: *mut ffi::sqlite3_index_info,
) -> c_int {
    // SAFETY: `vtab` is live for this call.
    let report = |message: &str| unsafe { set_vtab_error(vtab, message) };
    guard("xBestIndex", report, || {
        // SAFETY: both pointers are valid for this call, and the constraint
        // arrays hold nConstraint entries.
        unsafe {
            let table = table(vtab);
            let info = &mut *info;
            let count = usize::try_from(info.nConstraint).unwrap_or(0);
            let constraints = std::slice::from_raw_parts(info.aConstraint, count);
            let usage = std::slice::from_raw_parts_mut(info.aConstraintUsage, count);
            let usable_eq = |column: c_int| {
                constraints.iter().position(|c| {
                    c.usable != 0
                        && c.iColumn == column
                        && c_int::from(c.op) == ffi::SQLITE_INDEX_CONSTRAINT_EQ as c_int
                })
            };

            let key = &table.schema.primary_key;
            let key_constraints: Option<Vec<usize>> = if key.is_empty() {
                None
            } else {
                key.iter()
                    .map(|column| usable_eq(*column as c_int))
                    .collect()
            };
            if let Some(positions) = key_constraints {
                for (argv, position) in positions.iter().enumerate() {
                    usage[*position].argvIndex = argv as c_int + 1;
                    // SQLite checks the equality again on every row returned,
                    // as a second guard on the blind-id lookup.
                    usage[*position].omit = 0;
                }
                info.idxNum = Plan::PrimaryKey.number();
                info.idxStr = c"primary key".as_ptr().cast_mut();
                info.estimatedCost = 10.0;
                info.estimatedRows = 1;
                info.idxFlags = ffi::SQLITE_INDEX_SCAN_UNIQUE;
            } else if let Some(position) = usable_eq(-1) {
                usage[position].argvIndex = 1;
                usage[position].omit = 1;
                info.idxNum = Plan::Rowid.number();
                info.idxStr = c"rowid".as_ptr().cast_mut();
                info.estimatedCost = 10.0;
                info.estimatedRows = 1;
                info.idxFlags = ffi::SQLITE_INDEX_SCAN_UNIQUE;
            } else {
                info.idxNum = Plan::Scan.number();
                info.idxStr = c"full scan".as_ptr().cast_mut();
                let rows = table.estimated_rows();
                info.estimatedCost = 100.0 + rows as f64 * 10.0;
                info.estimatedRows = rows;
            }
            info.needToFreeIdxStr = 0;
        }
        Ok(ffi::SQLITE_OK)
    })
}

unsafe extern "C" fn x_open(
    vtab: *mut ffi::sqlite3_vtab,
    cursor_out: *mut *mut ffi::sqlite3_vtab_cursor,
) -> c_int {
    // SAFETY: `vtab` is live for this call.
    let report = |message: &str| unsafe { set_vtab_error(vtab, message) };
    guard("xOpen", report, || {
        let boxed = Box::new(VCursor {
            // SAFETY: an all-zero cursor base is valid; SQLite fills pVtab.
            base: unsafe { std::mem::zeroed() },
            cursor: Cursor {
                plan: Plan::Scan,
                stmt: None,
                current: None,
                target: None,
            },
        });
        // SAFETY: SQLite returns the pointer to xClose, which frees it.
        unsafe { *cursor_out = Box::into_raw(boxed).cast() };
        Ok(ffi::SQLITE_OK)
    })
}

/// The cursor and its table behind a cursor pointer.
///
/// # Safety
///
/// `cursor` must be a pointer made by `x_open`, with `pVtab` set by SQLite.
unsafe fn cursor_parts<'a>(cursor: *mut ffi::sqlite3_vtab_cursor) -> (&'a mut Cursor, &'a Table) {
    // SAFETY: guaranteed by the caller; VCursor is repr(C) with base first.
    unsafe {
        let table = table((*cursor).pVtab);
        (&mut (*cursor.cast::<VCursor>()).cursor, table)
    }
}

unsafe extern "C" fn x_close(cursor: *mut ffi::sqlite3_vtab_cursor) -> c_int {
    let result = catch_unwind(|| {
        // SAFETY: SQLite passes the pointer from x_open, once, with pVtab set.
        unsafe {
            let (state, table) = cursor_parts(cursor);
            if let Some(stmt) = state.stmt.take() {
                table.release_cursor_statement(state.plan, stmt);
            }
            drop(Box::from_raw(cursor.cast::<VCursor>()));
        }
    });
    let _ = result;
    ffi::SQLITE_OK
}

/// Reports a cursor error on its table.
///
/// # Safety
///
/// `cursor` must be live with `pVtab` set.
unsafe fn cursor_report(cursor: *mut ffi::sqlite3_vtab_cursor) -> impl FnOnce(&str) {
    move |message: &str| {
        // SAFETY: guaranteed by the caller of cursor_report.
        unsafe { set_vtab_error((*cursor).pVtab, message) }
    }
}

unsafe extern "C" fn x_filter(
    cursor: *mut ffi::sqlite3_vtab_cursor,
    idx_num: c_int,
    _idx_str: *const c_char,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
) -> c_int {
    // SAFETY: `cursor` is live for this call.
    let report = unsafe { cursor_report(cursor) };
    guard("xFilter", report, || {
        // SAFETY: `cursor` is live and argv holds argc values for this call.
        unsafe {
            let (state, table) = cursor_parts(cursor);
            let args = if argc > 0 {
                std::slice::from_raw_parts(argv, argc as usize)
            } else {
                &[]
            };
            let plan = Plan::from_number(idx_num)
                .ok_or_else(|| ExtError::usage(format!("unknown plan number {idx_num}")))?;
            if let Some(stmt) = state.stmt.take() {
                table.release_cursor_statement(state.plan, stmt);
            }
            state.current = None;
            state.target = None;
            state.plan = plan;
            let mut stmt = table.cursor_statement(plan)?;
            match plan {
                Plan::Scan => {}
                Plan::PrimaryKey => match table.key_from_args(args)? {
                    Some(rid) => {
                        shadow::Shadow::bind_record_id(&mut stmt, &rid)?;
                        state.target = Some(rid);
                    }
                    // A NULL key matches no row.
                    None => {
                        table.release_cursor_statement(plan, stmt);
                        return Ok(ffi::SQLITE_OK);
                    }
                },
                Plan::Rowid => {
                    let rowid = crate::affinity::read(args[0], "rowid")?;
                    match rowid {
                        persist_core::codec::ValueRef::Integer(v) => stmt.bind_i64(1, v)?,
                        _ => {
                            table.release_cursor_statement(plan, stmt);
                            return Ok(ffi::SQLITE_OK);
                        }
                    }
                }
            }
            state.stmt = Some(stmt);
            advance(state, table)?;
        }
        Ok(ffi::SQLITE_OK)
    })
}

/// Steps the cursor's statement and decodes the next row.
fn advance(state: &mut Cursor, table: &Table) -> Result<(), ExtError> {
    state.current = None;
    let Some(stmt) = state.stmt.as_mut() else {
        return Ok(());
    };
    if stmt.step()? == Step::Done {
        if let Some(stmt) = state.stmt.take() {
            table.release_cursor_statement(state.plan, stmt);
        }
        return Ok(());
    }
    let mut rowid = stmt.column_i64(0);
    let mut rid = stmt.column_bytes(1);
    if let Some(target) = &state.target {
        // A lookup reads every row in the record's slots: the one with the
        // record id is the match, and any other must be a record that
        // legitimately shares the slots, which check_slot confirms.
        while rid != target.as_bytes() {
            table.check_slot(rowid, rid)?;
            if stmt.step()? == Step::Done {
                if let Some(stmt) = state.stmt.take() {
                    table.release_cursor_statement(state.plan, stmt);
                }
                return Ok(());
            }
            rowid = stmt.column_i64(0);
            rid = stmt.column_bytes(1);
        }
    }
    // Taken per row, so that persist_close() stops a scan in progress.
    let store = table.store()?;
    let row = table.open_spans(&store, rowid, rid, stmt.column_bytes(2))?;
    let schema = &table.schema;
    let names = &row.spans.columns;
    let name_is = |index: usize, name: &str| {
        names
            .get(index)
            .and_then(|(range, _)| row.plaintext.get(range.clone()))
            == Some(name.as_bytes())
    };
    let in_order = names.len() >= schema.columns.len()
        && schema
            .columns
            .iter()
            .enumerate()
            .all(|(index, column)| name_is(index, &column.name));
    let positions = if in_order {
        (0..schema.columns.len()).map(Some).collect()
    } else {
        schema
            .columns
            .iter()
            .map(|column| (0..names.len()).find(|index| name_is(*index, &column.name)))
            .collect()
    };
    state.current = Some(CurrentRow {
        rowid,
        row,
        positions,
    });
    Ok(())
}

unsafe extern "C" fn x_next(cursor: *mut ffi::sqlite3_vtab_cursor) -> c_int {
    // SAFETY: `cursor` is live for this call.
    let report = unsafe { cursor_report(cursor) };
    guard("xNext", report, || {
        // SAFETY: as above.
        let (state, table) = unsafe { cursor_parts(cursor) };
        advance(state, table)?;
        Ok(ffi::SQLITE_OK)
    })
}

unsafe extern "C" fn x_eof(cursor: *mut ffi::sqlite3_vtab_cursor) -> c_int {
    let result = catch_unwind(|| {
        // SAFETY: `cursor` is live for this call.
        let (state, _) = unsafe { cursor_parts(cursor) };
        c_int::from(state.current.is_none())
    });
    result.unwrap_or(1)
}

unsafe extern "C" fn x_column(
    cursor: *mut ffi::sqlite3_vtab_cursor,
    ctx: *mut ffi::sqlite3_context,
    column: c_int,
) -> c_int {
    let report = |message: &str| {
        // SAFETY: `ctx` is valid for this call; SQLite copies the message.
        unsafe { ffi::sqlite3_result_error(ctx, message.as_ptr().cast(), message.len() as c_int) }
    };
    guard("xColumn", report, || {
        // SAFETY: `cursor` is live for this call.
        let (state, table) = unsafe { cursor_parts(cursor) };
        let value = match state.current.as_ref().and_then(|current| {
            let position = (*current.positions.get(usize::try_from(column).ok()?)?)?;
            let (_, span) = current.row.spans.columns.get(position)?;
            Some((span, &current.row.plaintext))
        }) {
            Some((span, plaintext)) => Some(span.value(plaintext).context_with(|| {
                format!(
                    "encrypted table {}: a column of the current row",
                    table.name()
                )
            })?),
            None => None,
        };
        // SAFETY: `ctx` is valid for this call; SQLite copies text and blobs
        // (SQLITE_TRANSIENT) before returning.
        unsafe { set_result(ctx, value) };
        Ok(ffi::SQLITE_OK)
    })
}

/// Sets a function or column result.
///
/// # Safety
///
/// `ctx` must be a valid `sqlite3_context` for the current call.
unsafe fn set_result(ctx: *mut ffi::sqlite3_context, value: Option<ValueRef<'_>>) {
    // SAFETY: guaranteed by the caller; buffers are copied by SQLite.
    unsafe {
        match value {
            None | Some(ValueRef::Null) => ffi::sqlite3_result_null(ctx),
            Some(ValueRef::Integer(v)) => ffi::sqlite3_result_int64(ctx, v),
            Some(ValueRef::Real(v)) => ffi::sqlite3_result_double(ctx, v),
            Some(ValueRef::Text(v)) => ffi::sqlite3_result_text64(
                ctx,
                v.as_ptr().cast(),
                v.len() as u64,
                ffi::SQLITE_TRANSIENT(),
                ffi::SQLITE_UTF8 as u8,
            ),
            Some(ValueRef::Blob(v)) => ffi::sqlite3_result_blob64(
                ctx,
                v.as_ptr().cast(),
                v.len() as u64,
                ffi::SQLITE_TRANSIENT(),
            ),
        }
    }
}

unsafe extern "C" fn x_rowid(
    cursor: *mut ffi::sqlite3_vtab_cursor,
    rowid: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: `cursor` is live for this call.
    let report = unsafe { cursor_report(cursor) };
    guard("xRowid", report, || {
        // SAFETY: `cursor` is live and `rowid` writable for this call.
        unsafe {
            let (state, _) = cursor_parts(cursor);
            let current = state
                .current
                .as_ref()
                .ok_or_else(|| ExtError::usage("xRowid called past the last row"))?;
            *rowid = current.rowid;
        }
        Ok(ffi::SQLITE_OK)
    })
}

unsafe extern "C" fn x_update(
    vtab: *mut ffi::sqlite3_vtab,
    argc: c_int,
    argv: *mut *mut ffi::sqlite3_value,
    rowid_out: *mut ffi::sqlite3_int64,
) -> c_int {
    // SAFETY: `vtab` is live for this call.
    let report = |message: &str| unsafe { set_vtab_error(vtab, message) };
    guard("xUpdate", report, || {
        // SAFETY: `vtab` is live, argv holds argc values and rowid_out is
        // writable for this call.
        unsafe {
            let args = std::slice::from_raw_parts(argv, usize::try_from(argc).unwrap_or(0));
            if args.is_empty() {
                return Err(ExtError::usage("xUpdate received no arguments"));
            }
            let table = table(vtab);
            if args.len() > 1 && args.len() != table.schema.columns.len() + 2 {
                return Err(ExtError::usage(
                    "xUpdate received the wrong number of columns",
                ));
            }
            let rowid = table.update(args)?;
            if args.len() > 1 && ffi::sqlite3_value_type(args[0]) == ffi::SQLITE_NULL {
                *rowid_out = rowid;
            }
        }
        Ok(ffi::SQLITE_OK)
    })
}
