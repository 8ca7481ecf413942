//! A sync server restored from an older backup: the devices must bring it
//! back up to date and lose nothing.

use tempfile::TempDir;

use crate::common::{Device, Server, private_database};

const DECLARATION: &str =
    "CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT)";

/// Devices A and B of one store on a database of their own. A has synced
/// rows 1 and 2, the server was backed up, and A has synced rows 3 and 4.
struct Setup {
    a: Device,
    b: Device,
    database: String,
    server: Server,
    _dir: TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = private_database("restore");
        let a = Device::create(dir.path(), "A");
        let b = Device::join(dir.path(), "B", &a.export());
        for device in [&a, &b] {
            device.exec(DECLARATION);
        }
        let mut server = Server::connect_to(&database);
        a.exec("INSERT INTO notes VALUES (1, 'one'), (2, 'two')");
        a.sync_to(&database);
        server
            .client
            .batch_execute(
                "CREATE TABLE public.saved_stores AS SELECT * FROM persist.sync_stores;
                 CREATE TABLE public.saved_records AS SELECT * FROM persist.sync_records;",
            )
            .expect("back up the sync tables");
        a.exec("INSERT INTO notes VALUES (3, 'three'), (4, 'four')");
        let summary = a.sync_to(&database);
        // Sequence numbers 1 and 2 went to the first rows, 3 to the keyring
        // record of the first sync, 4 and 5 to these rows.
        assert_eq!((summary.pushed, summary.cursor), (2, 5), "{summary:?}");
        Self {
            a,
            b,
            database,
            server,
            _dir: dir,
        }
    }

    /// Puts the backup back, as a restore of the database would.
    fn restore(&mut self) {
        self.server
            .client
            .batch_execute(
                "DELETE FROM persist.sync_records;
                 DELETE FROM persist.sync_stores;
                 INSERT INTO persist.sync_stores SELECT * FROM public.saved_stores;
                 INSERT INTO persist.sync_records SELECT * FROM public.saved_records;",
            )
            .expect("restore the sync tables");
        assert_eq!(self.server.records(&self.a.store_id).len(), 2);
    }

    fn ids(device: &Device) -> Vec<i64> {
        device
            .conn
            .prepare("SELECT id FROM notes ORDER BY id")
            .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
            .expect("read ids")
    }
}

#[test]
fn restored_server_gets_pushed_records_again() {
    let mut setup = Setup::new();
    setup.restore();

    let summary = setup.a.sync_to(&setup.database);
    assert!(
        summary.server_rolled_back,
        "A should see the rollback: {summary:?}"
    );
    assert_eq!(
        setup.server.records(&setup.a.store_id).len(),
        4,
        "after the rollback A must push rows 3 and 4 again: {summary:?}"
    );
    let summary = setup.b.sync_to(&setup.database);
    assert_eq!((summary.pulled, summary.applied), (4, 4), "{summary:?}");
    assert_eq!(Setup::ids(&setup.b), [1, 2, 3, 4]);
}

#[test]
fn rollback_followed_by_new_writes_loses_nothing() {
    let mut setup = Setup::new();
    setup.restore();
    // B writes three rows after the restore, so the server's next sequence
    // number passes A's cursor again before A syncs.
    setup
        .b
        .exec("INSERT INTO notes VALUES (10, 'ten'), (11, 'eleven'), (12, 'twelve')");
    let summary = setup.b.sync_to(&setup.database);
    assert_eq!((summary.pushed, summary.accepted), (3, 3), "{summary:?}");

    setup.a.sync_to(&setup.database);
    setup.b.sync_to(&setup.database);
    setup.a.sync_to(&setup.database);
    assert_eq!(
        Setup::ids(&setup.a),
        [1, 2, 3, 4, 10, 11, 12],
        "A must get B's rows"
    );
    assert_eq!(
        Setup::ids(&setup.b),
        [1, 2, 3, 4, 10, 11, 12],
        "B must get A's rows 3 and 4"
    );
}
