//! An encrypted table: SQL semantics on top of its shadow tables.
//!
//! [`Table`] turns xUpdate calls into shadow rows: it applies column
//! affinity, enforces NOT NULL and primary-key uniqueness with SQLite's usual
//! errors, computes blind record ids, seals rows and leaves tombstones for
//! deletes. Storage itself is [`Shadow`]'s. A primary-key equality (or IN)
//! lookup computes the blind id and reads one row through the unique index on
//! `rid`; anything else scans, one row at a time.

use std::cell::RefCell;
use std::ffi::c_int;
use std::sync::Arc;

use persist_core::codec::{self, Row, RowKind, Value, ValueRef};
use persist_core::sync::Version;
use persist_core::{Padding, RecordId};
use rusqlite::ffi;

use super::schema::{ROW_KEY_COLUMN, Schema};
use super::shadow::{OpenedRow, Plan as ShadowPlan, Shadow, Stored};
use crate::affinity::{self, Converted};
use crate::db::{Db, Step, Stmt};
use crate::error::{CoreContext, ExtError};
use crate::state::{Connection, OpenStore};

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

    fn shadow_plan(self) -> ShadowPlan {
        match self {
            Self::Scan => ShadowPlan::Scan,
            Self::PrimaryKey => ShadowPlan::RecordId,
            Self::Rowid => ShadowPlan::Rowid,
        }
    }
}

/// One encrypted table on one connection.
pub struct Table {
    conn: Arc<Connection>,
    db: Db,
    /// The parsed column definitions.
    pub schema: Schema,
    shadow: Shadow,
    integer_keys: RefCell<Option<IntegerKeys>>,
}

/// The largest INTEGER key in the table, valid while no other connection
/// commits and this one neither rolls back nor applies synced changes.
#[derive(Clone, Copy)]
struct IntegerKeys {
    data_version: i64,
    generation: u64,
    max: i64,
}

impl Table {
    /// Creates a new encrypted table and its shadow tables, and applies the
    /// records that sync received for it before it existed.
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
        let store = conn.store().map_err(|_| {
            ExtError::usage(format!(
                "cannot create encrypted table {name}: no Persist store is open on this \
                 connection; call SELECT persist_init('<store name>') first"
            ))
        })?;
        if schema_name != "main" {
            return Err(ExtError::usage(format!(
                "cannot create encrypted table {schema_name}.{name}: encrypted tables live in \
                 the main database, whose store persist_init opened"
            )));
        }
        // The new table is in sqlite_schema already, without shadow tables.
        let others: Vec<String> = super::shadow::table_names(db)?
            .into_iter()
            .filter(|other| other != name)
            .collect();
        if let Some((other, _)) = super::shadow::logical_names(db, &others)?
            .into_iter()
            .find(|(_, logical)| logical == name)
        {
            return Err(ExtError::usage(format!(
                "cannot create encrypted table {name}: table {other} was created under that \
                 name and its rows stay bound to it; choose another name"
            )));
        }
        let shadow = Shadow::create(db, schema_name, name, &schema.declaration())?;
        crate::sync::apply_inbox(&store, &conn.counters, &shadow)?;
        conn.bump_generation();
        Ok(Self::new(conn, db, shadow, schema))
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
        let shadow = Shadow::open(db, schema_name, name)?;
        Ok(Self::new(conn, db, shadow, schema))
    }

    fn new(conn: Arc<Connection>, db: Db, shadow: Shadow, schema: Schema) -> Self {
        Self {
            conn,
            db,
            schema,
            shadow,
            integer_keys: RefCell::new(None),
        }
    }

    /// The table's current name.
    pub fn name(&self) -> String {
        self.shadow.name()
    }

    /// Estimated number of rows, for the planner. Rowids are random and a
    /// count would read the whole table, so this is a fixed guess: the
    /// planner only has to prefer a key lookup to a scan.
    pub fn estimated_rows(&self) -> i64 {
        100_000
    }

    /// Prepares for the first write of a transaction.
    pub fn begin_transaction(&self) {
        self.shadow.begin_transaction();
    }

    /// Drops caches that a rollback makes stale, on this table and, through
    /// the connection's generation, on every other.
    pub fn forget_caches(&self) {
        self.conn.bump_generation();
        *self.integer_keys.borrow_mut() = None;
    }

    /// Drops the shadow tables.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn destroy(&self) -> Result<(), ExtError> {
        self.shadow.destroy()
    }

    /// Renames the shadow tables along with the table.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn rename(&self, new_name: &str) -> Result<(), ExtError> {
        self.shadow.rename(new_name)
    }

    /// Takes a statement for a cursor with `plan`; it selects `id, rid, env`.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn cursor_statement(&self, plan: Plan) -> Result<Stmt, ExtError> {
        self.shadow.cursor_statement(plan.shadow_plan())
    }

    /// Returns a cursor's statement for reuse.
    pub fn release_cursor_statement(&self, plan: Plan, stmt: Stmt) {
        self.shadow
            .release_cursor_statement(plan.shadow_plan(), stmt);
    }

    /// The connection's open store, or an error telling the user to open one.
    ///
    /// # Errors
    ///
    /// A usage error when no store is open.
    pub fn store(&self) -> Result<Arc<OpenStore>, ExtError> {
        self.conn.store().map_err(|_| {
            ExtError::usage(format!(
                "encrypted table {} needs an open store: call SELECT persist_init('<store \
                 name>') on this connection first",
                self.name()
            ))
        })
    }

    /// Checks that shadow row `rowid` sits in its record's slots.
    ///
    /// # Errors
    ///
    /// As [`Shadow::check_slot`].
    pub fn check_slot(&self, rowid: i64, rid: &[u8]) -> Result<(), ExtError> {
        self.shadow.check_slot(rowid, rid)
    }

    /// Opens and decodes the envelope of shadow row `rowid`.
    ///
    /// # Errors
    ///
    /// A core error naming the table and row when the envelope does not
    /// open or decode.
    pub fn open_row(&self, rowid: i64, rid: &[u8], envelope: &[u8]) -> Result<Row, ExtError> {
        let store = self.store()?;
        self.shadow.check_slot(rowid, rid)?;
        self.shadow
            .open_row(&store, &self.conn.counters, rowid, rid, envelope, false)
    }

    /// Opens the envelope of live shadow row `rowid` with `store` and
    /// decodes it in place, as a scan reads it.
    ///
    /// # Errors
    ///
    /// As [`Shadow::open_spans`], and [`Shadow::check_slot`] when the row is
    /// not in its record's slots.
    pub fn open_spans(
        &self,
        store: &OpenStore,
        rowid: i64,
        rid: &[u8],
        envelope: &[u8],
    ) -> Result<OpenedRow, ExtError> {
        self.shadow.check_slot(rowid, rid)?;
        self.shadow
            .open_spans(store, &self.conn.counters, rowid, rid, envelope, false)
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
                unsafe { affinity::read_with_affinity(*arg, column.affinity, &column.name) }
                    .map_err(|err| self.in_table(err))?;
            if matches!(value.as_ref(), ValueRef::Null) {
                return Ok(None);
            }
            values.push(value);
        }
        let refs: Vec<ValueRef<'_>> = values.iter().map(Converted::as_ref).collect();
        Ok(Some(store.cipher.record_id(self.shadow.logical(), &refs)))
    }

    /// Prefixes a value error, which names the column, with the table.
    fn in_table(&self, err: ExtError) -> ExtError {
        match err {
            ExtError::Usage(message) => {
                ExtError::Usage(format!("encrypted table {}, column {message}", self.name()))
            }
            other => other,
        }
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
                values.push(
                    affinity::read_with_affinity(*arg, column.affinity, &column.name)
                        .map_err(|err| self.in_table(err))?,
                );
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
        if self.schema.has_integer_key() {
            // As for an INTEGER PRIMARY KEY of an ordinary table, a value
            // that INTEGER affinity cannot make an integer is rejected.
            let key = self.schema.primary_key[0];
            let value = values[key].as_ref();
            if !matches!(value, ValueRef::Null | ValueRef::Integer(_)) {
                return Err(ExtError::Constraint {
                    code: ffi::SQLITE_MISMATCH,
                    message: format!(
                        "datatype mismatch: {}.{} is an INTEGER PRIMARY KEY and takes only \
                         integers, got a {} value",
                        self.name(),
                        self.schema.columns[key].name,
                        value.type_name()
                    ),
                });
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

        // The common case, a new record whose first slot is free, needs one
        // INSERT and no lookup.
        let bytes = self.encode(&values, row_key.as_ref(), None)?;
        let version = store.next_version(None);
        let envelope = self.seal(store, &rid, &bytes, Padding::None)?;
        let seq = self.shadow.next_seq()?;
        if let Some(rowid) = self
            .shadow
            .insert_in_first_slot(&rid, &envelope, &version, seq)?
        {
            self.note_integer_key(&values);
            return Ok(rowid);
        }

        let probe = self.shadow.probe(&rid)?;

        let rowid = match probe.found {
            Some(existing) if !existing.deleted => {
                if self.db.on_conflict() != ffi::SQLITE_REPLACE {
                    return Err(self.unique_error());
                }
                // INSERT OR REPLACE: the new row takes the place of the old
                // one, keeping columns it does not know.
                let old = self.open_live(&existing)?;
                let bytes = self.encode(&values, row_key.as_ref(), Some(&old))?;
                self.write_live(store, existing.rowid, &rid, &bytes, Some(&existing.version))?;
                self.forget_integer_key_if_max(&old);
                existing.rowid
            }
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
            // The first slot belongs to another record: take a later one.
            None => {
                let slot = self.free_slot(probe.free_slot)?;
                self.shadow
                    .insert(slot, &rid, &envelope, &version, false, seq)?;
                slot
            }
        };
        self.note_integer_key(&values);
        Ok(rowid)
    }

    fn free_slot(&self, slot: Option<i64>) -> Result<i64, ExtError> {
        slot.ok_or_else(|| {
            ExtError::usage(format!(
                "encrypted table {}: no free slot for a new record",
                self.name()
            ))
        })
    }

    fn update_row(
        &self,
        store: &OpenStore,
        rowid: i64,
        mut values: Vec<Converted<'_>>,
    ) -> Result<(), ExtError> {
        self.check_values(&mut values, false)?;
        let stored = self.shadow.find_rowid(rowid)?.ok_or_else(|| {
            ExtError::usage(format!(
                "encrypted table {}: row {rowid} to update does not exist",
                self.name()
            ))
        })?;
        let old = self.open_live(&stored)?;
        let row_key = self.row_key_of(&old)?;
        let rid = self.record_id(store, &values, row_key.as_ref());
        let bytes = self.encode(&values, row_key.as_ref(), Some(&old))?;
        self.forget_integer_key_if_max(&old);

        if rid == stored.rid {
            self.write_live(store, rowid, &rid, &bytes, Some(&stored.version))?;
            self.note_integer_key(&values);
            return Ok(());
        }

        // The primary key changed: the new key's record must be free, a
        // tombstone, or replaced; the old key's record becomes a tombstone
        // in place. Shadow rows are never deleted, so probes stay intact.
        let probe = self.shadow.probe(&rid)?;
        match probe.found {
            Some(conflict) => {
                if !conflict.deleted && self.db.on_conflict() != ffi::SQLITE_REPLACE {
                    return Err(self.unique_error());
                }
                let superseded = stored.version.max(conflict.version);
                self.write_live(store, conflict.rowid, &rid, &bytes, Some(&superseded))?;
            }
            None => {
                let slot = self.free_slot(probe.free_slot)?;
                let version = store.next_version(Some(&stored.version));
                let envelope = self.seal(store, &rid, &bytes, Padding::None)?;
                let seq = self.shadow.next_seq()?;
                self.shadow
                    .insert(slot, &rid, &envelope, &version, false, seq)?;
            }
        }
        self.write_tombstone(store, &old, &stored)?;
        self.note_integer_key(&values);
        Ok(())
    }

    fn delete(&self, store: &OpenStore, rowid: i64) -> Result<(), ExtError> {
        let Some(stored) = self.shadow.find_rowid(rowid)? else {
            return Ok(());
        };
        let old = self.open_live(&stored)?;
        self.forget_integer_key_if_max(&old);
        self.write_tombstone(store, &old, &stored)
    }

    fn open_live(&self, stored: &Stored) -> Result<Row, ExtError> {
        self.open_row(stored.rowid, stored.rid.as_bytes(), &stored.envelope)
    }

    /// Replaces a live shadow row with the tombstone of its record.
    fn write_tombstone(
        &self,
        store: &OpenStore,
        old: &Row,
        stored: &Stored,
    ) -> Result<(), ExtError> {
        let (version, envelope) = self.tombstone(store, old, stored)?;
        let seq = self.shadow.next_seq()?;
        self.shadow
            .write(stored.rowid, &stored.rid, &envelope, &version, true, seq)
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
        let old_len = super::shadow::payload_len(&stored.envelope);
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
        let seq = self.shadow.next_seq()?;
        self.shadow
            .write(rowid, rid, &envelope, &version, false, seq)
    }

    fn seal(
        &self,
        store: &OpenStore,
        rid: &RecordId,
        bytes: &[u8],
        padding: Padding,
    ) -> Result<Vec<u8>, ExtError> {
        self.shadow
            .seal(store, &self.conn.counters, rid, bytes, padding)
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
                .record_id(self.shadow.logical(), &[ValueRef::Blob(key)]),
            None => {
                let key: Vec<ValueRef<'_>> = self
                    .schema
                    .primary_key
                    .iter()
                    .map(|index| values[*index].as_ref())
                    .collect();
                store.cipher.record_id(self.shadow.logical(), &key)
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

    /// The next free INTEGER key: one more than the largest key in the
    /// table, as SQLite gives an INTEGER PRIMARY KEY. The largest key is
    /// found by a scan the first time and then tracked, until a change the
    /// tracking cannot see: another connection's commit, a rollback, synced
    /// changes, or the removal of the largest key.
    fn next_integer_key(&self) -> Result<i64, ExtError> {
        let data_version = self.shadow.data_version()?;
        let generation = self.conn.generation();
        let cached = *self.integer_keys.borrow();
        let max = match cached {
            Some(keys) if keys.data_version == data_version && keys.generation == generation => {
                keys.max
            }
            _ => self.scan_max_integer_key()?,
        };
        let next = max.checked_add(1).ok_or_else(|| ExtError::Constraint {
            code: ffi::SQLITE_FULL,
            message: format!(
                "encrypted table {}: the largest INTEGER key is in use; give keys explicitly",
                self.name()
            ),
        })?;
        *self.integer_keys.borrow_mut() = Some(IntegerKeys {
            data_version,
            generation,
            max,
        });
        Ok(next)
    }

    /// Drops the tracked largest key when `old`, a row being replaced or
    /// deleted, holds it.
    fn forget_integer_key_if_max(&self, old: &Row) {
        if !self.schema.has_integer_key() {
            return;
        }
        let key_name = &self.schema.columns[self.schema.primary_key[0]].name;
        let mut cached = self.integer_keys.borrow_mut();
        if let (Some(keys), Some(Value::Integer(key))) = (cached.as_ref(), old.get(key_name))
            && *key >= keys.max
        {
            *cached = None;
        }
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
}
