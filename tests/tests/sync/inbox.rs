//! Records of a table the pulling device has not created wait until it
//! creates the table.

use crate::common::Device;

const NOTES: &str = "CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT)";
const TAGS: &str = "CREATE VIRTUAL TABLE tags USING persist(note_id INTEGER, tag TEXT, weight REAL, \
     PRIMARY KEY (note_id, tag))";

fn versions(device: &Device, table: &str) -> Vec<(String, i64, String, bool)> {
    device
        .shadow(table)
        .into_iter()
        .map(|row| (row.rid, row.clock, row.device, row.deleted))
        .collect()
}

#[test]
fn records_wait_for_missing_table() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Device::create(dir.path(), "A");
    let b = Device::join(dir.path(), "B", &a.export());
    a.exec(NOTES);
    a.exec(TAGS);
    b.exec(NOTES);
    a.exec(
        "INSERT INTO notes VALUES (1, 'one'), (2, 'two'), (3, 'three');
         INSERT INTO tags VALUES (1, 'red', 0.5), (1, 'blue', 1.5), (2, 'red', NULL),
                                 (3, 'green', 2.0);",
    );
    let summary = a.sync();
    assert_eq!((summary.pushed, summary.accepted), (7, 7), "{summary:?}");

    let summary = b.sync();
    assert_eq!((summary.pulled, summary.applied), (7, 3), "{summary:?}");
    assert_eq!(summary.pending_for_missing_tables, 4, "{summary:?}");
    assert_eq!(summary.quarantined, 0, "{summary:?}");
    assert_eq!(
        b.query_i64("SELECT count(*) FROM sqlite_schema WHERE name = 'tags'"),
        0
    );
    assert_eq!(b.query_i64("SELECT count(*) FROM persist_inbox"), 4);

    // Newer versions of held records replace them in the inbox.
    a.exec(
        "UPDATE tags SET weight = 9.5 WHERE note_id = 1 AND tag = 'red';
         DELETE FROM tags WHERE note_id = 1 AND tag = 'blue';
         INSERT INTO tags VALUES (3, 'blue', 3.0);",
    );
    let summary = a.sync();
    assert_eq!((summary.pushed, summary.accepted), (3, 3), "{summary:?}");
    let summary = b.sync();
    assert_eq!((summary.pulled, summary.applied), (3, 0), "{summary:?}");
    assert_eq!(summary.pending_for_missing_tables, 3, "{summary:?}");
    assert_eq!(b.query_i64("SELECT count(*) FROM persist_inbox"), 5);

    // Creating the table applies the held records, tombstone included.
    b.exec(TAGS);
    assert_eq!(b.query_i64("SELECT count(*) FROM persist_inbox"), 0);
    let order = "note_id, tag";
    assert_eq!(b.rows("tags", order), a.rows("tags", order));
    assert_eq!(b.rows("tags", order).len(), 4);
    assert_eq!(versions(&b, "tags"), versions(&a, "tags"));
    assert!(b.shadow("tags").iter().all(|row| row.pushed));

    let summary = b.sync();
    assert_eq!(
        (
            summary.pushed,
            summary.pulled,
            summary.pending_for_missing_tables
        ),
        (0, 0, 0),
        "{summary:?}"
    );

    // The table syncs as usual from then on.
    b.exec("UPDATE tags SET weight = 0.25 WHERE note_id = 3 AND tag = 'green'");
    let summary = b.sync();
    assert_eq!((summary.pushed, summary.accepted), (1, 1), "{summary:?}");
    let summary = a.sync();
    assert_eq!((summary.pulled, summary.applied), (1, 1), "{summary:?}");
    assert_eq!(a.rows("tags", order), b.rows("tags", order));
    assert_eq!(a.rows("notes", "id"), b.rows("notes", "id"));
}
