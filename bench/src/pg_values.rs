//! The extension's `persist.encrypt` and `persist.decrypt` next to
//! pgcrypto's `encrypt`/`decrypt` with AES and `pgp_sym_encrypt`/
//! `pgp_sym_decrypt`, on text values of several sizes.
//!
//! Each size has a table of values, made once with the three kinds of
//! ciphertext next to each value. A measurement is one statement that
//! encrypts (or decrypts) every value of the table and sums the lengths of
//! the results, so that PostgreSQL computes each result and sends back one
//! row. The three methods run in an order that rotates between repetitions.

use std::collections::HashMap;

use postgres::types::ToSql;

use crate::error::{BenchError, Context, Result};
use crate::measure::{Sample, median_sample, rotated};
use crate::pg_hooks::{Session, cpu_cell, median_cpu};
use crate::report::{self, Table, Target};
use crate::sqlite::Section;
use crate::{Ctx, Sizes};

/// Value size whose ratios are checked against the target: the size of
/// the crypto section's target.
const TARGET_SIZE: usize = 256;

/// Times the profile cases repeat their statement.
const PROFILE_REPEATS: usize = 10;

/// A way to encrypt and decrypt text values in SQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Method {
    /// `persist.encrypt(text)` and `persist.decrypt(bytea)`.
    Persist,
    /// pgcrypto's `encrypt` and `decrypt` with `'aes'` and a 32-byte key:
    /// AES-256-CBC with PKCS padding and a zero IV, without authentication.
    Aes,
    /// pgcrypto's `pgp_sym_encrypt` and `pgp_sym_decrypt` with a passphrase.
    Pgp,
}

impl Method {
    const ALL: [Self; 3] = [Self::Persist, Self::Aes, Self::Pgp];

    fn label(self) -> &'static str {
        match self {
            Self::Persist => "persist",
            Self::Aes => "pgcrypto AES",
            Self::Pgp => "pgcrypto PGP",
        }
    }

    /// Returns the column of the values table that contains this method's
    /// ciphertext.
    fn column(self) -> &'static str {
        match self {
            Self::Persist => "persist_env",
            Self::Aes => "aes_env",
            Self::Pgp => "pgp_env",
        }
    }

    /// Returns SQL that encrypts `value`, where `$1` is the AES key or the
    /// passphrase.
    fn encrypt_sql(self, value: &str) -> String {
        match self {
            Self::Persist => format!("persist.encrypt({value})"),
            Self::Aes => format!("encrypt(convert_to({value}, 'UTF8'), $1, 'aes')"),
            Self::Pgp => format!("pgp_sym_encrypt({value}, $1, 'cipher-algo=aes256')"),
        }
    }

    /// Returns SQL that decrypts `ciphertext` to text, with `$1` as in
    /// [`Method::encrypt_sql`].
    fn decrypt_sql(self, ciphertext: &str) -> String {
        match self {
            Self::Persist => format!("persist.decrypt({ciphertext})"),
            Self::Aes => format!("convert_from(decrypt({ciphertext}, $1, 'aes'), 'UTF8')"),
            Self::Pgp => format!("pgp_sym_decrypt({ciphertext}, $1)"),
        }
    }
}

/// The timed operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Encrypt every value.
    Encrypt,
    /// Decrypt every stored ciphertext.
    Decrypt,
}

impl Operation {
    const ALL: [Self; 2] = [Self::Encrypt, Self::Decrypt];

    fn label(self) -> &'static str {
        match self {
            Self::Encrypt => "encrypt",
            Self::Decrypt => "decrypt",
        }
    }
}

/// The secrets that pgcrypto's functions take as arguments.
struct Secrets {
    /// A random 32-byte AES key, which selects AES-256 in `encrypt`.
    aes_key: Vec<u8>,
    /// A random passphrase for `pgp_sym_encrypt`.
    passphrase: String,
}

impl Secrets {
    fn new() -> Result<Self> {
        let key: [u8; 32] = persist_core::random::array()?;
        let passphrase: [u8; 16] = persist_core::random::array()?;
        Ok(Self {
            aes_key: key.to_vec(),
            passphrase: passphrase
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect(),
        })
    }

    /// Returns the `$1` parameter of `method`'s SQL: none for Persist.
    fn parameter(&self, method: Method) -> Vec<&(dyn ToSql + Sync)> {
        match method {
            Method::Persist => Vec::new(),
            Method::Aes => vec![&self.aes_key],
            Method::Pgp => vec![&self.passphrase],
        }
    }
}

/// One table of values of one size.
struct ValuesTable {
    name: String,
    size: usize,
    /// Rows in the table.
    count: usize,
    /// Rows, from id 1, that also have a PGP ciphertext.
    pgp_count: usize,
}

impl ValuesTable {
    /// Rows that `method` runs on.
    fn rows(&self, method: Method) -> usize {
        match method {
            Method::Pgp => self.pgp_count,
            Method::Persist | Method::Aes => self.count,
        }
    }

    /// Returns the timed statement: `operation` by `method` on each of its
    /// rows. It returns the row count and the sum of the result lengths in
    /// bytes.
    fn statement(&self, method: Method, operation: Operation) -> String {
        let result = match operation {
            Operation::Encrypt => format!("length({})", method.encrypt_sql("v")),
            Operation::Decrypt => format!("octet_length({})", method.decrypt_sql(method.column())),
        };
        let rows = match method {
            Method::Pgp => format!(" WHERE id <= {}", self.pgp_count),
            Method::Persist | Method::Aes => String::new(),
        };
        format!(
            "SELECT count(*), sum({result})::bigint FROM {}{rows}",
            self.name
        )
    }
}

/// Creates table `name` with `count` ASCII values of `size` bytes and their
/// ciphertexts: Persist's and AES's for every value, PGP's for the first
/// `pgp_count`.
fn create_table(
    session: &mut Session,
    secrets: &Secrets,
    name: &str,
    size: usize,
    count: usize,
    pgp_count: usize,
) -> Result<ValuesTable> {
    // EXTERNAL storage moves large values out of line without compressing
    // them, so that no method pays for decompression, and PostgreSQL does not
    // try to compress ciphertext, which does not shrink.
    let create = format!(
        "DROP TABLE IF EXISTS {name};
         CREATE TABLE {name} (id integer PRIMARY KEY, v text NOT NULL, persist_env bytea,
             aes_env bytea, pgp_env bytea);
         ALTER TABLE {name} ALTER v SET STORAGE EXTERNAL,
             ALTER persist_env SET STORAGE EXTERNAL, ALTER aes_env SET STORAGE EXTERNAL,
             ALTER pgp_env SET STORAGE EXTERNAL"
    );
    session
        .client
        .batch_execute(&create)
        .context(format!("creating table {name}"))?;

    // Each value repeats the MD5 hex digest of its id: ASCII, different for
    // every row, and the same in every run.
    let fill = format!(
        "INSERT INTO {name} (id, v, persist_env, aes_env, pgp_env)
         SELECT id, v, {persist}, {aes}, CASE WHEN id <= $3 THEN {pgp} END
         FROM (SELECT i AS id, substr(repeat(md5(i::text), $4 / 32 + 1), 1, $4) AS v
               FROM generate_series(1, $5) AS i) AS generated",
        persist = Method::Persist.encrypt_sql("v"),
        aes = Method::Aes.encrypt_sql("v"),
        pgp = Method::Pgp.encrypt_sql("v").replace("$1", "$2"),
    );

    let size_parameter = integer_parameter("value size", size)?;
    let count_parameter = integer_parameter("value count", count)?;
    let pgp_parameter = integer_parameter("PGP value count", pgp_count)?;
    session
        .client
        .execute(
            &fill,
            &[
                &secrets.aes_key,
                &secrets.passphrase,
                &pgp_parameter,
                &size_parameter,
                &count_parameter,
            ],
        )
        .context(format!("filling table {name}"))?;
    session
        .client
        .batch_execute(&format!("VACUUM ANALYZE {name}"))
        .context(format!("VACUUM ANALYZE {name}"))?;
    Ok(ValuesTable {
        name: name.to_owned(),
        size,
        count,
        pgp_count,
    })
}

/// Converts `value` to a PostgreSQL integer parameter.
fn integer_parameter(what: &str, value: usize) -> Result<i32> {
    i32::try_from(value).map_err(|_| {
        BenchError::new(format!(
            "{what} {value} is larger than {}, the maximum of a PostgreSQL integer",
            i32::MAX
        ))
    })
}

/// Checks that every stored ciphertext of every method decrypts to its
/// value, so that decrypt(encrypt(v)) = v on every side.
fn check_round_trips(session: &mut Session, secrets: &Secrets, table: &ValuesTable) -> Result<()> {
    for method in Method::ALL {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE id <= $2 AND {} IS DISTINCT FROM v",
            table.name,
            method.decrypt_sql(method.column())
        );
        let rows = integer_parameter("value count", table.rows(method))?;
        let sql = match method {
            // Persist's SQL has no $1, and PostgreSQL cannot infer the type
            // of a parameter that the statement does not use.
            Method::Persist => sql.replace("$2", "$1"),
            Method::Aes | Method::Pgp => sql,
        };
        let mut parameters = secrets.parameter(method);
        parameters.push(&rows);
        let wrong: i64 = session
            .client
            .query_one(&sql, &parameters)
            .context(format!("checking the {} round trips", method.label()))?
            .get(0);
        if wrong != 0 {
            return Err(BenchError::new(format!(
                "{wrong} of {} {}-byte values do not decrypt to the value that {} encrypted",
                table.rows(method),
                table.size,
                method.label()
            )));
        }
    }
    Ok(())
}

/// Runs one timed statement and checks its row count and, for decryption,
/// the total plaintext length.
fn run_statement(
    session: &mut Session,
    secrets: &Secrets,
    table: &ValuesTable,
    method: Method,
    operation: Operation,
) -> Result<Sample> {
    let sql = table.statement(method, operation);
    let parameters = secrets.parameter(method);
    let ((rows, bytes), sample) = session.timed(|client| {
        let row = client.query_one(&sql, &parameters).context(&sql)?;
        let rows: i64 = row.get(0);
        let bytes: Option<i64> = row.get(1);
        Ok((rows, bytes.unwrap_or(0)))
    })?;
    let expected_rows = table.rows(method);
    let plaintext_bytes = expected_rows * table.size;
    let bytes_ok = match operation {
        Operation::Encrypt => bytes as usize > plaintext_bytes,
        Operation::Decrypt => bytes as usize == plaintext_bytes,
    };
    if rows as usize != expected_rows || !bytes_ok {
        return Err(BenchError::new(format!(
            "{} {} of {}-byte values returned {rows} rows of {bytes} bytes in total; \
             expected {expected_rows} rows of {} {plaintext_bytes} bytes",
            method.label(),
            operation.label(),
            table.size,
            match operation {
                Operation::Encrypt => "more than",
                Operation::Decrypt => "exactly",
            }
        )));
    }
    Ok(sample)
}

/// Returns the value counts of one size: all values, and those with a PGP
/// ciphertext.
fn counts(sizes: &Sizes, size: usize) -> (usize, usize) {
    let count = sizes.pg_values.min(sizes.pg_value_bytes / size).max(1);
    (count, count.min(sizes.pg_pgp_values))
}

/// Runs the value-function benchmark.
///
/// # Errors
///
/// PostgreSQL's errors, and results that are not what was encrypted.
pub fn run(ctx: &Ctx, session: &mut Session) -> Result<Section> {
    let secrets = Secrets::new()?;
    let mut tables = Vec::new();
    for &size in &ctx.sizes.pg_value_sizes {
        let (count, pgp_count) = counts(&ctx.sizes, size);
        let table = create_table(
            session,
            &secrets,
            &format!("values_{size}"),
            size,
            count,
            pgp_count,
        )?;
        check_round_trips(session, &secrets, &table)?;
        tables.push(table);
    }

    let mut samples: HashMap<(usize, Operation, Method), Vec<Sample>> = HashMap::new();
    for repetition in 0..ctx.sizes.repetitions {
        for table in &tables {
            for operation in Operation::ALL {
                for method in rotated(&Method::ALL, repetition) {
                    let sample = run_statement(session, &secrets, table, method, operation)?;
                    samples
                        .entry((table.size, operation, method))
                        .or_default()
                        .push(sample);
                }
            }
        }
    }
    for table in &tables {
        session
            .client
            .batch_execute(&format!("DROP TABLE {}", table.name))?;
    }
    Ok(report(ctx, &tables, &samples))
}

fn report(
    ctx: &Ctx,
    tables: &[ValuesTable],
    samples: &HashMap<(usize, Operation, Method), Vec<Sample>>,
) -> Section {
    let described: Vec<String> = tables
        .iter()
        .map(|table| {
            format!(
                "{} of {}",
                report::thousands(table.count as u64),
                report::size(table.size)
            )
        })
        .collect();
    let pgp: Vec<String> = tables
        .iter()
        .map(|table| report::thousands(table.pgp_count as u64))
        .collect();
    let mut markdown = format!(
        "### Value functions vs pgcrypto\n\n\
         Text values of ASCII characters: {}. One statement per measurement encrypts \
         every value (`SELECT count(*), sum(length(<encrypt>(v))) FROM values_<size>`), or \
         decrypts every stored ciphertext and sums the lengths of the plaintexts. \
         The functions:\n\n\
         - persist: `persist.encrypt(v)` and `persist.decrypt(envelope)`, AES-256-GCM \
         with a random nonce under the store's key, with no context;\n\
         - pgcrypto AES: `encrypt(convert_to(v, 'UTF8'), key, 'aes')` and \
         `convert_from(decrypt(ciphertext, key, 'aes'), 'UTF8')` with a 32-byte key, \
         that is AES-256-CBC with a zero IV and no authentication, the key passed as a \
         statement parameter;\n\
         - pgcrypto PGP: `pgp_sym_encrypt(v, passphrase, 'cipher-algo=aes256')` and \
         `pgp_sym_decrypt`, with pgcrypto's other defaults (iterated and salted S2K with \
         SHA-1, an MDC integrity check, no compression). Each call derives its key from \
         the passphrase again, so these run only on the first {} values of each size.\n\n\
         Every ciphertext of every function decrypted to its value. The target (faster \
         than pgcrypto AES) is checked at {}. {}\n\n",
        described.join(", "),
        pgp.join(", "),
        report::size(TARGET_SIZE),
        report::repetitions(ctx.sizes.repetitions)
    );
    let mut table = Table::new(&[
        "size",
        "operation",
        "function",
        "values",
        "time",
        "values/s",
        "MB/s",
        "vs pgcrypto AES",
        "backend CPU time",
    ]);
    let mut targets = Vec::new();
    for values in tables {
        for operation in Operation::ALL {
            let Some(aes) = samples.get(&(values.size, operation, Method::Aes)) else {
                continue;
            };
            let aes_rate = values.count as f64 / median_sample(aes).wall;
            for method in Method::ALL {
                let Some(method_samples) = samples.get(&(values.size, operation, method)) else {
                    continue;
                };
                let median = median_sample(method_samples);
                let rows = values.rows(method) as f64;
                let rate = rows / median.wall;
                let versus = rate / aes_rate;
                table.row(vec![
                    report::size(values.size),
                    operation.label().to_owned(),
                    method.label().to_owned(),
                    report::thousands(values.rows(method) as u64),
                    report::seconds(median.wall),
                    report::rate(rate),
                    report::megabytes_per_second(rate * values.size as f64),
                    report::ratio(versus),
                    cpu_cell(median_cpu(method_samples)),
                ]);
                if method == Method::Persist && values.size == TARGET_SIZE {
                    targets.push(Target {
                        name: format!(
                            "PostgreSQL {} {}: persist vs pgcrypto AES",
                            operation.label(),
                            report::size(values.size)
                        ),
                        required: "≥ 1x (faster)".to_owned(),
                        measured: format!(
                            "{} ({}/s vs {}/s)",
                            report::ratio(versus),
                            report::rate(rate),
                            report::rate(aes_rate)
                        ),
                        attainment: versus,
                        profile_case: match operation {
                            Operation::Encrypt => "pg-encrypt",
                            Operation::Decrypt => "pg-decrypt",
                        },
                    });
                }
            }
        }
    }
    markdown.push_str(&table.render());
    markdown.push('\n');
    Section { markdown, targets }
}

/// The table of the profile cases.
const PROFILE_TABLE: &str = "profile_values";

/// Creates the table of the profile cases: `rows` values of
/// [`TARGET_SIZE`] bytes with their Persist envelopes.
///
/// # Errors
///
/// PostgreSQL's errors.
pub fn prepare_profile(session: &mut Session, rows: usize) -> Result<()> {
    let secrets = Secrets::new()?;
    let table = create_table(session, &secrets, PROFILE_TABLE, TARGET_SIZE, rows, 0)?;
    check_round_trips(session, &secrets, &table)
}

/// Runs Persist's `operation` on the profile table [`PROFILE_REPEATS`]
/// times.
///
/// # Errors
///
/// PostgreSQL's errors.
pub fn run_profile(session: &mut Session, operation: Operation, rows: usize) -> Result<()> {
    let secrets = Secrets::new()?;
    let table = ValuesTable {
        name: PROFILE_TABLE.to_owned(),
        size: TARGET_SIZE,
        count: rows,
        pgp_count: 0,
    };
    for _ in 0..PROFILE_REPEATS {
        run_statement(session, &secrets, &table, Method::Persist, operation)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_sizes_get_fewer_values() {
        let sizes = Sizes::full();
        assert_eq!(counts(&sizes, 256), (100_000, 10_000));
        assert_eq!(counts(&sizes, 4096), (8_192, 8_192));
        assert_eq!(counts(&sizes, 65536), (512, 512));
        assert_eq!(counts(&sizes, 1 << 30), (1, 1));
    }

    #[test]
    fn pgp_statement_reads_only_pgp_rows() {
        let table = ValuesTable {
            name: "values_256".to_owned(),
            size: 256,
            count: 100,
            pgp_count: 10,
        };
        let pgp = table.statement(Method::Pgp, Operation::Decrypt);
        assert!(pgp.contains("pgp_sym_decrypt(pgp_env, $1)"), "{pgp}");
        assert!(pgp.ends_with("FROM values_256 WHERE id <= 10"), "{pgp}");
        let persist = table.statement(Method::Persist, Operation::Encrypt);
        assert!(persist.contains("length(persist.encrypt(v))"), "{persist}");
        assert!(persist.ends_with("FROM values_256"), "{persist}");
    }
}
