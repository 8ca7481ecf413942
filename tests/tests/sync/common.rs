//! Devices, the sync server and the environment the sync tests share.
//!
//! A [`Device`] is one SQLite database file with the release build of the
//! extension loaded through rusqlite, and a store opened with a keyfile in a
//! temporary folder. A [`Server`] is a superuser connection to the sync
//! database, for inspecting and tampering with what it holds.

use std::ffi::{CStr, CString, c_char, c_int};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::types::Value;
use rusqlite::{Connection, ffi};
use serde_json::{Value as Json, json};

/// The store name every test uses; stores differ by their random store ids.
pub const STORE: &str = "notes";

/// Reads a variable that scripts/test-sync.sh sets, and panics when it is
/// missing, so that a run without the servers fails instead of passing.
pub fn env_var(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "environment variable {name} is not set; run the sync tests with scripts/test-sync.sh, \
             which starts the PostgreSQL servers and sets it"
        ),
    }
}

/// Returns the path of the built extension, libpersist.so.
pub fn extension_path() -> PathBuf {
    let path = PathBuf::from(env_var("PERSIST_EXTENSION"));
    assert!(
        path.is_file(),
        "PERSIST_EXTENSION={} is not a file; build it with cargo build --release -p persist-sqlite",
        path.display()
    );
    path
}

/// Returns the conninfo of the sync server, as its superuser.
pub fn conninfo() -> String {
    env_var("PERSIST_SYNC_CONNINFO")
}

/// Returns the value of `key` in a `key=value` conninfo such as
/// [`conninfo()`]'s.
pub fn conninfo_value(conninfo: &str, key: &str) -> String {
    conninfo
        .split_whitespace()
        .find_map(|pair| pair.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("conninfo {conninfo:?} has no {key}="))
        .to_owned()
}

/// Returns a name that no other test of this run uses, for databases, roles
/// and application names.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Milliseconds since the Unix epoch.
pub fn wall_clock_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_millis(),
    )
    .expect("milliseconds fit in u64")
}

/// Returns the milliseconds part of a hybrid logical clock value (its high
/// 48 bits).
pub fn clock_ms(clock: i64) -> u64 {
    u64::try_from(clock).expect("clock values are positive") >> 16
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub fn unhex(text: &str) -> Vec<u8> {
    assert!(text.len().is_multiple_of(2), "odd-length hex {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digits"))
        .collect()
}

/// The JSON summary that `persist_sync` returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub pushed: u64,
    pub accepted: u64,
    pub pulled: u64,
    pub applied: u64,
    pub conflicts_resolved: u64,
    pub quarantined: u64,
    pub released_from_quarantine: u64,
    pub pending_for_missing_tables: u64,
    pub clock_values_bounded: u64,
    pub server_rolled_back: bool,
    pub cursor: i64,
}

impl Summary {
    /// Parses the summary and panics when a field is missing or mistyped.
    pub fn parse(text: &str) -> Self {
        let json: Json = serde_json::from_str(text)
            .unwrap_or_else(|err| panic!("persist_sync returned invalid JSON {text:?}: {err}"));
        let number = |key: &str| {
            json.get(key)
                .and_then(Json::as_u64)
                .unwrap_or_else(|| panic!("sync summary {text} lacks the number {key}"))
        };
        Self {
            pushed: number("pushed"),
            accepted: number("accepted"),
            pulled: number("pulled"),
            applied: number("applied"),
            conflicts_resolved: number("conflicts_resolved"),
            quarantined: number("quarantined"),
            released_from_quarantine: number("released_from_quarantine"),
            pending_for_missing_tables: number("pending_for_missing_tables"),
            clock_values_bounded: number("clock_values_bounded"),
            server_rolled_back: json
                .get("server_rolled_back")
                .and_then(Json::as_bool)
                .unwrap_or_else(|| panic!("sync summary {text} lacks server_rolled_back")),
            cursor: json
                .get("cursor")
                .and_then(Json::as_i64)
                .unwrap_or_else(|| panic!("sync summary {text} lacks cursor")),
        }
    }
}

/// One row of a shadow table `T_rows`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShadowRow {
    pub rid: String,
    pub clock: i64,
    pub device: String,
    pub deleted: bool,
    pub pushed: bool,
}

/// One row of `persist.sync_records`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerRecord {
    pub record_id: Vec<u8>,
    pub clock: i64,
    pub device_id: Vec<u8>,
    pub envelope: Vec<u8>,
    pub seq: i64,
}

/// Opens a SQLite database and loads the extension into it.
/// Record ids of the keyring records of the stores the tests opened, from
/// persist_init's report.
static KEYRING_RECORDS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

fn register_keyring_record(report: &Json) {
    let record_id = unhex(
        report["keyring_record_id"]
            .as_str()
            .expect("keyring_record_id in the report"),
    );
    let mut known = KEYRING_RECORDS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !known.contains(&record_id) {
        known.push(record_id);
    }
}

/// Tells whether `record_id` is the keyring record of a store the tests
/// opened.
pub fn is_keyring_record(record_id: &[u8]) -> bool {
    KEYRING_RECORDS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .any(|known| known == record_id)
}

pub fn open_sqlite(path: &Path) -> Connection {
    let conn = Connection::open(path)
        .unwrap_or_else(|err| panic!("cannot open {}: {err}", path.display()));
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("set busy timeout");
    load_extension(&conn, &extension_path());
    conn
}

/// Loads the extension through the C API. rusqlite rejects its
/// `load_extension` feature together with `loadable_extension`, which
/// persist-sqlite enables, and cargo unifies the features of the workspace
/// members that one command builds (`cargo clippy --all-targets`).
fn load_extension(conn: &Connection, path: &Path) {
    let file = CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    let mut message: *mut c_char = std::ptr::null_mut();
    // SAFETY: `handle` is the open database of `conn`, which outlives this
    // block. SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION takes an int and an int
    // pointer that may be NULL. sqlite3_load_extension reads the
    // NUL-terminated `file`, and on failure stores in `message` a string from
    // sqlite3_malloc, which is copied and released with sqlite3_free.
    let (config_rc, load_rc, error) = unsafe {
        let handle = conn.handle();
        let config_rc = ffi::sqlite3_db_config(
            handle,
            ffi::SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION,
            1 as c_int,
            std::ptr::null_mut::<c_int>(),
        );
        let load_rc =
            ffi::sqlite3_load_extension(handle, file.as_ptr(), std::ptr::null(), &mut message);
        let error = if message.is_null() {
            String::new()
        } else {
            let text = CStr::from_ptr(message).to_string_lossy().into_owned();
            ffi::sqlite3_free(message.cast());
            text
        };
        (config_rc, load_rc, error)
    };
    assert_eq!(
        config_rc,
        ffi::SQLITE_OK,
        "enabling extension loading failed"
    );
    assert_eq!(
        load_rc,
        ffi::SQLITE_OK,
        "loading {} failed: {error}",
        path.display()
    );
}

/// One device: a database file holding a replica of the store.
pub struct Device {
    pub label: String,
    pub path: PathBuf,
    pub conn: Connection,
    pub store_id: Vec<u8>,
    pub device_id: String,
    /// The persist_init options without the imported key, for reopening and
    /// for the sqlite3 CLI.
    options: Json,
}

impl Device {
    /// Creates a device with a new store (and a new keyring) in `dir`.
    pub fn create(dir: &Path, label: &str) -> Self {
        Self::open_with(dir, label, json!({}))
    }

    /// Creates a device that joins the store of `key`, an export of another
    /// device's keyring.
    pub fn join(dir: &Path, label: &str, key: &str) -> Self {
        Self::open_with(dir, label, json!({ "key": key }))
    }

    /// Opens `dir/LABEL.db` with `persist_init` and `options`, to which the
    /// keyfile `dir/LABEL.key` is added.
    pub fn open_with(dir: &Path, label: &str, mut options: Json) -> Self {
        let path = dir.join(format!("{label}.db"));
        let keyfile = dir.join(format!("{label}.key"));
        options["keyfile"] = json!(keyfile.to_str().expect("UTF-8 temp path"));
        let conn = open_sqlite(&path);
        let report = init(&conn, &options);
        register_keyring_record(&report);
        let mut cli_options = options;
        if let Some(map) = cli_options.as_object_mut() {
            map.remove("key");
        }
        Self {
            label: label.to_owned(),
            path,
            conn,
            store_id: unhex(report["store_id"].as_str().expect("store_id in the report")),
            device_id: report["device_id"]
                .as_str()
                .expect("device_id in the report")
                .to_owned(),
            options: cli_options,
        }
    }

    /// Closes the connection and opens the database again, as an app does
    /// when it restarts.
    pub fn reopen(&mut self) {
        let conn = open_sqlite(&self.path);
        let report = init(&conn, &self.options);
        assert_eq!(report["device_id"].as_str(), Some(self.device_id.as_str()));
        self.conn = conn;
    }

    /// Returns the persist_init call that opens this device's store, for the
    /// sqlite3 CLI.
    pub fn init_sql(&self) -> String {
        format!(
            "SELECT persist_init('{STORE}', '{}');",
            self.options.to_string().replace('\'', "''")
        )
    }

    pub fn export(&self) -> String {
        self.conn
            .query_row("SELECT persist_export()", [], |row| row.get(0))
            .expect("persist_export()")
    }

    pub fn exec(&self, sql: &str) {
        self.conn.execute_batch(sql).unwrap_or_else(|err| {
            let start: String = sql.chars().take(200).collect();
            panic!("device {}: {start}: {err}", self.label)
        });
    }

    pub fn query_i64(&self, sql: &str) -> i64 {
        self.conn
            .query_row(sql, [], |row| row.get(0))
            .unwrap_or_else(|err| panic!("device {}: {sql}: {err}", self.label))
    }

    /// Syncs with the test server and returns the summary.
    pub fn sync(&self) -> Summary {
        self.sync_to(&conninfo())
    }

    /// Syncs with the server at `conninfo` and returns the summary.
    pub fn sync_to(&self, conninfo: &str) -> Summary {
        self.try_sync(conninfo)
            .unwrap_or_else(|err| panic!("device {}: persist_sync failed: {err}", self.label))
    }

    /// Syncs with the server at `conninfo`, and returns the error message on
    /// failure.
    pub fn try_sync(&self, conninfo: &str) -> Result<Summary, String> {
        self.conn
            .query_row("SELECT persist_sync(?1)", [conninfo], |row| {
                row.get::<_, String>(0)
            })
            .map(|text| Summary::parse(&text))
            .map_err(|err| err.to_string())
    }

    /// Returns every row of `table`, ordered by `order_by`.
    pub fn rows(&self, table: &str, order_by: &str) -> Vec<Vec<Value>> {
        let sql = format!("SELECT * FROM {table} ORDER BY {order_by}");
        let mut statement = self
            .conn
            .prepare(&sql)
            .unwrap_or_else(|err| panic!("device {}: {sql}: {err}", self.label));
        let columns = statement.column_count();
        statement
            .query_map([], |row| {
                (0..columns)
                    .map(|i| row.get::<_, Value>(i))
                    .collect::<Result<Vec<_>, _>>()
            })
            .and_then(Iterator::collect)
            .unwrap_or_else(|err| panic!("device {}: {sql}: {err}", self.label))
    }

    /// Returns the shadow rows of `table`, ordered by record id.
    ///
    /// A row is pushed when the server has its version: its write order
    /// `seq` is 0 (it came from the server) or at most the `pushed_seq` that
    /// `T_config` records. This reads the shadow layout of
    /// sqlite-ext/src/vtab/shadow.rs (shadow format version 1).
    pub fn shadow(&self, table: &str) -> Vec<ShadowRow> {
        let sql = format!(
            "SELECT lower(hex(rid)), clock, lower(hex(device)), deleted,
                    seq = 0 OR seq <= (SELECT value FROM {table}_config WHERE key = 'pushed_seq')
             FROM {table}_rows ORDER BY rid"
        );
        let mut statement = self
            .conn
            .prepare(&sql)
            .unwrap_or_else(|err| panic!("device {}: {sql}: {err}", self.label));
        statement
            .query_map([], |row| {
                Ok(ShadowRow {
                    rid: row.get(0)?,
                    clock: row.get(1)?,
                    device: row.get(2)?,
                    deleted: row.get::<_, i64>(3)? != 0,
                    pushed: row.get::<_, i64>(4)? != 0,
                })
            })
            .and_then(Iterator::collect)
            .expect("read shadow rows")
    }

    /// Counts the shadow rows of `table` whose version the server lacks.
    pub fn unpushed(&self, table: &str) -> usize {
        self.shadow(table).iter().filter(|row| !row.pushed).count()
    }

    /// Returns the records that `persist_quarantined()` lists.
    pub fn quarantined(&self) -> Vec<Json> {
        let text: String = self
            .conn
            .query_row("SELECT persist_quarantined()", [], |row| row.get(0))
            .expect("persist_quarantined()");
        match serde_json::from_str(&text) {
            Ok(Json::Array(records)) => records,
            _ => panic!("persist_quarantined() returned {text:?}, expected a JSON array"),
        }
    }
}

fn init(conn: &Connection, options: &Json) -> Json {
    let text: String = conn
        .query_row(
            "SELECT persist_init(?1, ?2)",
            [STORE, &options.to_string()],
            |row| row.get(0),
        )
        .unwrap_or_else(|err| panic!("persist_init failed: {err}"));
    serde_json::from_str(&text).expect("persist_init returns JSON")
}

/// A superuser connection to the sync database.
pub struct Server {
    pub client: postgres::Client,
}

impl Server {
    pub fn connect() -> Self {
        Self::connect_to(&conninfo())
    }

    pub fn connect_to(conninfo: &str) -> Self {
        let client = postgres::Client::connect(conninfo, postgres::NoTls)
            .unwrap_or_else(|err| panic!("cannot connect to {conninfo}: {err}"));
        Self { client }
    }

    /// Returns every record of the store, in sequence order.
    /// Returns the store's data records in sequence order. The record that
    /// carries the keyring between devices is left out: it is internal to
    /// sync, and tests count data records.
    pub fn records(&mut self, store_id: &[u8]) -> Vec<ServerRecord> {
        self.all_records(store_id)
            .into_iter()
            .filter(|record| !is_keyring_record(&record.record_id))
            .collect()
    }

    /// Returns every record of the store, the keyring record included.
    pub fn all_records(&mut self, store_id: &[u8]) -> Vec<ServerRecord> {
        self.client
            .query(
                "SELECT record_id, clock, device_id, envelope, seq FROM persist.sync_records \
                 WHERE store_id = $1 ORDER BY seq",
                &[&store_id],
            )
            .expect("select sync_records")
            .iter()
            .map(|row| ServerRecord {
                record_id: row.get(0),
                clock: row.get(1),
                device_id: row.get(2),
                envelope: row.get(3),
                seq: row.get(4),
            })
            .collect()
    }

    pub fn record(&mut self, store_id: &[u8], record_id: &[u8]) -> ServerRecord {
        self.records(store_id)
            .into_iter()
            .find(|record| record.record_id == record_id)
            .unwrap_or_else(|| panic!("the server has no record {}", hex(record_id)))
    }

    pub fn max_seq(&mut self, store_id: &[u8]) -> i64 {
        self.client
            .query_one(
                "SELECT coalesce(max(seq), 0) FROM persist.sync_records WHERE store_id = $1",
                &[&store_id],
            )
            .expect("select max(seq)")
            .get(0)
    }

    /// Gives a record the store's next sequence number, so that every
    /// device pulls it again, and returns that number.
    pub fn bump_seq(&mut self, store_id: &[u8], record_id: &[u8]) -> i64 {
        let row = self
            .client
            .query_one(
                "WITH next AS (
                     UPDATE persist.sync_stores SET next_seq = next_seq + 1
                     WHERE store_id = $1 RETURNING next_seq - 1 AS seq)
                 UPDATE persist.sync_records r SET seq = next.seq FROM next
                 WHERE r.store_id = $1 AND r.record_id = $2
                 RETURNING r.seq",
                &[&store_id, &record_id],
            )
            .unwrap_or_else(|err| panic!("bumping the seq of {}: {err}", hex(record_id)));
        row.get(0)
    }

    /// Replaces the version and envelope of a record, as a malicious server
    /// would, and bumps its sequence number.
    pub fn overwrite(&mut self, store_id: &[u8], record: &ServerRecord) {
        let updated = self
            .client
            .execute(
                "UPDATE persist.sync_records SET clock = $3, device_id = $4, envelope = $5 \
                 WHERE store_id = $1 AND record_id = $2",
                &[
                    &store_id,
                    &record.record_id,
                    &record.clock,
                    &record.device_id,
                    &record.envelope,
                ],
            )
            .expect("update sync_records");
        assert_eq!(
            updated,
            1,
            "no record {} to overwrite",
            hex(&record.record_id)
        );
        self.bump_seq(store_id, &record.record_id);
    }
}

/// Replaces the value of `key` in a `key=value` conninfo.
pub fn with_conninfo_value(conninfo: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key}=");
    let mut pairs: Vec<String> = conninfo
        .split_whitespace()
        .filter(|pair| !pair.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    pairs.push(format!("{key}={value}"));
    pairs.join(" ")
}

/// Creates a sync database for one test, a copy of the empty template that
/// scripts/test-sync.sh made, and returns its conninfo.
pub fn private_database(prefix: &str) -> String {
    let template = env_var("PERSIST_SYNC_TEMPLATE_DB");
    let name = unique_name(prefix);
    let mut server = Server::connect();
    server
        .client
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .unwrap_or_else(|err| panic!("CREATE DATABASE {name} TEMPLATE {template}: {err}"));
    let conninfo = with_conninfo_value(&conninfo(), "dbname", &name);
    // Each server has its own id; the copy would otherwise keep the
    // template's.
    Server::connect_to(&conninfo)
        .client
        .batch_execute("UPDATE persist.sync_server SET id = gen_random_uuid()")
        .expect("give the new database its own server id");
    conninfo
}
