//! Syncs that die half-way: the sqlite3 CLI killed with SIGKILL, and the
//! server backend ended with pg_terminate_backend. The next sync must lose
//! and duplicate nothing.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::{
    Device, Server, conninfo, conninfo_value, env_var, extension_path, hex, private_database,
    unique_name, wall_clock_ms, with_conninfo_value,
};

/// Rows synced in each test: five push batches of 1000.
const ROWS: i64 = 5000;
const DECLARATION: &str =
    "CREATE VIRTUAL TABLE items USING persist(id INTEGER PRIMARY KEY, label TEXT, n INTEGER)";
const TIMEOUT: Duration = Duration::from_secs(30);

/// Device A with `ROWS` unpushed rows, and device B of the same store with
/// the table but no rows.
fn two_devices(dir: &TempDir) -> (Device, Device) {
    let a = Device::create(dir.path(), "A");
    let b = Device::join(dir.path(), "B", &a.export());
    for device in [&a, &b] {
        device.exec(DECLARATION);
    }
    a.exec(&format!(
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {ROWS})
         INSERT INTO items SELECT i, 'row ' || i, i * 7 FROM s"
    ));
    assert_eq!(a.query_i64("SELECT count(*) FROM items"), ROWS);
    (a, b)
}

/// Starts `persist_sync` on `device`'s file in a sqlite3 CLI process.
fn spawn_cli_sync(device: &Device, conninfo: &str) -> Child {
    let extension = extension_path();
    Command::new(env_var("PERSIST_SQLITE3"))
        .arg("-bail")
        .arg(&device.path)
        .arg(format!(".load {}", extension.display()))
        .arg(device.init_sql())
        .arg(format!("SELECT persist_sync('{conninfo}');"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the sqlite3 CLI")
}

/// Kills `child` with SIGKILL unless it has exited, and returns whether it
/// was still running.
fn kill(child: &mut Child) -> bool {
    let running = child.try_wait().expect("poll the CLI").is_none();
    if running {
        child.kill().expect("SIGKILL the CLI");
    }
    let output = child.wait().expect("reap the CLI");
    if !running {
        assert!(output.success(), "the CLI failed on its own: {output}");
    }
    running
}

/// Checks what a killed or finished sync may leave: an intact database
/// whose rows are all pushed or all unpushed, and a server with each record
/// once.
fn check_after_interruption(device: &Device, server: &mut Server) -> (i64, usize) {
    let integrity: String = device
        .conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity_check");
    assert_eq!(integrity, "ok");
    let unpushed = i64::try_from(device.unpushed("items")).expect("small");
    assert!(
        unpushed == 0 || unpushed == ROWS,
        "a sync is one transaction, but {unpushed} of {ROWS} rows are unpushed"
    );
    let records = server.records(&device.store_id);
    let mut ids: Vec<_> = records
        .iter()
        .map(|record| record.record_id.clone())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        records.len(),
        "duplicate record ids on the server"
    );
    assert!(records.len() <= usize::try_from(ROWS).expect("small"));
    (unpushed, records.len())
}

/// Checks that A and B hold the same rows and versions as the server.
fn assert_converged(a: &Device, b: &Device, server: &mut Server) {
    assert_eq!(a.query_i64("SELECT count(*) FROM items"), ROWS);
    assert_eq!(b.rows("items", "id"), a.rows("items", "id"));
    let versions = |device: &Device| -> Vec<_> {
        device
            .shadow("items")
            .into_iter()
            .map(|row| (row.rid, row.clock, row.device, row.deleted, row.pushed))
            .collect()
    };
    assert_eq!(versions(a), versions(b));
    let mut on_server: Vec<_> = server
        .records(&a.store_id)
        .into_iter()
        .map(|record| (hex(&record.record_id), record.clock, hex(&record.device_id)))
        .collect();
    on_server.sort();
    let local: Vec<_> = versions(a)
        .into_iter()
        .map(|(rid, clock, device, _, _)| (rid, clock, device))
        .collect();
    assert_eq!(
        on_server, local,
        "the server's records differ from the devices' rows"
    );
}

#[test]
fn sqlite3_killed_mid_sync() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = two_devices(&dir);
    let mut server = Server::connect();
    let conninfo = conninfo();

    // Kill A's push as soon as the server has the first records.
    let mut child = spawn_cli_sync(&a, &conninfo);
    let started = Instant::now();
    while server.records(&a.store_id).is_empty() && started.elapsed() < TIMEOUT {
        std::thread::sleep(Duration::from_millis(1));
    }
    let killed = kill(&mut child);
    let (unpushed_after, on_server) = check_after_interruption(&a, &mut server);
    println!(
        "push: killed while running: {killed}, after {} ms; {on_server} of {ROWS} records on \
         the server, {unpushed_after} rows unpushed",
        started.elapsed().as_millis()
    );
    assert!(
        killed,
        "the sync finished before the kill; the test needs more rows"
    );
    assert!(
        on_server > 0,
        "the kill came before the first batch reached the server"
    );
    assert_eq!(
        unpushed_after, ROWS,
        "the killed sync's local changes were rolled back"
    );

    // The next sync pushes everything again; the server keeps what it has.
    let summary = a.sync();
    let already = u64::try_from(on_server).expect("small");
    assert_eq!(
        (
            summary.pushed,
            summary.accepted,
            summary.pulled,
            summary.applied
        ),
        (ROWS as u64, ROWS as u64 - already, ROWS as u64, 0),
        "{summary:?}"
    );

    // Kill B's pull after growing delays until one run finishes first.
    let mut kills = 0;
    let mut delay_ms = 5;
    loop {
        let mut child = spawn_cli_sync(&b, &conninfo);
        std::thread::sleep(Duration::from_millis(delay_ms));
        let killed = kill(&mut child);
        let rows = b.query_i64("SELECT count(*) FROM items");
        check_after_interruption(&b, &mut server);
        if !killed {
            assert_eq!(rows, ROWS, "the CLI finished, so B has every row");
            break;
        }
        assert!(rows == 0 || rows == ROWS, "B has {rows} rows after a kill");
        kills += 1;
        assert!(delay_ms < 60_000, "the CLI never finished its sync");
        delay_ms = delay_ms * 3 / 2 + 1;
    }
    println!("pull: {kills} runs killed before one finished after {delay_ms} ms");
    assert!(kills > 0, "no kill landed while B's sync was running");

    let summary = b.sync();
    assert_eq!((summary.pushed, summary.pulled), (0, 0), "{summary:?}");
    assert_converged(&a, &b, &mut server);
}

/// A trigger that makes every push of records after sequence number
/// `after_seq` wait for an advisory lock that the control connection holds.
struct Blocker {
    control: postgres::Client,
    key: i64,
    database: String,
}

impl Blocker {
    fn install(conninfo: &str, after_seq: i64) -> Self {
        let mut control = Server::connect_to(conninfo).client;
        let key = i64::try_from(wall_clock_ms()).expect("small");
        control
            .batch_execute(&format!(
                "SELECT pg_advisory_lock({key});
                 CREATE FUNCTION public.block_push() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     PERFORM pg_advisory_lock({key});
                     PERFORM pg_advisory_unlock({key});
                     RETURN NEW;
                 END $$;
                 CREATE TRIGGER block_push BEFORE INSERT ON persist.sync_records
                     FOR EACH ROW WHEN (NEW.seq > {after_seq})
                     EXECUTE FUNCTION public.block_push();"
            ))
            .expect("install the blocking trigger");
        Self {
            control,
            key,
            database: conninfo_value(conninfo, "dbname"),
        }
    }

    /// Waits for a backend of `application` to wait on a lock of type
    /// `wait_event` ("advisory" or "relation"), and returns its pid.
    fn wait_for_blocked(&mut self, application: &str, wait_event: &str) -> i32 {
        let started = Instant::now();
        loop {
            let rows = self
                .control
                .query(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2 \
                     AND wait_event_type = 'Lock' AND wait_event = $3",
                    &[&self.database, &application, &wait_event],
                )
                .expect("query pg_stat_activity");
            if let Some(row) = rows.first() {
                return row.get(0);
            }
            assert!(
                started.elapsed() < TIMEOUT,
                "no backend of {application} waited on a {wait_event} lock"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_for_exit(&mut self, pid: i32) {
        let started = Instant::now();
        while self
            .control
            .query("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
            .expect("query pg_stat_activity")
            .len()
            == 1
        {
            assert!(started.elapsed() < TIMEOUT, "backend {pid} did not exit");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn terminate(&mut self, pid: i32) {
        let done: bool = self
            .control
            .query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .expect("pg_terminate_backend")
            .get(0);
        assert!(done, "pg_terminate_backend({pid}) returned false");
        self.wait_for_exit(pid);
    }

    /// Lets blocked pushes go on. Call after the blocked backend is gone or
    /// may finish, then [`Blocker::remove`].
    fn release(&mut self) {
        self.control
            .query_one("SELECT pg_advisory_unlock($1)", &[&self.key])
            .expect("release the advisory lock");
    }

    fn remove(mut self) {
        self.control
            .batch_execute(
                "DROP TRIGGER block_push ON persist.sync_records;
                 DROP FUNCTION public.block_push();",
            )
            .expect("drop the blocking trigger");
    }
}

#[test]
fn sqlite3_killed_while_server_blocks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = two_devices(&dir);
    let database = private_database("killed");
    let application = unique_name("killed_cli");
    let sync_conninfo = with_conninfo_value(&database, "application_name", &application);
    let mut server = Server::connect_to(&database);

    // The first batch (sequence numbers 1 to 1000) commits, the second waits.
    let mut blocker = Blocker::install(&database, 1000);
    let mut child = spawn_cli_sync(&a, &sync_conninfo);
    let pid = blocker.wait_for_blocked(&application, "advisory");
    assert!(
        kill(&mut child),
        "the CLI exited while its push was blocked"
    );
    blocker.release();
    blocker.wait_for_exit(pid);
    blocker.remove();

    let (unpushed_after, on_server) = check_after_interruption(&a, &mut server);
    println!(
        "after SIGKILL during the second batch: {on_server} records on the server \
         (1000 if the server rolled the batch back, 2000 if it committed it)"
    );
    assert!(
        on_server == 1000 || on_server == 2000,
        "{on_server} records on the server"
    );
    assert_eq!(unpushed_after, ROWS);

    let summary = a.sync_to(&database);
    let already = u64::try_from(on_server).expect("small");
    assert_eq!(
        (
            summary.pushed,
            summary.accepted,
            summary.pulled,
            summary.applied
        ),
        (ROWS as u64, ROWS as u64 - already, ROWS as u64, 0),
        "{summary:?}"
    );
    let summary = b.sync_to(&database);
    assert_eq!(
        (summary.pulled, summary.applied),
        (ROWS as u64, ROWS as u64),
        "{summary:?}"
    );
    assert_converged(&a, &b, &mut server);
}

#[test]
fn server_backend_terminated_mid_sync() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, b) = two_devices(&dir);
    let database = private_database("terminated");
    let application = unique_name("terminated");
    let sync_conninfo = with_conninfo_value(&database, "application_name", &application);
    let mut server = Server::connect_to(&database);

    // During the push: the second batch waits and its backend is ended.
    let mut blocker = Blocker::install(&database, 1000);
    let thread_conninfo = sync_conninfo.clone();
    let syncing = std::thread::spawn(move || {
        let result = a.try_sync(&thread_conninfo);
        (a, result)
    });
    let pid = blocker.wait_for_blocked(&application, "advisory");
    blocker.terminate(pid);
    let (a, result) = syncing.join().expect("the sync thread panicked");
    let err = result.expect_err("the sync succeeded although its backend was terminated");
    println!("persist_sync error after pg_terminate_backend: {err}");
    assert!(err.contains("persist_sync: push failed"), "{err}");
    // The client reads either the server's FATAL message or the closed
    // socket first.
    assert!(
        err.contains("terminating connection") || err.contains("connection closed"),
        "the error should say the server ended the connection: {err}"
    );
    blocker.release();
    blocker.remove();

    let (unpushed_after, on_server) = check_after_interruption(&a, &mut server);
    assert_eq!(on_server, 1000, "only the first batch committed");
    assert_eq!(unpushed_after, ROWS);
    let summary = a.sync_to(&database);
    assert_eq!(
        (
            summary.pushed,
            summary.accepted,
            summary.pulled,
            summary.applied
        ),
        (ROWS as u64, ROWS as u64 - 1000, ROWS as u64, 0),
        "{summary:?}"
    );

    // During the pull: B's backend waits for a table lock and is ended.
    let mut lock_holder = Server::connect_to(&database).client;
    let mut transaction = lock_holder.transaction().expect("begin");
    transaction
        .batch_execute("LOCK TABLE persist.sync_records IN ACCESS EXCLUSIVE MODE")
        .expect("lock sync_records");
    let thread_conninfo = sync_conninfo.clone();
    let syncing = std::thread::spawn(move || {
        let result = b.try_sync(&thread_conninfo);
        (b, result)
    });
    let mut watcher = Blocker {
        control: Server::connect_to(&database).client,
        key: 0,
        database: conninfo_value(&database, "dbname"),
    };
    let pid = watcher.wait_for_blocked(&application, "relation");
    watcher.terminate(pid);
    let (b, result) = syncing.join().expect("the sync thread panicked");
    let err = result.expect_err("the pull succeeded although its backend was terminated");
    assert!(
        err.contains("terminating connection") || err.contains("connection closed"),
        "{err}"
    );
    transaction.rollback().expect("release the table lock");
    assert_eq!(b.query_i64("SELECT count(*) FROM items"), 0);
    assert_eq!(b.query_i64("SELECT count(*) FROM items_rows"), 0);

    let summary = b.sync_to(&database);
    assert_eq!(
        (summary.pulled, summary.applied),
        (ROWS as u64, ROWS as u64),
        "{summary:?}"
    );
    assert_converged(&a, &b, &mut server);
}
