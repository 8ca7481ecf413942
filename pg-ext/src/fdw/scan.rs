//! The executor's scan: rows come from the rows table through SPI, are
//! opened with the session's store, and are returned as heap tuples whose
//! `t_self` is the rows table's ctid.
//!
//! A full scan reads through a cursor, [`FETCH_ROWS`] rows per statement, so
//! memory does not grow with the table: each batch of tuples lives in a
//! memory context that is reset before the next. A lookup evaluates the
//! primary key expressions, computes the blind ids and reads those rows by
//! the rows table's primary key index.

use persist_core::RecordId;
use persist_core::codec::{Row, Value};
use pgrx::{PgMemoryContexts, pg_guard, pg_sys};

use super::or_raise;
use super::plan::PlanSettings;
use super::rows::{self, with_table_store};
use super::spi::{self, RowLock};
use super::table::TableDef;
use super::values::{self, with_text_form};
use crate::error::PgError;

/// Rows fetched from the cursor of a full scan per statement.
pub const FETCH_ROWS: usize = 256;

/// The state of one execution of a scan, owned by the executor's query
/// memory context, which drops it.
struct ScanState {
    table: TableDef,
    lookup: bool,
    lock: RowLock,
    /// The primary key expressions, initialized for this execution.
    key_states: Vec<*mut pg_sys::ExprState>,
    key_arrays: Vec<bool>,
    /// The type of each key value (the element type for an array).
    key_types: Vec<pg_sys::Oid>,
    cursor: Option<String>,
    tuples: Vec<pg_sys::HeapTuple>,
    next: usize,
    exhausted: bool,
    /// Holds the current batch of tuples.
    batch_context: pg_sys::MemoryContext,
    tupdesc: pg_sys::TupleDesc,
}

/// Prepares a scan: reads the table, checks the session's store and
/// initializes the key expressions.
#[pg_guard]
pub unsafe extern "C-unwind" fn begin_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
    eflags: std::ffi::c_int,
) {
    if eflags & pg_sys::EXEC_FLAG_EXPLAIN_ONLY as i32 != 0 {
        return;
    }
    // SAFETY: node is the state of a ForeignScan made by get_foreign_plan,
    // inside a running executor.
    unsafe {
        let plan = (*node).ss.ps.plan as *mut pg_sys::ForeignScan;
        let relation = (*node).ss.ss_currentRelation;
        let table = or_raise(TableDef::load((*relation).rd_id));
        or_raise(with_table_store(&table, |_, _| Ok(())));
        let settings = PlanSettings::read(plan);

        let key_list = pgrx::PgList::<pg_sys::Node>::from_pg((*plan).fdw_exprs);
        let key_types = key_list
            .iter_ptr()
            .zip(&settings.key_arrays)
            .map(|(expr, is_array)| {
                let type_oid = pg_sys::exprType(expr);
                if *is_array {
                    pg_sys::get_element_type(type_oid)
                } else {
                    type_oid
                }
            })
            .collect();
        let states = pg_sys::ExecInitExprList((*plan).fdw_exprs, node.cast());
        let key_states = pgrx::PgList::<pg_sys::ExprState>::from_pg(states)
            .iter_ptr()
            .collect();

        let estate = (*node).ss.ps.state;
        let batch_context = pg_sys::AllocSetContextCreateInternal(
            (*estate).es_query_cxt,
            c"persist scan batch".as_ptr(),
            pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
            pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
        );
        let state = ScanState {
            table,
            lookup: settings.lookup,
            lock: settings.lock,
            key_states,
            key_arrays: settings.key_arrays,
            key_types,
            cursor: None,
            tuples: Vec::new(),
            next: 0,
            exhausted: false,
            batch_context,
            tupdesc: (*relation).rd_att,
        };
        let state = PgMemoryContexts::For((*estate).es_query_cxt).leak_and_drop_on_delete(state);
        (*node).fdw_state = state.cast();
    }
}

/// Returns the next row, or an empty slot at the end.
#[pg_guard]
pub unsafe extern "C-unwind" fn iterate_foreign_scan(
    node: *mut pg_sys::ForeignScanState,
) -> *mut pg_sys::TupleTableSlot {
    // SAFETY: fdw_state was set by begin_foreign_scan for this execution.
    unsafe {
        let state = &mut *((*node).fdw_state as *mut ScanState);
        let slot = (*node).ss.ss_ScanTupleSlot;
        loop {
            if let Some(tuple) = state.tuples.get(state.next) {
                state.next += 1;
                pg_sys::ExecStoreHeapTuple(*tuple, slot, false);
                return slot;
            }
            if state.exhausted {
                pg_sys::ExecClearTuple(slot);
                return slot;
            }
            or_raise(state.fill_batch((*node).ss.ps.ps_ExprContext));
        }
    }
}

/// Starts the scan over, with new parameter values for a lookup.
#[pg_guard]
pub unsafe extern "C-unwind" fn rescan_foreign_scan(node: *mut pg_sys::ForeignScanState) {
    // SAFETY: fdw_state was set by begin_foreign_scan for this execution.
    unsafe {
        let state = &mut *((*node).fdw_state as *mut ScanState);
        state.close_cursor();
        state.tuples.clear();
        state.next = 0;
        state.exhausted = false;
    }
}

/// Closes the cursor; the state is dropped with the query's memory context.
#[pg_guard]
pub unsafe extern "C-unwind" fn end_foreign_scan(node: *mut pg_sys::ForeignScanState) {
    // SAFETY: fdw_state is null for EXPLAIN without ANALYZE, else the state
    // set by begin_foreign_scan.
    unsafe {
        let state = (*node).fdw_state as *mut ScanState;
        if let Some(state) = state.as_mut() {
            state.close_cursor();
            state.tuples.clear();
        }
    }
}

impl ScanState {
    fn close_cursor(&mut self) {
        if let Some(name) = self.cursor.take() {
            spi::close_cursor(&name);
        }
    }

    /// Fetches, opens and converts the next batch of rows.
    unsafe fn fill_batch(&mut self, econtext: *mut pg_sys::ExprContext) -> Result<(), PgError> {
        self.tuples.clear();
        self.next = 0;
        // SAFETY: the batch context belongs to this execution, and no slot
        // refers to its tuples any more: the executor consumed the last one.
        unsafe { pg_sys::MemoryContextReset(self.batch_context) };

        let fetched = if self.lookup {
            self.exhausted = true;
            // SAFETY: econtext is the scan's expression context.
            let rids = unsafe { self.key_record_ids(econtext)? };
            spi::lookup(&self.table, &rids, self.lock)?
        } else {
            let name = match &self.cursor {
                Some(name) => name.clone(),
                None => {
                    let name = spi::open_cursor(&self.table, self.lock)?;
                    self.cursor = Some(name.clone());
                    name
                }
            };
            let rows = spi::fetch(&self.table, &name, FETCH_ROWS)?;
            if rows.len() < FETCH_ROWS {
                self.exhausted = true;
                self.close_cursor();
            }
            rows
        };
        if fetched.is_empty() {
            return Ok(());
        }

        let table = &self.table;
        let opened: Vec<(pg_sys::ItemPointerData, Row)> =
            with_table_store(table, |store, counters| {
                fetched
                    .iter()
                    .map(|row| {
                        let opened = rows::open_row(store, counters, table, &row.rid, &row.env)?;
                        Ok((row.ctid, opened))
                    })
                    .collect()
            })?;

        let tupdesc = self.tupdesc;
        let tuples = with_text_form(table.has_text_form_columns(), || {
            // SAFETY: the tuples are formed in the batch context, which
            // outlives them until the next batch.
            unsafe {
                PgMemoryContexts::For(self.batch_context).switch_to(|_| {
                    opened
                        .iter()
                        .map(|(ctid, row)| form_tuple(table, tupdesc, row, ctid))
                        .collect::<Result<Vec<_>, PgError>>()
                })
            }
        })?;
        self.tuples = tuples;
        Ok(())
    }

    /// Evaluates the primary key expressions and returns the blind ids of
    /// every combination of their values. A NULL value matches nothing.
    unsafe fn key_record_ids(
        &self,
        econtext: *mut pg_sys::ExprContext,
    ) -> Result<Vec<RecordId>, PgError> {
        // The expressions run with the session's settings; only their values
        // are converted with the fixed text-form settings.
        let mut evaluated = Vec::with_capacity(self.key_states.len());
        for state in &self.key_states {
            let mut is_null = false;
            // SAFETY: the state was initialized for this plan node, and the
            // expression context is the node's.
            let datum =
                unsafe { pg_sys::ExecEvalExprSwitchContext(*state, econtext, &mut is_null) };
            if is_null {
                return Ok(Vec::new());
            }
            evaluated.push(datum);
        }

        let needs_text_form = self
            .key_types
            .iter()
            .any(|type_oid| values::ValueClass::of(*type_oid) == values::ValueClass::Other);
        let what = || {
            format!(
                "encrypted table \"{}\": a primary key value",
                self.table.name
            )
        };
        let per_column = with_text_form(needs_text_form, || {
            let mut per_column: Vec<Vec<Value>> = Vec::with_capacity(evaluated.len());
            for ((datum, is_array), type_oid) in
                evaluated.iter().zip(&self.key_arrays).zip(&self.key_types)
            {
                let mut column_values = Vec::new();
                if *is_array {
                    // SAFETY: the datum is an array of `type_oid` elements.
                    for element in unsafe { array_elements(*datum, *type_oid) } {
                        // SAFETY: an element of that type.
                        column_values
                            .push(unsafe { values::datum_to_value(element, *type_oid, &what)? });
                    }
                } else {
                    // SAFETY: a value of the key expression's type.
                    column_values
                        .push(unsafe { values::datum_to_value(*datum, *type_oid, &what)? });
                }
                if column_values.is_empty() {
                    return Ok(Vec::new());
                }
                per_column.push(column_values);
            }
            Ok(per_column)
        })?;
        if per_column.is_empty() {
            return Ok(Vec::new());
        }

        let mut keys: Vec<Vec<Value>> = vec![Vec::new()];
        for column_values in &per_column {
            keys = keys
                .iter()
                .flat_map(|prefix| {
                    column_values.iter().map(move |value| {
                        let mut key = prefix.clone();
                        key.push(value.clone());
                        key
                    })
                })
                .collect();
        }
        let mut rids = with_table_store(&self.table, |store, _| {
            Ok(keys
                .iter()
                .map(|key| rows::record_id(store, &self.table, key))
                .collect::<Vec<_>>())
        })?;
        rids.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        rids.dedup();
        Ok(rids)
    }
}

/// Returns the non-null elements of array datum `datum`.
///
/// # Safety
///
/// `datum` must be an array of `element_type`.
unsafe fn array_elements(datum: pg_sys::Datum, element_type: pg_sys::Oid) -> Vec<pg_sys::Datum> {
    // SAFETY: guaranteed by the caller; deconstruct_array allocates its
    // output in the current memory context.
    unsafe {
        let array = pg_sys::pg_detoast_datum(datum.cast_mut_ptr()) as *mut pg_sys::ArrayType;
        let mut length = 0i16;
        let mut by_value = false;
        let mut align = 0 as std::ffi::c_char;
        pg_sys::get_typlenbyvalalign(element_type, &mut length, &mut by_value, &mut align);
        let mut elements: *mut pg_sys::Datum = std::ptr::null_mut();
        let mut nulls: *mut bool = std::ptr::null_mut();
        let mut count = 0;
        pg_sys::deconstruct_array(
            array,
            element_type,
            i32::from(length),
            by_value,
            align,
            &mut elements,
            &mut nulls,
            &mut count,
        );
        (0..count as usize)
            .filter(|index| !*nulls.add(*index))
            .map(|index| *elements.add(index))
            .collect()
    }
}

/// Forms the heap tuple of decoded row `row` in the current memory context.
///
/// # Safety
///
/// Runs inside [`with_text_form`] when the table has text-form columns;
/// `tupdesc` is the table's descriptor.
///
/// # Errors
///
/// The errors of [`values::value_to_datum`] for a stored value that does not
/// convert to its column's type.
pub unsafe fn form_tuple(
    table: &TableDef,
    tupdesc: pg_sys::TupleDesc,
    row: &Row,
    ctid: &pg_sys::ItemPointerData,
) -> Result<pg_sys::HeapTuple, PgError> {
    let (mut datums, mut nulls) = row_datums(table, row)?;
    // SAFETY: datums and nulls have one entry per attribute of tupdesc.
    unsafe {
        let tuple = pg_sys::heap_form_tuple(tupdesc, datums.as_mut_ptr(), nulls.as_mut_ptr());
        (*tuple).t_self = *ctid;
        (*tuple).t_tableOid = table.relid;
        Ok(tuple)
    }
}

/// Converts decoded row `row` to one datum per attribute. A column the row
/// does not have, such as one added after the row was written, is NULL.
fn row_datums(table: &TableDef, row: &Row) -> Result<(Vec<pg_sys::Datum>, Vec<bool>), PgError> {
    let mut datums = Vec::with_capacity(table.columns.len());
    let mut nulls = Vec::with_capacity(table.columns.len());
    for column in &table.columns {
        let value = if column.dropped {
            None
        } else {
            row.get(&column.stored_name)
        };
        let datum = match value {
            // SAFETY: the caller runs inside with_text_form where needed.
            Some(value) => unsafe { values::value_to_datum(value, column, &table.name)? },
            None => None,
        };
        datums.push(datum.unwrap_or(pg_sys::Datum::from(0)));
        nulls.push(datum.is_none());
    }
    Ok((datums, nulls))
}
