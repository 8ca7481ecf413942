//! A device whose clock runs an hour ahead.

use serde_json::json;

use crate::common::{Device, Server, ShadowRow, clock_ms, wall_clock_ms};

const HOUR_MS: u64 = 3_600_000;
/// persist-core's default drift limit (clock::DEFAULT_MAX_DRIFT_MS).
const DEFAULT_DRIFT_MS: u64 = 300_000;
/// Allowance for the time between reading the wall clock and a write.
const SLACK_MS: u64 = 2_000;

const DECLARATION: &str =
    "CREATE VIRTUAL TABLE items USING persist(id INTEGER PRIMARY KEY, label TEXT)";

/// Runs `write` on `device` and returns the one shadow row it adds.
fn written_row(device: &Device, write: &str) -> ShadowRow {
    let before = device.shadow("items");
    device.exec(write);
    let mut new: Vec<_> = device
        .shadow("items")
        .into_iter()
        .filter(|row| !before.iter().any(|old| old.rid == row.rid))
        .collect();
    assert_eq!(new.len(), 1, "{write} added {} shadow rows", new.len());
    new.remove(0)
}

/// Asserts that a clock value's milliseconds lie in `low..=high`.
fn assert_clock_between(description: &str, clock: i64, low: u64, high: u64) {
    let ms = clock_ms(clock);
    assert!(
        (low..=high).contains(&ms),
        "{description}: clock value {clock} is at {ms} ms, expected {low}..={high} \
         (wall clock {} ms)",
        wall_clock_ms()
    );
}

#[test]
fn clock_an_hour_ahead_is_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Device::create(dir.path(), "A");
    let key = a.export();
    // B accepts at most 1 s of drift, A the default 5 minutes.
    let b = Device::open_with(dir.path(), "B", json!({ "key": key, "max_drift_ms": 1000 }));
    let x = Device::open_with(
        dir.path(),
        "X",
        json!({ "key": key, "clock_offset_ms": HOUR_MS }),
    );
    for device in [&a, &b, &x] {
        device.exec(DECLARATION);
    }

    a.exec("INSERT INTO items VALUES (1, 'a1'), (2, 'a2')");
    let summary = a.sync();
    assert_eq!((summary.pushed, summary.accepted), (2, 2), "{summary:?}");
    let summary = x.sync();
    assert_eq!((summary.pulled, summary.applied), (2, 2), "{summary:?}");
    assert_eq!(
        summary.clock_values_bounded, 0,
        "A's clock values are in X's past"
    );

    // X writes with its clock an hour ahead.
    let now = wall_clock_ms();
    let x10 = written_row(&x, "INSERT INTO items VALUES (10, 'x10')");
    assert_clock_between(
        "X's insert",
        x10.clock,
        now + HOUR_MS,
        now + HOUR_MS + SLACK_MS,
    );
    x.exec("INSERT INTO items VALUES (11, 'x11'); UPDATE items SET label = 'x1' WHERE id = 1");
    let summary = x.sync();
    assert_eq!((summary.pushed, summary.accepted), (3, 3), "{summary:?}");
    assert_eq!(
        summary.clock_values_bounded, 0,
        "X's own values are within its clock"
    );

    // The server holds X's clock values as they are.
    let mut server = Server::connect();
    let on_server = server.records(&x.store_id);
    let x_device = crate::common::unhex(&x.device_id);
    let ahead: Vec<_> = on_server
        .iter()
        .filter(|record| record.device_id == x_device)
        .collect();
    assert_eq!(ahead.len(), 3);
    for record in &ahead {
        assert_clock_between(
            "X's record on the server",
            record.clock,
            now + HOUR_MS,
            now + HOUR_MS + 10_000,
        );
    }

    // A and B see three values from the future and bound their clocks.
    let summary = a.sync();
    assert_eq!((summary.pulled, summary.applied), (3, 3), "{summary:?}");
    assert_eq!(
        summary.clock_values_bounded, 3,
        "A pulled X's 3 records: {summary:?}"
    );
    let summary = b.sync();
    assert_eq!((summary.pulled, summary.applied), (4, 4), "{summary:?}");
    assert_eq!(
        summary.clock_values_bounded, 3,
        "B pulled X's 3 records: {summary:?}"
    );

    // Their next writes of other rows stay within their drift limits of the
    // wall clock, far behind X's values.
    let now = wall_clock_ms();
    let a20 = written_row(&a, "INSERT INTO items VALUES (20, 'a20')");
    assert_clock_between(
        "A's insert after the sync",
        a20.clock,
        now,
        now + DEFAULT_DRIFT_MS + SLACK_MS,
    );
    let b30 = written_row(&b, "INSERT INTO items VALUES (30, 'b30')");
    assert_clock_between(
        "B's insert after the sync",
        b30.clock,
        now,
        now + 1000 + SLACK_MS,
    );

    // An edit of a row X wrote still wins: it goes past the version it
    // replaces.
    a.exec("UPDATE items SET label = 'a-edit' WHERE id = 10");
    let edited = a
        .shadow("items")
        .into_iter()
        .find(|row| row.rid == x10.rid)
        .expect("row 10 on A");
    assert!(
        edited.clock > x10.clock,
        "A's edit {edited:?} does not beat X's {x10:?}"
    );

    for device in [&a, &b, &x, &a, &b, &x] {
        let summary = device.sync();
        assert_eq!(summary.quarantined, 0, "{summary:?}");
    }
    let expected = a.rows("items", "id");
    assert_eq!(expected.len(), 6);
    for device in [&b, &x] {
        assert_eq!(
            device.rows("items", "id"),
            expected,
            "device {}",
            device.label
        );
    }
    let labels: Vec<String> = a
        .conn
        .prepare("SELECT label FROM items ORDER BY id")
        .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
        .expect("labels");
    assert_eq!(labels, ["x1", "a2", "a-edit", "x11", "a20", "b30"]);
}
