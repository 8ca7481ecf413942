//! Reduced runs of the persist side of one benchmark, to run under
//! `valgrind --tool=callgrind` when a target is missed.
//!
//! `persist-bench profile CASE --prepare` builds what the case reads (its
//! databases and server state) without a profiler. `persist-bench profile
//! CASE` then does only the measured work, so the profile shows that work
//! plus the fixed cost of starting the process and opening the store.
//!
//! The `pg-*` cases do their work in a PostgreSQL backend, not in this
//! process, so a profiler must attach to that backend. Their run prints the
//! backend's process id and waits for a line on standard input before the
//! work (see [`pg_hooks::profile`]).

use crate::Ctx;
use crate::crypto::{self, Operation};
use crate::engine::{Engine, remove_database};
use crate::error::{BenchError, Result};
use crate::pg_hooks;
use crate::sqlite;
use crate::sync::{self, Server};
use crate::workload::{self, Item};

/// The profile cases, with what each runs.
pub const CASES: [(&str, &str); 11] = [
    ("insert", "inserts ROWS rows in one transaction"),
    (
        "insert-commits",
        "inserts ROWS rows with a commit every 100",
    ),
    ("lookup", "ROWS primary-key lookups in a table of ROWS rows"),
    ("scan", "five full-scan aggregates of a table of ROWS rows"),
    ("seal", "20 x ROWS seals of 256 bytes"),
    ("open", "20 x ROWS opens of 256 bytes"),
    (
        "push",
        "device A's first sync of ROWS rows (push, then pull of its own)",
    ),
    (
        "push-later",
        "device A's second sync, after ROWS more rows (push, then pull of its own)",
    ),
    ("pull", "device B's first sync of ROWS records"),
    (
        "pg-encrypt",
        "10 statements that persist.encrypt ROWS values of 256 bytes in the PostgreSQL backend",
    ),
    (
        "pg-decrypt",
        "10 statements that persist.decrypt ROWS values of 256 bytes in the PostgreSQL backend",
    ),
];

const SERVER_DATABASE: &str = "persist_bench_profile";

/// Runs profile case `case` on `rows` rows, or prepares it.
///
/// # Errors
///
/// An unknown case, a missing server for the sync cases, and the errors of
/// the work itself.
pub fn run(ctx: &Ctx, case: &str, rows: usize, prepare: bool) -> Result<()> {
    let path = ctx.work.join(format!("profile-{case}.db"));
    let server = || {
        ctx.pg
            .as_deref()
            .map(Server::new)
            .ok_or_else(|| BenchError::new(format!("profile case {case} needs --pg")))
    };
    match (case, prepare) {
        ("insert" | "insert-commits" | "seal" | "open", true) => Ok(()),
        ("insert" | "insert-commits", false) => {
            remove_database(&path);
            let conn = ctx.opener.open(Engine::Persist, &path)?;
            sqlite::create_items(&conn, Engine::Persist)?;
            let items: Vec<Item> = (1..=rows).map(|id| workload::item(id as i64)).collect();
            let commit_every = if case == "insert" { rows } else { 100 };
            sqlite::insert_items(&conn, &items, commit_every)?;
            drop(conn);
            remove_database(&path);
            Ok(())
        }
        ("lookup" | "scan", true) => {
            remove_database(&path);
            let conn = ctx.opener.open(Engine::Persist, &path)?;
            sqlite::create_items(&conn, Engine::Persist)?;
            sqlite::fill_items(&conn, 1, rows)
        }
        ("lookup", false) => {
            let conn = ctx.opener.open(Engine::Persist, &path)?;
            let keys = workload::lookup_keys(rows, rows);
            sqlite::run_lookups(&conn, &keys).map(|_| ())
        }
        ("scan", false) => {
            let conn = ctx.opener.open(Engine::Persist, &path)?;
            for _ in 0..5 {
                sqlite::run_scan(&conn)?;
            }
            Ok(())
        }
        ("seal" | "open", false) => {
            let cipher = crypto::new_cipher()?;
            let operation = if case == "seal" {
                Operation::Seal
            } else {
                Operation::Open
            };
            crypto::run_operations(&cipher, operation, 256, 20 * rows as u64)
        }
        ("push" | "push-later" | "pull", true) => {
            let server = server()?;
            let conninfo = server.create_database(&ctx.repo, SERVER_DATABASE)?;
            let devices = sync::prepare_items_devices(ctx, "profile-sync", rows)?;
            if case != "push" {
                let a = ctx.opener.open(Engine::Persist, &devices.a)?;
                sync::sync(&a, &conninfo)?;
                if case == "push-later" {
                    sqlite::fill_items(&a, rows + 1, 2 * rows)?;
                }
            }
            Ok(())
        }
        ("pg-encrypt" | "pg-decrypt", _) => pg_hooks::profile(ctx, case, rows, prepare),
        ("push" | "push-later" | "pull", false) => {
            let conninfo = server()?.conninfo(SERVER_DATABASE);
            let devices = sync::Devices {
                a: ctx.work.join("profile-sync-a.db"),
                b: ctx.work.join("profile-sync-b.db"),
                b_keyfile: ctx.opener.key_dir.join("profile-sync-b.key"),
            };
            let conn = if case != "pull" {
                ctx.opener.open(Engine::Persist, &devices.a)?
            } else {
                sync::open_device_b(ctx, &devices)?
            };
            sync::sync(&conn, &conninfo).map(|_| ())
        }
        _ => Err(BenchError::new(format!(
            "unknown profile case {case:?}; expected one of {}",
            CASES.map(|(name, _)| name).join(", ")
        ))),
    }
}
