//! Encrypted tables: the foreign data wrapper `persist`.
//!
//! An encrypted table is a foreign table of server `persist`:
//!
//! ```sql
//! CREATE FOREIGN TABLE customer (customer_id integer NOT NULL, name text)
//!     SERVER persist OPTIONS (primary_key 'customer_id');
//! ```
//!
//! Its rows live in a heap table `persist_rows.r_<16 hex digits>` of
//! `(rid bytea PRIMARY KEY, env bytea NOT NULL)`, one row per record: the blind
//! record id ([`persist_core::Cipher::record_id`] over the primary key) and
//! the whole row sealed with the row codec, as the SQLite extension's
//! encrypted tables seal it. The event trigger in [`ddl`] creates that table
//! when the foreign table is created and records its name, the table's
//! logical name and the store id as options of the foreign table, so a
//! `pg_dump` of both restores the same ciphertext.
//!
//! | module | what it owns |
//! |---|---|
//! | [`options`] | the options of tables and columns, and the validator |
//! | [`table`] | a table's definition, read from the catalogs |
//! | [`values`] | Postgres datums to row codec values and back |
//! | [`rows`] | sealing and opening rows with the session's store |
//! | [`spi`] | every statement on the rows table, run as the table's owner |
//! | [`plan`] | the planner callbacks: scans, primary key lookups, locking |
//! | [`scan`] | the executor's scan callbacks |
//! | [`modify`] | INSERT, UPDATE, DELETE and COPY FROM |
//! | [`ddl`] | the event trigger that creates and links rows tables |
//!
//! The design follows postgres_fdw (PostgreSQL 15): quals stay in the scan's
//! qual list and Postgres evaluates them on the decrypted rows; a primary
//! key equality becomes a lookup of the rows table by blind id; the backing
//! row's `ctid` identifies the row to update or delete.

pub mod ddl;
pub mod modify;
pub mod options;
pub mod plan;
pub mod rows;
pub mod scan;
pub mod spi;
pub mod table;
pub mod values;

use pgrx::pg_sys;

use crate::error::PgError;

/// The schema of the rows tables, created by the extension script.
pub const ROWS_SCHEMA: &str = "persist_rows";

/// Declares the C function info record that Postgres looks up with `dlsym`
/// before it calls a function written in C.
macro_rules! function_info_v1 {
    ($info:ident) => {
        #[unsafe(no_mangle)]
        #[doc(hidden)]
        pub extern "C" fn $info() -> &'static pg_sys::Pg_finfo_record {
            const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1_API
        }
    };
}

function_info_v1!(pg_finfo_persist_fdw_handler);
function_info_v1!(pg_finfo_persist_fdw_validator);
function_info_v1!(pg_finfo_persist_fdw_ddl_end);

// The schema persist_rows is part of the extension, so DROP EXTENSION drops it,
// but the rows tables in it are not: pg_dump dumps them with their
// ciphertext. PUBLIC gets USAGE on the schema only, so a role reaches a rows
// table only through privileges on that table, which only its owner has.
pgrx::extension_sql!(
    r#"
CREATE SCHEMA persist_rows;
COMMENT ON SCHEMA persist_rows IS
    'Rows of Persist encrypted tables: blind record ids and envelopes only.';
GRANT USAGE ON SCHEMA persist_rows TO PUBLIC;

CREATE FUNCTION persist.fdw_handler() RETURNS fdw_handler
    LANGUAGE c STRICT AS 'MODULE_PATHNAME', 'persist_fdw_handler';
-- Not STRICT, as no function of the extension that takes arguments is: a
-- NULL option list means no options.
CREATE FUNCTION persist.fdw_validator(text[], oid) RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'persist_fdw_validator';
CREATE FOREIGN DATA WRAPPER persist
    HANDLER persist.fdw_handler VALIDATOR persist.fdw_validator;
CREATE SERVER persist FOREIGN DATA WRAPPER persist;
COMMENT ON SERVER persist IS
    'Persist encrypted tables: CREATE FOREIGN TABLE ... SERVER persist OPTIONS (primary_key ''id'')';

-- SECURITY DEFINER: the trigger creates rows tables in persist_rows, where
-- only the extension's owner may create tables, and gives them to the owner
-- of the foreign table.
CREATE FUNCTION persist.fdw_ddl_end() RETURNS event_trigger
    LANGUAGE c SECURITY DEFINER SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'persist_fdw_ddl_end';
REVOKE ALL ON FUNCTION persist.fdw_ddl_end() FROM PUBLIC;
CREATE EVENT TRIGGER persist_fdw_ddl_end ON ddl_command_end
    WHEN TAG IN ('CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE', 'CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION persist.fdw_ddl_end();
"#,
    name = "encrypted_tables",
    requires = ["metadata_tables"],
);

/// Returns the [`pg_sys::FdwRoutine`] of the wrapper `persist`.
///
/// # Safety
///
/// Postgres calls it through the function manager with a valid `fcinfo`.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn persist_fdw_handler(
    _fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: makeNode allocates a zeroed FdwRoutine in the current memory
    // context, which is what Postgres expects a handler to return.
    unsafe {
        let routine =
            pgrx::PgBox::<pg_sys::FdwRoutine>::alloc_node(pg_sys::NodeTag::T_FdwRoutine).into_pg();
        let r = &mut *routine;
        r.GetForeignRelSize = Some(plan::get_foreign_rel_size);
        r.GetForeignPaths = Some(plan::get_foreign_paths);
        r.GetForeignPlan = Some(plan::get_foreign_plan);
        r.ExplainForeignScan = Some(plan::explain_foreign_scan);
        r.BeginForeignScan = Some(scan::begin_foreign_scan);
        r.IterateForeignScan = Some(scan::iterate_foreign_scan);
        r.ReScanForeignScan = Some(scan::rescan_foreign_scan);
        r.EndForeignScan = Some(scan::end_foreign_scan);
        r.AddForeignUpdateTargets = Some(modify::add_foreign_update_targets);
        r.PlanForeignModify = Some(modify::plan_foreign_modify);
        r.BeginForeignModify = Some(modify::begin_foreign_modify);
        r.ExecForeignInsert = Some(modify::exec_foreign_insert);
        r.ExecForeignUpdate = Some(modify::exec_foreign_update);
        r.ExecForeignDelete = Some(modify::exec_foreign_delete);
        r.EndForeignModify = Some(modify::end_foreign_modify);
        r.BeginForeignInsert = Some(modify::begin_foreign_insert);
        r.EndForeignInsert = Some(modify::end_foreign_insert);
        r.IsForeignRelUpdatable = Some(modify::is_foreign_rel_updatable);
        r.ExecForeignTruncate = Some(modify::exec_foreign_truncate);
        pg_sys::Datum::from(routine)
    }
}

/// Checks the options of `CREATE` and `ALTER` on the wrapper, its servers,
/// user mappings, foreign tables and their columns.
///
/// # Safety
///
/// Postgres calls it through the function manager with two arguments: the
/// options as a `text[]` datum (0 for none) and the catalog's oid.
#[pgrx::pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn persist_fdw_validator(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: Postgres passes two arguments. A NULL or zero first argument
    // is no options; a NULL catalog reads as oid 0, which allows no options.
    let (options, catalog) = unsafe {
        let args = (*fcinfo).args.as_slice(2);
        let list = if args[0].isnull {
            std::ptr::null_mut()
        } else {
            pg_sys::untransformRelOptions(args[0].value)
        };
        let catalog = if args[1].isnull {
            pg_sys::Oid::INVALID
        } else {
            pg_sys::Oid::from(args[1].value.value() as u32)
        };
        (list, catalog)
    };
    // SAFETY: options is a List of DefElem built by untransformRelOptions.
    let options = unsafe { options::read_def_elems(options) };
    if let Err(error) = options::validate(&options, catalog) {
        error.report();
    }
    pg_sys::Datum::from(0)
}

/// Raises `result`'s error as a Postgres ERROR, or returns its value.
pub(crate) fn or_raise<T>(result: Result<T, PgError>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => error.report(),
    }
}

/// Raises a constraint error without CONTEXT lines. The context callbacks of
/// the running statement would quote data: COPY FROM adds the input line,
/// and PL/pgSQL adds the text of the statement with its constants.
pub(crate) fn raise_without_context(error: PgError) -> ! {
    // SAFETY: Postgres restores error_context_stack when it recovers from
    // the error, in PG_CATCH blocks and at the top level.
    unsafe { pg_sys::error_context_stack = std::ptr::null_mut() };
    error.report()
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;
