//! SQLite benchmarks: inserts, primary-key lookups, a full scan and Chinook
//! joins, each on a plaintext table, a `persist` table and SQLCipher.
//!
//! Every repetition runs all three engines, in an order that rotates between
//! repetitions; the report gives the median of the repetitions. Databases
//! use SQLite's defaults (rollback journal, `synchronous = FULL`, 4 KiB pages,
//! a 2 MB page cache), in files under the work folder.

use std::collections::HashMap;
use std::path::PathBuf;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, params};

use crate::Ctx;
use crate::engine::{Engine, remove_database};
use crate::error::{BenchError, Context, Result};
use crate::measure::{Sample, median_sample, rotated, timed};
use crate::report::{self, Table, Target};
use crate::workload::{
    self, Checksum, INSERT_ITEM, Item, LOOKUP_ITEM, SCAN_ITEMS, item, lookup_keys,
};

/// The report section and the targets it checks.
pub struct Section {
    /// Markdown.
    pub markdown: String,
    /// Targets checked by this section.
    pub targets: Vec<Target>,
}

/// Joins two encrypted Chinook tables: every invoice line looks up its
/// track by primary key.
pub const CHINOOK_JOIN: &str = "SELECT t.genre_id, count(*), sum(il.quantity), \
     sum(CAST(round(il.unit_price * 100) AS INTEGER)) \
     FROM invoice_line il JOIN track t ON t.track_id = il.track_id \
     GROUP BY t.genre_id ORDER BY t.genre_id";

/// Runs the insert and read benchmarks.
///
/// # Errors
///
/// SQLite's errors, and an error when two engines return different results.
pub fn run(ctx: &Ctx) -> Result<Section> {
    let mut markdown = String::new();
    let mut targets = Vec::new();

    let (insert_markdown, insert_targets) = run_inserts(ctx)?;
    markdown.push_str(&insert_markdown);
    targets.extend(insert_targets);

    let (read_markdown, read_targets) = run_reads(ctx)?;
    markdown.push_str(&read_markdown);
    targets.extend(read_targets);
    Ok(Section { markdown, targets })
}

fn database_path(ctx: &Ctx, purpose: &str, engine: Engine) -> PathBuf {
    ctx.work.join(format!("{purpose}-{}.db", engine.label()))
}

/// Creates the `items` table of `engine` on `conn`.
pub fn create_items(conn: &Connection, engine: Engine) -> Result<()> {
    let sql = match engine {
        Engine::Persist => workload::persist_items_sql(),
        Engine::Plaintext | Engine::SqlCipher => workload::plain_items_sql(),
    };
    conn.execute_batch(&sql).context("creating table items")?;
    Ok(())
}

/// Inserts `items` with a commit after every `commit_every` rows.
///
/// # Errors
///
/// SQLite's errors.
pub fn insert_items(conn: &Connection, items: &[Item], commit_every: usize) -> Result<()> {
    let mut insert = conn.prepare_cached(INSERT_ITEM)?;
    conn.execute_batch("BEGIN")?;
    for (index, item) in items.iter().enumerate() {
        insert.execute(params![
            item.id,
            item.name,
            item.email,
            item.city,
            item.amount,
            item.quantity,
            item.note
        ])?;
        let done = index + 1;
        if done % commit_every == 0 && done < items.len() {
            conn.execute_batch("COMMIT; BEGIN")?;
        }
    }
    conn.execute_batch("COMMIT")?;
    Ok(())
}

/// Inserts rows `first..=last` in transactions of at most 10,000 rows. It
/// generates the rows chunk by chunk, so large tables need little memory.
///
/// # Errors
///
/// SQLite's errors.
pub fn fill_items(conn: &Connection, first: usize, last: usize) -> Result<()> {
    const CHUNK: usize = 10_000;
    let mut start = first;
    while start <= last {
        let end = (start + CHUNK - 1).min(last);
        let items: Vec<Item> = (start..=end).map(|id| item(id as i64)).collect();
        insert_items(conn, &items, items.len())?;
        start = end + 1;
    }
    Ok(())
}

/// Counts the rows of `table`.
///
/// # Errors
///
/// SQLite's errors.
pub fn count_rows(conn: &Connection, table: &str) -> Result<i64> {
    Ok(
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })?,
    )
}

fn run_inserts(ctx: &Ctx) -> Result<(String, Vec<Target>)> {
    let rows = ctx.sizes.insert_rows;
    let items: Vec<Item> = (1..=rows).map(|id| item(id as i64)).collect();
    let average = items.iter().map(workload::item_value_bytes).sum::<usize>() / rows.max(1);
    let modes = [rows, ctx.sizes.commit_every];
    let mut samples: HashMap<(usize, Engine), Vec<Sample>> = HashMap::new();

    for repetition in 0..ctx.sizes.repetitions {
        for commit_every in modes {
            for engine in rotated(&Engine::ALL, repetition) {
                let path = database_path(ctx, "insert", engine);
                remove_database(&path);
                let conn = ctx.opener.open(engine, &path)?;
                create_items(&conn, engine)?;
                let (result, sample) = timed(|| insert_items(&conn, &items, commit_every));
                result.context(format!("inserting into the {} table", engine.label()))?;
                let count = count_rows(&conn, "items")?;
                if count != rows as i64 {
                    return Err(BenchError::new(format!(
                        "the {} table contains {count} rows after inserting {rows}",
                        engine.label()
                    )));
                }
                drop(conn);
                remove_database(&path);
                samples
                    .entry((commit_every, engine))
                    .or_default()
                    .push(sample);
            }
        }
    }

    let mut markdown = format!(
        "### Inserts\n\n{} rows of {average} bytes of values on average (7 columns), \
         inserted with one prepared statement; the time includes the commits. {}\n\n",
        report::thousands(rows as u64),
        report::repetitions(ctx.sizes.repetitions)
    );
    let mut table = Table::new(&[
        "transactions",
        "engine",
        "time",
        "rows/s",
        "vs plaintext",
        "CPU time",
    ]);
    let mut targets = Vec::new();
    for commit_every in modes {
        let mode = if commit_every >= rows {
            "one transaction".to_owned()
        } else {
            format!("commit every {commit_every} rows")
        };
        let plain = median_sample(&samples[&(commit_every, Engine::Plaintext)]);
        for engine in Engine::ALL {
            let median = median_sample(&samples[&(commit_every, engine)]);
            let versus = plain.wall / median.wall;
            table.row(vec![
                mode.clone(),
                engine.label().to_owned(),
                report::seconds(median.wall),
                report::rate(rows as f64 / median.wall),
                report::ratio(versus),
                report::seconds(median.cpu),
            ]);
            if engine == Engine::Persist {
                targets.push(Target {
                    name: format!("insert, {mode}: persist vs plaintext throughput"),
                    required: "≥ 0.5x".to_owned(),
                    measured: report::ratio(versus),
                    attainment: versus / 0.5,
                    profile_case: if commit_every >= rows {
                        "insert"
                    } else {
                        "insert-commits"
                    },
                });
            }
        }
    }
    markdown.push_str(&table.render());
    markdown.push('\n');
    Ok((markdown, targets))
}

/// Runs `keys` lookups and returns a checksum of every value read and the
/// number of rows found.
///
/// # Errors
///
/// SQLite's errors.
pub fn run_lookups(conn: &Connection, keys: &[i64]) -> Result<(Checksum, usize)> {
    let mut lookup = conn.prepare_cached(LOOKUP_ITEM)?;
    let mut checksum = Checksum::default();
    let mut found = 0;
    for key in keys {
        let mut rows = lookup.query([key])?;
        while let Some(row) = rows.next()? {
            found += 1;
            checksum.add(&key.to_le_bytes());
            for column in 0..6 {
                add_value(&mut checksum, row.get_ref(column)?);
            }
        }
    }
    Ok((checksum, found))
}

/// Mixes a value into `checksum` without allocating, so that the harness
/// adds as little as possible to the time of a lookup.
fn add_value(checksum: &mut Checksum, value: ValueRef<'_>) {
    match value {
        ValueRef::Null => checksum.add(b"NULL"),
        ValueRef::Integer(v) => checksum.add(&v.to_le_bytes()),
        ValueRef::Real(v) => checksum.add(&v.to_bits().to_le_bytes()),
        ValueRef::Text(v) | ValueRef::Blob(v) => checksum.add(v),
    }
}

/// The scan aggregate: count, cents, quantity, note bytes, min e-mail, max name.
pub type ScanResult = (i64, i64, i64, i64, String, String);

/// Runs the full-scan aggregate.
///
/// # Errors
///
/// SQLite's errors.
pub fn run_scan(conn: &Connection) -> Result<ScanResult> {
    Ok(conn.query_row(SCAN_ITEMS, [], |row| {
        Ok((
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
        ))
    })?)
}

/// Formats a value as text, the same for equal values in every engine.
pub fn value_text(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => "NULL".to_owned(),
        ValueRef::Integer(v) => v.to_string(),
        ValueRef::Real(v) => format!("{v:?}"),
        ValueRef::Text(v) => String::from_utf8_lossy(v).into_owned(),
        ValueRef::Blob(v) => v.iter().map(|byte| format!("{byte:02x}")).collect(),
    }
}

/// Runs `sql` and returns every row as text.
///
/// # Errors
///
/// SQLite's errors.
pub fn query_rows(conn: &Connection, sql: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let columns = stmt.column_count();
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        let mut cells = Vec::with_capacity(columns);
        for column in 0..columns {
            cells.push(value_text(row.get_ref(column)?));
        }
        out.push(cells.join("|"));
    }
    Ok(out)
}

/// Loads the Chinook schema of `engine` and its data into `conn`, and
/// returns the number of rows loaded.
///
/// # Errors
///
/// SQLite's errors and missing files.
pub fn load_chinook(ctx: &Ctx, conn: &Connection, engine: Engine) -> Result<i64> {
    let dir = ctx.repo.join("sql/chinook");
    let schema_file = match engine {
        Engine::Persist => "schema-persist.sql",
        Engine::Plaintext | Engine::SqlCipher => "schema-sqlite.sql",
    };
    let schema = std::fs::read_to_string(dir.join(schema_file))
        .context(format!("reading {}", dir.join(schema_file).display()))?;
    let data = std::fs::read_to_string(dir.join("data.sql"))
        .context(format!("reading {}", dir.join("data.sql").display()))?;
    conn.execute_batch(&schema)
        .context(format!("creating the Chinook tables ({schema_file})"))?;
    conn.execute_batch("BEGIN")?;
    conn.execute_batch(&data)
        .context("loading sql/chinook/data.sql")?;
    conn.execute_batch("COMMIT")?;
    let mut total = 0;
    for table in CHINOOK_TABLES {
        total += count_rows(conn, table)?;
    }
    Ok(total)
}

/// The 11 Chinook tables.
pub const CHINOOK_TABLES: [&str; 11] = [
    "genre",
    "media_type",
    "artist",
    "album",
    "track",
    "playlist",
    "playlist_track",
    "employee",
    "customer",
    "invoice",
    "invoice_line",
];

/// Selects one query's samples from [`ReadSamples`].
type PickSamples = fn(&ReadSamples) -> &Vec<Sample>;

/// Read measurements of one engine over the repetitions.
#[derive(Default)]
struct ReadSamples {
    lookup: Vec<Sample>,
    scan: Vec<Sample>,
    join: Vec<Sample>,
    queries: Vec<Sample>,
}

fn run_reads(ctx: &Ctx) -> Result<(String, Vec<Target>)> {
    let rows = ctx.sizes.insert_rows;
    let keys = lookup_keys(rows, ctx.sizes.lookups);
    let query_text = std::fs::read_to_string(ctx.repo.join("sql/chinook/queries.sql"))
        .context("reading sql/chinook/queries.sql")?;
    let queries = workload::chinook_queries(&query_text);
    if queries.is_empty() {
        return Err(BenchError::new(
            "sql/chinook/queries.sql contains no '-- query: <name>' lines",
        ));
    }

    // Build one database of each engine for the items and one for Chinook,
    // outside any measurement, and keep the connections open.
    let mut items_conns = HashMap::new();
    let mut chinook_conns = HashMap::new();
    let mut chinook_rows = HashMap::new();
    for engine in Engine::ALL {
        let path = database_path(ctx, "read", engine);
        remove_database(&path);
        let conn = ctx.opener.open(engine, &path)?;
        create_items(&conn, engine)?;
        fill_items(&conn, 1, rows)?;
        items_conns.insert(engine, conn);

        let path = database_path(ctx, "chinook", engine);
        remove_database(&path);
        let conn = ctx.opener.open(engine, &path)?;
        chinook_rows.insert(engine, load_chinook(ctx, &conn, engine)?);
        chinook_conns.insert(engine, conn);
    }
    check_equal("Chinook row count", &chinook_rows)?;

    let mut samples: HashMap<Engine, ReadSamples> = HashMap::new();
    let mut lookup_results = HashMap::new();
    let mut scan_results = HashMap::new();
    let mut join_results = HashMap::new();
    let mut query_results = HashMap::new();
    for repetition in 0..ctx.sizes.repetitions {
        for engine in rotated(&Engine::ALL, repetition) {
            let conn = &items_conns[&engine];
            let entry = samples.entry(engine).or_default();

            let (result, sample) = timed(|| run_lookups(conn, &keys));
            let (checksum, found) = result.context(format!("lookups in {}", engine.label()))?;
            if found != keys.len() {
                return Err(BenchError::new(format!(
                    "{} found {found} of {} looked-up rows",
                    engine.label(),
                    keys.len()
                )));
            }
            entry.lookup.push(sample);
            lookup_results.insert(engine, checksum);

            let (result, sample) = timed(|| run_scan(conn));
            let scan = result.context(format!("full scan of {}", engine.label()))?;
            if scan.0 != rows as i64 {
                return Err(BenchError::new(format!(
                    "the full scan of {} counted {} rows, expected {rows}",
                    engine.label(),
                    scan.0
                )));
            }
            entry.scan.push(sample);
            scan_results.insert(engine, scan);

            let conn = &chinook_conns[&engine];
            let (result, sample) = timed(|| -> Result<Vec<String>> {
                let mut last = Vec::new();
                for _ in 0..ctx.sizes.join_iterations {
                    last = query_rows(conn, CHINOOK_JOIN)?;
                }
                Ok(last)
            });
            join_results.insert(engine, result.context("Chinook join")?);
            entry.join.push(sample);

            let (result, sample) = timed(|| -> Result<Vec<Vec<String>>> {
                queries
                    .iter()
                    .map(|(name, sql)| query_rows(conn, sql).context(format!("query {name}")))
                    .collect()
            });
            query_results.insert(engine, result?);
            entry.queries.push(sample);
        }
        check_equal("lookup results", &lookup_results)?;
        check_equal("full-scan aggregates", &scan_results)?;
        check_equal("Chinook join results", &join_results)?;
        check_equal("Chinook query results", &query_results)?;
    }
    drop(items_conns);
    drop(chinook_conns);
    for engine in Engine::ALL {
        remove_database(&database_path(ctx, "read", engine));
        remove_database(&database_path(ctx, "chinook", engine));
    }

    let join_rows = join_results
        .get(&Engine::Plaintext)
        .map_or(0, |rows| rows.len());
    let mut markdown = format!(
        "### Reads\n\nOn {} rows of each engine, built as above. Lookups read every \
         column of {} random primary keys with one prepared statement. The full scan \
         runs `{}`. The Chinook join (both tables encrypted in the persist case, \
         {join_rows} result rows) runs {} times per repetition:\n\n```sql\n{}\n```\n\n\
         The query set is the {} queries of `sql/chinook/queries.sql`, each once. \
         All engines returned identical results. {}\n\n",
        report::thousands(rows as u64),
        report::thousands(keys.len() as u64),
        SCAN_ITEMS,
        ctx.sizes.join_iterations,
        CHINOOK_JOIN,
        queries.len(),
        report::repetitions(ctx.sizes.repetitions),
    );
    let mut table = Table::new(&[
        "query",
        "engine",
        "operations",
        "time",
        "operations/s",
        "vs plaintext",
        "CPU time",
    ]);
    let mut targets = Vec::new();
    let cases: [(&str, usize, PickSamples); 4] = [
        ("primary-key lookup", keys.len(), |s| &s.lookup),
        ("full scan with aggregate", 1, |s| &s.scan),
        ("Chinook join", ctx.sizes.join_iterations, |s| &s.join),
        ("Chinook query set", queries.len(), |s| &s.queries),
    ];
    for (name, operations, pick) in cases {
        let plain = median_sample(pick(&samples[&Engine::Plaintext]));
        for engine in Engine::ALL {
            let median = median_sample(pick(&samples[&engine]));
            let versus = plain.wall / median.wall;
            table.row(vec![
                name.to_owned(),
                engine.label().to_owned(),
                report::thousands(operations as u64),
                report::seconds(median.wall),
                report::rate(operations as f64 / median.wall),
                report::ratio(versus),
                report::seconds(median.cpu),
            ]);
            let target = match name {
                "primary-key lookup" => Some((0.7, "lookup")),
                "full scan with aggregate" => Some((0.5, "scan")),
                _ => None,
            };
            if let (Engine::Persist, Some((required, profile_case))) = (engine, target) {
                targets.push(Target {
                    name: format!("{name}: persist vs plaintext throughput"),
                    required: format!("≥ {required}x"),
                    measured: report::ratio(versus),
                    attainment: versus / required,
                    profile_case,
                });
            }
        }
    }
    markdown.push_str(&table.render());
    markdown.push('\n');
    Ok((markdown, targets))
}

/// Fails unless every engine produced the same value.
fn check_equal<T: PartialEq + std::fmt::Debug>(
    description: &str,
    results: &HashMap<Engine, T>,
) -> Result<()> {
    let Some(expected) = results.get(&Engine::Plaintext) else {
        return Ok(());
    };
    for (engine, result) in results {
        if result != expected {
            let shorten = |value: &T| {
                let text = format!("{value:?}");
                text.chars().take(300).collect::<String>()
            };
            return Err(BenchError::new(format!(
                "{description} differ: plaintext returned {}, {} returned {}",
                shorten(expected),
                engine.label(),
                shorten(result)
            )));
        }
    }
    Ok(())
}
