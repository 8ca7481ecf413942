//! Random writes and syncs on three devices always converge.

use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::model::{Op, Scenario, Step};

/// Keys come from a small space so that devices collide on the same rows.
const KEYS: i64 = 5;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..KEYS).prop_map(Op::Insert),
        3 => (0..KEYS).prop_map(Op::Update),
        2 => (0..KEYS).prop_map(Op::Delete),
        1 => (0..KEYS, 1..KEYS).prop_map(|(from, shift)| Op::UpdateKey {
            from,
            to: (from + shift) % KEYS,
        }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..3usize, op()).prop_map(|(device, op)| Step::Write(device, op)),
        1 => (0..3usize).prop_map(Step::Sync),
        // An app restart: state kept only in the connection is gone.
        1 => (0..3usize).prop_map(Step::Reopen),
    ]
}

/// Returns the cases per run: PERSIST_SYNC_PROPTEST_CASES, or 48, which took
/// about 40 s on a 2-core machine.
fn cases() -> u32 {
    std::env::var("PERSIST_SYNC_PROPTEST_CASES")
        .ok()
        .map(|text| {
            text.parse()
                .expect("PERSIST_SYNC_PROPTEST_CASES must be a number")
        })
        .unwrap_or(48)
}

proptest! {
    #![proptest_config(Config {
        cases: cases(),
        max_shrink_time: 120_000,
        failure_persistence: None,
        ..Config::default()
    })]

    /// Every sync matches the model, and after each device syncs twice, in
    /// turn, all three hold the same rows and versions as the server.
    #[test]
    fn random_writes_and_syncs_converge(steps in proptest::collection::vec(step(), 1..40)) {
        let mut scenario = Scenario::new(3);
        scenario.run(&steps);
        scenario.finish(2);
    }
}
