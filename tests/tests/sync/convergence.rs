//! Two and three devices that write while offline and sync in every order
//! converge to the same tables.

use crate::model::{Op, Scenario, Step};

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

/// Writes the first rows on A and syncs them to every device.
fn seed(scenario: &mut Scenario, keys: std::ops::RangeInclusive<i64>) {
    for key in keys {
        scenario.write(A, Op::Insert(key));
    }
    for device in 0..scenario.devices.len() {
        scenario.sync(device);
    }
}

/// Returns offline writes on A and B, in time order. Each device inserts,
/// updates and deletes its own rows. Both edit some rows concurrently: update
/// against update, delete against a later update, update against a later
/// delete, insert against insert of a new key, and a key change against an
/// update of the old key.
fn two_device_edits() -> Vec<Step> {
    use Op::*;
    use Step::Write;
    vec![
        Write(A, Update(1)),
        Write(A, Delete(2)),
        Write(A, Insert(7)),
        Write(A, Update(3)),
        Write(A, UpdateKey { from: 4, to: 8 }),
        Write(A, Update(5)),
        Write(B, Update(3)),
        Write(B, Update(2)),
        Write(B, Delete(5)),
        Write(B, Insert(9)),
        Write(B, Update(6)),
        Write(B, Insert(7)),
        Write(B, Update(4)),
        Write(A, Update(6)),
        Write(A, Delete(9)),
    ]
}

fn two_devices_in_order(order: [usize; 2]) {
    let mut scenario = Scenario::new(2);
    seed(&mut scenario, 1..=6);
    scenario.run(&two_device_edits());
    scenario.sync(order[0]);
    scenario.sync(order[1]);
    scenario.sync(order[0]);
    scenario.assert_converged();
    // A further round moves nothing.
    for device in [A, B] {
        let summary = scenario.sync(device);
        assert_eq!((summary.pushed, summary.pulled), (0, 0), "{summary:?}");
    }
}

#[test]
fn two_devices_a_syncs_first() {
    two_devices_in_order([A, B]);
}

#[test]
fn two_devices_b_syncs_first() {
    two_devices_in_order([B, A]);
}

/// Returns offline writes on three devices, with rows 1 and 2 edited by all
/// three.
fn three_device_edits() -> Vec<Step> {
    use Op::*;
    use Step::Write;
    vec![
        Write(A, Update(1)),
        Write(B, Update(1)),
        Write(C, Update(1)),
        Write(C, Update(2)),
        Write(A, Delete(2)),
        Write(B, Update(2)),
        Write(A, Insert(10)),
        Write(B, Insert(10)),
        Write(C, Delete(3)),
        Write(B, Update(3)),
        Write(A, UpdateKey { from: 4, to: 11 }),
        Write(C, Update(4)),
        Write(B, Delete(5)),
        Write(C, Insert(12)),
        Write(A, Update(6)),
        Write(C, Delete(6)),
        Write(B, Insert(13)),
        Write(A, Update(5)),
    ]
}

#[test]
fn three_devices_every_sync_order() {
    let orders = [
        [A, B, C],
        [A, C, B],
        [B, A, C],
        [B, C, A],
        [C, A, B],
        [C, B, A],
    ];
    for order in orders {
        let mut scenario = Scenario::new(3);
        seed(&mut scenario, 1..=6);
        scenario.run(&three_device_edits());
        for device in order {
            scenario.sync(device);
        }
        // The final round: the last device of the order has every change,
        // the others get the changes of those after them.
        scenario.finish(1);
    }
}

/// A concurrent edit that loses: A's offline update of row 1 is older than
/// B's, which reached the server first, so A's sync replaces A's change with
/// B's. The summary field conflicts_resolved must count that.
#[test]
fn lost_concurrent_edit_is_counted() {
    let mut scenario = Scenario::new(2);
    seed(&mut scenario, 1..=2);
    scenario.write(A, Op::Update(1));
    scenario.write(B, Op::Update(1));
    let b = scenario.sync(B);
    assert_eq!((b.pushed, b.accepted), (1, 1));
    let a = scenario.sync(A);
    assert_eq!((a.pushed, a.accepted, a.applied), (1, 0, 1));
    assert_eq!(
        a.conflicts_resolved, 1,
        "A's own unsynced edit of row 1 lost to B's newer edit: {a:?}"
    );
    scenario.assert_converged();
}

/// Checks that A's write after a pull replaced A's latest write reaches the
/// server, in the same connection or, with `reopen`, in a new one.
fn write_after_overwritten_write(reopen: bool) {
    let mut scenario = Scenario::new(2);
    seed(&mut scenario, 1..=1);
    scenario.write(B, Op::Update(1));
    scenario.sync(B);
    scenario.sync(A);
    if reopen {
        scenario.reopen(A);
    }
    scenario.write(A, Op::Insert(2));
    let summary = scenario.sync(A);
    assert_eq!((summary.pushed, summary.accepted), (1, 1), "{summary:?}");
    scenario.finish(1);
}

#[test]
fn write_after_pulled_overwrite_is_pushed() {
    write_after_overwritten_write(false);
}

#[test]
fn write_after_pull_and_reopen_is_pushed() {
    write_after_overwritten_write(true);
}
