//! The shadow tables of one encrypted table, and every statement on them.
//!
//! An encrypted table `T` keeps its rows in two ordinary tables:
//!
//! - `T_rows(id, rid, env, clock, device, deleted, pushed)`: one row per
//!   record, with the blind record id, the envelope, the version of the last
//!   write, a tombstone flag and whether the sync server has the last write.
//!   No value and no primary key appears here. `id` is the virtual table's
//!   rowid, random so that it does not follow the insertion order.
//! - `T_config(key, value)`: the table's logical name, which its envelopes and
//!   blind ids are bound to and which stays fixed when the table is renamed,
//!   and the shadow format version.
//!
//! Both the virtual table and the sync client write rows through
//! [`Shadow`], so the layout is defined in this one place.

use std::cell::RefCell;
use std::collections::HashMap;

use persist_core::codec::{self, Row, ValueRef};
use persist_core::sync::Version;
use persist_core::{DeviceId, Location, Padding, Purpose, RecordId};
use rusqlite::ffi;

use crate::db::{Db, Step, Stmt, quote_identifier};
use crate::error::{CoreContext, ExtError};
use crate::state::{Counters, OpenStore};

/// Format version of the shadow tables.
pub const SHADOW_VERSION: i64 = 1;

/// How a cursor reads rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Every live row.
    Scan,
    /// The row with a given record id.
    RecordId,
    /// The row with a given rowid.
    Rowid,
}

/// A shadow row.
pub struct Stored {
    /// The local rowid.
    pub rowid: i64,
    /// The blind record id.
    pub rid: RecordId,
    /// The envelope of the row or tombstone.
    pub envelope: Vec<u8>,
    /// The version of the last write.
    pub version: Version,
    /// Whether the row is a tombstone.
    pub deleted: bool,
    /// Whether the sync server has this version.
    pub pushed: bool,
}

/// The shadow tables of one encrypted table.
pub struct Shadow {
    db: Db,
    schema_name: String,
    name: RefCell<String>,
    logical: String,
    statements: RefCell<HashMap<&'static str, Stmt>>,
    idle_cursors: RefCell<Vec<(Plan, Stmt)>>,
}

impl Shadow {
    /// Creates the shadow tables for a new table named `name`.
    ///
    /// # Errors
    ///
    /// A usage error when the tables exist already, and SQLite's errors.
    pub fn create(
        db: Db,
        schema_name: &str,
        name: &str,
        declaration: &str,
    ) -> Result<Self, ExtError> {
        let shadow = Self::new(db, schema_name, name, name.to_owned());
        db.exec(&format!(
            "CREATE TABLE {rows}(
                 id INTEGER PRIMARY KEY,
                 rid BLOB NOT NULL UNIQUE,
                 env BLOB NOT NULL,
                 clock INTEGER NOT NULL,
                 device BLOB NOT NULL,
                 deleted INTEGER NOT NULL DEFAULT 0,
                 pushed INTEGER NOT NULL DEFAULT 0);
             {index};
             CREATE TABLE {config}(key TEXT PRIMARY KEY NOT NULL, value) WITHOUT ROWID;",
            rows = shadow.table("rows"),
            index = shadow.unpushed_index_sql(name),
            config = shadow.table("config"),
        ))
        .map_err(|err| {
            ExtError::usage(format!(
                "cannot create encrypted table {name}: its shadow tables cannot be created \
                 ({err}); drop leftover tables {name}_rows and {name}_config first"
            ))
        })?;
        let mut insert = db.prepare(&format!(
            "INSERT INTO {}(key, value) VALUES (?1, ?2)",
            shadow.table("config")
        ))?;
        for (key, value) in [
            ("logical_name", ValueRef::Text(name)),
            ("version", ValueRef::Integer(SHADOW_VERSION)),
            ("declaration", ValueRef::Text(declaration)),
        ] {
            insert.bind_text(1, key)?;
            insert.bind(2, value)?;
            insert.execute()?;
        }
        Ok(shadow)
    }

    /// Opens the shadow tables of an existing table.
    ///
    /// # Errors
    ///
    /// A usage error when they are missing or of another version.
    pub fn open(db: Db, schema_name: &str, name: &str) -> Result<Self, ExtError> {
        let logical = read_logical_name(db, schema_name, name)?;
        Ok(Self::new(db, schema_name, name, logical))
    }

    fn new(db: Db, schema_name: &str, name: &str, logical: String) -> Self {
        Self {
            db,
            schema_name: schema_name.to_owned(),
            name: RefCell::new(name.to_owned()),
            logical,
            statements: RefCell::new(HashMap::new()),
            idle_cursors: RefCell::new(Vec::new()),
        }
    }

    /// The table's current name.
    pub fn name(&self) -> String {
        self.name.borrow().clone()
    }

    /// The logical name that envelopes and blind ids are bound to.
    pub fn logical(&self) -> &str {
        &self.logical
    }

    /// The database connection.
    pub fn db(&self) -> Db {
        self.db
    }

    /// The quoted, schema-qualified name of shadow table `suffix`.
    fn table(&self, suffix: &str) -> String {
        format!(
            "{}.{}",
            quote_identifier(&self.schema_name),
            quote_identifier(&format!("{}_{suffix}", self.name.borrow()))
        )
    }

    fn unpushed_index_sql(&self, name: &str) -> String {
        format!(
            "CREATE INDEX {}.{} ON {}(pushed) WHERE pushed = 0",
            quote_identifier(&self.schema_name),
            quote_identifier(&format!("{name}_rows_unpushed")),
            quote_identifier(&format!("{name}_rows")),
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
            self.table("rows"),
            self.table("config")
        ))
    }

    /// Renames the shadow tables for the table's new name.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn rename(&self, new_name: &str) -> Result<(), ExtError> {
        self.forget_statements();
        // Index names are not renamed with their table, and a leftover name
        // would collide with the index of a new table of the old name.
        self.db.exec(&format!(
            "DROP INDEX IF EXISTS {}.{};",
            quote_identifier(&self.schema_name),
            quote_identifier(&format!("{}_rows_unpushed", self.name.borrow())),
        ))?;
        for suffix in ["rows", "config"] {
            self.db.exec(&format!(
                "ALTER TABLE {} RENAME TO {}",
                self.table(suffix),
                quote_identifier(&format!("{new_name}_{suffix}"))
            ))?;
        }
        *self.name.borrow_mut() = new_name.to_owned();
        self.db.exec(&self.unpushed_index_sql(new_name))
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

    /// Takes an idle statement for a cursor with `plan`, or prepares one. It
    /// selects `id, rid, env` of live rows.
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
        let rows = self.table("rows");
        let filter = match plan {
            Plan::Scan => "deleted = 0",
            Plan::RecordId => "rid = ?1 AND deleted = 0",
            Plan::Rowid => "id = ?1 AND deleted = 0",
        };
        self.db
            .prepare_persistent(&format!("SELECT id, rid, env FROM {rows} WHERE {filter}"))
    }

    /// Returns a cursor's statement for reuse.
    pub fn release_cursor_statement(&self, plan: Plan, mut stmt: Stmt) {
        stmt.reset();
        let mut idle = self.idle_cursors.borrow_mut();
        if idle.len() < 8 {
            idle.push((plan, stmt));
        }
    }

    fn location<'a>(&'a self, rid: &'a RecordId) -> Location<'a> {
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
    /// A core error naming the table and row when the envelope does not open
    /// or decode.
    pub fn open_row(
        &self,
        store: &OpenStore,
        counters: &Counters,
        rowid: i64,
        rid: &[u8],
        envelope: &[u8],
    ) -> Result<Row, ExtError> {
        let context = || {
            format!(
                "encrypted table {}, row {rowid}: the stored envelope cannot be decrypted",
                self.name()
            )
        };
        let rid = RecordId::from_slice(rid).context_with(context)?;
        let plaintext = store
            .cipher
            .open(&self.location(&rid), envelope)
            .context_with(context)?;
        counters.count_open();
        codec::decode_row(&plaintext).context_with(context)
    }

    /// Seals encoded row bytes for record `rid`.
    ///
    /// # Errors
    ///
    /// A core error when sealing fails.
    pub fn seal(
        &self,
        store: &OpenStore,
        counters: &Counters,
        rid: &RecordId,
        bytes: &[u8],
        padding: Padding,
    ) -> Result<Vec<u8>, ExtError> {
        let envelope = store
            .cipher
            .seal(&self.location(rid), bytes, padding)
            .context_with(|| format!("encrypted table {}: sealing a row", self.name()))?;
        counters.count_seal();
        Ok(envelope)
    }

    /// The shadow row of record `rid`, live or tombstone.
    ///
    /// # Errors
    ///
    /// SQLite's errors, and a usage error for a damaged shadow row.
    pub fn find(&self, rid: &RecordId) -> Result<Option<Stored>, ExtError> {
        self.with_statement(
            "find_rid",
            |s| {
                format!(
                    "SELECT id, rid, env, clock, device, deleted, pushed FROM {} WHERE rid = ?1",
                    s.table("rows")
                )
            },
            |stmt| {
                stmt.bind_blob(1, rid.as_bytes())?;
                read_stored(stmt)
            },
        )
    }

    /// The live shadow row with rowid `rowid`.
    ///
    /// # Errors
    ///
    /// As [`Shadow::find`].
    pub fn find_rowid(&self, rowid: i64) -> Result<Option<Stored>, ExtError> {
        self.with_statement(
            "find_rowid",
            |s| {
                format!(
                    "SELECT id, rid, env, clock, device, deleted, pushed FROM {} \
                     WHERE id = ?1 AND deleted = 0",
                    s.table("rows")
                )
            },
            |stmt| {
                stmt.bind_i64(1, rowid)?;
                read_stored(stmt)
            },
        )
    }

    /// Inserts a shadow row under a fresh random rowid and returns it.
    ///
    /// # Errors
    ///
    /// SQLite's errors, such as a record id that exists already.
    pub fn insert(
        &self,
        rid: &RecordId,
        envelope: &[u8],
        version: &Version,
        deleted: bool,
        pushed: bool,
    ) -> Result<i64, ExtError> {
        // A collision among 2^63 values is vanishingly rare; a few retries
        // make it impossible to fail for that reason in practice.
        for _ in 0..4 {
            let rowid = random_rowid()?;
            let inserted = self.with_statement(
                "insert",
                |s| {
                    format!(
                        "INSERT INTO {}(id, rid, env, clock, device, deleted, pushed) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        s.table("rows")
                    )
                },
                |stmt| {
                    stmt.bind_i64(1, rowid)?;
                    stmt.bind_blob(2, rid.as_bytes())?;
                    stmt.bind_blob(3, envelope)?;
                    stmt.bind_i64(4, clock_to_sql(version.clock))?;
                    stmt.bind_blob(5, version.device.as_bytes())?;
                    stmt.bind_i64(6, i64::from(deleted))?;
                    stmt.bind_i64(7, i64::from(pushed))?;
                    stmt.execute()
                },
            );
            match inserted {
                Ok(()) => return Ok(rowid),
                Err(ExtError::Sqlite { code, .. })
                    if code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY && self.find(rid)?.is_none() => {}
                Err(err) => return Err(err),
            }
        }
        Err(ExtError::usage(format!(
            "encrypted table {}: no free random rowid found after 4 tries",
            self.name()
        )))
    }

    /// Overwrites shadow row `rowid`.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn write(
        &self,
        rowid: i64,
        rid: &RecordId,
        envelope: &[u8],
        version: &Version,
        deleted: bool,
        pushed: bool,
    ) -> Result<(), ExtError> {
        self.with_statement(
            "write",
            |s| {
                format!(
                    "UPDATE {} SET rid = ?2, env = ?3, clock = ?4, device = ?5, deleted = ?6, \
                     pushed = ?7 WHERE id = ?1",
                    s.table("rows")
                )
            },
            |stmt| {
                stmt.bind_i64(1, rowid)?;
                stmt.bind_blob(2, rid.as_bytes())?;
                stmt.bind_blob(3, envelope)?;
                stmt.bind_i64(4, clock_to_sql(version.clock))?;
                stmt.bind_blob(5, version.device.as_bytes())?;
                stmt.bind_i64(6, i64::from(deleted))?;
                stmt.bind_i64(7, i64::from(pushed))?;
                stmt.execute()
            },
        )
    }

    /// Deletes the shadow row of record `rid`.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn delete(&self, rid: &RecordId) -> Result<(), ExtError> {
        self.with_statement(
            "delete_rid",
            |s| format!("DELETE FROM {} WHERE rid = ?1", s.table("rows")),
            |stmt| {
                stmt.bind_blob(1, rid.as_bytes())?;
                stmt.execute()
            },
        )
    }

    /// Up to `limit` rows that the sync server does not have yet.
    ///
    /// # Errors
    ///
    /// As [`Shadow::find`].
    pub fn unpushed(&self, limit: i64) -> Result<Vec<Stored>, ExtError> {
        self.with_statement(
            "unpushed",
            |s| {
                format!(
                    "SELECT id, rid, env, clock, device, deleted, pushed FROM {} \
                     WHERE pushed = 0 LIMIT ?1",
                    s.table("rows")
                )
            },
            |stmt| {
                stmt.bind_i64(1, limit)?;
                let mut rows = Vec::new();
                while let Some(row) = read_stored(stmt)? {
                    rows.push(row);
                }
                Ok(rows)
            },
        )
    }

    /// Marks row `rowid` as pushed, unless it was written again since its
    /// version `clock` was read.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn mark_pushed(&self, rowid: i64, clock: u64) -> Result<(), ExtError> {
        self.with_statement(
            "mark_pushed",
            |s| {
                format!(
                    "UPDATE {} SET pushed = 1 WHERE id = ?1 AND clock = ?2",
                    s.table("rows")
                )
            },
            |stmt| {
                stmt.bind_i64(1, rowid)?;
                stmt.bind_i64(2, clock_to_sql(clock))?;
                stmt.execute()
            },
        )
    }

    /// The database's data version, which changes when another connection
    /// commits.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn data_version(&self) -> Result<i64, ExtError> {
        self.with_statement(
            "data_version",
            |s| format!("PRAGMA {}.data_version", quote_identifier(&s.schema_name)),
            |stmt| {
                stmt.step()?;
                Ok(stmt.column_i64(0))
            },
        )
    }
}

/// Reads the logical name from `T_config` and checks the shadow version.
fn read_logical_name(db: Db, schema_name: &str, name: &str) -> Result<String, ExtError> {
    let config = format!(
        "{}.{}",
        quote_identifier(schema_name),
        quote_identifier(&format!("{name}_config"))
    );
    let damaged = |err: ExtError| {
        ExtError::usage(format!(
            "encrypted table {name} is damaged: its shadow table {name}_config cannot be read \
             ({err})"
        ))
    };
    let mut select = db
        .prepare(&format!("SELECT key, value FROM {config}"))
        .map_err(damaged)?;
    let mut logical = None;
    let mut version = None;
    while select.step().map_err(damaged)? == Step::Row {
        match select.column_text(0).as_str() {
            "logical_name" => logical = Some(select.column_text(1)),
            "version" => version = Some(select.column_i64(1)),
            _ => {}
        }
    }
    if version != Some(SHADOW_VERSION) {
        return Err(ExtError::usage(format!(
            "encrypted table {name} has shadow table version {version:?}, but this build of \
             Persist reads version {SHADOW_VERSION}"
        )));
    }
    logical.ok_or_else(|| {
        ExtError::usage(format!(
            "encrypted table {name} is damaged: {name}_config has no logical_name"
        ))
    })
}

/// The encrypted tables of the main database, by name.
///
/// # Errors
///
/// SQLite's errors.
pub fn table_names(db: Db) -> Result<Vec<String>, ExtError> {
    let mut select = db.prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' \
         AND sql LIKE 'CREATE VIRTUAL TABLE%USING persist%' ORDER BY name",
    )?;
    let mut names = Vec::new();
    while select.step()? == Step::Row {
        names.push(select.column_text(0));
    }
    Ok(names)
}

/// Opens the shadow tables of every encrypted table in the main database.
///
/// # Errors
///
/// As [`Shadow::open`].
pub fn open_all(db: Db) -> Result<Vec<Shadow>, ExtError> {
    table_names(db)?
        .iter()
        .map(|name| Shadow::open(db, "main", name))
        .collect()
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
        pushed: stmt.column_i64(6) != 0,
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
