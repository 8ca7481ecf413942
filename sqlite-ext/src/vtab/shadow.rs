//! The shadow tables of one encrypted table, and every statement on them.
//!
//! An encrypted table `T` keeps its rows in two ordinary tables:
//!
//! - `T_rows(id, rid, env, clock, device, deleted, seq)`: one row per
//!   record, with the blind record id, the envelope, the version of the last
//!   write, a tombstone flag, and `seq`, the local write order (0 for a row
//!   as the sync server sent it). No value and no primary key appears here.
//! - `T_config(key, value)`: the table's logical name, which its envelopes and
//!   blind ids are bound to and which stays fixed when the table is renamed,
//!   the shadow format version, and `pushed_seq`, the last `seq` the sync
//!   server has.
//!
//! `id`, the virtual table's rowid, is the record's slot: the first 63 bits
//! of its blind record id, or one of the next three numbers when another
//! record took that one first (two 128-bit HMACs sharing 63 bits is
//! vanishingly rare). One B-tree thus serves lookups by record id and by
//! rowid, and a rowid reveals nothing, not even the insertion order. A shadow
//! row is never deleted, only overwritten, so a probe never meets a gap.
//!
//! Both the virtual table and the sync client write rows through
//! [`Shadow`], so the layout is defined in this one place.

use std::cell::RefCell;
use std::collections::HashMap;

use persist_core::codec::{self, Row, RowKind, RowSpans, ValueRef};
use persist_core::sync::Version;
use persist_core::{DeviceId, Location, Padding, Purpose, RecordId};
use zeroize::Zeroizing;

use crate::db::{Db, Step, Stmt, quote_identifier};
use crate::error::{CoreContext, ExtError};
use crate::state::{Counters, OpenStore};

/// Format version of the shadow tables.
pub const SHADOW_VERSION: i64 = 1;

/// How many consecutive slots a record id may take.
const PROBE_SLOTS: i64 = 4;

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
    /// The local rowid, which is the record's slot.
    pub rowid: i64,
    /// The blind record id.
    pub rid: RecordId,
    /// The envelope of the row or tombstone.
    pub envelope: Vec<u8>,
    /// The version of the last write.
    pub version: Version,
    /// Whether the row is a tombstone.
    pub deleted: bool,
    /// Local write order; 0 for a row as the sync server sent it.
    pub seq: i64,
}

/// A decrypted row whose names and values are read in place.
pub struct OpenedRow {
    /// The decrypted row encoding.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// Where each column's name and value lie in `plaintext`.
    pub spans: RowSpans,
}

/// The result of looking up a record id.
pub struct Probe {
    /// The record's shadow row, if it has one.
    pub found: Option<Stored>,
    /// The first free slot for the record, when it has no row.
    pub free_slot: Option<i64>,
}

/// The shadow tables of one encrypted table.
pub struct Shadow {
    db: Db,
    schema_name: String,
    name: RefCell<String>,
    logical: String,
    statements: RefCell<HashMap<&'static str, Stmt>>,
    idle_cursors: RefCell<Vec<(Plan, Stmt)>>,
    /// The last write order number handed out in the current transaction.
    last_seq: std::cell::Cell<Option<i64>>,
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
        // The index name is random rather than derived from the table name,
        // because SQLite does not rename indexes with their table, and a
        // derived name would collide with a later table of the old name.
        let suffix: [u8; 8] =
            persist_core::random::array().context_with(|| "naming an index".into())?;
        let index_name: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
        db.exec(&format!(
            "CREATE TABLE {rows}(
                 id INTEGER PRIMARY KEY,
                 rid BLOB NOT NULL,
                 env BLOB NOT NULL,
                 clock INTEGER NOT NULL,
                 device BLOB NOT NULL,
                 deleted INTEGER NOT NULL,
                 seq INTEGER NOT NULL);
             CREATE INDEX {schema}.{index} ON {rows_bare}(seq) WHERE seq > 0;
             CREATE TABLE {config}(key TEXT PRIMARY KEY NOT NULL, value) WITHOUT ROWID;",
            rows = shadow.table("rows"),
            schema = quote_identifier(schema_name),
            index = quote_identifier(&format!("persist_seq_{index_name}")),
            rows_bare = quote_identifier(&format!("{name}_rows")),
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
            ("pushed_seq", ValueRef::Integer(0)),
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
            last_seq: std::cell::Cell::new(None),
        }
    }

    /// Forgets the write order number cached for the current transaction;
    /// called when a transaction starts, because another connection may
    /// have written since.
    pub fn begin_transaction(&self) {
        self.last_seq.set(None);
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
        for suffix in ["rows", "config"] {
            self.db.exec(&format!(
                "ALTER TABLE {} RENAME TO {}",
                self.table(suffix),
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

    /// Takes an idle statement for a cursor with `plan`, or prepares one. It
    /// selects `id, rid, env` of live rows. A [`Plan::RecordId`] statement
    /// takes the parameters that [`Shadow::bind_record_id`] binds, and a
    /// [`Plan::Rowid`] statement the rowid.
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
            Plan::RecordId => "id BETWEEN ?1 AND ?2 AND deleted = 0",
            Plan::Rowid => "id = ?1 AND deleted = 0",
        };
        self.db
            .prepare_persistent(&format!("SELECT id, rid, env FROM {rows} WHERE {filter}"))
    }

    /// Binds the parameters of a [`Plan::RecordId`] statement, which returns
    /// every live row in the record's slots; the caller keeps the one whose
    /// record id matches.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn bind_record_id(stmt: &mut Stmt, rid: &RecordId) -> Result<(), ExtError> {
        let (first, last) = slot_range(rid);
        stmt.bind_i64(1, first)?;
        stmt.bind_i64(2, last)
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

    /// Opens and decodes the envelope of shadow row `rowid`, which must be a
    /// live row (`tombstone == false`) or a tombstone.
    ///
    /// # Errors
    ///
    /// As [`Shadow::open_spans`].
    pub fn open_row(
        &self,
        store: &OpenStore,
        counters: &Counters,
        rowid: i64,
        rid: &[u8],
        envelope: &[u8],
        tombstone: bool,
    ) -> Result<Row, ExtError> {
        let opened = self.open_spans(store, counters, rowid, rid, envelope, tombstone)?;
        opened.spans.to_row(&opened.plaintext).context_with(|| {
            format!(
                "encrypted table {}, row {rowid}: the stored envelope cannot be decrypted",
                self.name()
            )
        })
    }

    /// Opens the envelope of shadow row `rowid` and decodes it into spans of
    /// the plaintext, without copying names or values: the form a scan
    /// reads.
    ///
    /// # Errors
    ///
    /// A core error naming the table and row when the envelope does not open
    /// or decode, and a usage error when the row is not of the expected
    /// kind, which only a change to the shadow table can cause.
    pub fn open_spans(
        &self,
        store: &OpenStore,
        counters: &Counters,
        rowid: i64,
        rid: &[u8],
        envelope: &[u8],
        tombstone: bool,
    ) -> Result<OpenedRow, ExtError> {
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
        let spans = codec::decode_row_spans(&plaintext).context_with(context)?;
        let expected = if tombstone {
            RowKind::Tombstone
        } else {
            RowKind::Row
        };
        if spans.kind != expected {
            return Err(ExtError::usage(format!(
                "encrypted table {}, row {rowid}: the shadow row is marked as a {} but holds a \
                 {}; the shadow table was modified",
                self.name(),
                kind_name(expected),
                kind_name(spans.kind)
            )));
        }
        Ok(OpenedRow { plaintext, spans })
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

    /// Checks that shadow row `rowid` sits in one of its record's slots; a
    /// row moved elsewhere would be missed by lookups.
    ///
    /// # Errors
    ///
    /// A usage error naming the table and row.
    pub fn check_slot(&self, rowid: i64, rid: &[u8]) -> Result<(), ExtError> {
        let rid = RecordId::from_slice(rid).map_err(|err| {
            ExtError::core(
                format!(
                    "encrypted table {}, row {rowid}: the shadow row's record id is damaged",
                    self.name()
                ),
                err,
            )
        })?;
        let (first, last) = slot_range(&rid);
        if (first..=last).contains(&rowid) {
            Ok(())
        } else {
            Err(ExtError::usage(format!(
                "encrypted table {}, row {rowid}: the shadow row is not in its record's slot; \
                 the shadow table was modified",
                self.name()
            )))
        }
    }

    /// Looks up record `rid`: its shadow row, live or tombstone, or else the
    /// slot a new row for it would take.
    ///
    /// # Errors
    ///
    /// SQLite's errors, a usage error for a damaged shadow row, and one when
    /// every slot of the record is taken by other records.
    pub fn probe(&self, rid: &RecordId) -> Result<Probe, ExtError> {
        let (first, last) = slot_range(rid);
        let rows = self.with_statement(
            "probe",
            |s| {
                format!(
                    "SELECT id, rid, env, clock, device, deleted, seq FROM {} \
                     WHERE id BETWEEN ?1 AND ?2 ORDER BY id",
                    s.table("rows")
                )
            },
            |stmt| {
                stmt.bind_i64(1, first)?;
                stmt.bind_i64(2, last)?;
                let mut rows = Vec::new();
                while let Some(row) = self.read_stored(stmt)? {
                    rows.push(row);
                }
                Ok(rows)
            },
        )?;
        let free_slot = (first..=last).find(|slot| rows.iter().all(|row| row.rowid != *slot));
        let found = rows.into_iter().find(|row| row.rid == *rid);
        if found.is_none() && free_slot.is_none() {
            return Err(ExtError::usage(format!(
                "encrypted table {}: all {PROBE_SLOTS} slots of a record id are taken by other \
                 records",
                self.name()
            )));
        }
        Ok(Probe { found, free_slot })
    }

    /// The shadow row of record `rid`, live or tombstone.
    ///
    /// # Errors
    ///
    /// As [`Shadow::probe`].
    pub fn find(&self, rid: &RecordId) -> Result<Option<Stored>, ExtError> {
        Ok(self.probe(rid)?.found)
    }

    /// The live shadow row with rowid `rowid`.
    ///
    /// # Errors
    ///
    /// As [`Shadow::probe`].
    pub fn find_rowid(&self, rowid: i64) -> Result<Option<Stored>, ExtError> {
        self.with_statement(
            "find_rowid",
            |s| {
                format!(
                    "SELECT id, rid, env, clock, device, deleted, seq FROM {} \
                     WHERE id = ?1 AND deleted = 0",
                    s.table("rows")
                )
            },
            |stmt| {
                stmt.bind_i64(1, rowid)?;
                self.read_stored(stmt)
            },
        )
    }

    /// Inserts a shadow row into free slot `rowid`.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn insert(
        &self,
        rowid: i64,
        rid: &RecordId,
        envelope: &[u8],
        version: &Version,
        deleted: bool,
        seq: i64,
    ) -> Result<(), ExtError> {
        self.with_statement(
            "insert",
            |s| {
                format!(
                    "INSERT INTO {}(id, rid, env, clock, device, deleted, seq) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    s.table("rows")
                )
            },
            |stmt| {
                bind_row(stmt, rowid, rid, envelope, version, deleted, seq)?;
                stmt.execute()
            },
        )
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
        seq: i64,
    ) -> Result<(), ExtError> {
        self.with_statement(
            "write",
            |s| {
                format!(
                    "UPDATE {} SET rid = ?2, env = ?3, clock = ?4, device = ?5, deleted = ?6, \
                     seq = ?7 WHERE id = ?1",
                    s.table("rows")
                )
            },
            |stmt| {
                bind_row(stmt, rowid, rid, envelope, version, deleted, seq)?;
                stmt.execute()
            },
        )
    }

    /// The write order number for the next local write: one more than the
    /// largest in the table and than the last one pushed. Writes are
    /// serialized by SQLite's write lock, so the numbers grow in commit order
    /// across connections. The largest is read once per transaction and
    /// counted on in memory; a rollback can leave gaps, which do no harm.
    ///
    /// The pushed mark counts too: a pulled row is stored with 0, so when a
    /// pull overwrites the row with the largest number, the largest in the
    /// table falls below the mark, and a number under it would never be
    /// pushed.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn next_seq(&self) -> Result<i64, ExtError> {
        let last = match self.last_seq.get() {
            Some(last) => last,
            None => self.with_statement(
                "max_seq",
                |s| {
                    format!(
                        "SELECT max(coalesce((SELECT max(seq) FROM {} WHERE seq > 0), 0), \
                         coalesce((SELECT value FROM {} WHERE key = 'pushed_seq'), 0))",
                        s.table("rows"),
                        s.table("config")
                    )
                },
                |stmt| {
                    stmt.step()?;
                    Ok(stmt.column_i64(0))
                },
            )?,
        };
        let next = last.saturating_add(1);
        self.last_seq.set(Some(next));
        Ok(next)
    }

    /// Inserts a new shadow row into the record's first slot, if that slot
    /// is free; returns the rowid, or `None` when the slot is taken (by this
    /// record or by another), in which case nothing was written. A record
    /// whose first slot is free has no row at all, because rows are never
    /// deleted and a record only moves on to a later slot when the first is
    /// taken.
    ///
    /// # Errors
    ///
    /// SQLite's errors other than the taken slot.
    pub fn insert_in_first_slot(
        &self,
        rid: &RecordId,
        envelope: &[u8],
        version: &Version,
        seq: i64,
    ) -> Result<Option<i64>, ExtError> {
        let (first, _) = slot_range(rid);
        match self.insert(first, rid, envelope, version, false, seq) {
            Ok(()) => Ok(Some(first)),
            Err(ExtError::Sqlite { code, .. })
                if code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// The last write order number the sync server has.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn pushed_seq(&self) -> Result<i64, ExtError> {
        self.with_statement(
            "pushed_seq",
            |s| {
                format!(
                    "SELECT value FROM {} WHERE key = 'pushed_seq'",
                    s.table("config")
                )
            },
            |stmt| {
                Ok(match stmt.step()? {
                    Step::Row => stmt.column_i64(0),
                    Step::Done => 0,
                })
            },
        )
    }

    /// Records that the sync server has every write up to `seq`.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn set_pushed_seq(&self, seq: i64) -> Result<(), ExtError> {
        self.with_statement(
            "set_pushed_seq",
            |s| {
                format!(
                    "INSERT INTO {}(key, value) VALUES ('pushed_seq', ?1) \
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    s.table("config")
                )
            },
            |stmt| {
                stmt.bind_i64(1, seq)?;
                stmt.execute()
            },
        )
    }

    /// Up to `limit` local writes after `after`, in write order: those the
    /// sync server does not have yet when `after` is [`Shadow::pushed_seq`].
    ///
    /// # Errors
    ///
    /// As [`Shadow::probe`].
    pub fn written_after(&self, after: i64, limit: i64) -> Result<Vec<Stored>, ExtError> {
        self.with_statement(
            "written_after",
            // `seq > 0` repeats the partial index's condition, which SQLite
            // must see in the query before it uses the index.
            |s| {
                format!(
                    "SELECT id, rid, env, clock, device, deleted, seq FROM {} \
                     WHERE seq > ?1 AND seq > 0 ORDER BY seq LIMIT ?2",
                    s.table("rows")
                )
            },
            |stmt| {
                stmt.bind_i64(1, after)?;
                stmt.bind_i64(2, limit)?;
                let mut rows = Vec::new();
                while let Some(row) = self.read_stored(stmt)? {
                    rows.push(row);
                }
                Ok(rows)
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

    /// The quoted, schema-qualified name of shadow table `suffix`.
    pub fn quoted(&self, suffix: &str) -> String {
        self.table(suffix)
    }

    /// The shadow rows that `tail` (a WHERE clause and more) selects, with
    /// `params` bound to ?1, ?2 and so on.
    ///
    /// # Errors
    ///
    /// SQLite's errors, and a usage error for a damaged shadow row.
    pub fn select_rows(
        &self,
        tail: &str,
        params: &[ValueRef<'_>],
    ) -> Result<Vec<Stored>, ExtError> {
        let mut stmt = self.db.prepare(&format!(
            "SELECT id, rid, env, clock, device, deleted, seq FROM {} {tail}",
            self.table("rows")
        ))?;
        for (index, param) in params.iter().enumerate() {
            let index = std::ffi::c_int::try_from(index + 1).unwrap_or(std::ffi::c_int::MAX);
            stmt.bind(index, *param)?;
        }
        let mut rows = Vec::new();
        while let Some(row) = self.read_stored(&mut stmt)? {
            rows.push(row);
        }
        Ok(rows)
    }

    /// Reads the next row of `stmt`, which selects `id, rid, env, clock,
    /// device, deleted, seq`.
    fn read_stored(&self, stmt: &mut Stmt) -> Result<Option<Stored>, ExtError> {
        if stmt.step()? == Step::Done {
            return Ok(None);
        }
        let rowid = stmt.column_i64(0);
        let damaged = |field: &'static str| {
            move |err: persist_core::Error| {
                ExtError::core(
                    format!(
                        "encrypted table {}, row {rowid}: the shadow row's {field} is damaged",
                        self.name()
                    ),
                    err,
                )
            }
        };
        let rid = RecordId::from_slice(&stmt.column_blob(1)).map_err(damaged("record id"))?;
        let device = DeviceId::from_slice(&stmt.column_blob(4)).map_err(damaged("device id"))?;
        Ok(Some(Stored {
            rowid,
            rid,
            envelope: stmt.column_blob(2),
            version: Version {
                clock: clock_from_sql(stmt.column_i64(3)),
                device,
            },
            deleted: stmt.column_i64(5) != 0,
            seq: stmt.column_i64(6),
        }))
    }
}

/// Binds `id, rid, env, clock, device, deleted, seq` as parameters 1 to 7.
fn bind_row(
    stmt: &mut Stmt,
    rowid: i64,
    rid: &RecordId,
    envelope: &[u8],
    version: &Version,
    deleted: bool,
    seq: i64,
) -> Result<(), ExtError> {
    stmt.bind_i64(1, rowid)?;
    stmt.bind_blob(2, rid.as_bytes())?;
    stmt.bind_blob(3, envelope)?;
    stmt.bind_i64(4, clock_to_sql(version.clock))?;
    stmt.bind_blob(5, version.device.as_bytes())?;
    stmt.bind_i64(6, i64::from(deleted))?;
    stmt.bind_i64(7, seq)
}

fn kind_name(kind: RowKind) -> &'static str {
    match kind {
        RowKind::Row => "live row",
        RowKind::Tombstone => "tombstone",
    }
}

/// The slots record `rid` may take: the first 63 bits of the id, as a
/// positive rowid, and the next three.
fn slot_range(rid: &RecordId) -> (i64, i64) {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&rid.as_bytes()[..8]);
    // A u64 shifted right by one fits in i64.
    let first = ((u64::from_be_bytes(prefix) >> 1) as i64).clamp(1, i64::MAX - PROBE_SLOTS);
    (first, first + PROBE_SLOTS - 1)
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

/// The logical names of encrypted tables `names` of the main database.
///
/// # Errors
///
/// As [`Shadow::open`].
pub fn logical_names(db: Db, names: &[String]) -> Result<Vec<(String, String)>, ExtError> {
    names
        .iter()
        .cloned()
        .map(|name| {
            let logical = read_logical_name(db, "main", &name)?;
            Ok((name, logical))
        })
        .collect()
}

/// The payload length of a version 1 envelope: its length less the header,
/// the padding marker and the tag. A tombstone passes the payload length of
/// the row it replaces as its padding floor.
pub fn payload_len(envelope: &[u8]) -> usize {
    envelope
        .len()
        .saturating_sub(persist_core::envelope::HEADER_LEN + 1 + persist_core::primitives::TAG_LEN)
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
