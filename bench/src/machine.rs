//! The machine and software versions written next to the figures.

use std::process::Command;

use rusqlite::Connection;

use crate::crypto;
use crate::report::Table;
use crate::sync::Server;

/// Reads the value of `key` in the first block of /proc/cpuinfo.
fn cpuinfo(key: &str) -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == key).then(|| value.trim().to_owned())
    })
}

fn first_line_of(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().next().map(|line| line.trim().to_owned())
}

fn os_name() -> Option<String> {
    let text = std::fs::read_to_string("/etc/os-release").ok()?;
    text.lines().find_map(|line| {
        line.strip_prefix("PRETTY_NAME=")
            .map(|value| value.trim_matches('"').to_owned())
    })
}

fn memory_total() -> Option<String> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text.lines().find_map(|line| {
        line.strip_prefix("MemTotal:")
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    })?;
    Some(format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0))
}

fn command_version(program: &str, arg: &str) -> Option<String> {
    let output = Command::new(program).arg(arg).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// SQLite and SQLCipher versions of the library this binary links.
fn sqlite_versions() -> (String, String) {
    let versions = || -> rusqlite::Result<(String, String)> {
        let conn = Connection::open_in_memory()?;
        let sqlite: String = conn.query_row("SELECT sqlite_version()", [], |row| row.get(0))?;
        conn.execute_batch("PRAGMA key = 'version check';")?;
        let cipher: String = conn.query_row("PRAGMA cipher_version", [], |row| row.get(0))?;
        let provider: String = conn.query_row("PRAGMA cipher_provider", [], |row| row.get(0))?;
        let provider_version: String =
            conn.query_row("PRAGMA cipher_provider_version", [], |row| row.get(0))?;
        Ok((
            sqlite,
            format!("{cipher}, crypto provider {provider} {provider_version}"),
        ))
    };
    versions().unwrap_or_else(|err| (format!("unknown ({err})"), "unknown".to_owned()))
}

/// Returns a warning when the 1-minute load average is at or above the
/// number of logical CPUs, which means other processes competed for them.
pub fn load_warning(when: &str) -> Option<String> {
    let load: f64 = first_line_of("/proc/loadavg")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (load >= cores as f64).then(|| {
        format!(
            "The 1-minute load average was {load:.2} at the {when} of the run, on {cores} \
             logical CPUs: other processes competed for the CPUs, so these figures are \
             noisy. Rerun on a quiet machine before comparing them with other runs."
        )
    })
}

/// Current load average over 1, 5 and 15 minutes, as text.
pub fn load_average() -> String {
    first_line_of("/proc/loadavg")
        .map(|line| {
            line.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Renders the machine table.
pub fn describe(server: Option<&Server>) -> String {
    let unknown = || "unknown".to_owned();
    let cpu = cpuinfo("model name").unwrap_or_else(unknown);
    let cpu_id = format!(
        "family {}, model {}, stepping {}",
        cpuinfo("cpu family").unwrap_or_else(unknown),
        cpuinfo("model").unwrap_or_else(unknown),
        cpuinfo("stepping").unwrap_or_else(unknown)
    );
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let (sqlite, sqlcipher) = sqlite_versions();
    let postgres = server.map_or_else(
        || "not used in this run".to_owned(),
        |server| {
            server
                .show("server_version")
                .unwrap_or_else(|err| format!("unknown ({err})"))
        },
    );
    let mut table = Table::new(&["component", "this run"]).left_aligned();
    let rows = [
        ("CPU", format!("{cpu} ({cpu_id})")),
        ("logical CPUs", cores.to_string()),
        ("memory", memory_total().unwrap_or_else(unknown)),
        ("OS", os_name().unwrap_or_else(unknown)),
        (
            "kernel",
            first_line_of("/proc/sys/kernel/osrelease").unwrap_or_else(unknown),
        ),
        (
            "SQLite (bundled with SQLCipher, runs all three engines)",
            sqlite,
        ),
        ("SQLCipher", sqlcipher),
        ("PostgreSQL server", postgres),
        ("openssl command", crypto::openssl_version()),
        (
            "rustc",
            command_version("rustc", "--version").unwrap_or_else(unknown),
        ),
        ("load average at start (1, 5, 15 min)", load_average()),
    ];
    for (name, value) in rows {
        table.row(vec![name.to_owned(), value]);
    }
    table.render()
}
