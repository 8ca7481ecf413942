//! `persist-bench`: benchmarks of Persist against plaintext SQLite, SQLCipher,
//! `openssl speed`, a local PostgreSQL sync server, pgcrypto and plaintext
//! PostgreSQL tables, written as Markdown tables for docs/BENCHMARKS.md.
//!
//! `scripts/bench` builds everything, starts a throwaway PostgreSQL cluster
//! and runs this binary; see `persist-bench --help` for running it by hand.

mod crypto;
mod engine;
mod error;
mod machine;
mod measure;
mod memory;
mod pg_hooks;
mod pg_tables;
mod pg_values;
mod profile;
mod report;
mod sqlite;
mod sync;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use engine::{Engine, Opener};
use error::{BenchError, Context, Result};
use report::Target;
use sqlite::Section;
use sync::Server;

const USAGE: &str = "\
usage:
  persist-bench (--smoke | --full) --extension PATH [options]
  persist-bench profile CASE [--prepare] [--rows N] --extension PATH --work DIR [--pg CONNINFO]
  persist-bench child (scan | sync) ...   (started by the memory benchmark)

Runs the benchmarks and writes Markdown tables.

  --smoke            tiny sizes, a few seconds; checks results only
  --full             the sizes of docs/BENCHMARKS.md (several minutes)
  --extension PATH   the persist SQLite extension, target/release/libpersist.so
  --pg CONNINFO      PostgreSQL server for the sync, memory and postgres
                     benchmarks, without dbname, such as
                     'host=/tmp/pg/sock port=55432 user=postgres'. The role
                     must be allowed to create databases, and for postgres be
                     a superuser on a server with the persist extension
                     installed, pgcrypto, and persist.keyfile set
  --work DIR         folder for databases and keyfiles (default: a new folder
                     under the system temporary folder, removed at the end)
  --repo DIR         repository root, for sql/chinook and pg-ext/sql
                     (default: the parent of this crate's folder)
  --output FILE      write the Markdown there instead of to standard output
  --missed FILE      write the profile case and name of each missed target,
                     one per line, separated by a tab
  --only LIST        comma-separated sections: sqlite, crypto, sync, memory,
                     postgres (default: all)
  --repetitions N    repetitions of each measurement (default: smoke 1, full 5)

Profile cases (for valgrind --tool=callgrind, or for the pg-* cases perf
record -p on the PostgreSQL backend whose process id the case prints before
it waits for a line on standard input; run once with --prepare first):";

/// Sizes and repetitions of one run.
pub struct Sizes {
    /// Repetitions of the SQLite and crypto measurements.
    pub repetitions: usize,
    /// Rows inserted, and rows in the tables the reads run on.
    pub insert_rows: usize,
    /// Rows per transaction in the second insert case.
    pub commit_every: usize,
    /// Primary-key lookups per repetition.
    pub lookups: usize,
    /// Runs of the Chinook join per repetition.
    pub join_iterations: usize,
    /// Value sizes of the crypto benchmark, in bytes.
    pub crypto_sizes: Vec<usize>,
    /// Minimum CPU seconds per Persist crypto figure.
    pub crypto_seconds: f64,
    /// The `-seconds` of `openssl speed`.
    pub openssl_seconds: u32,
    /// Sizes that `openssl speed` runs for.
    pub openssl_sizes: Vec<usize>,
    /// Records pushed and pulled per sync repetition.
    pub sync_records: usize,
    /// Repetitions of the sync measurements.
    pub sync_repetitions: usize,
    /// The two table sizes of the memory scan.
    pub memory_scan_rows: [usize; 2],
    /// The two record counts of the memory sync.
    pub memory_sync_records: [usize; 2],
    /// Value sizes of the PostgreSQL value-function benchmark, in bytes.
    pub pg_value_sizes: Vec<usize>,
    /// Values per size there, at most.
    pub pg_values: usize,
    /// Bytes of plaintext per size there, at most: larger sizes get fewer
    /// values.
    pub pg_value_bytes: usize,
    /// Values per size that pgcrypto's PGP functions run on, at most.
    pub pg_pgp_values: usize,
}

impl Sizes {
    fn smoke() -> Self {
        Self {
            repetitions: 1,
            insert_rows: 500,
            commit_every: 100,
            lookups: 500,
            join_iterations: 1,
            crypto_sizes: vec![64, 256, 4096, 65536],
            crypto_seconds: 0.01,
            openssl_seconds: 1,
            openssl_sizes: vec![256],
            sync_records: 500,
            sync_repetitions: 1,
            memory_scan_rows: [1_000, 10_000],
            memory_sync_records: [500, 5_000],
            pg_value_sizes: vec![64, 256, 4096, 65536],
            pg_values: 200,
            pg_value_bytes: 1 << 20,
            pg_pgp_values: 200,
        }
    }

    fn full() -> Self {
        Self {
            repetitions: 5,
            insert_rows: 100_000,
            commit_every: 100,
            lookups: 100_000,
            join_iterations: 20,
            crypto_sizes: vec![64, 256, 4096, 65536],
            crypto_seconds: 0.5,
            openssl_seconds: 1,
            openssl_sizes: vec![64, 256, 4096, 65536],
            sync_records: 100_000,
            sync_repetitions: 3,
            memory_scan_rows: [100_000, 1_000_000],
            memory_sync_records: [10_000, 100_000],
            pg_value_sizes: vec![64, 256, 4096, 65536],
            pg_values: 100_000,
            pg_value_bytes: 32 << 20,
            // pgp_sym_encrypt and pgp_sym_decrypt each take about 0.1 to
            // 0.2 ms a call, which 100,000 values would make minutes.
            pg_pgp_values: 10_000,
        }
    }
}

/// Everything a benchmark needs.
pub struct Ctx {
    /// Sizes of this run.
    pub sizes: Sizes,
    /// Opens connections of each engine.
    pub opener: Opener,
    /// Folder for databases.
    pub work: PathBuf,
    /// Repository root.
    pub repo: PathBuf,
    /// Base connection string of the PostgreSQL server, if any.
    pub pg: Option<String>,
    /// This executable, for child processes.
    pub exe: PathBuf,
}

/// Parsed command line.
#[derive(Default)]
struct Args {
    command: Option<String>,
    positional: Vec<String>,
    mode: Option<String>,
    extension: Option<PathBuf>,
    pg: Option<String>,
    work: Option<PathBuf>,
    repo: Option<PathBuf>,
    output: Option<PathBuf>,
    missed: Option<PathBuf>,
    only: Option<Vec<String>>,
    repetitions: Option<usize>,
    rows: Option<usize>,
    prepare: bool,
    engine: Option<String>,
    keyfile: Option<String>,
    db: Option<String>,
    conninfo: Option<String>,
}

fn parse_args(raw: Vec<String>) -> Result<Args> {
    let mut args = Args::default();
    let mut iter = raw.into_iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| {
            iter.next()
                .ok_or_else(|| BenchError::new(format!("{name} needs a value; see --help")))
        };
        let number = |name: &str, text: String| {
            text.parse::<usize>().map_err(|_| {
                BenchError::new(format!("{name} must be a positive integer, got {text:?}"))
            })
        };
        match arg.as_str() {
            "--smoke" | "--full" => args.mode = Some(arg),
            "--extension" => args.extension = Some(value(&arg)?.into()),
            "--pg" => args.pg = Some(value(&arg)?),
            "--work" => args.work = Some(value(&arg)?.into()),
            "--repo" => args.repo = Some(value(&arg)?.into()),
            "--output" => args.output = Some(value(&arg)?.into()),
            "--missed" => args.missed = Some(value(&arg)?.into()),
            "--only" => {
                args.only = Some(
                    value(&arg)?
                        .split(',')
                        .map(|s| s.trim().to_owned())
                        .collect(),
                );
            }
            "--repetitions" => args.repetitions = Some(number(&arg, value(&arg)?)?.max(1)),
            "--rows" => args.rows = Some(number(&arg, value(&arg)?)?.max(1)),
            "--prepare" => args.prepare = true,
            "--engine" => args.engine = Some(value(&arg)?),
            "--keyfile" => args.keyfile = Some(value(&arg)?),
            "--db" => args.db = Some(value(&arg)?),
            "--conninfo" => args.conninfo = Some(value(&arg)?),
            "profile" | "child" if args.command.is_none() => args.command = Some(arg),
            other if other.starts_with('-') => {
                return Err(BenchError::new(format!(
                    "unknown option {other}; see --help"
                )));
            }
            _ => args.positional.push(arg),
        }
    }
    Ok(args)
}

fn print_usage() {
    println!("{USAGE}");
    for (name, description) in profile::CASES {
        println!("  {name:<15} {description}");
    }
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.iter().any(|arg| arg == "--help" || arg == "-h") || raw.is_empty() {
        print_usage();
        return ExitCode::SUCCESS;
    }
    match parse_args(raw).and_then(|args| dispatch(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("persist-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(args: &Args) -> Result<()> {
    match args.command.as_deref() {
        Some("child") => run_child(args),
        Some("profile") => run_profile(args),
        _ => run_benchmarks(args),
    }
}

fn required<'a, T>(value: &'a Option<T>, name: &str) -> Result<&'a T> {
    value
        .as_ref()
        .ok_or_else(|| BenchError::new(format!("{name} is required; see --help")))
}

fn run_child(args: &Args) -> Result<()> {
    let work = args
        .positional
        .first()
        .ok_or_else(|| BenchError::new("child needs the work: scan or sync"))?;
    let engine_label = args.engine.as_deref().unwrap_or("persist");
    let engine = Engine::from_label(engine_label).ok_or_else(|| {
        BenchError::new(format!(
            "unknown engine {engine_label:?}; expected plaintext or persist"
        ))
    })?;
    memory::child(&memory::ChildOptions {
        work: work.clone(),
        engine,
        db: required(&args.db, "--db")?.clone(),
        extension: required(&args.extension, "--extension")?
            .to_string_lossy()
            .into_owned(),
        keyfile: required(&args.keyfile, "--keyfile")?.clone(),
        conninfo: args.conninfo.clone(),
    })
}

/// Returns the repository root: `--repo`, or the parent of this crate's folder.
fn repo_root(args: &Args) -> PathBuf {
    args.repo.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    })
}

fn make_ctx(args: &Args, sizes: Sizes, work: PathBuf) -> Result<Ctx> {
    let extension = required(&args.extension, "--extension")?;
    if !extension.is_file() {
        return Err(BenchError::new(format!(
            "extension {} not found; build it with cargo build --release -p persist-sqlite",
            extension.display()
        )));
    }
    let key_dir = work.join("keys");
    std::fs::create_dir_all(&key_dir).context(format!("creating {}", key_dir.display()))?;
    Ok(Ctx {
        sizes,
        opener: Opener::new(extension, &key_dir)?,
        work,
        repo: repo_root(args),
        pg: args.pg.clone(),
        exe: std::env::current_exe().context("finding this executable")?,
    })
}

fn run_profile(args: &Args) -> Result<()> {
    let case = args
        .positional
        .first()
        .ok_or_else(|| BenchError::new("profile needs a case; see --help"))?;
    let work = required(&args.work, "--work")?.clone();
    let ctx = make_ctx(args, Sizes::smoke(), work)?;
    profile::run(&ctx, case, args.rows.unwrap_or(10_000), args.prepare)
}

fn run_benchmarks(args: &Args) -> Result<()> {
    let mut sizes = match args.mode.as_deref() {
        Some("--full") => Sizes::full(),
        Some(_) => Sizes::smoke(),
        None => return Err(BenchError::new("give --smoke or --full; see --help")),
    };
    if let Some(repetitions) = args.repetitions {
        sizes.repetitions = repetitions;
        sizes.sync_repetitions = repetitions;
    }
    let (work, temporary) = match &args.work {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("persist-bench.{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&work).context(format!("creating {}", work.display()))?;
    let ctx = make_ctx(args, sizes, work.clone())?;
    let result = run_sections(&ctx, args);
    if temporary {
        let _ = std::fs::remove_dir_all(&work);
    }
    let Outcome {
        markdown,
        targets,
        failures,
    } = result?;

    match &args.output {
        Some(path) => {
            std::fs::write(path, &markdown).context(format!("writing {}", path.display()))?
        }
        None => print!("{markdown}"),
    }
    if let Some(path) = &args.missed {
        let missed: String = targets
            .iter()
            .filter(|target| !target.met())
            .map(|target| format!("{}\t{}\n", target.profile_case, target.name))
            .collect();
        std::fs::write(path, missed).context(format!("writing {}", path.display()))?;
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(BenchError::new(failures.join("; ")))
    }
}

fn is_selected(args: &Args, section: &str) -> bool {
    args.only
        .as_ref()
        .is_none_or(|only| only.iter().any(|name| name == section))
}

fn run_sections(ctx: &Ctx, args: &Args) -> Result<Outcome> {
    let server = ctx.pg.as_deref().map(Server::new);
    let needs_server = ["sync", "memory", "postgres"]
        .into_iter()
        .any(|section| is_selected(args, section));
    if server.is_none() && needs_server {
        return Err(BenchError::new(
            "the sync, memory and postgres benchmarks need --pg CONNINFO (scripts/bench \
             starts a server); leave them out with --only sqlite,crypto",
        ));
    }
    let machine = machine::describe(server.as_ref());
    let start_warning = machine::load_warning("start");

    let mut sections: Vec<Section> = Vec::new();
    let steps: [(&str, &dyn Fn() -> Result<Section>); 5] = [
        ("sqlite", &|| {
            let mut section = sqlite::run(ctx)?;
            section.markdown = format!("## SQLite\n\n{}", section.markdown);
            Ok(section)
        }),
        ("crypto", &|| crypto::run(ctx)),
        ("sync", &|| match &server {
            Some(server) => sync::run(ctx, server),
            None => Err(BenchError::new("sync needs --pg")),
        }),
        ("memory", &|| memory::run(ctx, server.as_ref())),
        ("postgres", &|| pg_hooks::run(ctx, server.as_ref())),
    ];
    // A failed section is reported in its place and the others still run,
    // so that one broken benchmark does not discard the figures of the rest.
    let mut failures = Vec::new();
    for (name, step) in steps {
        if !is_selected(args, name) {
            continue;
        }
        eprintln!("persist-bench: running the {name} benchmarks");
        match step() {
            Ok(section) => sections.push(section),
            Err(err) => {
                eprintln!("persist-bench: the {name} benchmarks failed: {err}");
                sections.push(Section {
                    markdown: format!("## {name}\n\n**Failed:** {err}\n\n"),
                    targets: Vec::new(),
                });
                failures.push(format!("the {name} benchmarks failed: {err}"));
            }
        }
    }

    let targets: Vec<Target> = sections
        .iter_mut()
        .flat_map(|section| std::mem::take(&mut section.targets))
        .collect();
    let mut markdown = String::new();
    if args.mode.as_deref() != Some("--full") {
        markdown.push_str(
            "Smoke run: the sizes are far too small for the figures to mean anything; \
             it checks that every benchmark runs and that all engines return the same \
             results.\n\n",
        );
    }
    markdown.push_str(&format!("## Machine\n\n{machine}"));
    markdown.push_str(&format!(
        "| load average at the end (1, 5, 15 min) | {} |\n\n",
        machine::load_average()
    ));
    let end_warning = machine::load_warning("end");
    if let Some(warning) = start_warning.or(end_warning) {
        markdown.push_str(&format!("{warning}\n\n"));
    }
    markdown.push_str("## Targets\n\n");
    markdown.push_str(&report::targets_table(&targets));
    markdown.push('\n');
    for section in &sections {
        markdown.push_str(&section.markdown);
    }
    Ok(Outcome {
        markdown,
        targets,
        failures,
    })
}

/// Output of a run.
struct Outcome {
    markdown: String,
    targets: Vec<Target>,
    /// One message per failed section.
    failures: Vec<String>,
}
