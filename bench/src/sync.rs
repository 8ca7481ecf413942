//! Sync benchmarks: push and pull of many records through a local
//! PostgreSQL sync server, and a two-device sync of Chinook.
//!
//! Each repetition gets a new server database with the schema of
//! `pg-ext/sql/sync_server.sql` and two new device databases. Device A
//! contains the rows, and device B starts with the same key and an empty
//! table.

use rusqlite::Connection;
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

use crate::Ctx;
use crate::engine::{self, Engine, remove_database};
use crate::error::{BenchError, Context, Result};
use crate::measure::{Sample, median_sample, timed};
use crate::report::{self, Table, Target};
use crate::sqlite::{self, CHINOOK_TABLES, Section};

/// Required sync rate, records per second each way.
const REQUIRED_RECORDS_PER_SECOND: f64 = 50_000.0;

/// A PostgreSQL server reached with a base connection string (host, port,
/// user) to which a database name is appended.
pub struct Server {
    base: String,
}

impl Server {
    /// Creates a handle for the server at `base`, such as
    /// `host=/tmp/pg/sock port=55432 user=postgres`.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
        }
    }

    /// Returns the connection string for database `name`.
    pub fn conninfo(&self, name: &str) -> String {
        format!("{} dbname={name}", self.base)
    }

    /// Connects to the database `postgres`, for creating and dropping
    /// databases.
    ///
    /// # Errors
    ///
    /// Connection errors.
    pub fn admin(&self) -> Result<postgres::Client> {
        postgres::Client::connect(&self.conninfo("postgres"), postgres::NoTls)
            .context(format!("connecting to PostgreSQL at {}", self.base))
    }

    /// Runs `SHOW setting` on the server.
    ///
    /// # Errors
    ///
    /// Connection and query errors.
    pub fn show(&self, setting: &str) -> Result<String> {
        let mut client = self.admin()?;
        let row = client.query_one(&format!("SHOW {setting}"), &[])?;
        Ok(row.get(0))
    }

    /// Creates database `name` (dropping an old one of that name) with the
    /// sync server schema, and returns its connection string.
    ///
    /// # Errors
    ///
    /// Connection and SQL errors, and a missing schema file.
    pub fn create_database(&self, repo: &Path, name: &str) -> Result<String> {
        let schema_path = repo.join("pg-ext/sql/sync_server.sql");
        let schema = std::fs::read_to_string(&schema_path)
            .context(format!("reading {}", schema_path.display()))?;
        let mut admin = self.admin()?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))?;
        admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let conninfo = self.conninfo(name);
        let mut client = postgres::Client::connect(&conninfo, postgres::NoTls)?;
        client.batch_execute("CREATE SCHEMA persist")?;
        client
            .batch_execute(&schema)
            .context("loading pg-ext/sql/sync_server.sql")?;
        Ok(conninfo)
    }

    /// Drops database `name`; errors are ignored because it is cleanup.
    pub fn drop_database(&self, name: &str) {
        if let Ok(mut admin) = self.admin() {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// The JSON summary of one `persist_sync` call, with the counts checked here.
pub struct Summary {
    /// Records sent to the server.
    pub pushed: u64,
    /// Records received from the server.
    pub pulled: u64,
    /// Received records written locally.
    pub applied: u64,
    /// Received records that failed verification.
    pub quarantined: u64,
}

/// Runs `persist_sync(conninfo)` on `conn` and parses its summary.
///
/// # Errors
///
/// The extension's error, such as an unreachable server.
pub fn sync(conn: &Connection, conninfo: &str) -> Result<Summary> {
    let text: String = conn
        .query_row("SELECT persist_sync(?1)", [conninfo], |row| row.get(0))
        .context("persist_sync")?;
    let json: Json = serde_json::from_str(&text)
        .map_err(|err| BenchError::new(format!("persist_sync returned invalid JSON: {err}")))?;
    let count = |name: &str| json.get(name).and_then(Json::as_u64).unwrap_or(0);
    Ok(Summary {
        pushed: count("pushed"),
        pulled: count("pulled"),
        applied: count("applied"),
        quarantined: count("quarantined"),
    })
}

/// Seconds since the Unix epoch on the server's clock.
fn server_now(client: &mut postgres::Client) -> Result<f64> {
    let row = client.query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])?;
    Ok(row.get(0))
}

/// Times one sync of device A, which pushes every row and then pulls its own
/// records back. Returns the summary, the push phase and the whole call.
///
/// The push phase is read from the server, because the client does not
/// report its phases. It runs from the call until the server started storing
/// the last batch. That moment is the newest `received_at` in
/// `persist.sync_records`, the start of the last `persist.push` call's
/// transaction, so the server's work on the last batch is left out.
fn timed_push(conn: &Connection, conninfo: &str) -> Result<(Summary, Sample, Sample)> {
    let mut server = postgres::Client::connect(conninfo, postgres::NoTls)?;
    let started = server_now(&mut server)?;
    let (summary, whole) = timed(|| sync(conn, conninfo));
    let summary = summary?;
    let row = server.query_one(
        "SELECT extract(epoch FROM max(received_at))::float8 FROM persist.sync_records",
        &[],
    )?;
    let last_batch: Option<f64> = row.get(0);
    let last_batch = last_batch
        .ok_or_else(|| BenchError::new("device A synced, but the server contains no records"))?;
    // CPU time is not split between the phases; it is given for the whole call.
    let push = Sample {
        wall: (last_batch - started).clamp(0.0, whole.wall),
        cpu: f64::NAN,
    };
    Ok((summary, push, whole))
}

/// Two device databases that share a store. A contains the rows, and B has
/// the same keyring and the same tables, empty.
pub struct Devices {
    /// Device A's database.
    pub a: PathBuf,
    /// Device B's database.
    pub b: PathBuf,
    /// Device B's keyfile.
    pub b_keyfile: PathBuf,
}

/// Creates device A with `records` rows in `items` and device B with the
/// same keyring and an empty `items`, under names starting with `tag`.
///
/// # Errors
///
/// SQLite's and the extension's errors.
pub fn prepare_items_devices(ctx: &Ctx, tag: &str, records: usize) -> Result<Devices> {
    let devices = device_paths(ctx, tag);
    let a = ctx.opener.open(Engine::Persist, &devices.a)?;
    sqlite::create_items(&a, Engine::Persist)?;
    sqlite::fill_items(&a, 1, records)?;
    let key = engine::export_key(&a)?;
    let b = open_second_device(ctx, &devices, &key)?;
    sqlite::create_items(&b, Engine::Persist)?;
    Ok(devices)
}

fn device_paths(ctx: &Ctx, tag: &str) -> Devices {
    let devices = Devices {
        a: ctx.work.join(format!("{tag}-a.db")),
        b: ctx.work.join(format!("{tag}-b.db")),
        b_keyfile: ctx.opener.key_dir.join(format!("{tag}-b.key")),
    };
    remove_database(&devices.a);
    remove_database(&devices.b);
    devices
}

fn open_second_device(ctx: &Ctx, devices: &Devices, key: &str) -> Result<Connection> {
    let b = Connection::open(&devices.b)?;
    engine::load_persist(&b, &ctx.opener.extension)?;
    engine::init_store(&b, &devices.b_keyfile, Some(key))?;
    Ok(b)
}

/// Opens device B after [`prepare_items_devices`].
///
/// # Errors
///
/// SQLite's and the extension's errors.
pub fn open_device_b(ctx: &Ctx, devices: &Devices) -> Result<Connection> {
    let b = Connection::open(&devices.b)?;
    engine::load_persist(&b, &ctx.opener.extension)?;
    engine::init_store(&b, &devices.b_keyfile, None)?;
    Ok(b)
}

/// Reads every row of every table in `tables`, sorted, for comparing devices.
fn all_rows(conn: &Connection, tables: &[&str]) -> Result<Vec<Vec<String>>> {
    tables
        .iter()
        .map(|table| {
            let mut rows = sqlite::query_rows(conn, &format!("SELECT * FROM {table}"))?;
            rows.sort();
            Ok(rows)
        })
        .collect()
}

/// Checks the counts of a sync summary. Pushed and pulled counts may exceed
/// the rows, because some records are not rows (such as a keyring update).
/// The rows themselves are compared across devices afterwards.
fn check_summary(
    device: &str,
    summary: &Summary,
    pushed: u64,
    pulled: u64,
    applied: u64,
) -> Result<()> {
    if summary.pushed < pushed
        || summary.pulled < pulled
        || summary.applied != applied
        || summary.quarantined != 0
    {
        return Err(BenchError::new(format!(
            "device {device} synced pushed {}, pulled {}, applied {}, quarantined {}; \
             expected at least {pushed} and {pulled}, exactly {applied} and 0",
            summary.pushed, summary.pulled, summary.applied, summary.quarantined
        )));
    }
    Ok(())
}

/// Samples of one case over the repetitions.
#[derive(Default)]
struct SyncSamples {
    push: Vec<Sample>,
    first_sync: Vec<Sample>,
    pull: Vec<Sample>,
    later_push: Vec<Sample>,
    later_sync: Vec<Sample>,
    chinook_a: Vec<Sample>,
    chinook_b: Vec<Sample>,
}

/// Runs the sync benchmarks against the server at `ctx.pg`.
///
/// # Errors
///
/// SQLite's, the extension's and PostgreSQL's errors, and devices that end
/// up different.
pub fn run(ctx: &Ctx, server: &Server) -> Result<Section> {
    let records = ctx.sizes.sync_records;
    let mut samples = SyncSamples::default();
    let mut chinook_records = 0u64;
    for repetition in 0..ctx.sizes.sync_repetitions {
        let name = format!("persist_bench_sync_{}_{repetition}", std::process::id());
        let conninfo = server.create_database(&ctx.repo, &name)?;
        let result = items_round(ctx, &conninfo, records, &mut samples);
        server.drop_database(&name);
        result?;

        let name = format!("persist_bench_chinook_{}_{repetition}", std::process::id());
        let conninfo = server.create_database(&ctx.repo, &name)?;
        let result = chinook_round(ctx, &conninfo, &mut samples);
        server.drop_database(&name);
        chinook_records = result?;
    }

    // The CPU time of the push phase alone is not measured.
    let push = Sample {
        cpu: f64::NAN,
        ..median_sample(&samples.push)
    };
    let first = median_sample(&samples.first_sync);
    let pull = median_sample(&samples.pull);
    let later_push = Sample {
        cpu: f64::NAN,
        ..median_sample(&samples.later_push)
    };
    let later_sync = median_sample(&samples.later_sync);
    let chinook_a = median_sample(&samples.chinook_a);
    let chinook_b = median_sample(&samples.chinook_b);
    let mut markdown = format!(
        "## Sync\n\nThrough a PostgreSQL {} server on a Unix socket of this machine \
         (`fsync = {}`, `synchronous_commit = {}`), a new server database per \
         repetition. Device A holds {} rows of the `items` table above and syncs first; \
         device B has the same key and an empty table and syncs second. The push phase \
         ends when the server starts storing the last pushed batch (the newest \
         `received_at`, on the server's clock); after it, device A pulls its own records \
         back and verifies them. \
         Device B's sync is the pull: it verifies each record, encrypts it again as a \
         local row and stores it. Both devices end with identical rows. Device A then \
         inserts as many rows again and syncs a second time: a first sync with a server \
         sends every row in rowid order, later syncs send the rows written since, in \
         write order. CPU time is \
         this client process's only, not the server's. {}\n\n",
        server.show("server_version")?,
        server.show("fsync")?,
        server.show("synchronous_commit")?,
        report::thousands(records as u64),
        report::repetitions(ctx.sizes.sync_repetitions)
    );
    let mut table = Table::new(&["case", "records", "time", "records/s", "CPU time"]);
    let rows: [(&str, u64, Sample); 8] = [
        ("push: device A's push phase", records as u64, push),
        (
            "device A's whole first sync (push, then pull of its own records)",
            records as u64,
            first,
        ),
        ("pull: device B's first sync", records as u64, pull),
        (
            "push of rows written after the first sync: device A's push phase",
            records as u64,
            later_push,
        ),
        (
            "device A's whole second sync (push, then pull of its own records)",
            records as u64,
            later_sync,
        ),
        ("Chinook: device A's first sync", chinook_records, chinook_a),
        ("Chinook: device B's first sync", chinook_records, chinook_b),
        (
            "Chinook: both devices, total",
            chinook_records,
            Sample {
                wall: chinook_a.wall + chinook_b.wall,
                cpu: chinook_a.cpu + chinook_b.cpu,
            },
        ),
    ];
    for (case, count, sample) in rows {
        table.row(vec![
            case.to_owned(),
            report::thousands(count),
            report::seconds(sample.wall),
            report::rate(count as f64 / sample.wall),
            if sample.cpu.is_finite() {
                report::seconds(sample.cpu)
            } else {
                "not measured".to_owned()
            },
        ]);
    }
    markdown.push_str(&table.render());
    markdown.push('\n');

    let mut targets = Vec::new();
    for (name, sample, profile_case) in [
        ("push, first sync", push, "push"),
        (
            "push, rows written after the first sync",
            later_push,
            "push-later",
        ),
        ("pull, first sync", pull, "pull"),
    ] {
        let rate = records as f64 / sample.wall;
        targets.push(Target {
            name: format!("sync {name}"),
            required: format!("≥ {} records/s", report::rate(REQUIRED_RECORDS_PER_SECOND)),
            measured: format!("{} records/s", report::rate(rate)),
            attainment: rate / REQUIRED_RECORDS_PER_SECOND,
            profile_case,
        });
    }
    Ok(Section { markdown, targets })
}

fn items_round(ctx: &Ctx, conninfo: &str, records: usize, samples: &mut SyncSamples) -> Result<()> {
    let devices = prepare_items_devices(ctx, "sync", records)?;
    let a = ctx.opener.open(Engine::Persist, &devices.a)?;
    let (summary, push, whole) = timed_push(&a, conninfo)?;
    check_summary("A", &summary, records as u64, records as u64, 0)?;
    let b = open_device_b(ctx, &devices)?;
    let (summary, pull) = timed(|| sync(&b, conninfo));
    check_summary("B", &summary?, 0, records as u64, records as u64)?;
    if all_rows(&a, &["items"])? != all_rows(&b, &["items"])? {
        return Err(BenchError::new(
            "after syncing, device B's items differ from device A's",
        ));
    }

    // A first sync with a server sends every row in rowid order. Rows
    // written after it take the incremental path, in local write order.
    sqlite::fill_items(&a, records + 1, 2 * records)?;
    let (summary, later_push, later_whole) = timed_push(&a, conninfo)?;
    check_summary(
        "A (second sync)",
        &summary,
        records as u64,
        records as u64,
        0,
    )?;

    samples.push.push(push);
    samples.first_sync.push(whole);
    samples.pull.push(pull);
    samples.later_push.push(later_push);
    samples.later_sync.push(later_whole);
    drop((a, b));
    remove_database(&devices.a);
    remove_database(&devices.b);
    Ok(())
}

/// Syncs Chinook from device A to an empty device B and returns the number
/// of records.
fn chinook_round(ctx: &Ctx, conninfo: &str, samples: &mut SyncSamples) -> Result<u64> {
    let devices = device_paths(ctx, "chinook-sync");
    let a = ctx.opener.open(Engine::Persist, &devices.a)?;
    let records = sqlite::load_chinook(ctx, &a, Engine::Persist)? as u64;
    let key = engine::export_key(&a)?;
    let b = open_second_device(ctx, &devices, &key)?;
    let schema_path = ctx.repo.join("sql/chinook/schema-persist.sql");
    let schema = std::fs::read_to_string(&schema_path)
        .context(format!("reading {}", schema_path.display()))?;
    b.execute_batch(&schema)?;

    let (summary, first) = timed(|| sync(&a, conninfo));
    check_summary("A (Chinook)", &summary?, records, records, 0)?;
    let (summary, second) = timed(|| sync(&b, conninfo));
    check_summary("B (Chinook)", &summary?, 0, records, records)?;
    if all_rows(&a, &CHINOOK_TABLES)? != all_rows(&b, &CHINOOK_TABLES)? {
        return Err(BenchError::new(
            "after syncing Chinook, device B's tables differ from device A's",
        ));
    }
    samples.chinook_a.push(first);
    samples.chinook_b.push(second);
    drop((a, b));
    remove_database(&devices.a);
    remove_database(&devices.b);
    Ok(records)
}
