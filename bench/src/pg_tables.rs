//! An encrypted PostgreSQL table (a foreign table of server `persist`)
//! next to a plaintext heap table with a primary key: inserts,
//! primary-key lookups and a full scan, with the rows of the SQLite section
//! (`workload::item`).
//!
//! Every repetition runs both tables, in an order that rotates between
//! repetitions. The inserts go into new tables each time; the reads run on
//! one pair of tables filled before the first repetition.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, Statement};

use crate::Ctx;
use crate::error::{BenchError, Context, Result};
use crate::measure::{Sample, median_sample, rotated};
use crate::pg_hooks::{Session, cpu_cell, median_cpu};
use crate::report::{self, Table};
use crate::sqlite::Section;
use crate::workload::{self, Checksum, Item, item, lookup_keys};

/// Columns of both tables, in [`Item`]'s order.
const COLUMNS: &str = "id bigint NOT NULL, name text NOT NULL, email text NOT NULL, city text, \
     amount double precision, quantity bigint, note text";

/// Column names, in [`Item`]'s order.
const COLUMN_NAMES: &str = "id, name, email, city, amount, quantity, note";

/// Rows per statement when the read tables are filled.
const FILL_CHUNK: usize = 10_000;

/// The storage of a table's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Storage {
    /// A heap table with a primary key index.
    Plaintext,
    /// A foreign table of server `persist`.
    Persist,
}

impl Storage {
    const ALL: [Self; 2] = [Self::Plaintext, Self::Persist];

    fn label(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Persist => "persist",
        }
    }

    /// Returns the name of this storage's table for `purpose`.
    fn table(self, purpose: &str) -> String {
        format!("{purpose}_{}", self.label())
    }

    /// Drops and creates table `name`.
    fn create(self, client: &mut Client, name: &str) -> Result<()> {
        let sql = match self {
            Self::Plaintext => format!(
                "DROP TABLE IF EXISTS {name};
                 CREATE TABLE {name} ({COLUMNS}, PRIMARY KEY (id))"
            ),
            Self::Persist => format!(
                "DROP FOREIGN TABLE IF EXISTS {name};
                 CREATE FOREIGN TABLE {name} ({COLUMNS}) SERVER persist
                     OPTIONS (primary_key 'id')"
            ),
        };
        client
            .batch_execute(&sql)
            .context(format!("creating table {name}"))
    }

    fn drop_table(self, client: &mut Client, name: &str) -> Result<()> {
        let kind = match self {
            Self::Plaintext => "TABLE",
            Self::Persist => "FOREIGN TABLE",
        };
        client
            .batch_execute(&format!("DROP {kind} {name}"))
            .context(format!("dropping table {name}"))
    }
}

/// The insert cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum InsertMode {
    /// One prepared INSERT per row, all in one transaction.
    PerRow,
    /// One INSERT of every row from arrays (`unnest`).
    OneStatement,
}

impl InsertMode {
    const ALL: [Self; 2] = [Self::PerRow, Self::OneStatement];

    fn label(self) -> &'static str {
        match self {
            Self::PerRow => "insert, one prepared statement per row, one transaction",
            Self::OneStatement => "insert, one statement for all rows (unnest of arrays)",
        }
    }
}

/// Inserts `items` into `table` with one prepared INSERT per row, in one
/// transaction.
fn insert_per_row(client: &mut Client, table: &str, items: &[Item]) -> Result<()> {
    let mut transaction = client.transaction()?;
    let insert = transaction.prepare(&format!(
        "INSERT INTO {table} ({COLUMN_NAMES}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))?;
    for item in items {
        transaction.execute(
            &insert,
            &[
                &item.id,
                &item.name,
                &item.email,
                &item.city,
                &item.amount,
                &item.quantity,
                &item.note,
            ],
        )?;
    }
    transaction.commit()?;
    Ok(())
}

/// Inserts `items` into `table` with one statement that takes each column
/// as an array parameter.
fn insert_one_statement(client: &mut Client, table: &str, items: &[Item]) -> Result<()> {
    let ids: Vec<i64> = items.iter().map(|item| item.id).collect();
    let names: Vec<&str> = items.iter().map(|item| item.name.as_str()).collect();
    let emails: Vec<&str> = items.iter().map(|item| item.email.as_str()).collect();
    let cities: Vec<&str> = items.iter().map(|item| item.city).collect();
    let amounts: Vec<f64> = items.iter().map(|item| item.amount).collect();
    let quantities: Vec<i64> = items.iter().map(|item| item.quantity).collect();
    let notes: Vec<&str> = items.iter().map(|item| item.note.as_str()).collect();
    let parameters: [&(dyn ToSql + Sync); 7] = [
        &ids,
        &names,
        &emails,
        &cities,
        &amounts,
        &quantities,
        &notes,
    ];
    client.execute(
        &format!(
            "INSERT INTO {table} ({COLUMN_NAMES})
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[],
                 $5::float8[], $6::bigint[], $7::text[])"
        ),
        &parameters,
    )?;
    Ok(())
}

fn count_rows(client: &mut Client, table: &str) -> Result<i64> {
    Ok(client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
        .get(0))
}

/// Fails unless `table` contains `expected` rows.
fn check_count(client: &mut Client, table: &str, expected: usize) -> Result<()> {
    let count = count_rows(client, table)?;
    if count != expected as i64 {
        return Err(BenchError::new(format!(
            "table {table} contains {count} rows; expected {expected}"
        )));
    }
    Ok(())
}

/// Looks up every key of `keys` with one prepared statement per key, and
/// returns a checksum of every value read and the number of rows found.
fn run_lookups(client: &mut Client, lookup: &Statement, keys: &[i64]) -> Result<(Checksum, usize)> {
    let mut checksum = Checksum::default();
    let mut found = 0;
    for key in keys {
        for row in client.query(lookup, &[key])? {
            found += 1;
            checksum.add(&key.to_le_bytes());
            let texts = [
                row.get::<_, Option<&str>>(0),
                row.get::<_, Option<&str>>(1),
                row.get::<_, Option<&str>>(2),
            ];
            for text in texts {
                checksum.add(text.map_or(b"NULL".as_slice(), str::as_bytes));
            }
            let amount: Option<f64> = row.get(3);
            checksum.add(&amount.map_or(u64::MAX, f64::to_bits).to_le_bytes());
            let quantity: Option<i64> = row.get(4);
            checksum.add(&quantity.unwrap_or(i64::MIN).to_le_bytes());
            let note: Option<&str> = row.get(5);
            checksum.add(note.map_or(b"NULL".as_slice(), str::as_bytes));
        }
    }
    Ok((checksum, found))
}

/// The scan aggregate: count, cents, quantity, note characters, min e-mail,
/// max name, as in the SQLite section.
type ScanResult = (i64, i64, i64, i64, String, String);

fn scan_sql(table: &str) -> String {
    format!(
        "SELECT count(*), sum(round(amount * 100)::bigint)::bigint, sum(quantity)::bigint, \
         sum(length(note))::bigint, min(email), max(name) FROM {table}"
    )
}

fn run_scan(client: &mut Client, table: &str) -> Result<ScanResult> {
    let row = client.query_one(&scan_sql(table), &[])?;
    Ok((
        row.get(0),
        row.get(1),
        row.get(2),
        row.get(3),
        row.get(4),
        row.get(5),
    ))
}

/// Fails unless both tables gave the same result.
fn check_equal<T: PartialEq + std::fmt::Debug>(
    description: &str,
    results: &HashMap<Storage, T>,
) -> Result<()> {
    let plaintext = results.get(&Storage::Plaintext);
    let persist = results.get(&Storage::Persist);
    if plaintext != persist {
        return Err(BenchError::new(format!(
            "{description} differ: the plaintext table returned {plaintext:?}, the \
             persist table {persist:?}"
        )));
    }
    Ok(())
}

/// Fails unless a lookup on `table` runs as an index lookup: through the
/// primary key index for the plaintext table, and by blind record id for
/// the persist table.
fn check_lookup_plan(client: &mut Client, storage: Storage, table: &str) -> Result<()> {
    let rows = client.query(
        &format!("EXPLAIN (COSTS OFF) SELECT * FROM {table} WHERE id = 1"),
        &[],
    )?;
    let plan: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    let plan = plan.join("\n");
    let expected = match storage {
        Storage::Plaintext => "Index Scan",
        Storage::Persist => "Persist Lookup: primary key",
    };
    if !plan.contains(expected) {
        return Err(BenchError::new(format!(
            "the plan of a primary-key lookup on {table} lacks {expected:?}:\n{plan}"
        )));
    }
    Ok(())
}

/// Samples of one table over the repetitions.
#[derive(Default)]
struct TableSamples {
    inserts: HashMap<InsertMode, Vec<Sample>>,
    lookup: Vec<Sample>,
    scan: Vec<Sample>,
}

/// Runs the encrypted-table benchmark.
///
/// # Errors
///
/// PostgreSQL's errors, and tables that return different results.
pub fn run(ctx: &Ctx, session: &mut Session) -> Result<Section> {
    let rows = ctx.sizes.insert_rows;
    let items: Vec<Item> = (1..=rows).map(|id| item(id as i64)).collect();
    let keys = lookup_keys(rows, ctx.sizes.lookups);
    let mut samples: HashMap<Storage, TableSamples> = HashMap::new();

    // The read tables are filled once, outside any measurement, and
    // vacuumed so that neither pays for setting hint bits in the first
    // repetition.
    for storage in Storage::ALL {
        let table = storage.table("read");
        storage.create(&mut session.client, &table)?;
        for chunk in items.chunks(FILL_CHUNK) {
            insert_one_statement(&mut session.client, &table, chunk)
                .context(format!("filling table {table}"))?;
        }
        check_count(&mut session.client, &table, rows)?;
    }
    session.client.batch_execute("VACUUM ANALYZE")?;
    let mut lookups = HashMap::new();
    for storage in Storage::ALL {
        let table = storage.table("read");
        check_lookup_plan(&mut session.client, storage, &table)?;
        let statement = session.client.prepare(&format!(
            "SELECT name, email, city, amount, quantity, note FROM {table} WHERE id = $1"
        ))?;
        lookups.insert(storage, statement);
    }

    for repetition in 0..ctx.sizes.repetitions {
        let mut lookup_results = HashMap::new();
        let mut scan_results = HashMap::new();
        for storage in rotated(&Storage::ALL, repetition) {
            let entry = samples.entry(storage).or_default();
            for mode in InsertMode::ALL {
                let table = storage.table("insert");
                storage.create(&mut session.client, &table)?;
                let (_, sample) = session.timed(|client| match mode {
                    InsertMode::PerRow => insert_per_row(client, &table, &items),
                    InsertMode::OneStatement => insert_one_statement(client, &table, &items),
                })?;
                check_count(&mut session.client, &table, rows)?;
                storage.drop_table(&mut session.client, &table)?;
                entry.inserts.entry(mode).or_default().push(sample);
            }

            let table = storage.table("read");
            let lookup = &lookups[&storage];
            let ((checksum, found), sample) =
                session.timed(|client| run_lookups(client, lookup, &keys))?;
            if found != keys.len() {
                return Err(BenchError::new(format!(
                    "the {} table found {found} of {} looked-up rows",
                    storage.label(),
                    keys.len()
                )));
            }
            entry.lookup.push(sample);
            lookup_results.insert(storage, checksum);

            let (scan, sample) = session.timed(|client| run_scan(client, &table))?;
            if scan.0 != rows as i64 {
                return Err(BenchError::new(format!(
                    "the full scan of {table} counted {} rows, expected {rows}",
                    scan.0
                )));
            }
            entry.scan.push(sample);
            scan_results.insert(storage, scan);
        }
        check_equal("lookup results", &lookup_results)?;
        check_equal("full-scan aggregates", &scan_results)?;
    }
    for storage in Storage::ALL {
        storage.drop_table(&mut session.client, &storage.table("read"))?;
    }
    Ok(report(ctx, rows, keys.len(), &items, &samples))
}

fn report(
    ctx: &Ctx,
    rows: usize,
    lookups: usize,
    items: &[Item],
    samples: &HashMap<Storage, TableSamples>,
) -> Section {
    let average = items.iter().map(workload::item_value_bytes).sum::<usize>() / rows.max(1);
    let mut markdown = format!(
        "### Encrypted tables vs plaintext tables\n\n\
         The rows of the SQLite section ({} rows of {average} bytes of values on average) \
         in a plaintext table with a primary key and in an encrypted table \
         (`CREATE FOREIGN TABLE ... SERVER persist OPTIONS (primary_key 'id')`), with the \
         columns `{COLUMNS}`. Each insert case starts from a new empty table, and its \
         time includes the commit. The reads run on tables filled beforehand and \
         vacuumed: lookups read every column of {} random primary keys, one prepared \
         statement and one round trip each (the plans are an index scan and a Persist \
         lookup by blind id), and the full scan runs `{}`. Both tables returned identical \
         results. {}\n\n",
        report::thousands(rows as u64),
        report::thousands(lookups as u64),
        scan_sql("<table>"),
        report::repetitions(ctx.sizes.repetitions)
    );
    let mut table = Table::new(&[
        "case",
        "table",
        "operations",
        "time",
        "operations/s",
        "vs plaintext",
        "backend CPU time",
    ]);
    let mut cases: Vec<(&str, usize, Vec<&Vec<Sample>>)> = Vec::new();
    for mode in InsertMode::ALL {
        let picked = Storage::ALL
            .iter()
            .filter_map(|storage| samples.get(storage)?.inserts.get(&mode))
            .collect();
        cases.push((mode.label(), rows, picked));
    }
    let lookups_picked = Storage::ALL
        .iter()
        .filter_map(|storage| samples.get(storage).map(|s| &s.lookup))
        .collect();
    cases.push(("primary-key lookup", lookups, lookups_picked));
    let scans_picked = Storage::ALL
        .iter()
        .filter_map(|storage| samples.get(storage).map(|s| &s.scan))
        .collect();
    cases.push(("full scan with aggregate", 1, scans_picked));

    for (name, operations, picked) in cases {
        // `picked` follows Storage::ALL, plaintext first.
        let [plaintext, persist] = picked.as_slice() else {
            continue;
        };
        let plain_wall = median_sample(plaintext).wall;
        for (storage, storage_samples) in Storage::ALL.iter().zip([plaintext, persist]) {
            let median = median_sample(storage_samples);
            table.row(vec![
                name.to_owned(),
                storage.label().to_owned(),
                report::thousands(operations as u64),
                report::seconds(median.wall),
                report::rate(operations as f64 / median.wall),
                report::ratio(plain_wall / median.wall),
                cpu_cell(median_cpu(storage_samples)),
            ]);
        }
    }
    markdown.push_str(&table.render());
    markdown.push('\n');
    Section {
        markdown,
        targets: Vec::new(),
    }
}
