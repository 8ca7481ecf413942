//! INSERT, UPDATE, DELETE and COPY FROM on encrypted tables.
//!
//! The scan of an UPDATE or DELETE target locks the rows it returns
//! (`SELECT ... FOR UPDATE` on the rows table), and returns each row's ctid
//! in the rows table, which the planner carries to the modify callbacks as
//! the junk column `ctid`, as postgres_fdw does. Under READ COMMITTED a row
//! that another transaction updated is read in its new version once that
//! transaction commits, so concurrent updates of one row do not get lost.
//! Under REPEATABLE READ the lock raises a serialization failure.
//!
//! A statement changes each row once, as on a heap table: a row version that
//! the statement wrote itself, which a lookup repeated for another row of a
//! join may return, is skipped.
//!
//! Constraint errors use Postgres's SQLSTATEs and wording, but never quote
//! values: 23502 for a NULL in a NOT NULL or primary key column, and 23505
//! for a primary key that exists, unless the INSERT says `ON CONFLICT DO
//! NOTHING`. The rows table's own unique index never reports a violation,
//! because inserts use `ON CONFLICT (rid) DO NOTHING`.

use std::cell::RefCell;
use std::collections::HashSet;

use persist_core::codec::{Value, ValueRef};
use pgrx::{PgMemoryContexts, PgSqlErrorCode, pg_guard, pg_sys};

use super::rows::{self, with_table_store};
use super::scan;
use super::spi;
use super::table::TableDef;
use super::values::{self, with_text_form};
use super::{or_raise, raise_without_context};
use crate::error::PgError;

/// Name of the junk column that carries the rows table's ctid.
const CTID_COLUMN: &std::ffi::CStr = c"ctid";

/// The state of one result relation in one execution, owned by the
/// executor's query memory context.
struct ModifyState {
    table: TableDef,
    /// Position of the `ctid` junk column in the subplan's output, for
    /// UPDATE and DELETE.
    ctid_attno: pg_sys::AttrNumber,
    /// Memory for one row, reset before each row.
    row_context: pg_sys::MemoryContext,
    /// Whether the INSERT has `ON CONFLICT DO NOTHING`.
    skip_conflicts: bool,
    /// The rows table's row versions this statement wrote, as (block,
    /// offset) of their ctids.
    // NOTE: the set grows by one entry per written row for the life of the
    // statement, an estimated 16 to 32 bytes each, also where no row can be
    // reached twice.
    written: RefCell<HashSet<(u32, u16)>>,
}

impl ModifyState {
    fn note_written(&self, ctid: &pg_sys::ItemPointerData) {
        self.written.borrow_mut().insert(ctid_key(ctid));
    }

    fn was_written(&self, ctid: &pg_sys::ItemPointerData) -> bool {
        self.written.borrow().contains(&ctid_key(ctid))
    }
}

fn ctid_key(ctid: &pg_sys::ItemPointerData) -> (u32, u16) {
    let block = (u32::from(ctid.ip_blkid.bi_hi) << 16) | u32::from(ctid.ip_blkid.bi_lo);
    (block, ctid.ip_posid)
}

/// Asks the planner for the rows table's ctid of each row to change.
#[pg_guard]
pub unsafe extern "C-unwind" fn add_foreign_update_targets(
    root: *mut pg_sys::PlannerInfo,
    rtindex: pg_sys::Index,
    _target_rte: *mut pg_sys::RangeTblEntry,
    _target_relation: pg_sys::Relation,
) {
    // SAFETY: the planner's structures are valid; makeVar allocates in its
    // memory context.
    unsafe {
        let var = pg_sys::makeVar(
            rtindex as i32,
            pg_sys::SelfItemPointerAttributeNumber as i16,
            pg_sys::TIDOID,
            -1,
            pg_sys::Oid::INVALID,
            0,
        );
        pg_sys::add_row_identity_var(root, var, rtindex, CTID_COLUMN.as_ptr());
    }
}

/// Plans nothing: every write encodes the whole row.
#[pg_guard]
pub unsafe extern "C-unwind" fn plan_foreign_modify(
    _root: *mut pg_sys::PlannerInfo,
    _plan: *mut pg_sys::ModifyTable,
    _result_relation: pg_sys::Index,
    _subplan_index: std::ffi::c_int,
) -> *mut pg_sys::List {
    std::ptr::null_mut()
}

/// Sets up the state of a result relation of INSERT, UPDATE or DELETE.
#[pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_modify(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    _fdw_private: *mut pg_sys::List,
    _subplan_index: std::ffi::c_int,
    eflags: std::ffi::c_int,
) {
    if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0 {
        return;
    }
    // SAFETY: the executor passes valid states of this execution.
    unsafe {
        let mut ctid_attno = 0;
        if matches!(
            (*mtstate).operation,
            pg_sys::CmdType::CMD_UPDATE | pg_sys::CmdType::CMD_DELETE
        ) {
            let subplan = (*(*mtstate).ps.lefttree).plan;
            ctid_attno =
                pg_sys::ExecFindJunkAttributeInTlist((*subplan).targetlist, CTID_COLUMN.as_ptr());
            if ctid_attno <= 0 {
                or_raise::<()>(Err(PgError::new(
                    PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                    "the plan of an UPDATE or DELETE on an encrypted table has no ctid column",
                )));
            }
        }
        install_state(mtstate, rinfo, ctid_attno);
    }
}

/// Creates the state and stores it in `rinfo`.
unsafe fn install_state(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
    ctid_attno: pg_sys::AttrNumber,
) {
    // SAFETY: valid executor states, as in the callers.
    unsafe {
        let relation = (*rinfo).ri_RelationDesc;
        let table = or_raise(TableDef::load((*relation).rd_id));
        or_raise(with_table_store(&table, |_, _| Ok(())));
        let estate = (*mtstate).ps.state;
        // COPY FROM runs without a ModifyTable plan.
        let plan = (*mtstate).ps.plan as *mut pg_sys::ModifyTable;
        let skip_conflicts = !plan.is_null()
            && (*plan).onConflictAction == pg_sys::OnConflictAction::ONCONFLICT_NOTHING;
        let row_context = pg_sys::AllocSetContextCreateInternal(
            (*estate).es_query_cxt,
            c"persist modify row".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        let state = ModifyState {
            table,
            ctid_attno,
            row_context,
            skip_conflicts,
            written: RefCell::new(HashSet::new()),
        };
        let state = PgMemoryContexts::For((*estate).es_query_cxt).leak_and_drop_on_delete(state);
        (*rinfo).ri_FdwState = state.cast();
    }
}

/// Sets up a result relation that receives rows from COPY FROM or from
/// tuple routing into a partition.
#[pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_insert(
    mtstate: *mut pg_sys::ModifyTableState,
    rinfo: *mut pg_sys::ResultRelInfo,
) {
    // SAFETY: valid executor states. A partition that is also an UPDATE
    // target keeps the state of begin_foreign_modify, which inserts too.
    unsafe {
        if (*rinfo).ri_FdwState.is_null() {
            install_state(mtstate, rinfo, 0);
        }
    }
}

/// Nothing to do: the state is dropped with the query's memory context.
#[pg_guard]
pub unsafe extern "C-unwind" fn end_foreign_modify(
    _estate: *mut pg_sys::EState,
    _rinfo: *mut pg_sys::ResultRelInfo,
) {
}

/// Nothing to do, as for [`end_foreign_modify`].
#[pg_guard]
pub unsafe extern "C-unwind" fn end_foreign_insert(
    _estate: *mut pg_sys::EState,
    _rinfo: *mut pg_sys::ResultRelInfo,
) {
}

/// Encrypted tables accept INSERT, UPDATE and DELETE.
#[pg_guard]
pub unsafe extern "C-unwind" fn is_foreign_rel_updatable(
    _rel: pg_sys::Relation,
) -> std::ffi::c_int {
    (1 << pg_sys::CmdType::CMD_INSERT)
        | (1 << pg_sys::CmdType::CMD_UPDATE)
        | (1 << pg_sys::CmdType::CMD_DELETE)
}

/// Runs `f` with the state of `rinfo` in its row memory context.
unsafe fn with_state<T>(
    rinfo: *mut pg_sys::ResultRelInfo,
    f: impl FnOnce(&ModifyState) -> Result<T, PgError>,
) -> T {
    // SAFETY: ri_FdwState was set by begin_foreign_modify or
    // begin_foreign_insert for this execution.
    unsafe {
        let state = &*((*rinfo).ri_FdwState as *const ModifyState);
        pg_sys::MemoryContextReset(state.row_context);
        match PgMemoryContexts::For(state.row_context).switch_to(|_| f(state)) {
            Ok(value) => value,
            Err(error)
                if matches!(
                    error.code(),
                    PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION
                        | PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION
                        | PgSqlErrorCode::ERRCODE_CHECK_VIOLATION
                ) =>
            {
                raise_without_context(error)
            }
            Err(error) => error.report(),
        }
    }
}

/// A row to write: its blind id and envelope.
struct Sealed {
    rid: persist_core::RecordId,
    env: Vec<u8>,
}

/// Checks the new row in `slot` and seals it.
///
/// # Safety
///
/// `slot` contains a row of the table.
unsafe fn seal_slot(
    table: &TableDef,
    slot: *mut pg_sys::TupleTableSlot,
) -> Result<Sealed, PgError> {
    // SAFETY: guaranteed by the caller; slot_getallattrs fills the arrays.
    let values: Vec<Option<Value>> = with_text_form(table.has_text_form_columns(), || unsafe {
        pg_sys::slot_getallattrs(slot);
        let datums = (*slot).tts_values;
        let nulls = (*slot).tts_isnull;
        let mut values = Vec::with_capacity(table.columns.len());
        for (index, column) in table.columns.iter().enumerate() {
            if column.dropped || *nulls.add(index) {
                values.push(None);
                continue;
            }
            let what = || {
                format!(
                    "encrypted table \"{}\", column \"{}\"",
                    table.name, column.name
                )
            };
            values.push(Some(values::datum_to_value(
                *datums.add(index),
                column.type_oid,
                &what,
            )?));
        }
        Ok(values)
    })?;

    for (column, value) in table.columns.iter().zip(&values) {
        if column.not_null && !column.dropped && value.is_none() {
            return Err(PgError::new(
                PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
                format!(
                    "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                    column.name, table.name
                ),
            ));
        }
    }

    let key: Vec<Value> = table
        .primary_key
        .iter()
        .map(|index| values[*index].clone().unwrap_or(Value::Null))
        .collect();
    let columns: Vec<(&str, ValueRef<'_>)> = table
        .columns
        .iter()
        .zip(&values)
        .filter(|(column, _)| !column.dropped)
        .map(|(column, value)| {
            let value = value.as_ref().map_or(ValueRef::Null, Value::as_ref);
            (column.stored_name.as_str(), value)
        })
        .collect();
    with_table_store(table, |store, counters| {
        let rid = rows::record_id(store, table, &key);
        let env = rows::seal_row(store, counters, table, &rid, &columns)?;
        Ok(Sealed { rid, env })
    })
}

/// Checks the partition constraint of a new row of a foreign-table
/// partition, which Postgres leaves to the wrapper. Postgres cannot move a
/// row out of a foreign-table partition, so an UPDATE that changes the
/// partition key fails here instead of storing a row in the wrong partition.
///
/// # Safety
///
/// The arguments are those of the running ExecForeignInsert or
/// ExecForeignUpdate call.
unsafe fn check_partition(
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    table: &TableDef,
    updating: bool,
) -> Result<(), PgError> {
    // SAFETY: guaranteed by the caller. ExecPartitionCheck without
    // emitError returns false instead of raising an error whose DETAIL
    // would show the row.
    unsafe {
        let relation = (*rinfo).ri_RelationDesc;
        if !(*(*relation).rd_rel).relispartition
            || pg_sys::ExecPartitionCheck(rinfo, slot, estate, false)
        {
            return Ok(());
        }
    }
    let error = PgError::new(
        PgSqlErrorCode::ERRCODE_CHECK_VIOLATION,
        format!(
            "new row for relation \"{}\" violates partition constraint",
            table.name
        ),
    );
    if updating {
        return Err(error.with_hint(
            "Postgres cannot move a row out of a foreign-table partition; delete the row and \
             insert it again through the partitioned table.",
        ));
    }
    Err(error)
}

fn duplicate_key(table: &TableDef) -> PgError {
    PgError::new(
        PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
        format!(
            "duplicate key value violates unique constraint \"{}_pkey\"",
            table.name
        ),
    )
    .with_hint(format!(
        "The encrypted table already has a row with this primary key ({}); the key is not \
         shown because it is encrypted.",
        table.key_column_names()
    ))
}

/// Returns the rows table's ctid from the junk column of `plan_slot`.
unsafe fn junk_ctid(
    state: &ModifyState,
    plan_slot: *mut pg_sys::TupleTableSlot,
) -> Result<pg_sys::ItemPointerData, PgError> {
    let mut is_null = false;
    // SAFETY: ctid_attno is the junk column of this plan, a tid.
    unsafe {
        let datum = pg_sys::ExecGetJunkAttribute(plan_slot, state.ctid_attno, &mut is_null);
        if is_null {
            return Err(PgError::new(
                PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                format!(
                    "encrypted table \"{}\": the row to change has no ctid",
                    state.table.name
                ),
            ));
        }
        Ok(*(datum.cast_mut_ptr::<pg_sys::ItemPointerData>()))
    }
}

/// Inserts the row in `slot`.
#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_insert(
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    _plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: the executor passes the new row in `slot`.
    unsafe {
        with_state(rinfo, |state| {
            check_partition(estate, rinfo, slot, &state.table, false)?;
            let sealed = seal_slot(&state.table, slot)?;
            match spi::insert(&state.table, &sealed.rid, &sealed.env)? {
                Some(ctid) => {
                    state.note_written(&ctid);
                    Ok(slot)
                }
                None if state.skip_conflicts => Ok(std::ptr::null_mut()),
                None => Err(duplicate_key(&state.table)),
            }
        })
    }
}

/// Replaces the row that the scan returned with the complete new row in
/// `slot`; a new primary key moves the row to its new blind id.
#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_update(
    estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: the executor passes the new row in `slot` and the junk
    // columns in `plan_slot`.
    unsafe {
        with_state(rinfo, |state| {
            let table = &state.table;
            let ctid = junk_ctid(state, plan_slot)?;
            if state.was_written(&ctid) {
                return Ok(std::ptr::null_mut());
            }
            check_partition(estate, rinfo, slot, table, true)?;
            let sealed = seal_slot(table, slot)?;
            if let Some(new_ctid) = spi::update_envelope(table, &ctid, &sealed.rid, &sealed.env)? {
                state.note_written(&new_ctid);
                return Ok(slot);
            }
            // Either the primary key changed, or the row is no longer visible
            // to this statement. Deleting first makes the old key free for a
            // later row of the same statement, as in a heap table.
            if spi::delete(table, &ctid)?.is_none() {
                return Ok(std::ptr::null_mut());
            }
            let Some(new_ctid) = spi::insert(table, &sealed.rid, &sealed.env)? else {
                return Err(duplicate_key(table));
            };
            state.note_written(&new_ctid);
            Ok(slot)
        })
    }
}

/// Deletes the row that the scan returned; for RETURNING, fills `slot` with
/// the deleted row.
#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_delete(
    _estate: *mut pg_sys::EState,
    rinfo: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    plan_slot: *mut pg_sys::TupleTableSlot,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: the executor passes the junk columns in `plan_slot` and a slot
    // of the table's row type for RETURNING.
    unsafe {
        with_state(rinfo, |state| {
            let table = &state.table;
            let ctid = junk_ctid(state, plan_slot)?;
            if state.was_written(&ctid) {
                return Ok(std::ptr::null_mut());
            }
            let Some(deleted) = spi::delete(table, &ctid)? else {
                return Ok(std::ptr::null_mut());
            };
            if !(*rinfo).ri_projectReturning.is_null() {
                let row = with_table_store(table, |store, counters| {
                    rows::open_row(store, counters, table, &deleted.rid, &deleted.env)
                })?;
                let tupdesc = (*(*rinfo).ri_RelationDesc).rd_att;
                let tuple = with_text_form(table.has_text_form_columns(), || {
                    scan::form_tuple(table, tupdesc, &row, &ctid)
                })?;
                pg_sys::ExecForceStoreHeapTuple(tuple, slot, false);
            }
            Ok(slot)
        })
    }
}

/// Empties the rows tables of `TRUNCATE`d encrypted tables.
#[pg_guard]
pub unsafe extern "C-unwind" fn exec_foreign_truncate(
    rels: *mut pg_sys::List,
    _behavior: pg_sys::DropBehavior::Type,
    _restart_seqs: bool,
) {
    // SAFETY: rels is the List of the opened and locked relations to empty.
    let relations = unsafe { pgrx::PgList::<pg_sys::RelationData>::from_pg(rels) };
    for relation in relations.iter_ptr() {
        // SAFETY: each element is an open relation.
        let table = or_raise(TableDef::load(unsafe { (*relation).rd_id }));
        or_raise(spi::truncate(&table));
    }
}
