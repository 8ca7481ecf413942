//! Peak resident memory (VmHWM) of a fresh process that scans an encrypted
//! table or runs one sync, at two sizes, to show whether it grows with the
//! number of rows.
//!
//! The parent builds the databases. A child process (`persist-bench child
//! ...`) opens one, reads its own VmHWM from /proc/self/status before and
//! after the work, and prints both as JSON.

use std::path::Path;
use std::process::Command;

use rusqlite::Connection;
use serde_json::{Value as Json, json};

use crate::Ctx;
use crate::engine::{self, Engine, remove_database};
use crate::error::{BenchError, Context, Result};
use crate::report::{self, Table};
use crate::sqlite::{self, Section};
use crate::sync::{self, Server};

/// This process's peak resident set size in KiB, from /proc/self/status.
///
/// # Errors
///
/// When the file cannot be read or has no VmHWM line (not Linux).
pub fn vm_hwm_kib() -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| BenchError::new("/proc/self/status has no VmHWM line"))
}

/// Peak memory of one child run.
struct Peak {
    before_kib: u64,
    after_kib: u64,
}

fn run_child(ctx: &Ctx, args: &[&str]) -> Result<Json> {
    let output = Command::new(&ctx.exe)
        .arg("child")
        .args(args)
        .output()
        .context(format!("starting {}", ctx.exe.display()))?;
    if !output.status.success() {
        return Err(BenchError::new(format!(
            "child process `persist-bench child {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line)
        .map_err(|err| BenchError::new(format!("child process printed {line:?}, not JSON: {err}")))
}

fn peak_of(json: &Json) -> Result<Peak> {
    let get = |name: &str| {
        json.get(name)
            .and_then(Json::as_u64)
            .ok_or_else(|| BenchError::new(format!("child output lacks {name}: {json}")))
    };
    Ok(Peak {
        before_kib: get("hwm_before_kib")?,
        after_kib: get("hwm_after_kib")?,
    })
}

fn path_arg(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| BenchError::new(format!("path {} is not UTF-8", path.display())))
}

/// Runs the memory measurements.
///
/// # Errors
///
/// Errors of building the databases and of the child processes.
pub fn run(ctx: &Ctx, server: Option<&Server>) -> Result<Section> {
    let extension = path_arg(&ctx.opener.extension)?.to_owned();
    let keyfile = path_arg(&ctx.opener.keyfile())?.to_owned();
    let mut table = Table::new(&[
        "work",
        "rows",
        "VmHWM after open",
        "VmHWM at the end",
        "growth",
    ]);
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    let mut add = |work: &str, rows: usize, peak: &Peak| {
        table.row(vec![
            work.to_owned(),
            report::thousands(rows as u64),
            mib(peak.before_kib),
            mib(peak.after_kib),
            mib(peak.after_kib.saturating_sub(peak.before_kib)),
        ]);
    };

    for rows in ctx.sizes.memory_scan_rows {
        for engine in [Engine::Plaintext, Engine::Persist] {
            let path = ctx.work.join(format!("memory-{}.db", engine.label()));
            remove_database(&path);
            let conn = ctx.opener.open(engine, &path)?;
            sqlite::create_items(&conn, engine)?;
            sqlite::fill_items(&conn, 1, rows)?;
            drop(conn);
            let json = run_child(
                ctx,
                &[
                    "scan",
                    "--engine",
                    engine.label(),
                    "--extension",
                    &extension,
                    "--keyfile",
                    &keyfile,
                    "--db",
                    path_arg(&path)?,
                ],
            )?;
            let scanned = json.get("rows").and_then(Json::as_u64).unwrap_or(0);
            if scanned != rows as u64 {
                return Err(BenchError::new(format!(
                    "the memory child scanned {scanned} rows of {}, expected {rows}",
                    engine.label()
                )));
            }
            add(
                &format!("full scan, {} table", engine.label()),
                rows,
                &peak_of(&json)?,
            );
            remove_database(&path);
        }
    }

    if let Some(server) = server {
        for records in ctx.sizes.memory_sync_records {
            let name = format!("persist_bench_memory_{}_{records}", std::process::id());
            let conninfo = server.create_database(&ctx.repo, &name)?;
            let result = sync_peaks(ctx, &conninfo, records, &extension, &keyfile);
            server.drop_database(&name);
            let (push, pull) = result?;
            add(
                "sync, device A (push, then pull of its own)",
                records,
                &push,
            );
            add("sync, device B (pull into an empty table)", records, &pull);
        }
    }

    let mut markdown = String::from(
        "## Memory\n\nPeak resident memory (VmHWM from /proc/self/status) of a fresh \
         `persist-bench child` process per row. The process opens the database (and \
         for persist loads the extension and opens the store), reads VmHWM, does the \
         work and reads VmHWM again. The scan runs the full-scan aggregate of the \
         reads section over the `items` rows; SQLite's page cache is its default \
         2 MB.\n\n",
    );
    markdown.push_str(&table.render());
    markdown.push('\n');
    Ok(Section {
        markdown,
        targets: Vec::new(),
    })
}

fn sync_peaks(
    ctx: &Ctx,
    conninfo: &str,
    records: usize,
    extension: &str,
    keyfile: &str,
) -> Result<(Peak, Peak)> {
    let tag = format!("memory-sync-{records}");
    let devices = sync::prepare_items_devices(ctx, &tag, records)?;
    let run = |db: &Path, keyfile: &str| -> Result<(Peak, Json)> {
        let json = run_child(
            ctx,
            &[
                "sync",
                "--extension",
                extension,
                "--keyfile",
                keyfile,
                "--db",
                path_arg(db)?,
                "--conninfo",
                conninfo,
            ],
        )?;
        Ok((peak_of(&json)?, json))
    };
    let (push, json) = run(&devices.a, keyfile)?;
    let pushed = json.get("pushed").and_then(Json::as_u64).unwrap_or(0);
    let (pull, json) = run(&devices.b, path_arg(&devices.b_keyfile)?)?;
    let applied = json.get("applied").and_then(Json::as_u64).unwrap_or(0);
    remove_database(&devices.a);
    remove_database(&devices.b);
    if pushed < records as u64 || applied != records as u64 {
        return Err(BenchError::new(format!(
            "memory sync of {records} records pushed {pushed} and applied {applied}"
        )));
    }
    Ok((push, pull))
}

/// Options of a child process.
pub struct ChildOptions {
    /// `scan` or `sync`.
    pub work: String,
    /// The engine of a scan.
    pub engine: Engine,
    /// The database file.
    pub db: String,
    /// The extension library.
    pub extension: String,
    /// The device keyfile.
    pub keyfile: String,
    /// The sync server, for `sync`.
    pub conninfo: Option<String>,
}

/// Runs `persist-bench child`: opens the database, does the work and prints
/// the peak memory before and after it as one JSON line.
///
/// # Errors
///
/// SQLite's and the extension's errors.
pub fn child(options: &ChildOptions) -> Result<()> {
    let conn = Connection::open(&options.db)?;
    if options.engine == Engine::Persist || options.work == "sync" {
        engine::load_persist(&conn, Path::new(&options.extension))?;
        engine::init_store(&conn, Path::new(&options.keyfile), None)?;
    }
    let before = vm_hwm_kib()?;
    let output = match options.work.as_str() {
        "scan" => {
            let scan = sqlite::run_scan(&conn)?;
            json!({ "rows": scan.0 })
        }
        "sync" => {
            let conninfo = options
                .conninfo
                .as_deref()
                .ok_or_else(|| BenchError::new("child sync needs --conninfo"))?;
            let summary = sync::sync(&conn, conninfo)?;
            json!({ "pushed": summary.pushed, "pulled": summary.pulled, "applied": summary.applied })
        }
        other => {
            return Err(BenchError::new(format!(
                "unknown child work {other:?}; expected scan or sync"
            )));
        }
    };
    let after = vm_hwm_kib()?;
    let mut output = output;
    output["hwm_before_kib"] = json!(before);
    output["hwm_after_kib"] = json!(after);
    println!("{output}");
    Ok(())
}
