//! PostgreSQL benchmarks: the extension's value functions next to
//! pgcrypto ([`pg_values`](crate::pg_values)), and its encrypted tables next
//! to plaintext tables ([`pg_tables`](crate::pg_tables)).
//!
//! Both run in one new database of the server given with `--pg`, through
//! one session that has the store `bench` open, and the database is dropped
//! at the end. The server needs the `persist` extension installed (`cargo
//! pgrx install`), pgcrypto, and `persist.keyfile` set; `scripts/bench` sets
//! up its throwaway cluster this way. Times are wall-clock times of whole
//! statements as this client sees them. The CPU time is the server backend's
//! own, read from `/proc/<pid>/schedstat`, so it leaves out this client and
//! the time the backend spends waiting for it.

use std::io::BufRead;

use postgres::{Client, NoTls};

use crate::Ctx;
use crate::error::{BenchError, Context, Result};
use crate::measure::Sample;
use crate::report::{self, Target};
use crate::sqlite::Section;
use crate::sync::Server;
use crate::{pg_tables, pg_values};

/// Name of the store that the benchmarks open with `persist.init`.
const STORE: &str = "bench";

/// Database of the PostgreSQL profile cases, kept from `--prepare` to the
/// profiled run.
const PROFILE_DATABASE: &str = "persist_bench_profile_pg";

/// Runs the PostgreSQL benchmarks and joins their sections.
///
/// # Errors
///
/// A missing `--pg`, PostgreSQL's errors (such as a server without the
/// extension), and results that differ between the two sides of a
/// comparison.
pub fn run(ctx: &Ctx, server: Option<&Server>) -> Result<Section> {
    let server = server.ok_or_else(|| {
        BenchError::new(
            "the PostgreSQL benchmarks need --pg CONNINFO (scripts/bench starts a server); \
             leave them out with --only sqlite,crypto",
        )
    })?;
    let name = format!("persist_bench_pg_{}", std::process::id());
    let result = Session::create(server, &name).and_then(|mut session| {
        let intro = format!(
            "## PostgreSQL\n\nThe PostgreSQL {} server of the sync benchmarks (`fsync = {}`, \
             `shared_buffers = {}`), with the extensions persist {} and pgcrypto {}. Each \
             benchmark runs in one session that has a store open (`persist.init`), and \
             times whole statements as this client sees them. The backend CPU time is \
             that of the session's server process, from `/proc/<pid>/schedstat`, and \
             n/a when the server runs on another machine.\n\n",
            session.query_text("SHOW server_version")?,
            session.query_text("SHOW fsync")?,
            session.query_text("SHOW shared_buffers")?,
            session.query_text(
                "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'persist'"
            )?,
            session.query_text(
                "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pgcrypto'"
            )?,
        );
        let values = pg_values::run(ctx, &mut session)?;
        let tables = pg_tables::run(ctx, &mut session)?;
        Ok((intro, [values, tables]))
    });
    server.drop_database(&name);
    let (mut markdown, sections) = result?;

    let mut targets: Vec<Target> = Vec::new();
    for section in sections {
        markdown.push_str(&section.markdown);
        targets.extend(section.targets);
    }
    Ok(Section { markdown, targets })
}

/// A connection to the benchmark database with the store open, and the
/// server process that serves it.
pub struct Session {
    /// The connection.
    pub client: Client,
    /// The backend's process, when it runs on this machine.
    backend: Option<Backend>,
}

impl Session {
    /// Creates database `name` (dropping an old one of that name) with the
    /// extensions persist and pgcrypto, and opens the store in a new session.
    ///
    /// # Errors
    ///
    /// PostgreSQL's errors, with what to install or configure.
    pub fn create(server: &Server, name: &str) -> Result<Self> {
        let mut admin = server.admin()?;
        // Two calls, because a string of several statements runs as one
        // transaction, and DROP DATABASE cannot run inside one.
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .context(format!("dropping database {name}"))?;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .context(format!("creating database {name}"))?;
        drop(admin);
        let mut client = connect(server, name)?;
        client
            .batch_execute("CREATE EXTENSION persist")
            .context(format!(
                "CREATE EXTENSION persist in database {name} (install the extension with \
                 cargo pgrx install, as scripts/bench does)"
            ))?;
        client
            .batch_execute("CREATE EXTENSION pgcrypto")
            .context(format!(
                "CREATE EXTENSION pgcrypto in database {name} (it comes with PostgreSQL's \
                 contrib modules)"
            ))?;
        Self::open(client)
    }

    /// Connects to database `name`, which [`Session::create`] made earlier,
    /// and opens the store.
    ///
    /// # Errors
    ///
    /// PostgreSQL's errors.
    pub fn connect(server: &Server, name: &str) -> Result<Self> {
        Self::open(connect(server, name)?)
    }

    fn open(mut client: Client) -> Result<Self> {
        client
            .query_one("SELECT persist.init($1)", &[&STORE])
            .context(format!(
                "persist.init('{STORE}') (the server needs the setting persist.keyfile; \
                 scripts/bench sets it with ALTER SYSTEM)"
            ))?;
        let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[])?.get(0);
        Ok(Self {
            client,
            backend: Backend::local(pid),
        })
    }

    /// Runs `sql`, which returns one row with one text column, and returns it.
    ///
    /// # Errors
    ///
    /// PostgreSQL's errors, and a NULL result.
    pub fn query_text(&mut self, sql: &str) -> Result<String> {
        let row = self.client.query_one(sql, &[]).context(sql)?;
        let text: Option<String> = row.get(0);
        text.ok_or_else(|| BenchError::new(format!("{sql} returned NULL")))
    }

    /// Returns the backend's process id, or `None` when the server runs
    /// elsewhere.
    pub fn backend_pid(&self) -> Option<i32> {
        self.backend.as_ref().map(|backend| backend.pid)
    }

    /// Runs `body` on the connection and returns its result with the
    /// client's wall-clock time and the backend's CPU time (NaN when the
    /// backend's CPU time cannot be read).
    pub fn timed<T>(&mut self, body: impl FnOnce(&mut Client) -> Result<T>) -> Result<(T, Sample)> {
        let cpu_before = self.backend_cpu();
        let started = std::time::Instant::now();
        let value = body(&mut self.client)?;
        let wall = started.elapsed().as_secs_f64();
        let cpu = match (cpu_before, self.backend_cpu()) {
            (Some(before), Some(after)) => after - before,
            _ => f64::NAN,
        };
        Ok((value, Sample { wall, cpu }))
    }

    fn backend_cpu(&self) -> Option<f64> {
        self.backend.as_ref().and_then(Backend::cpu_seconds)
    }
}

fn connect(server: &Server, name: &str) -> Result<Client> {
    let conninfo = server.conninfo(name);
    Client::connect(&conninfo, NoTls).context(format!("connecting to database {name}"))
}

/// A PostgreSQL backend process on this machine.
struct Backend {
    pid: i32,
}

impl Backend {
    /// Returns the process `pid` when this machine runs a PostgreSQL
    /// process of that id whose CPU time can be read. A server in another
    /// machine or PID namespace reports ids that mean nothing here, or name
    /// another program.
    fn local(pid: i32) -> Option<Self> {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let backend = Self { pid };
        (comm.trim() == "postgres" && backend.cpu_seconds().is_some()).then_some(backend)
    }

    /// CPU time of the process so far, in seconds.
    fn cpu_seconds(&self) -> Option<f64> {
        let text = std::fs::read_to_string(format!("/proc/{}/schedstat", self.pid)).ok()?;
        schedstat_cpu_seconds(&text)
    }
}

/// Parses the CPU time in seconds from the text of `/proc/<pid>/schedstat`,
/// whose first field is the time on the CPU in nanoseconds.
fn schedstat_cpu_seconds(text: &str) -> Option<f64> {
    let nanoseconds: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(nanoseconds as f64 / 1e9)
}

/// Formats a CPU time, or "n/a" when it was not measured.
pub fn cpu_cell(seconds: f64) -> String {
    if seconds.is_finite() {
        report::seconds(seconds)
    } else {
        "n/a".to_owned()
    }
}

/// Median of the CPU times of `samples`, NaN when none was measured.
///
/// [`crate::measure::median_sample`] leaves out NaN values and returns 0
/// for none, which would print as a measured 0.
pub fn median_cpu(samples: &[Sample]) -> f64 {
    if samples.iter().any(|sample| sample.cpu.is_finite()) {
        crate::measure::median_sample(samples).cpu
    } else {
        f64::NAN
    }
}

/// Prepares or runs the PostgreSQL profile case `case` (`pg-encrypt` or
/// `pg-decrypt`) on `rows` values.
///
/// The run prints the backend's process id on standard output and waits for
/// a line (or the end) of standard input before the work, so that a
/// profiler can attach to the backend first.
///
/// # Errors
///
/// A missing `--pg`, an unknown case, and PostgreSQL's errors.
pub fn profile(ctx: &Ctx, case: &str, rows: usize, prepare: bool) -> Result<()> {
    let server = ctx
        .pg
        .as_deref()
        .map(Server::new)
        .ok_or_else(|| BenchError::new(format!("profile case {case} needs --pg")))?;
    let operation = match case {
        "pg-encrypt" => pg_values::Operation::Encrypt,
        "pg-decrypt" => pg_values::Operation::Decrypt,
        _ => {
            return Err(BenchError::new(format!(
                "unknown PostgreSQL profile case {case:?}; expected pg-encrypt or pg-decrypt"
            )));
        }
    };
    if prepare {
        let mut session = Session::create(&server, PROFILE_DATABASE)?;
        return pg_values::prepare_profile(&mut session, rows);
    }
    let mut session = Session::connect(&server, PROFILE_DATABASE)?;
    let pid = session
        .backend_pid()
        .map_or_else(|| "unknown".to_owned(), |pid| pid.to_string());
    println!("{pid}");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading standard input")?;
    pg_values::run_profile(&mut session, operation, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_first_field_is_nanoseconds() {
        assert_eq!(schedstat_cpu_seconds("1500000000 2320227 1\n"), Some(1.5));
        assert_eq!(schedstat_cpu_seconds(""), None);
        assert_eq!(schedstat_cpu_seconds("n/a 1 1"), None);
    }

    #[test]
    fn median_cpu_of_unmeasured_samples_is_nan() {
        let unmeasured = Sample {
            wall: 1.0,
            cpu: f64::NAN,
        };
        assert!(median_cpu(&[unmeasured, unmeasured]).is_nan());
        let measured = Sample {
            wall: 1.0,
            cpu: 0.25,
        };
        assert_eq!(median_cpu(&[unmeasured, measured]), 0.25);
    }

    #[test]
    fn cpu_cell_marks_unmeasured() {
        assert_eq!(cpu_cell(f64::NAN), "n/a");
        assert_eq!(cpu_cell(0.002), "2.0 ms");
    }
}
