//! The event trigger `persist_fdw_ddl_end`, which runs at the end of
//! `CREATE FOREIGN TABLE`, `ALTER FOREIGN TABLE`, `CREATE TABLE` and
//! `ALTER TABLE`:
//!
//! - A new encrypted table gets its rows table `persist_rows.r_<random>`,
//!   owned by the table's owner, and the options `logical_name`,
//!   `rows_table` and `store_id`, plus `column_name` on every column. The
//!   session must have a store open, whose id the table records.
//! - An encrypted table created with those options (as pg_dump output
//!   creates it) gets nothing new: its rows table comes from the same dump.
//! - Each rows table depends on its encrypted table in `pg_depend`
//!   (`DEPENDENCY_AUTO`), so `DROP FOREIGN TABLE` drops the rows too. On a
//!   restore the dependency is recorded by whichever of the two tables is
//!   created (or given its owner) last, and only when both have the same
//!   owner, so no role can attach another role's rows table to a table it
//!   may drop.
//! - `ALTER FOREIGN TABLE ... ADD COLUMN` gives new columns their
//!   `column_name` option (name and attribute number, so a new column never
//!   reads the values of a dropped one), and `ALTER FOREIGN TABLE ... OWNER
//!   TO` hands the rows table to the new owner.
//!
//! The statements that the trigger runs fire it again; a flag makes those
//! nested calls return at once.

use std::cell::Cell;

use persist_core::StoreId;
use pgrx::prelude::*;
use pgrx::spi::{quote_identifier, quote_literal};
use pgrx::{PgSqlErrorCode, pg_sys};

use super::options::{self, COLUMN_NAME, LOGICAL_NAME, PRIMARY_KEY, ROWS_TABLE, STORE_ID};
use super::{ROWS_SCHEMA, or_raise, plan};
use crate::error::PgError;
use crate::session;

thread_local! {
    static RUNNING: Cell<bool> = const { Cell::new(false) };
}

/// Clears the recursion flag when dropped, also when an error unwinds.
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.with(|running| running.set(false));
    }
}

/// The event trigger function.
///
/// # Safety
///
/// Postgres calls it as an event trigger through the function manager.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn persist_fdw_ddl_end(
    _fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    if RUNNING.with(|running| running.replace(true)) {
        return pg_sys::Datum::from(0);
    }
    let _running = Running;
    or_raise(run());
    pg_sys::Datum::from(0)
}

fn spi_failed(what: &str, error: pgrx::spi::SpiError) -> PgError {
    PgError::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("persist_fdw_ddl_end: {what} failed: {error}"),
    )
}

/// The changes of an `ALTER FOREIGN TABLE`, read from its subcommands.
#[derive(Clone, Default)]
struct AlterFlags {
    /// The names of the columns that the command added.
    added_columns: Vec<String>,
    changed_owner: bool,
}

impl AlterFlags {
    /// Reads the subcommands of a collected `ALTER TABLE` command.
    ///
    /// # Safety
    ///
    /// `command` must be the `pg_ddl_command` of the running event trigger.
    unsafe fn of(command: pg_sys::Datum) -> Self {
        let mut flags = Self::default();
        // SAFETY: a pg_ddl_command datum is a pointer to the CollectedCommand
        // of the current event, valid while the trigger runs.
        unsafe {
            let command = command.cast_mut_ptr::<pg_sys::CollectedCommand>();
            if command.is_null() || (*command).type_ != pg_sys::CollectedCommandType::SCT_AlterTable
            {
                return flags;
            }
            let subcommands =
                pgrx::PgList::<pg_sys::CollectedATSubcmd>::from_pg((*command).d.alterTable.subcmds);
            for subcommand in subcommands.iter_ptr() {
                let node = (*subcommand).parsetree;
                if node.is_null() || (*node).type_ != pg_sys::NodeTag::T_AlterTableCmd {
                    continue;
                }
                let command = node as *mut pg_sys::AlterTableCmd;
                match (*command).subtype {
                    pg_sys::AlterTableType::AT_AddColumn
                    | pg_sys::AlterTableType::AT_AddColumnRecurse => {
                        let definition = (*command).def;
                        if !definition.is_null()
                            && (*definition).type_ == pg_sys::NodeTag::T_ColumnDef
                        {
                            let name = (*(definition as *mut pg_sys::ColumnDef)).colname;
                            if !name.is_null() {
                                flags.added_columns.push(
                                    std::ffi::CStr::from_ptr(name)
                                        .to_string_lossy()
                                        .into_owned(),
                                );
                            }
                        }
                    }
                    pg_sys::AlterTableType::AT_ChangeOwner => flags.changed_owner = true,
                    _ => {}
                }
            }
        }
        flags
    }
}

fn run() -> Result<(), PgError> {
    let mut commands: Vec<(pg_sys::Oid, String, AlterFlags)> = Vec::new();
    Spi::connect(|client| {
        let mut rows = client.select(
            "SELECT objid, command_tag, command \
             FROM pg_catalog.pg_event_trigger_ddl_commands() \
             WHERE classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
               AND objsubid OPERATOR(pg_catalog.=) 0",
            None,
            &[],
        )?;
        while let Some(row) = rows.next() {
            let (Some(oid), Some(tag)) = (row.get::<pg_sys::Oid>(1)?, row.get::<String>(2)?) else {
                continue;
            };
            // The pg_ddl_command type has no Rust conversion, so the raw
            // datum of the current row is read.
            let flags = match rows.get_datum_by_ordinal(3)? {
                // SAFETY: column 3 is the pg_ddl_command of this event.
                Some(command) if tag == "ALTER FOREIGN TABLE" => unsafe { AlterFlags::of(command) },
                _ => AlterFlags::default(),
            };
            match commands.iter_mut().find(|(known, _, _)| *known == oid) {
                Some((_, _, known)) => {
                    known.added_columns.extend(flags.added_columns);
                    known.changed_owner |= flags.changed_owner;
                }
                None => commands.push((oid, tag, flags)),
            }
        }
        Ok::<(), pgrx::spi::SpiError>(())
    })
    .map_err(|error| spi_failed("reading the DDL commands", error))?;

    for (relid, tag, flags) in commands {
        match tag.as_str() {
            "CREATE FOREIGN TABLE" if is_encrypted_table(relid)? => created_table(relid)?,
            "ALTER FOREIGN TABLE" if is_encrypted_table(relid)? => altered_table(relid, flags)?,
            "CREATE TABLE" | "ALTER TABLE" => rows_table_changed(relid)?,
            _ => {}
        }
    }
    Ok(())
}

/// Whether `relid` is a foreign table of a server of wrapper `persist`.
fn is_encrypted_table(relid: pg_sys::Oid) -> Result<bool, PgError> {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_foreign_table t \
           JOIN pg_catalog.pg_foreign_server s ON s.oid OPERATOR(pg_catalog.=) t.ftserver \
           JOIN pg_catalog.pg_foreign_data_wrapper w ON w.oid OPERATOR(pg_catalog.=) s.srvfdw \
           WHERE t.ftrelid OPERATOR(pg_catalog.=) $1 \
             AND w.fdwhandler OPERATOR(pg_catalog.=) 'persist.fdw_handler'::pg_catalog.regproc)",
        &[relid.into()],
    )
    .map(|found| found.unwrap_or(false))
    .map_err(|error| spi_failed("looking up the foreign table", error))
}

/// A live column: name, number, type, collation and `column_name` option.
struct ColumnInfo {
    name: String,
    attnum: i16,
    type_oid: pg_sys::Oid,
    collation: pg_sys::Oid,
    has_column_name: bool,
}

/// The catalog data of a foreign table that the trigger uses.
struct TableInfo {
    qualified: String,
    name: String,
    owner: pg_sys::Oid,
    options: Vec<(String, String)>,
    columns: Vec<ColumnInfo>,
}

fn table_info(relid: pg_sys::Oid) -> Result<TableInfo, PgError> {
    // SAFETY: the command that fired the trigger created or altered the
    // relation, so it exists and is locked; everything read is copied.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return Err(PgError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!(
                    "persist_fdw_ddl_end: relation {} does not exist",
                    relid.to_u32()
                ),
            ));
        }
        let form = &*(*rel).rd_rel;
        let name = pgrx::name_data_to_str(&form.relname).to_owned();
        let namespace = std::ffi::CStr::from_ptr(pg_sys::get_namespace_name(form.relnamespace))
            .to_string_lossy()
            .into_owned();
        let owner = form.relowner;
        let tupdesc = (*rel).rd_att;
        let mut columns = Vec::new();
        for index in 0..(*tupdesc).natts as usize {
            let attribute = &*(*tupdesc).attrs.as_ptr().add(index);
            if attribute.attisdropped {
                continue;
            }
            let column_options =
                options::read_def_elems(pg_sys::GetForeignColumnOptions(relid, attribute.attnum));
            columns.push(ColumnInfo {
                name: pgrx::name_data_to_str(&attribute.attname).to_owned(),
                attnum: attribute.attnum,
                type_oid: attribute.atttypid,
                collation: attribute.attcollation,
                has_column_name: options::find(&column_options, COLUMN_NAME).is_some(),
            });
        }
        pg_sys::RelationClose(rel);
        let table = pg_sys::GetForeignTable(relid);
        let options = options::read_def_elems((*table).options);
        Ok(TableInfo {
            qualified: format!(
                "{}.{}",
                quote_identifier(&namespace),
                quote_identifier(&name)
            ),
            name,
            owner,
            options,
            columns,
        })
    }
}

fn role_name(role: pg_sys::Oid) -> String {
    // SAFETY: the role owns an object, so it exists.
    unsafe {
        std::ffi::CStr::from_ptr(pg_sys::GetUserNameFromId(role, false))
            .to_string_lossy()
            .into_owned()
    }
}

fn run_sql(sql: &str, what: &str) -> Result<(), PgError> {
    Spi::run(sql).map_err(|error| spi_failed(what, error))
}

/// Returns the `ALTER COLUMN ... OPTIONS (ADD column_name ...)` clauses for
/// columns that lack the option: every column of a new table, stored under its name,
/// or the columns in `added`, stored under their name and attribute number,
/// such as `note#5`. Attribute numbers are never reused, and a dropped
/// column of the same name left its values in rows written before, where the
/// new column must read NULL.
fn column_name_clauses(info: &TableInfo, added: Option<&[String]>) -> Vec<String> {
    info.columns
        .iter()
        .filter(|column| !column.has_column_name)
        .filter_map(|column| {
            let stored = match added {
                None => column.name.clone(),
                Some(added) if added.contains(&column.name) => {
                    format!("{}#{}", column.name, column.attnum)
                }
                Some(_) => return None,
            };
            Some(format!(
                "ALTER COLUMN {} OPTIONS (ADD {COLUMN_NAME} {})",
                quote_identifier(&column.name),
                quote_literal(&stored)
            ))
        })
        .collect()
}

fn created_table(relid: pg_sys::Oid) -> Result<(), PgError> {
    let info = table_info(relid)?;
    if let Some(rows_table) = options::find(&info.options, ROWS_TABLE) {
        // Restored from a dump: the rows table comes from the same dump.
        // Its column options follow in ALTER statements of the same dump.
        if let Some(rows_relid) = rows_table_oid(rows_table) {
            link(rows_relid, relid)?;
        }
        return Ok(());
    }

    check_primary_key(&info)?;
    let store_id: StoreId = session::with_store(
        &format!("CREATE FOREIGN TABLE {} SERVER persist", info.name),
        |store, _| Ok(store.cipher.store_id()),
    )?;
    let suffix: [u8; 8] = persist_core::random::array().map_err(|error| {
        PgError::core(
            "persist_fdw_ddl_end: naming the rows table",
            crate::error::Subject::Other,
            error,
        )
    })?;
    let rows_table: String = std::iter::once("r_".to_owned())
        .chain(suffix.iter().map(|byte| format!("{byte:02x}")))
        .collect();
    let rows_qualified = format!("{ROWS_SCHEMA}.{rows_table}");

    // Envelopes do not compress, so STORAGE EXTERNAL skips the attempt.
    run_sql(
        &format!(
            "CREATE TABLE {rows_qualified} (rid bytea PRIMARY KEY, env bytea NOT NULL); \
             ALTER TABLE {rows_qualified} ALTER COLUMN env SET STORAGE EXTERNAL, OWNER TO {}",
            quote_identifier(role_name(info.owner))
        ),
        "creating the rows table",
    )?;
    let mut clauses = vec![format!(
        "OPTIONS (ADD {LOGICAL_NAME} {}, ADD {ROWS_TABLE} {}, ADD {STORE_ID} {})",
        quote_literal(&info.name),
        quote_literal(&rows_table),
        quote_literal(store_id.to_string())
    )];
    clauses.extend(column_name_clauses(&info, None));
    run_sql(
        &format!(
            "ALTER FOREIGN TABLE {} {}",
            info.qualified,
            clauses.join(", ")
        ),
        "setting the table options",
    )?;
    let rows_relid = rows_table_oid(&rows_table).ok_or_else(|| {
        PgError::new(
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            format!("persist_fdw_ddl_end: the new rows table {rows_qualified} is missing"),
        )
    })?;
    record_dependency(rows_relid, relid);
    Ok(())
}

/// Rejects primary keys whose type has more than one stored form for equal
/// values, since then equal keys would get different blind ids.
fn check_primary_key(info: &TableInfo) -> Result<(), PgError> {
    let Some(list) = options::find(&info.options, PRIMARY_KEY) else {
        return Err(PgError::invalid(format!(
            "encrypted table \"{}\" needs option \"{PRIMARY_KEY}\"",
            info.name
        )));
    };
    for key in options::parse_column_list(list)? {
        let Some(column) = info.columns.iter().find(|column| column.name == key) else {
            return Err(PgError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                format!(
                    "encrypted table \"{}\": primary key column \"{key}\" does not exist",
                    info.name
                ),
            ));
        };
        if !plan::key_type_supported(column.type_oid) {
            return Err(PgError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "encrypted table \"{}\": primary key column \"{key}\" has type {}, which an \
                     encrypted table cannot use as a key",
                    info.name,
                    super::values::type_name(column.type_oid)
                ),
            )
            .with_hint(
                "Use smallint, integer, bigint, real, double precision, boolean, bytea, text, \
                 varchar, uuid, date, timestamp or timestamptz.",
            ));
        }
        // SAFETY: a catalog lookup of the column's collation.
        let deterministic = column.collation == pg_sys::Oid::INVALID
            || unsafe { pg_sys::get_collation_isdeterministic(column.collation) };
        if !deterministic {
            return Err(PgError::new(
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "encrypted table \"{}\": primary key column \"{key}\" has a nondeterministic \
                     collation, which an encrypted table cannot use as a key",
                    info.name
                ),
            ));
        }
    }
    Ok(())
}

fn altered_table(relid: pg_sys::Oid, flags: AlterFlags) -> Result<(), PgError> {
    let info = table_info(relid)?;
    let Some(rows_table) = options::find(&info.options, ROWS_TABLE) else {
        return Ok(());
    };
    let clauses = column_name_clauses(&info, Some(&flags.added_columns));
    if !clauses.is_empty() {
        run_sql(
            &format!(
                "ALTER FOREIGN TABLE {} {}",
                info.qualified,
                clauses.join(", ")
            ),
            "setting column options",
        )?;
    }
    if flags.changed_owner
        && let Some(rows_relid) = rows_table_oid(rows_table)
        && depends_on(rows_relid, relid)?
        && relation_owner(rows_relid) != info.owner
    {
        run_sql(
            &format!(
                "ALTER TABLE {ROWS_SCHEMA}.{rows_table} OWNER TO {}",
                quote_identifier(role_name(info.owner))
            ),
            "changing the owner of the rows table",
        )?;
    }
    Ok(())
}

/// Links a rows table that a restore created, or gave its owner, to the
/// encrypted tables that name it.
fn rows_table_changed(relid: pg_sys::Oid) -> Result<(), PgError> {
    // SAFETY: a catalog lookup of a relation created by this command.
    let (namespace, name) = unsafe {
        let namespace = pg_sys::get_rel_namespace(relid);
        let name = pg_sys::get_rel_name(relid);
        if name.is_null() {
            return Ok(());
        }
        (
            namespace,
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned(),
        )
    };
    let schema = std::ffi::CString::new(ROWS_SCHEMA).unwrap_or_default();
    // SAFETY: looks the schema up by name.
    let rows_schema = unsafe { pg_sys::get_namespace_oid(schema.as_ptr(), true) };
    if namespace != rows_schema {
        return Ok(());
    }
    let tables: Vec<pg_sys::Oid> = Spi::connect(|client| {
        let rows = client.select(
            "SELECT t.ftrelid FROM pg_catalog.pg_foreign_table t, \
               pg_catalog.pg_options_to_table(t.ftoptions) o \
             WHERE o.option_name OPERATOR(pg_catalog.=) 'rows_table' \
               AND o.option_value OPERATOR(pg_catalog.=) $1",
            None,
            &[name.as_str().into()],
        )?;
        let mut tables = Vec::new();
        for row in rows {
            if let Some(oid) = row.get::<pg_sys::Oid>(1)? {
                tables.push(oid);
            }
        }
        Ok(tables)
    })
    .map_err(|error| spi_failed("finding the encrypted table of a rows table", error))?;
    for table in tables {
        if is_encrypted_table(table)? {
            link(relid, table)?;
        }
    }
    Ok(())
}

fn rows_table_oid(name: &str) -> Option<pg_sys::Oid> {
    let schema = std::ffi::CString::new(ROWS_SCHEMA).ok()?;
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: catalog lookups by name.
    let oid = unsafe {
        let namespace = pg_sys::get_namespace_oid(schema.as_ptr(), true);
        pg_sys::get_relname_relid(name.as_ptr(), namespace)
    };
    (oid != pg_sys::Oid::INVALID).then_some(oid)
}

fn relation_owner(relid: pg_sys::Oid) -> pg_sys::Oid {
    // SAFETY: the relation exists; only its owner is read.
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return pg_sys::Oid::INVALID;
        }
        let owner = (*(*rel).rd_rel).relowner;
        pg_sys::RelationClose(rel);
        owner
    }
}

fn depends_on(rows_relid: pg_sys::Oid, relid: pg_sys::Oid) -> Result<bool, PgError> {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_depend \
           WHERE classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
             AND objid OPERATOR(pg_catalog.=) $1 \
             AND refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
             AND refobjid OPERATOR(pg_catalog.=) $2 AND deptype OPERATOR(pg_catalog.=) 'a')",
        &[rows_relid.into(), relid.into()],
    )
    .map(|found| found.unwrap_or(false))
    .map_err(|error| spi_failed("reading pg_depend", error))
}

/// Records that the rows table depends on the encrypted table, if both have
/// the same owner and the dependency is not there yet.
fn link(rows_relid: pg_sys::Oid, relid: pg_sys::Oid) -> Result<(), PgError> {
    if relation_owner(rows_relid) == relation_owner(relid) && !depends_on(rows_relid, relid)? {
        record_dependency(rows_relid, relid);
    }
    Ok(())
}

fn record_dependency(rows_relid: pg_sys::Oid, relid: pg_sys::Oid) {
    let rows = pg_sys::ObjectAddress {
        classId: pg_sys::RelationRelationId,
        objectId: rows_relid,
        objectSubId: 0,
    };
    let table = pg_sys::ObjectAddress {
        classId: pg_sys::RelationRelationId,
        objectId: relid,
        objectSubId: 0,
    };
    // SAFETY: both addresses name existing relations.
    unsafe {
        pg_sys::recordDependencyOn(&rows, &table, pg_sys::DependencyType::DEPENDENCY_AUTO);
        pg_sys::CommandCounterIncrement();
    }
}
