//! Scripted multi-device scenarios checked against a model of the protocol.
//!
//! A [`Scenario`] runs writes and syncs on real devices that share one store
//! and, step by step, on [`Model`], which applies last-write-wins with the
//! order of the writes as the version order. Every sync summary must match
//! the model's pushed, accepted, pulled and applied counts, every device's
//! table must match the model after each step, and at the end all devices
//! and the server must hold the same versions.
//!
//! The model's version order is the real one because the scenario sleeps
//! 2 ms before each write. Every device's hybrid logical clock then starts
//! the write in a later millisecond than any earlier write, so its clock
//! value is greater than every earlier one, whichever device made it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use rusqlite::types::Value;
use tempfile::TempDir;

use crate::common::{Device, Server, hex};

/// The table every scenario uses.
pub const TABLE: &str = "items";
const DECLARATION: &str = "CREATE VIRTUAL TABLE items USING persist(\
    id INTEGER PRIMARY KEY, label TEXT, n INTEGER, x REAL, b BLOB)";
const LABELS: [&str; 3] = ["A", "B", "C"];

/// A write on one device.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Insert(i64),
    Update(i64),
    Delete(i64),
    /// `UPDATE items SET id = to WHERE id = from`.
    UpdateKey {
        from: i64,
        to: i64,
    },
}

/// One step of a scenario.
#[derive(Clone, Copy, Debug)]
pub enum Step {
    Write(usize, Op),
    Sync(usize),
    /// Closes the device's connection and opens its database again.
    Reopen(usize),
}

/// The non-key columns of a row.
type Row = Vec<Value>;

#[derive(Clone, Debug)]
struct Local {
    version: u64,
    row: Option<Row>,
    pushed: bool,
}

#[derive(Clone, Debug)]
struct Stored {
    version: u64,
    row: Option<Row>,
    seq: u64,
}

#[derive(Default)]
struct DeviceModel {
    rows: BTreeMap<i64, Local>,
    cursor: u64,
}

impl DeviceModel {
    fn is_live(&self, key: i64) -> bool {
        self.rows.get(&key).is_some_and(|local| local.row.is_some())
    }

    fn live_rows(&self) -> Vec<Vec<Value>> {
        live(self.rows.iter().map(|(key, local)| (*key, &local.row)))
    }
}

/// What a write does to the model.
enum Outcome {
    /// The key is taken: the write fails and changes nothing.
    UniqueViolation,
    /// The keys written, each with its row or `None` for a tombstone.
    Writes(Vec<(i64, Option<Row>)>),
}

/// The counts of a sync summary that the model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    pub pushed: u64,
    pub accepted: u64,
    pub pulled: u64,
    pub applied: u64,
}

/// Last-write-wins with versions in write order: the server keeps the
/// greatest version of each key, and sequence numbers order its changes.
#[derive(Default)]
struct Model {
    server: BTreeMap<i64, Stored>,
    next_seq: u64,
    devices: Vec<DeviceModel>,
}

impl Model {
    fn sync(&mut self, device: usize) -> Expected {
        let Self {
            server,
            next_seq,
            devices,
        } = self;
        let local = &mut devices[device];
        let mut expected = Expected {
            pushed: 0,
            accepted: 0,
            pulled: 0,
            applied: 0,
        };
        for (key, entry) in local.rows.iter_mut().filter(|(_, entry)| !entry.pushed) {
            expected.pushed += 1;
            if server
                .get(key)
                .is_none_or(|stored| stored.version < entry.version)
            {
                *next_seq += 1;
                server.insert(
                    *key,
                    Stored {
                        version: entry.version,
                        row: entry.row.clone(),
                        seq: *next_seq,
                    },
                );
                expected.accepted += 1;
            }
            entry.pushed = true;
        }
        for (key, stored) in server
            .iter()
            .filter(|(_, stored)| stored.seq > local.cursor)
        {
            expected.pulled += 1;
            let current = local.rows.get(key).map(|entry| entry.version);
            assert!(
                current.is_none_or(|version| version <= stored.version),
                "model error: the server holds an older version of key {key}"
            );
            if current.is_none_or(|version| version < stored.version) {
                expected.applied += 1;
                local.rows.insert(
                    *key,
                    Local {
                        version: stored.version,
                        row: stored.row.clone(),
                        pushed: true,
                    },
                );
            }
        }
        local.cursor = *next_seq;
        expected
    }

    fn server_rows(&self) -> Vec<Vec<Value>> {
        live(self.server.iter().map(|(key, stored)| (*key, &stored.row)))
    }
}

fn live<'a>(entries: impl Iterator<Item = (i64, &'a Option<Row>)>) -> Vec<Vec<Value>> {
    entries
        .filter_map(|(key, row)| {
            row.as_ref().map(|row| {
                let mut full = vec![Value::Integer(key)];
                full.extend(row.iter().cloned());
                full
            })
        })
        .collect()
}

/// Returns the values that write number `write` stores: distinct for every
/// write, with each storage class and NULL in turn.
fn row_values(device: usize, write: u64) -> Row {
    let accent = if write.is_multiple_of(2) { "-é" } else { "" };
    let n = i64::try_from(write).expect("small write number");
    vec![
        Value::Text(format!("{}-write{write}{accent}", LABELS[device])),
        Value::Integer(n * 10 + i64::try_from(device).expect("small device index")),
        if write.is_multiple_of(3) {
            Value::Null
        } else {
            Value::Real(n as f64 / 4.0)
        },
        if write.is_multiple_of(4) {
            Value::Null
        } else {
            Value::Blob(vec![
                u8::try_from(write % 256).expect("byte");
                (write % 5) as usize + 1
            ])
        },
    ]
}

/// Real devices sharing one store, and the model they must follow.
pub struct Scenario {
    // Dropped last: the devices' files live in it.
    pub devices: Vec<Device>,
    pub server: Server,
    model: Model,
    writes: u64,
    log: String,
    _dir: TempDir,
}

impl Scenario {
    /// Creates `count` devices: A makes the store, the others import A's key,
    /// and each creates the table.
    pub fn new(count: usize) -> Self {
        assert!((1..=LABELS.len()).contains(&count));
        let dir = tempfile::tempdir().expect("temp dir");
        let first = Device::create(dir.path(), LABELS[0]);
        let key = first.export();
        let mut devices = vec![first];
        for label in &LABELS[1..count] {
            devices.push(Device::join(dir.path(), label, &key));
        }
        for device in &devices {
            device.exec(DECLARATION);
        }
        let model = Model {
            devices: (0..count).map(|_| DeviceModel::default()).collect(),
            ..Model::default()
        };
        Self {
            devices,
            server: Server::connect(),
            model,
            writes: 0,
            log: String::new(),
            _dir: dir,
        }
    }

    pub fn run(&mut self, steps: &[Step]) {
        for step in steps {
            match *step {
                Step::Write(device, op) => self.write(device, op),
                Step::Sync(device) => {
                    self.sync(device);
                }
                Step::Reopen(device) => self.reopen(device),
            }
        }
    }

    /// Reopens a device's database, which changes nothing in the model.
    pub fn reopen(&mut self, device: usize) {
        let _ = writeln!(self.log, "{} reopen", LABELS[device]);
        self.devices[device].reopen();
        self.check_local(device);
    }

    /// Runs one write on a device and on the model.
    pub fn write(&mut self, device: usize, op: Op) {
        let _ = writeln!(self.log, "{} {op:?}", LABELS[device]);
        std::thread::sleep(Duration::from_millis(2));
        let values = row_values(device, self.writes + 1);
        let conn = &self.devices[device].conn;
        let local = &self.model.devices[device];
        let (result, outcome) = match op {
            Op::Insert(key) => (
                conn.execute(
                    "INSERT INTO items (id, label, n, x, b) VALUES (?1, ?2, ?3, ?4, ?5)",
                    rusqlite::params![key, values[0], values[1], values[2], values[3]],
                ),
                if local.is_live(key) {
                    Outcome::UniqueViolation
                } else {
                    Outcome::Writes(vec![(key, Some(values))])
                },
            ),
            Op::Update(key) => (
                conn.execute(
                    "UPDATE items SET label = ?2, n = ?3, x = ?4, b = ?5 WHERE id = ?1",
                    rusqlite::params![key, values[0], values[1], values[2], values[3]],
                ),
                Outcome::Writes(if local.is_live(key) {
                    vec![(key, Some(values))]
                } else {
                    Vec::new()
                }),
            ),
            Op::Delete(key) => (
                conn.execute("DELETE FROM items WHERE id = ?1", [key]),
                Outcome::Writes(if local.is_live(key) {
                    vec![(key, None)]
                } else {
                    Vec::new()
                }),
            ),
            Op::UpdateKey { from, to } => (
                conn.execute("UPDATE items SET id = ?2 WHERE id = ?1", [from, to]),
                if !local.is_live(from) {
                    Outcome::Writes(Vec::new())
                } else if local.is_live(to) {
                    Outcome::UniqueViolation
                } else {
                    // The old key gets a tombstone and the new key the row.
                    Outcome::Writes(vec![(from, None), (to, local.rows[&from].row.clone())])
                },
            ),
        };
        match outcome {
            Outcome::UniqueViolation => expect_unique_violation(result, &self.log),
            Outcome::Writes(writes) => {
                expect_changes(result, usize::from(!writes.is_empty()), &self.log);
                for (key, row) in writes {
                    self.writes += 1;
                    let entry = Local {
                        version: self.writes,
                        row,
                        pushed: false,
                    };
                    self.model.devices[device].rows.insert(key, entry);
                }
            }
        }
        self.check_local(device);
    }

    /// Syncs a device, checks its summary against the model and returns it.
    pub fn sync(&mut self, device: usize) -> crate::common::Summary {
        let _ = writeln!(self.log, "{} sync", LABELS[device]);
        let expected = self.model.sync(device);
        let summary = self.devices[device].sync();
        let actual = Expected {
            pushed: summary.pushed,
            accepted: summary.accepted,
            pulled: summary.pulled,
            applied: summary.applied,
        };
        assert_eq!(
            actual, expected,
            "sync of device {} returned {summary:?}; steps so far:\n{}",
            LABELS[device], self.log
        );
        assert_eq!(summary.quarantined, 0, "{summary:?}\n{}", self.log);
        assert_eq!(summary.pending_for_missing_tables, 0, "{summary:?}");
        assert_eq!(summary.released_from_quarantine, 0, "{summary:?}");
        assert_eq!(summary.clock_values_bounded, 0, "{summary:?}");
        assert!(!summary.server_rolled_back, "{summary:?}");
        let store_id = self.devices[device].store_id.clone();
        assert_eq!(
            summary.cursor,
            self.server.max_seq(&store_id),
            "the cursor after a sync is the server's last sequence number"
        );
        self.check_local(device);
        summary
    }

    fn check_local(&self, device: usize) {
        assert_eq!(
            self.devices[device].rows(TABLE, "id"),
            self.model.devices[device].live_rows(),
            "table of device {} differs from the model after:\n{}",
            LABELS[device],
            self.log
        );
    }

    /// Checks that every device has the server's rows and versions.
    pub fn assert_converged(&mut self) {
        let expected_rows = self.model.server_rows();
        let reference: Vec<_> = self.devices[0]
            .shadow(TABLE)
            .into_iter()
            .map(|row| (row.rid, row.clock, row.device, row.deleted))
            .collect();
        for device in &self.devices {
            assert_eq!(
                device.rows(TABLE, "id"),
                expected_rows,
                "device {} after:\n{}",
                device.label,
                self.log
            );
            let shadow = device.shadow(TABLE);
            assert!(
                shadow.iter().all(|row| row.pushed),
                "device {} has unpushed rows after syncing",
                device.label
            );
            let versions: Vec<_> = shadow
                .into_iter()
                .map(|row| (row.rid, row.clock, row.device, row.deleted))
                .collect();
            assert_eq!(
                versions, reference,
                "shadow rows of {} and A differ",
                device.label
            );
        }

        let store_id = self.devices[0].store_id.clone();
        let mut on_server: Vec<_> = self
            .server
            .records(&store_id)
            .into_iter()
            .map(|record| (hex(&record.record_id), record.clock, hex(&record.device_id)))
            .collect();
        on_server.sort();
        let local: Vec<_> = reference
            .iter()
            .map(|(rid, clock, device, _)| (rid.clone(), *clock, device.clone()))
            .collect();
        assert_eq!(
            on_server, local,
            "the server's versions differ from the devices'"
        );
        assert_eq!(on_server.len(), self.model.server.len());
    }

    /// Syncs every device `rounds` times in turn, then checks convergence.
    pub fn finish(&mut self, rounds: usize) {
        for _ in 0..rounds {
            for device in 0..self.devices.len() {
                self.sync(device);
            }
        }
        self.assert_converged();
    }
}

fn expect_changes(result: rusqlite::Result<usize>, expected: usize, log: &str) {
    match result {
        Ok(changes) => assert_eq!(changes, expected, "rows changed by the last of:\n{log}"),
        Err(err) => panic!("the last write failed: {err}; steps:\n{log}"),
    }
}

fn expect_unique_violation(result: rusqlite::Result<usize>, log: &str) {
    match result {
        Ok(changes) => panic!(
            "the last write changed {changes} rows, expected a UNIQUE violation; steps:\n{log}"
        ),
        Err(err) => assert!(
            err.to_string().contains("UNIQUE constraint failed"),
            "the last write failed with {err}, expected a UNIQUE violation; steps:\n{log}"
        ),
    }
}
