//! The definition of an encrypted table, read from the catalogs: columns,
//! their value classes, the primary key and the options that name the rows
//! table, the logical name and the store.

use std::ffi::CStr;

use persist_core::StoreId;
use pgrx::{PgSqlErrorCode, pg_sys};

use super::options::{self, COLUMN_NAME, LOGICAL_NAME, PRIMARY_KEY, ROWS_TABLE, STORE_ID};
use super::values::ValueClass;
use crate::error::PgError;

/// A column of an encrypted table.
#[derive(Clone, Debug)]
pub struct Column {
    /// The column's name in SQL.
    pub name: String,
    /// The column's name inside sealed rows (option `column_name`).
    pub stored_name: String,
    /// The column's type.
    pub type_oid: pg_sys::Oid,
    /// The column's type modifier, such as the length of `varchar(n)`.
    pub typmod: i32,
    /// The storage class of the type's values.
    pub class: ValueClass,
    /// Whether the column is declared NOT NULL or is part of the primary key.
    pub not_null: bool,
    /// Whether the column was dropped. Dropped columns keep their place.
    pub dropped: bool,
}

/// An encrypted table.
#[derive(Clone, Debug)]
pub struct TableDef {
    /// The foreign table's oid.
    pub relid: pg_sys::Oid,
    /// The foreign table's name, for messages.
    pub name: String,
    /// The role that owns the foreign table. Statements on the rows table run
    /// as this role.
    pub owner: pg_sys::Oid,
    /// The name that envelopes and blind ids are bound to.
    pub logical: String,
    /// The rows table's name in schema `persist_rows`.
    pub rows_table: String,
    /// The store whose keys seal the rows.
    pub store_id: StoreId,
    /// Every attribute in attribute number order, dropped ones included, so
    /// that `columns[attnum - 1]` is attribute `attnum`.
    pub columns: Vec<Column>,
    /// Indexes into `columns` of the primary key columns, in key order.
    pub primary_key: Vec<usize>,
}

impl TableDef {
    /// Reads the definition of foreign table `relid`, which the caller has
    /// locked.
    ///
    /// # Errors
    ///
    /// 55000 when the options that the event trigger sets are missing, and
    /// 22023 for a primary key that names an unknown column.
    pub fn load(relid: pg_sys::Oid) -> Result<Self, PgError> {
        // SAFETY: the planner and executor lock the relation before they call
        // the wrapper. The relation is closed before returning, and only
        // copies of its fields are kept.
        let (name, owner, columns) = unsafe {
            let rel = pg_sys::RelationIdGetRelation(relid);
            if rel.is_null() {
                return Err(PgError::new(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                    format!("encrypted table with oid {} does not exist", relid.to_u32()),
                ));
            }
            let name = CStr::from_ptr((*(*rel).rd_rel).relname.data.as_ptr())
                .to_string_lossy()
                .into_owned();
            let owner = (*(*rel).rd_rel).relowner;
            let columns = read_columns(relid, (*rel).rd_att);
            pg_sys::RelationClose(rel);
            (name, owner, columns)
        };
        // SAFETY: GetForeignTable reads the catalog entry of a foreign table;
        // its options are a List of DefElem.
        let table_options = unsafe {
            let table = pg_sys::GetForeignTable(relid);
            options::read_def_elems((*table).options)
        };
        Self::from_parts(relid, name, owner, columns?, &table_options)
    }

    fn from_parts(
        relid: pg_sys::Oid,
        name: String,
        owner: pg_sys::Oid,
        mut columns: Vec<Column>,
        table_options: &[(String, String)],
    ) -> Result<Self, PgError> {
        let missing = |option: &str| {
            PgError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "encrypted table \"{name}\" has no option \"{option}\"; it was created while \
                     the event trigger persist_fdw_ddl_end was disabled"
                ),
            )
            .with_hint("Drop the table and create it again with the event trigger enabled.")
        };
        let logical = options::find(table_options, LOGICAL_NAME)
            .ok_or_else(|| missing(LOGICAL_NAME))?
            .to_owned();
        let rows_table = options::find(table_options, ROWS_TABLE)
            .ok_or_else(|| missing(ROWS_TABLE))?
            .to_owned();
        let store_id = options::find(table_options, STORE_ID).ok_or_else(|| missing(STORE_ID))?;
        let store_id = StoreId::from_hex(store_id).map_err(|_| {
            PgError::invalid(format!(
                "encrypted table \"{name}\": option \"{STORE_ID}\" is not a store id"
            ))
        })?;
        let key_names = options::parse_column_list(
            options::find(table_options, PRIMARY_KEY).ok_or_else(|| missing(PRIMARY_KEY))?,
        )?;
        let primary_key = resolve_primary_key(&name, &columns, &key_names)?;
        for index in &primary_key {
            columns[*index].not_null = true;
        }
        Ok(Self {
            relid,
            name,
            owner,
            logical,
            rows_table,
            store_id,
            columns,
            primary_key,
        })
    }

    /// Returns the schema-qualified name of the rows table.
    pub fn rows_table_sql(&self) -> String {
        format!("{}.{}", super::ROWS_SCHEMA, self.rows_table)
    }

    /// Whether any live column converts through its type's text form.
    pub fn has_text_form_columns(&self) -> bool {
        self.columns
            .iter()
            .any(|column| !column.dropped && column.class == ValueClass::Other)
    }

    /// The primary key's column names, for messages.
    pub fn key_column_names(&self) -> String {
        self.primary_key
            .iter()
            .map(|index| self.columns[*index].name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Finds the primary key columns by their name inside sealed rows, which is
/// also their SQL name unless the column was renamed.
fn resolve_primary_key(
    table: &str,
    columns: &[Column],
    key_names: &[String],
) -> Result<Vec<usize>, PgError> {
    let mut primary_key = Vec::with_capacity(key_names.len());
    for key in key_names {
        let position = columns
            .iter()
            .position(|column| !column.dropped && column.stored_name == *key)
            .or_else(|| {
                columns
                    .iter()
                    .position(|column| !column.dropped && column.name == *key)
            })
            .ok_or_else(|| {
                PgError::new(
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!(
                        "encrypted table \"{table}\": primary key column \"{key}\" does not exist"
                    ),
                )
            })?;
        if primary_key.contains(&position) {
            return Err(PgError::invalid(format!(
                "encrypted table \"{table}\": primary key column \"{key}\" is listed twice"
            )));
        }
        primary_key.push(position);
    }
    Ok(primary_key)
}

/// Reads the attributes of `tupdesc` with their column options.
///
/// # Safety
///
/// `tupdesc` must be the valid descriptor of foreign table `relid`.
unsafe fn read_columns(
    relid: pg_sys::Oid,
    tupdesc: pg_sys::TupleDesc,
) -> Result<Vec<Column>, PgError> {
    // SAFETY: guaranteed by the caller.
    let natts = unsafe { (*tupdesc).natts };
    let mut columns = Vec::with_capacity(natts as usize);
    for index in 0..natts {
        // SAFETY: index < natts, so the attribute exists.
        let attribute = unsafe { &*(*tupdesc).attrs.as_ptr().add(index as usize) };
        let name = pgrx::name_data_to_str(&attribute.attname).to_owned();
        let dropped = attribute.attisdropped;
        let stored_name = if dropped {
            name.clone()
        } else {
            // SAFETY: relid and the attribute number name an attribute of a
            // foreign table; the options are a List of DefElem.
            let column_options = unsafe {
                options::read_def_elems(pg_sys::GetForeignColumnOptions(relid, attribute.attnum))
            };
            options::find(&column_options, COLUMN_NAME).map_or_else(|| name.clone(), str::to_owned)
        };
        columns.push(Column {
            class: ValueClass::of(attribute.atttypid),
            name,
            stored_name,
            type_oid: attribute.atttypid,
            typmod: attribute.atttypmod,
            not_null: attribute.attnotnull,
            dropped,
        });
    }
    Ok(columns)
}
