//! The server learns nothing from a store's data. After the Chinook data is
//! synced, neither the tables of the sync schema nor a pg_dump of it contain
//! a Chinook value, table name or column name. Two stores with the same rows
//! share no record id.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

use rusqlite::types::Value;

use crate::common::{Device, Server, hex, private_database, unique_name, with_conninfo_value};

/// Rows in sql/chinook/data.sql.
const CHINOOK_ROWS: u64 = 15_607;
/// Shorter strings occur by chance in megabytes of ciphertext.
const MIN_NEEDLE_BYTES: usize = 4;

fn chinook_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sql/chinook")
        .join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

fn load_chinook(device: &Device) {
    device.exec(&chinook_file("schema-persist.sql"));
    device.exec("BEGIN");
    device.exec(&chinook_file("data.sql"));
    device.exec("COMMIT");
}

/// The strings to look for: every TEXT value of the Chinook data, and every
/// table and column name, of at least `MIN_NEEDLE_BYTES` bytes.
struct Needles {
    values: BTreeSet<String>,
    names: BTreeSet<String>,
}

/// Loads the Chinook data into a plain SQLite file and collects the needles.
fn plaintext_chinook(path: &Path) -> Needles {
    let db = rusqlite::Connection::open(path).expect("open the plaintext database");
    db.execute_batch(&chinook_file("schema-sqlite.sql"))
        .expect("create the plaintext tables");
    db.execute_batch(&format!("BEGIN; {} COMMIT;", chinook_file("data.sql")))
        .expect("load the plaintext rows");
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
        .expect("list tables");
    assert_eq!(tables.len(), 11);

    let mut needles = Needles {
        values: BTreeSet::new(),
        names: BTreeSet::new(),
    };
    let mut rows = 0;
    for table in &tables {
        needles.names.insert(table.clone());
        let mut statement = db
            .prepare(&format!("SELECT * FROM {table}"))
            .expect("select");
        for name in statement.column_names() {
            needles.names.insert(name.to_owned());
        }
        let columns = statement.column_count();
        let mut result = statement.query([]).expect("query");
        while let Some(row) = result.next().expect("row") {
            rows += 1;
            for i in 0..columns {
                if let Value::Text(text) = row.get::<_, Value>(i).expect("value") {
                    needles.values.insert(text);
                }
            }
        }
    }
    assert_eq!(rows, CHINOOK_ROWS);
    needles.values.retain(|text| text.len() >= MIN_NEEDLE_BYTES);
    needles.names.retain(|name| name.len() >= MIN_NEEDLE_BYTES);
    needles
}

/// Byte strings searched by the 4-byte prefixes of the needles, so one pass
/// over the bytes finds every needle.
struct Searcher<'a> {
    by_prefix: HashMap<&'a [u8], Vec<&'a str>>,
}

impl<'a> Searcher<'a> {
    fn new(needles: impl Iterator<Item = &'a String>) -> Self {
        let mut by_prefix: HashMap<&[u8], Vec<&str>> = HashMap::new();
        for needle in needles {
            by_prefix
                .entry(&needle.as_bytes()[..MIN_NEEDLE_BYTES])
                .or_default()
                .push(needle);
        }
        Self { by_prefix }
    }

    /// Returns the needles that occur in any of `blobs`.
    fn find(&self, blobs: &[Vec<u8>]) -> BTreeSet<&'a str> {
        let mut found = BTreeSet::new();
        for blob in blobs {
            for start in 0..blob.len().saturating_sub(MIN_NEEDLE_BYTES - 1) {
                let Some(candidates) = self.by_prefix.get(&blob[start..start + MIN_NEEDLE_BYTES])
                else {
                    continue;
                };
                for needle in candidates {
                    if blob[start..].starts_with(needle.as_bytes()) {
                        found.insert(*needle);
                    }
                }
            }
        }
        found
    }
}

/// Returns every byte string the server stores for a store: its row in
/// sync_stores and the binary columns of its records. The other columns are
/// numbers and timestamps (clock, seq, padded_size, received_at, next_seq,
/// created_at).
fn server_blobs(server: &mut Server, store_id: &[u8]) -> Vec<Vec<u8>> {
    let mut blobs = Vec::new();
    let store = server
        .client
        .query_one(
            "SELECT store_id, token_hash FROM persist.sync_stores WHERE store_id = $1",
            &[&store_id],
        )
        .expect("the store's row in sync_stores");
    blobs.push(store.get(0));
    blobs.push(store.get(1));
    // The keyring record too: it must hold no plaintext either.
    for record in server.all_records(store_id) {
        blobs.push(record.record_id);
        blobs.push(record.device_id);
        blobs.push(record.envelope);
    }
    blobs
}

/// A plain-format pg_dump, split into its SQL text and its COPY data.
struct Dump {
    /// Every line outside COPY data, COPY headers included, except the
    /// random `\restrict` and `\unrestrict` keys.
    schema: String,
    /// For each COPY block: the table, its columns and its rows of fields.
    data: Vec<(String, Vec<String>, Vec<Vec<String>>)>,
}

/// Dumps the whole database, because with CREATE EXTENSION persist
/// `pg_dump --schema=persist` leaves out the extension's objects and data
/// (PostgreSQL 15.20).
fn pg_dump(conninfo: &str) -> Dump {
    let output = Command::new("pg_dump")
        .args(["--no-owner", "-d", conninfo])
        .output()
        .expect("run pg_dump");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("the dump is UTF-8");
    let mut dump = Dump {
        schema: String::new(),
        data: Vec::new(),
    };
    let mut in_copy = false;
    for line in text.lines() {
        if in_copy && line != "\\." {
            let fields = line.split('\t').map(str::to_owned).collect();
            dump.data.last_mut().expect("a COPY block").2.push(fields);
            continue;
        }
        in_copy = false;
        // pg_dump 15.14 and later fence the script with a random key.
        if line.starts_with("\\restrict ") || line.starts_with("\\unrestrict ") {
            continue;
        }
        dump.schema.push_str(line);
        dump.schema.push('\n');
        if let Some(rest) = line.strip_prefix("COPY ")
            && let Some(header) = rest.strip_suffix(" FROM stdin;")
        {
            let (table, columns) = header.split_once(" (").expect("COPY table (columns)");
            let columns = columns
                .trim_end_matches(')')
                .split(", ")
                .map(str::to_owned)
                .collect();
            dump.data.push((table.to_owned(), columns, Vec::new()));
            in_copy = true;
        }
    }
    dump
}

/// Decodes a bytea field of COPY text output (`\\x` and hex digits).
fn copy_bytea(field: &str) -> Option<Vec<u8>> {
    field.strip_prefix("\\\\x").map(crate::common::unhex)
}

/// Checks that a field that is not bytea is a number, timestamp, UUID or
/// boolean, which cannot hold a Chinook string.
fn assert_not_text(table: &str, column: &str, field: &str) {
    assert!(
        field
            .chars()
            .all(|c| c.is_ascii_digit() || "abcdef-:+. t".contains(c)),
        "{table}.{column} holds {field:?}, expected a number, timestamp, UUID or boolean"
    );
}

#[test]
fn server_sees_no_chinook_plaintext() {
    let dir = tempfile::tempdir().expect("temp dir");
    let needles = plaintext_chinook(&dir.path().join("plain.db"));
    let plaintext_file = std::fs::read(dir.path().join("plain.db")).expect("read plain.db");

    // The search finds every needle where it is in plaintext.
    let all: Vec<&String> = needles.values.iter().chain(&needles.names).collect();
    let searcher = Searcher::new(all.iter().copied());
    let in_plaintext = searcher.find(std::slice::from_ref(&plaintext_file));
    assert_eq!(
        in_plaintext.len(),
        needles.values.union(&needles.names).count(),
        "the search misses needles in the plaintext file"
    );
    println!(
        "{} values and {} table and column names of {MIN_NEEDLE_BYTES}+ bytes",
        needles.values.len(),
        needles.names.len()
    );

    // Two stores, each with its own keyring, hold the same Chinook rows.
    let database = private_database("zk");
    let empty = private_database("zk_empty");
    let devices = [
        Device::create(dir.path(), "A"),
        Device::create(dir.path(), "B"),
    ];
    assert_ne!(devices[0].store_id, devices[1].store_id);
    for device in &devices {
        load_chinook(device);
        let summary = device.sync_to(&database);
        assert_eq!(
            (summary.pushed, summary.accepted, summary.pulled),
            (CHINOOK_ROWS, CHINOOK_ROWS, CHINOOK_ROWS),
            "{summary:?}"
        );
    }

    let mut server = Server::connect_to(&database);
    let blobs: Vec<Vec<Vec<u8>>> = devices
        .iter()
        .map(|device| server_blobs(&mut server, &device.store_id))
        .collect();
    let bytes: Vec<usize> = blobs
        .iter()
        .map(|store| store.iter().map(Vec::len).sum())
        .collect();
    let found: Vec<BTreeSet<&str>> = blobs.iter().map(|store| searcher.find(store)).collect();

    // An estimate: a given 4-byte string occurs by chance in 3 MB of
    // ciphertext with a probability of about 3e6 / 2^32 = 7e-4, and the data
    // has about 100 such values. So a 4-byte needle counts only when it
    // occurs in both stores' bytes, as plaintext would. Longer needles count
    // wherever they occur (5 bytes: about 3e-6 each).
    let leaked: Vec<&str> = found[0]
        .union(&found[1])
        .filter(|needle| {
            needle.len() > MIN_NEEDLE_BYTES
                || found[0].contains(*needle) && found[1].contains(*needle)
        })
        .copied()
        .collect();
    println!(
        "server bytes per store: {bytes:?}; 4-byte chance matches: {:?}",
        found
            .iter()
            .map(|set| set.iter().filter(|n| n.len() == MIN_NEEDLE_BYTES).count())
            .collect::<Vec<_>>()
    );
    assert!(
        leaked.is_empty(),
        "the server holds Chinook strings: {leaked:?}"
    );

    // No record id, and no envelope, is the same in both stores.
    let records: Vec<_> = devices
        .iter()
        .map(|device| server.records(&device.store_id))
        .collect();
    for store in &records {
        assert_eq!(store.len() as u64, CHINOOK_ROWS);
    }
    let ids: Vec<BTreeSet<Vec<u8>>> = records
        .iter()
        .map(|store| {
            store
                .iter()
                .map(|record| record.record_id.clone())
                .collect()
        })
        .collect();
    assert_eq!(ids[0].len() as u64, CHINOOK_ROWS);
    assert_eq!(
        ids[0].intersection(&ids[1]).count(),
        0,
        "the stores share record ids"
    );
    let envelopes: BTreeSet<&Vec<u8>> = records[0].iter().map(|record| &record.envelope).collect();
    assert!(
        records[1]
            .iter()
            .all(|record| !envelopes.contains(&record.envelope)),
        "the stores share envelopes"
    );

    // pg_dump: the SQL is that of an empty sync server, and the data is
    // bytes checked above, numbers, timestamps and UUIDs.
    let dump = pg_dump(&database);
    let baseline = pg_dump(&empty);
    assert_eq!(
        dump.schema, baseline.schema,
        "the dump's SQL differs from an empty server's"
    );
    let store_ids: Vec<&Vec<u8>> = devices.iter().map(|device| &device.store_id).collect();
    let mut dumped: Vec<Vec<Vec<u8>>> = vec![Vec::new(), Vec::new()];
    let mut dumped_records = 0;
    for (table, columns, rows) in &dump.data {
        for row in rows {
            assert_eq!(row.len(), columns.len(), "{table}: {row:?}");
            let mut row_blobs = Vec::new();
            let mut owner = None;
            for (column, field) in columns.iter().zip(row) {
                match copy_bytea(field) {
                    Some(bytes) if column == "store_id" => owner = Some(bytes),
                    Some(bytes) => row_blobs.push(bytes),
                    None => assert_not_text(table, column, field),
                }
            }
            if table == "persist.sync_records" {
                dumped_records += 1;
            }
            if let Some(owner) = owner {
                let index = store_ids
                    .iter()
                    .position(|id| **id == owner)
                    .unwrap_or_else(|| {
                        panic!("{table} has a row of unknown store {}", hex(&owner))
                    });
                dumped[index].push(owner);
                dumped[index].extend(row_blobs);
            }
        }
    }
    // A dump without the sync records is the defect that
    // pg_dump_restores_sync_records reports; here only the bytes it contains
    // matter.
    if dumped_records > 0 {
        // Each store has its rows and the record that carries its keyring.
        assert_eq!(dumped_records, 2 * (CHINOOK_ROWS + 1));
        for (index, store) in dumped.iter_mut().enumerate() {
            let mut selected = blobs[index].clone();
            // server_blobs lists store_id once for sync_stores, and the dump
            // repeats it on every record.
            store.retain(|blob| blob != store_ids[index]);
            selected.retain(|blob| blob != store_ids[index]);
            store.sort();
            selected.sort();
            assert_eq!(
                *store, selected,
                "the dump of store {index} differs from a SELECT"
            );
        }
    }
    println!("pg_dump: {dumped_records} sync records");
}

/// A database restored from a plain pg_dump serves every record again.
#[test]
fn pg_dump_restores_sync_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let database = private_database("dumped");
    let a = Device::create(dir.path(), "A");
    let b = Device::join(dir.path(), "B", &a.export());
    for device in [&a, &b] {
        device.exec("CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT)");
    }
    a.exec("INSERT INTO notes VALUES (1, 'one'), (2, 'two'), (3, 'three')");
    let summary = a.sync_to(&database);
    assert_eq!((summary.pushed, summary.accepted), (3, 3), "{summary:?}");

    let dump_file = dir.path().join("sync.sql");
    let status = Command::new("pg_dump")
        .args(["--no-owner", "-f"])
        .arg(&dump_file)
        .args(["-d", &database])
        .status()
        .expect("run pg_dump");
    assert!(status.success(), "pg_dump failed");
    let restored_name = unique_name("restored");
    let mut server = Server::connect();
    server
        .client
        .batch_execute(&format!("CREATE DATABASE {restored_name}"))
        .expect("create the database to restore into");
    let restored = with_conninfo_value(&database, "dbname", &restored_name);
    let status = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &restored, "-f"])
        .arg(&dump_file)
        .status()
        .expect("run psql");
    assert!(status.success(), "restoring the dump failed");

    let mut restored_server = Server::connect_to(&restored);
    assert_eq!(
        restored_server.records(&a.store_id).len(),
        3,
        "the restored database lacks the sync records"
    );
    let summary = b.sync_to(&restored);
    assert_eq!((summary.pulled, summary.applied), (3, 3), "{summary:?}");
    assert_eq!(b.rows("notes", "id"), a.rows("notes", "id"));
}
