//! A server that modifies, swaps, re-dates or replays records: the device
//! that pulls them quarantines each one, applies none, and syncs the rest.

use serde_json::Value as Json;
use tempfile::TempDir;

use crate::common::{Device, Server, ServerRecord, hex, unhex};

const DECLARATION: &str =
    "CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT)";

/// Device A with rows 1 to 4 synced, and device B of the same store, which
/// has not synced yet.
struct Setup {
    a: Device,
    b: Device,
    server: Server,
    _dir: TempDir,
}

impl Setup {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = Device::create(dir.path(), "A");
        let b = Device::join(dir.path(), "B", &a.export());
        for device in [&a, &b] {
            device.exec(DECLARATION);
        }
        a.exec(
            "INSERT INTO notes VALUES (1, 'first note'), (2, 'second note'), (3, 'third note'), \
             (4, 'fourth note')",
        );
        let summary = a.sync();
        assert_eq!((summary.pushed, summary.accepted), (4, 4), "{summary:?}");
        Self {
            a,
            b,
            server: Server::connect(),
            _dir: dir,
        }
    }

    fn record(&mut self, key: i64) -> ServerRecord {
        let rid = rid_of(&self.a, key);
        self.server.record(&self.a.store_id, &rid)
    }
}

/// Returns the record id of row `key` of `notes` on `device`.
fn rid_of(device: &Device, key: i64) -> Vec<u8> {
    let rid: String = device
        .conn
        .query_row(
            "SELECT hex(rid) FROM notes_rows WHERE id = (SELECT rowid FROM notes WHERE id = ?1)",
            [key],
            |row| row.get(0),
        )
        .unwrap_or_else(|err| panic!("no row {key} on device {}: {err}", device.label));
    unhex(&rid.to_lowercase())
}

/// Checks that `device` lists exactly `expected` record ids in quarantine,
/// each with kind "rejected" and a reason, and returns the reasons.
fn assert_quarantined(device: &Device, expected: &[&[u8]]) -> Vec<String> {
    let listed = device.quarantined();
    let mut ids: Vec<String> = listed
        .iter()
        .map(|record| record["record_id"].as_str().expect("record_id").to_owned())
        .collect();
    ids.sort();
    let mut expected_ids: Vec<String> = expected.iter().map(|rid| hex(rid)).collect();
    expected_ids.sort();
    assert_eq!(
        ids, expected_ids,
        "quarantine of {}: {listed:?}",
        device.label
    );
    listed
        .iter()
        .map(|record| {
            assert_eq!(record["kind"], Json::from("rejected"), "{record}");
            let reason = record["reason"].as_str().expect("reason").to_owned();
            assert!(
                !reason.trim().is_empty(),
                "quarantined without a reason: {record}"
            );
            reason
        })
        .collect()
}

fn bodies(device: &Device) -> Vec<(i64, String)> {
    device
        .conn
        .prepare("SELECT id, body FROM notes ORDER BY id")
        .and_then(|mut statement| {
            statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect()
        })
        .expect("read notes")
}

fn expected_bodies(rows: &[(i64, &str)]) -> Vec<(i64, String)> {
    rows.iter()
        .map(|(id, body)| (*id, (*body).to_owned()))
        .collect()
}

#[test]
fn flipped_envelope_byte_is_quarantined() {
    let mut setup = Setup::new();
    let mut record = setup.record(2);
    let middle = record.envelope.len() / 2;
    record.envelope[middle] ^= 0x01;
    setup.server.overwrite(&setup.a.store_id, &record);
    setup.a.exec("INSERT INTO notes VALUES (5, 'fifth note')");
    let summary = setup.a.sync();
    assert_eq!(summary.pushed, 1, "{summary:?}");
    assert_eq!((summary.pulled, summary.applied), (2, 0), "{summary:?}");
    assert_eq!(
        summary.quarantined, 1,
        "A pulled the modified record: {summary:?}"
    );

    let summary = setup.b.sync();
    assert_eq!((summary.pulled, summary.applied), (5, 4), "{summary:?}");
    assert_eq!(summary.quarantined, 1, "{summary:?}");
    let reasons = assert_quarantined(&setup.b, &[&record.record_id]);
    println!("quarantine reason for a flipped byte: {reasons:?}");
    assert_quarantined(&setup.a, &[&record.record_id]);
    assert_eq!(
        bodies(&setup.b),
        expected_bodies(&[
            (1, "first note"),
            (3, "third note"),
            (4, "fourth note"),
            (5, "fifth note")
        ])
    );
    assert_eq!(
        bodies(&setup.a),
        expected_bodies(&[
            (1, "first note"),
            (2, "second note"),
            (3, "third note"),
            (4, "fourth note"),
            (5, "fifth note")
        ]),
        "A keeps its own row 2"
    );

    // The quarantined record is not pulled again, and a new genuine write
    // of row 2 repairs B.
    let summary = setup.b.sync();
    assert_eq!((summary.pulled, summary.quarantined), (0, 0), "{summary:?}");
    setup
        .a
        .exec("UPDATE notes SET body = 'second note, rewritten' WHERE id = 2");
    setup.a.sync();
    let summary = setup.b.sync();
    assert_eq!(
        (summary.pulled, summary.applied, summary.quarantined),
        (1, 1, 0),
        "{summary:?}"
    );
    assert_eq!(bodies(&setup.b), bodies(&setup.a));
    assert_eq!(
        setup.b.quarantined().len(),
        1,
        "the quarantine keeps the bad record"
    );
}

#[test]
fn swapped_envelopes_are_quarantined() {
    let mut setup = Setup::new();
    let mut second = setup.record(2);
    let mut third = setup.record(3);
    std::mem::swap(&mut second.envelope, &mut third.envelope);
    setup.server.overwrite(&setup.a.store_id, &second);
    setup.server.overwrite(&setup.a.store_id, &third);

    let summary = setup.b.sync();
    assert_eq!((summary.pulled, summary.applied), (4, 2), "{summary:?}");
    assert_eq!(summary.quarantined, 2, "{summary:?}");
    assert_quarantined(&setup.b, &[&second.record_id, &third.record_id]);
    assert_eq!(
        bodies(&setup.b),
        expected_bodies(&[(1, "first note"), (4, "fourth note")])
    );

    let summary = setup.a.sync();
    assert_eq!(
        (summary.pulled, summary.applied, summary.quarantined),
        (2, 0, 2),
        "{summary:?}"
    );
    assert_quarantined(&setup.a, &[&second.record_id, &third.record_id]);
    assert_eq!(
        bodies(&setup.a),
        expected_bodies(&[
            (1, "first note"),
            (2, "second note"),
            (3, "third note"),
            (4, "fourth note")
        ])
    );
}

#[test]
fn changed_version_is_quarantined() {
    let mut setup = Setup::new();
    // Row 2 one clock tick later, row 3 an hour later (a version that would
    // win every conflict), row 4 under another device id.
    let mut second = setup.record(2);
    second.clock += 1;
    let mut third = setup.record(3);
    third.clock += 3_600_000 << 16;
    let mut fourth = setup.record(4);
    fourth.device_id = vec![0x42; 16];
    for record in [&second, &third, &fourth] {
        setup.server.overwrite(&setup.a.store_id, record);
    }
    setup.a.exec("INSERT INTO notes VALUES (6, 'sixth note')");
    setup
        .a
        .exec("UPDATE notes SET body = 'first note, edited' WHERE id = 1");

    let summary = setup.a.sync();
    assert_eq!((summary.pushed, summary.accepted), (2, 2), "{summary:?}");
    assert_eq!(
        (summary.pulled, summary.applied, summary.quarantined),
        (5, 0, 3),
        "{summary:?}"
    );
    let summary = setup.b.sync();
    assert_eq!(
        (summary.pulled, summary.applied, summary.quarantined),
        (5, 2, 3),
        "{summary:?}"
    );
    for device in [&setup.a, &setup.b] {
        assert_quarantined(
            device,
            &[&second.record_id, &third.record_id, &fourth.record_id],
        );
    }
    assert_eq!(
        bodies(&setup.b),
        expected_bodies(&[(1, "first note, edited"), (6, "sixth note")])
    );
    assert_eq!(bodies(&setup.a).len(), 5, "A keeps rows 1 to 4 and 6");
}

#[test]
fn replayed_old_version_is_quarantined() {
    let mut setup = Setup::new();
    let summary = setup.b.sync();
    assert_eq!((summary.pulled, summary.applied), (4, 4), "{summary:?}");
    let old = setup.record(1);

    setup
        .a
        .exec("UPDATE notes SET body = 'first note, version 2' WHERE id = 1");
    setup.a.sync();
    let summary = setup.b.sync();
    assert_eq!((summary.pulled, summary.applied), (1, 1), "{summary:?}");
    let current = setup.record(1);
    assert!(current.clock > old.clock);

    // The server serves the old version again, under a new sequence number.
    setup.server.overwrite(&setup.a.store_id, &old);
    setup.a.exec("INSERT INTO notes VALUES (7, 'seventh note')");
    let summary = setup.a.sync();
    assert_eq!((summary.pushed, summary.accepted), (1, 1), "{summary:?}");
    assert_eq!(
        (summary.pulled, summary.applied, summary.quarantined),
        (2, 0, 1),
        "{summary:?}"
    );
    let summary = setup.b.sync();
    assert_eq!(
        (summary.pulled, summary.applied, summary.quarantined),
        (2, 1, 1),
        "{summary:?}"
    );

    for device in [&setup.a, &setup.b] {
        let reasons = assert_quarantined(device, &[&old.record_id]);
        assert!(
            reasons[0].contains("replayed"),
            "the reason should say the server replayed an old version: {reasons:?}"
        );
        assert_eq!(
            bodies(device),
            expected_bodies(&[
                (1, "first note, version 2"),
                (2, "second note"),
                (3, "third note"),
                (4, "fourth note"),
                (7, "seventh note")
            ]),
            "device {}",
            device.label
        );
    }
}
