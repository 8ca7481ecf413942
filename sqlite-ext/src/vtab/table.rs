//! An encrypted table: plans, reads and writes on its shadow tables.
//!
//! Each encrypted table `T` keeps its rows in two ordinary tables:
//!
//! - `T_rows(id, rid, env, clock, device, deleted, pushed)`: one row per record,
//!   with the blind record id, the envelope, the version of the last write,
//!   a tombstone flag and whether the sync server has the last write. No
//!   value and no primary key appears here; `id` is a local number that
//!   serves as the virtual table's rowid, random so that it does not follow
//!   the insertion order.
//! - `T_config(key, value)`: the table's logical name, which the envelopes
//!   and blind ids are bound to and which stays fixed when the table is
//!   renamed.
//!
//! A primary-key equality (or IN) lookup computes the blind id and reads one
//! row through the unique index on `rid`; anything else scans `T_rows`, one
//! row at a time.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_int;
use std::sync::Arc;

use persist_core::codec::{self, Row, RowKind, Value, ValueRef};
use persist_core::sync::Version;
use persist_core::{DeviceId, Location, Padding, Purpose, RecordId, envelope};
use rusqlite::ffi;

use super::schema::{ROW_KEY_COLUMN, Schema};
use crate::affinity::{self, Converted};
use crate::db::{Db, Step, Stmt, quote_identifier};
use crate::error::{CoreContext, ExtError};
use crate::state::{Connection, OpenStore};

/// Format version of the shadow tables.
pub const SHADOW_VERSION: i64 = 1;

/// How xFilter finds rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Every live row.
    Scan,
    /// The row with the primary key given in the arguments.
    PrimaryKey,
    /// The row with the rowid given in the argument.
    Rowid,
}

impl Plan {
    /// The plan with the given xBestIndex number.
    pub fn from_number(number: c_int) -> Option<Self> {
        match number {
            0 => Some(Self::Scan),
            1 => Some(Self::PrimaryKey),
            2 => Some(Self::Rowid),
            _ => None,
        }
    }

    /// The plan's xBestIndex number.
    pub fn number(self) -> c_int {
        match self {
            Self::Scan => 0,
            Self::PrimaryKey => 1,
            Self::Rowid => 2,
        }
    }
}

/// One encrypted table on one connection.
pub struct Table {
    conn: Arc<Connection>,
    db: Db,
    schema_name: String,
    name: RefCell<String>,
    logical: String,
    /// The parsed column definitions.
    pub schema: Schema,
    statements: RefCell<HashMap<&'static str, Stmt>>,
    idle_cursors: RefCell<Vec<(Plan, Stmt)>>,
    integer_keys: RefCell<Option<IntegerKeys>>,
}

/// The largest INTEGER key seen, valid while no other connection commits.
#[derive(Clone, Copy)]
struct IntegerKeys {
    data_version: i64,
    max: i64,
}

/// A shadow row read for an update or delete.
struct Stored {
    rowid: i64,
    rid: RecordId,
    envelope: Vec<u8>,
    version: Version,
    deleted: bool,
}

impl Table {
    /// Creates the shadow tables of a new encrypted table.
    ///
    /// # Errors
    ///
    /// A usage error when no store is open or the shadow tables exist, and
    /// SQLite's errors.
    pub fn create(
        conn: Arc<Connection>,
        db: Db,
        schema_name: &str,
        name: &str,
        schema: Schema,
    ) -> Result<Self, ExtError> {
        conn.store().map_err(|_| {
            ExtError::usage(format!(
                "cannot create encrypted table {name}: no Persist store is open on this \
                 connection; call SELECT persist_init('<store name>') first"
            ))
        })?;
        let table = Self::new(conn, db, schema_name, name, name.to_owned(), schema);
        let rows = table.shadow("rows");
        let config = table.shadow("config");
        let index = quote_identifier(&format!("{name}_rows_unpushed"));
        let schema_q = quote_identifier(schema_name);
        db.exec(&format!(
            "CREATE TABLE {rows}(
                 id INTEGER PRIMARY KEY,
                 rid BLOB NOT NULL UNIQUE,
                 env BLOB NOT NULL,
                 clock INTEGER NOT NULL,
                 device BLOB NOT NULL,
                 deleted INTEGER NOT NULL DEFAULT 0,
                 pushed INTEGER NOT NULL DEFAULT 0);
             CREATE INDEX {schema_q}.{index} ON {}(pushed) WHERE pushed = 0;
             CREATE TABLE {config}(key TEXT PRIMARY KEY NOT NULL, value) WITHOUT ROWID;",
            quote_identifier(&format!("{name}_rows"))
        ))
        .map_err(|err| {
            ExtError::usage(format!(
                "cannot create encrypted table {name}: its shadow tables cannot be created \
                 ({err}); drop leftover tables {name}_rows and {name}_config first"
            ))
        })?;
        let mut insert =
            db.prepare(&format!("INSERT INTO {config}(key, value) VALUES (?1, ?2)"))?;
        for (key, value) in [
            ("logical_name", ValueRef::Text(name)),
            ("version", ValueRef::Integer(SHADOW_VERSION)),
            ("declaration", ValueRef::Text(&table.schema.declaration())),
        ] {
            insert.bind_text(1, key)?;
            insert.bind(2, value)?;
            insert.execute()?;
        }
        Ok(table)
    }

    /// Connects to an existing encrypted table.
    ///
    /// # Errors
    ///
    /// A usage error when the shadow tables are missing or of another
    /// version, and SQLite's errors.
    pub fn connect(
        conn: Arc<Connection>,
        db: Db,
        schema_name: &str,
        name: &str,
        schema: Schema,
    ) -> Result<Self, ExtError> {
        let config = format!(
            "{}.{}",
            quote_identifier(schema_name),
            quote_identifier(&format!("{name}_config"))
        );
        let missing = |err: ExtError| {
            ExtError::usage(format!(
                "encrypted table {name} is damaged: its shadow table {name}_config cannot be \
                 read ({err})"
            ))
        };
        let mut select = db
            .prepare(&format!("SELECT key, value FROM {config}"))
            .map_err(missing)?;
        let mut logical = None;
        let mut version = None;
        while select.step().map_err(missing)? == Step::Row {
            match select.column_text(0).as_str() {
                "logical_name" => logical = Some(select.column_text(1)),
                "version" => version = Some(select.column_i64(1)),
                _ => {}
            }
        }
        drop(select);
        if version != Some(SHADOW_VERSION) {
            return Err(ExtError::usage(format!(
                "encrypted table {name} has shadow table version {version:?}, but this build \
                 of Persist reads version {SHADOW_VERSION}"
            )));
        }
        let logical = logical.ok_or_else(|| {
            ExtError::usage(format!(
                "encrypted table {name} is damaged: {name}_config has no logical_name"
            ))
        })?;
        Ok(Self::new(conn, db, schema_name, name, logical, schema))
    }

    fn new(
        conn: Arc<Connection>,
        db: Db,
        schema_name: &str,
        name: &str,
        logical: String,
        schema: Schema,
    ) -> Self {
        Self {
            conn,
            db,
            schema_name: schema_name.to_owned(),
            name: RefCell::new(name.to_owned()),
            logical,
            schema,
            statements: RefCell::new(HashMap::new()),
            idle_cursors: RefCell::new(Vec::new()),
            integer_keys: RefCell::new(None),
        }
    }

    /// The table's current name.
    pub fn name(&self) -> String {
        self.name.borrow().clone()
    }

    /// Estimated number of rows, for the planner. Rowids are random and a
    /// count would read the whole table, so this is a fixed guess: the
    /// planner only has to prefer a key lookup to a scan.
    pub fn estimated_rows(&self) -> i64 {
        100_000
    }

    /// The quoted, schema-qualified name of shadow table `suffix`.
    fn shadow(&self, suffix: &str) -> String {
        format!(
            "{}.{}",
            quote_identifier(&self.schema_name),
            quote_identifier(&format!("{}_{suffix}", self.name.borrow()))
        )
    }

    /// Drops the shadow tables.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn destroy(&self) -> Result<(), ExtError> {
        self.forget_statements();
        self.db.exec(&format!(
            "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {};",
            self.shadow("rows"),
            self.shadow("config")
        ))
    }

    /// Renames the shadow tables along with the table.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn rename(&self, new_name: &str) -> Result<(), ExtError> {
        self.forget_statements();
        // Index names are not renamed with their table, and a leftover name
        // would collide with the index of a new table of the old name.
        self.db.exec(&format!(
            "DROP INDEX IF EXISTS {schema}.{old};
             CREATE INDEX {schema}.{new} ON {rows}(pushed) WHERE pushed = 0;",
            schema = quote_identifier(&self.schema_name),
            old = quote_identifier(&format!("{}_rows_unpushed", self.name.borrow())),
            new = quote_identifier(&format!("{new_name}_rows_unpushed")),
            rows = quote_identifier(&format!("{}_rows", self.name.borrow())),
        ))?;
        for suffix in ["rows", "config"] {
            self.db.exec(&format!(
                "ALTER TABLE {} RENAME TO {}",
                self.shadow(suffix),
                quote_identifier(&format!("{new_name}_{suffix}"))
            ))?;
        }
        *self.name.borrow_mut() = new_name.to_owned();
        Ok(())
    }

    fn forget_statements(&self) {
        self.statements.borrow_mut().clear();
        self.idle_cursors.borrow_mut().clear();
    }

    /// Runs `body` with the cached statement `key`, preparing it from `sql`
    /// on first use.
    fn with_statement<T>(
        &self,
        key: &'static str,
        sql: impl FnOnce(&Self) -> String,
        body: impl FnOnce(&mut Stmt) -> Result<T, ExtError>,
    ) -> Result<T, ExtError> {
        let cached = self.statements.borrow_mut().remove(key);
        let mut stmt = match cached {
            Some(stmt) => stmt,
            None => self.db.prepare_persistent(&sql(self))?,
        };
        let result = body(&mut stmt);
        stmt.reset();
        self.statements.borrow_mut().insert(key, stmt);
        result
    }

    /// Takes an idle statement for a cursor with `plan`, or prepares one.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn cursor_statement(&self, plan: Plan) -> Result<Stmt, ExtError> {
        let mut idle = self.idle_cursors.borrow_mut();
        if let Some(position) = idle.iter().position(|(p, _)| *p == plan) {
            return Ok(idle.swap_remove(position).1);
        }
        drop(idle);
        let rows = self.shadow("rows");
        let sql = match plan {
            Plan::Scan => format!("SELECT id, rid, env FROM {rows} WHERE deleted = 0"),
            Plan::PrimaryKey => {
                format!("SELECT id, rid, env FROM {rows} WHERE rid = ?1 AND deleted = 0")
            }
            Plan::Rowid => format!("SELECT id, rid, env FROM {rows} WHERE id = ?1 AND deleted = 0"),
        };
        self.db.prepare_persistent(&sql)
    }

    /// Returns a cursor's statement for reuse.
    pub fn release_cursor_statement(&self, plan: Plan, mut stmt: Stmt) {
        stmt.reset();
        let mut idle = self.idle_cursors.borrow_mut();
        if idle.len() < 8 {
            idle.push((plan, stmt));
        }
    }

    fn store(&self) -> Result<Arc<OpenStore>, ExtError> {
        self.conn.store().map_err(|_| {
            ExtError::usage(format!(
                "encrypted table {} needs an open store: call SELECT persist_init('<store \
                 name>') on this connection first",
                self.name()
            ))
        })
    }

    fn row_location<'a>(&'a self, rid: &'a RecordId) -> Location<'a> {
        Location {
            purpose: Purpose::Row,
            table: &self.logical,
            record_id: rid.as_bytes(),
            context: b"",
        }
    }

    /// Opens and decodes the envelope of shadow row `rowid`.
    ///
    /// # Errors
    ///
    /// A core error naming the table and row when the envelope does not
    /// open or decode.
    pub fn open_row(&self, rowid: i64, rid: &[u8], envelope: &[u8]) -> Result<Row, ExtError> {
        let store = self.store()?;
        let context = || {
            format!(
                "encrypted table {}, row {rowid}: the stored envelope cannot be decrypted",
                self.name()
            )
        };
        let rid = RecordId::from_slice(rid).context_with(context)?;
        let plaintext = store
            .cipher
            .open(&self.row_location(&rid), envelope)
            .context_with(context)?;
        self.conn.counters.count_open();
        codec::decode_row(&plaintext).context_with(context)
    }

    /// The blind record id of a primary key given as filter arguments, or
    /// `None` when a key value is NULL and so matches nothing.
    ///
    /// # Safety
    ///
    /// `args` must be valid `sqlite3_value` pointers for this call.
    ///
    /// # Errors
    ///
    /// As [`affinity::read_with_affinity`].
    pub unsafe fn key_from_args(
        &self,
        args: &[*mut ffi::sqlite3_value],
    ) -> Result<Option<RecordId>, ExtError> {
        let store = self.store()?;
        let mut values = Vec::with_capacity(args.len());
        for (arg, column) in args.iter().zip(&self.schema.primary_key) {
            let column = &self.schema.columns[*column];
            // SAFETY: guaranteed by the caller.
            let value =
                unsafe { affinity::read_with_affinity(*arg, column.affinity, &column.name)? };
            if matches!(value.as_ref(), ValueRef::Null) {
                return Ok(None);
            }
            values.push(value);
        }
        let refs: Vec<ValueRef<'_>> = values.iter().map(Converted::as_ref).collect();
        Ok(Some(store.cipher.record_id(&self.logical, &refs)))
    }

    /// Applies an xUpdate call: a delete, an insert or an update.
    ///
    /// # Safety
    ///
    /// `args` must be the valid `sqlite3_value` pointers of this xUpdate call.
    ///
    /// # Errors
    ///
    /// Constraint errors in SQLite's wording, before anything is written;
    /// core and SQLite errors otherwise.
    pub unsafe fn update(&self, args: &[*mut ffi::sqlite3_value]) -> Result<i64, ExtError> {
        let store = self.store()?;
        // SAFETY: guaranteed by the caller; every pointer is read within this call.
        unsafe {
            let old_rowid = affinity::read(args[0], "rowid")?;
            if args.len() == 1 {
                if let ValueRef::Integer(rowid) = old_rowid {
                    self.delete(&store, rowid)?;
                }
                return Ok(0);
            }
            let new_rowid = affinity::read(args[1], "rowid")?;
            let mut values = Vec::with_capacity(args.len() - 2);
            for (arg, column) in args[2..].iter().zip(&self.schema.columns) {
                values.push(affinity::read_with_affinity(
                    *arg,
                    column.affinity,
                    &column.name,
                )?);
            }
            match old_rowid {
                ValueRef::Null => {
                    if !matches!(new_rowid, ValueRef::Null) {
                        return Err(ExtError::usage(format!(
                            "encrypted table {}: setting the rowid is not supported",
                            self.name()
                        )));
                    }
                    self.insert(&store, values)
                }
                ValueRef::Integer(rowid) => {
                    if !matches!(new_rowid, ValueRef::Integer(new) if new == rowid) {
                        return Err(ExtError::usage(format!(
                            "encrypted table {}: changing the rowid is not supported",
                            self.name()
                        )));
                    }
                    self.update_row(&store, rowid, values)?;
                    Ok(rowid)
                }
                _ => Err(ExtError::usage(
                    "xUpdate received a rowid that is not an INTEGER",
                )),
            }
        }
    }

    /// Checks NOT NULL and primary-key constraints, filling in an INTEGER key.
    fn check_values(&self, values: &mut [Converted<'_>], inserting: bool) -> Result<(), ExtError> {
        if inserting && self.schema.has_integer_key() {
            let key = self.schema.primary_key[0];
            if matches!(values[key].as_ref(), ValueRef::Null) {
                values[key] = Converted::Owned(Value::Integer(self.next_integer_key()?));
            }
        }
        for (index, column) in self.schema.columns.iter().enumerate() {
            let required = column.not_null || self.schema.primary_key.contains(&index);
            if required && matches!(values[index].as_ref(), ValueRef::Null) {
                return Err(ExtError::Constraint {
                    code: ffi::SQLITE_CONSTRAINT_NOTNULL,
                    message: format!(
                        "NOT NULL constraint failed: {}.{}",
                        self.name(),
                        column.name
                    ),
                });
            }
        }
        Ok(())
    }

    fn unique_error(&self) -> ExtError {
        let columns: Vec<String> = self
            .schema
            .primary_key
            .iter()
            .map(|index| format!("{}.{}", self.name(), self.schema.columns[*index].name))
            .collect();
        ExtError::Constraint {
            code: ffi::SQLITE_CONSTRAINT_PRIMARYKEY,
            message: format!("UNIQUE constraint failed: {}", columns.join(", ")),
        }
    }

    fn insert(&self, store: &OpenStore, mut values: Vec<Converted<'_>>) -> Result<i64, ExtError> {
        self.check_values(&mut values, true)?;
        let row_key = if self.schema.primary_key.is_empty() {
            let key: [u8; 16] =
                persist_core::random::array().context_with(|| "generating a row key".into())?;
            Some(key)
        } else {
            None
        };
        let rid = self.record_id(store, &values, row_key.as_ref());
        let existing = self.find(&rid)?;

        if let Some(existing) = existing.as_ref().filter(|stored| !stored.deleted) {
            if self.db.on_conflict() != ffi::SQLITE_REPLACE {
                return Err(self.unique_error());
            }
            // INSERT OR REPLACE: the new row takes the place of the old one.
            let old = self.open_row(existing.rowid, existing.rid.as_bytes(), &existing.envelope)?;
            let bytes = self.encode(&values, row_key.as_ref(), Some(&old))?;
            self.write_live(store, existing.rowid, &rid, &bytes, Some(&existing.version))?;
            self.note_integer_key(&values);
            return Ok(existing.rowid);
        }

        let bytes = self.encode(&values, row_key.as_ref(), None)?;
        let rowid = match existing {
            // A tombstone of the same key: the new row supersedes it.
            Some(tombstone) => {
                self.write_live(
                    store,
                    tombstone.rowid,
                    &rid,
                    &bytes,
                    Some(&tombstone.version),
                )?;
                tombstone.rowid
            }
            None => {
                let version = store.next_version(None);
                let envelope = self.seal(store, &rid, &bytes, Padding::None)?;
                self.insert_shadow(&rid, &envelope, &version, false)?
            }
        };
        self.note_integer_key(&values);
        Ok(rowid)
    }

    fn update_row(
        &self,
        store: &OpenStore,
        rowid: i64,
        mut values: Vec<Converted<'_>>,
    ) -> Result<(), ExtError> {
        self.check_values(&mut values, false)?;
        let stored = self.find_rowid(rowid)?.ok_or_else(|| {
            ExtError::usage(format!(
                "encrypted table {}: row {rowid} to update does not exist",
                self.name()
            ))
        })?;
        let old = self.open_row(rowid, stored.rid.as_bytes(), &stored.envelope)?;
        let row_key = self.row_key_of(&old)?;
        let rid = self.record_id(store, &values, row_key.as_ref());
        let bytes = self.encode(&values, row_key.as_ref(), Some(&old))?;

        if rid == stored.rid {
            return self.write_live(store, rowid, &rid, &bytes, Some(&stored.version));
        }

        // The primary key changed: the new key must be free (or replaced),
        // and the old key leaves a tombstone.
        let conflict = self.find(&rid)?;
        let mut superseded = Some(stored.version);
        if let Some(conflict) = &conflict {
            if !conflict.deleted && self.db.on_conflict() != ffi::SQLITE_REPLACE {
                return Err(self.unique_error());
            }
            superseded = superseded.max(Some(conflict.version));
            self.with_statement(
                "delete_rid",
                |t| format!("DELETE FROM {} WHERE rid = ?1", t.shadow("rows")),
                |stmt| {
                    stmt.bind_blob(1, conflict.rid.as_bytes())?;
                    stmt.execute()
                },
            )?;
        }
        self.write_live(store, rowid, &rid, &bytes, superseded.as_ref())?;
        let (version, envelope) = self.tombstone(store, &old, &stored)?;
        self.insert_shadow(&stored.rid, &envelope, &version, true)?;
        self.note_integer_key(&values);
        Ok(())
    }

    /// Inserts a shadow row under a fresh random rowid and returns it.
    ///
    /// Rowids are random rather than sequential because a counter would
    /// follow the insertion order, which for tables with ascending keys
    /// would put every primary key value in the file in plaintext.
    fn insert_shadow(
        &self,
        rid: &RecordId,
        envelope: &[u8],
        version: &Version,
        deleted: bool,
    ) -> Result<i64, ExtError> {
        // A collision among 2^63 values is vanishingly rare; a few retries
        // make it impossible to fail for that reason in practice.
        for _ in 0..4 {
            let rowid = random_rowid()?;
            let inserted = self.with_statement(
                "insert",
                |t| {
                    format!(
                        "INSERT INTO {}(id, rid, env, clock, device, deleted, pushed) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)",
                        t.shadow("rows")
                    )
                },
                |stmt| {
                    stmt.bind_i64(1, rowid)?;
                    stmt.bind_blob(2, rid.as_bytes())?;
                    stmt.bind_blob(3, envelope)?;
                    stmt.bind_i64(4, clock_to_sql(version.clock))?;
                    stmt.bind_blob(5, version.device.as_bytes())?;
                    stmt.bind_i64(6, i64::from(deleted))?;
                    stmt.execute()
                },
            );
            match inserted {
                Ok(()) => return Ok(rowid),
                Err(ExtError::Sqlite { code, .. })
                    if code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY && !self.rid_exists(rid)? => {}
                Err(err) => return Err(err),
            }
        }
        Err(ExtError::usage(format!(
            "encrypted table {}: no free random rowid found after 4 tries",
            self.name()
        )))
    }

    fn rid_exists(&self, rid: &RecordId) -> Result<bool, ExtError> {
        Ok(self.find(rid)?.is_some())
    }

    fn delete(&self, store: &OpenStore, rowid: i64) -> Result<(), ExtError> {
        let Some(stored) = self.find_rowid(rowid)? else {
            return Ok(());
        };
        let old = self.open_row(rowid, stored.rid.as_bytes(), &stored.envelope)?;
        let (version, envelope) = self.tombstone(store, &old, &stored)?;
        self.with_statement(
            "write",
            |t| {
                format!(
                    "UPDATE {} SET rid = ?2, env = ?3, clock = ?4, device = ?5, deleted = ?6, \
                     pushed = 0 WHERE id = ?1",
                    t.shadow("rows")
                )
            },
            |stmt| {
                stmt.bind_i64(1, rowid)?;
                stmt.bind_blob(2, stored.rid.as_bytes())?;
                stmt.bind_blob(3, &envelope)?;
                stmt.bind_i64(4, clock_to_sql(version.clock))?;
                stmt.bind_blob(5, version.device.as_bytes())?;
                stmt.bind_i64(6, 1)?;
                stmt.execute()
            },
        )
    }

    /// Seals a tombstone for a deleted row, padded to the size of the row.
    fn tombstone(
        &self,
        store: &OpenStore,
        old: &Row,
        stored: &Stored,
    ) -> Result<(Version, Vec<u8>), ExtError> {
        let key_columns: Vec<(&str, ValueRef<'_>)> = if self.schema.primary_key.is_empty() {
            old.columns
                .iter()
                .filter(|(name, _)| name == ROW_KEY_COLUMN)
                .map(|(name, value)| (name.as_str(), value.as_ref()))
                .collect()
        } else {
            self.schema
                .primary_key
                .iter()
                .map(|index| {
                    let name = self.schema.columns[*index].name.as_str();
                    let value = old.get(name).map_or(ValueRef::Null, Value::as_ref);
                    (name, value)
                })
                .collect()
        };
        let bytes = codec::encode_row(RowKind::Tombstone, key_columns)
            .context_with(|| format!("encrypted table {}: encoding a tombstone", self.name()))?;
        let old_len = stored
            .envelope
            .len()
            .saturating_sub(envelope::HEADER_LEN + 1 + persist_core::primitives::TAG_LEN);
        let version = store.next_version(Some(&stored.version));
        let envelope = self.seal(
            store,
            &stored.rid,
            &bytes,
            Padding::Bucket { at_least: old_len },
        )?;
        Ok((version, envelope))
    }

    /// Writes a live row at shadow row `rowid`, superseding `current`.
    fn write_live(
        &self,
        store: &OpenStore,
        rowid: i64,
        rid: &RecordId,
        bytes: &[u8],
        current: Option<&Version>,
    ) -> Result<(), ExtError> {
        let version = store.next_version(current);
        let envelope = self.seal(store, rid, bytes, Padding::None)?;
        self.with_statement(
            "write",
            |t| {
                format!(
                    "UPDATE {} SET rid = ?2, env = ?3, clock = ?4, device = ?5, deleted = ?6, \
                     pushed = 0 WHERE id = ?1",
                    t.shadow("rows")
                )
            },
            |stmt| {
                stmt.bind_i64(1, rowid)?;
                stmt.bind_blob(2, rid.as_bytes())?;
                stmt.bind_blob(3, &envelope)?;
                stmt.bind_i64(4, clock_to_sql(version.clock))?;
                stmt.bind_blob(5, version.device.as_bytes())?;
                stmt.bind_i64(6, 0)?;
                stmt.execute()
            },
        )
    }

    fn seal(
        &self,
        store: &OpenStore,
        rid: &RecordId,
        bytes: &[u8],
        padding: Padding,
    ) -> Result<Vec<u8>, ExtError> {
        let envelope = store
            .cipher
            .seal(&self.row_location(rid), bytes, padding)
            .context_with(|| format!("encrypted table {}: sealing a row", self.name()))?;
        self.conn.counters.count_seal();
        Ok(envelope)
    }

    fn record_id(
        &self,
        store: &OpenStore,
        values: &[Converted<'_>],
        row_key: Option<&[u8; 16]>,
    ) -> RecordId {
        match row_key {
            Some(key) => store
                .cipher
                .record_id(&self.logical, &[ValueRef::Blob(key)]),
            None => {
                let key: Vec<ValueRef<'_>> = self
                    .schema
                    .primary_key
                    .iter()
                    .map(|index| values[*index].as_ref())
                    .collect();
                store.cipher.record_id(&self.logical, &key)
            }
        }
    }

    /// The hidden row key of a row of a table without a primary key.
    fn row_key_of(&self, row: &Row) -> Result<Option<[u8; 16]>, ExtError> {
        if !self.schema.primary_key.is_empty() {
            return Ok(None);
        }
        match row.get(ROW_KEY_COLUMN) {
            Some(Value::Blob(bytes)) if bytes.len() == 16 => {
                let mut key = [0u8; 16];
                key.copy_from_slice(bytes);
                Ok(Some(key))
            }
            _ => Err(ExtError::usage(format!(
                "encrypted table {}: a stored row lacks its row key",
                self.name()
            ))),
        }
    }

    /// Encodes the new values, keeping columns of `old` that this table's
    /// schema does not know (written by a device with a newer schema).
    fn encode(
        &self,
        values: &[Converted<'_>],
        row_key: Option<&[u8; 16]>,
        old: Option<&Row>,
    ) -> Result<Vec<u8>, ExtError> {
        let mut columns: Vec<(&str, ValueRef<'_>)> = self
            .schema
            .columns
            .iter()
            .zip(values)
            .map(|(column, value)| (column.name.as_str(), value.as_ref()))
            .collect();
        if let Some(key) = row_key {
            columns.push((ROW_KEY_COLUMN, ValueRef::Blob(key)));
        }
        if let Some(old) = old {
            for (name, value) in &old.columns {
                if name != ROW_KEY_COLUMN && self.schema.column_index(name).is_none() {
                    columns.push((name.as_str(), value.as_ref()));
                }
            }
        }
        let bytes = codec::encode_row(RowKind::Row, columns.iter().copied())
            .context_with(|| format!("encrypted table {}", self.name()))?;
        Ok(bytes.to_vec())
    }

    fn find(&self, rid: &RecordId) -> Result<Option<Stored>, ExtError> {
        self.with_statement(
            "find_rid",
            |t| {
                format!(
                    "SELECT id, rid, env, clock, device, deleted FROM {} WHERE rid = ?1",
                    t.shadow("rows")
                )
            },
            |stmt| {
                stmt.bind_blob(1, rid.as_bytes())?;
                read_stored(stmt)
            },
        )
    }

    fn find_rowid(&self, rowid: i64) -> Result<Option<Stored>, ExtError> {
        self.with_statement(
            "find_rowid",
            |t| {
                format!(
                    "SELECT id, rid, env, clock, device, deleted FROM {} \
                     WHERE id = ?1 AND deleted = 0",
                    t.shadow("rows")
                )
            },
            |stmt| {
                stmt.bind_i64(1, rowid)?;
                read_stored(stmt)
            },
        )
    }

    /// The next free INTEGER key: one more than the largest key in the
    /// table, found by a scan the first time and tracked afterwards for as
    /// long as no other connection commits.
    fn next_integer_key(&self) -> Result<i64, ExtError> {
        let data_version = self.data_version()?;
        let cached = *self.integer_keys.borrow();
        let max = match cached {
            Some(keys) if keys.data_version == data_version => keys.max,
            _ => self.scan_max_integer_key()?,
        };
        let next = max.checked_add(1).ok_or_else(|| ExtError::Constraint {
            code: ffi::SQLITE_FULL,
            message: format!(
                "encrypted table {}: the largest INTEGER key is in use; give keys explicitly",
                self.name()
            ),
        })?;
        *self.integer_keys.borrow_mut() = Some(IntegerKeys { data_version, max });
        Ok(next)
    }

    fn note_integer_key(&self, values: &[Converted<'_>]) {
        if !self.schema.has_integer_key() {
            return;
        }
        if let ValueRef::Integer(key) = values[self.schema.primary_key[0]].as_ref()
            && let Some(keys) = self.integer_keys.borrow_mut().as_mut()
        {
            keys.max = keys.max.max(key);
        }
    }

    fn scan_max_integer_key(&self) -> Result<i64, ExtError> {
        let key_name = self.schema.columns[self.schema.primary_key[0]].name.clone();
        let mut stmt = self.cursor_statement(Plan::Scan)?;
        let mut max = 0i64;
        while stmt.step()? == Step::Row {
            let row = self.open_row(
                stmt.column_i64(0),
                &stmt.column_blob(1),
                &stmt.column_blob(2),
            )?;
            if let Some(Value::Integer(key)) = row.get(&key_name) {
                max = max.max(*key);
            }
        }
        self.release_cursor_statement(Plan::Scan, stmt);
        Ok(max)
    }

    fn data_version(&self) -> Result<i64, ExtError> {
        self.with_statement(
            "data_version",
            |t| format!("PRAGMA {}.data_version", quote_identifier(&t.schema_name)),
            |stmt| {
                stmt.step()?;
                Ok(stmt.column_i64(0))
            },
        )
    }
}

/// A random positive rowid.
fn random_rowid() -> Result<i64, ExtError> {
    let bytes: [u8; 8] =
        persist_core::random::array().context_with(|| "generating a rowid".into())?;
    Ok((i64::from_be_bytes(bytes) & i64::MAX).max(1))
}

fn read_stored(stmt: &mut Stmt) -> Result<Option<Stored>, ExtError> {
    if stmt.step()? == Step::Done {
        return Ok(None);
    }
    let rid = RecordId::from_slice(&stmt.column_blob(1))
        .context_with(|| "a shadow row has a malformed record id".into())?;
    let device = DeviceId::from_slice(&stmt.column_blob(4))
        .context_with(|| "a shadow row has a malformed device id".into())?;
    Ok(Some(Stored {
        rowid: stmt.column_i64(0),
        rid,
        envelope: stmt.column_blob(2),
        version: Version {
            clock: clock_from_sql(stmt.column_i64(3)),
            device,
        },
        deleted: stmt.column_i64(5) != 0,
    }))
}

/// Stores a clock value in an INTEGER column; values stay far below 2^63
/// until the year 10889.
pub fn clock_to_sql(clock: u64) -> i64 {
    i64::try_from(clock).unwrap_or(i64::MAX)
}

/// Reads a clock value from an INTEGER column.
pub fn clock_from_sql(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
