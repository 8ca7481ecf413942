//! Who may sync: the write token guards a store, and a role with EXECUTE on
//! the sync functions alone can sync but cannot read the tables.

use postgres::error::SqlState;

use crate::common::{Device, Server, conninfo, unique_name, with_conninfo_value};

const DECLARATION: &str =
    "CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT)";

/// Asserts that `result` is a server error with `code` and a message that
/// contains `message`.
fn assert_server_error<T: std::fmt::Debug>(
    result: Result<T, postgres::Error>,
    code: &SqlState,
    message: &str,
) {
    let err = result.expect_err("the server accepted the call");
    let db_error = err
        .as_db_error()
        .unwrap_or_else(|| panic!("expected a server error, got {err}"));
    assert_eq!(db_error.code(), code, "{db_error}");
    assert!(
        db_error.message().contains(message),
        "expected {message:?} in {:?}",
        db_error.message()
    );
}

#[test]
fn wrong_write_token_is_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Device::create(dir.path(), "A");
    a.exec(DECLARATION);
    a.exec("INSERT INTO notes VALUES (1, 'one'), (2, 'two')");
    let summary = a.sync();
    assert_eq!((summary.pushed, summary.accepted), (2, 2), "{summary:?}");

    let mut server = Server::connect();
    let before = server.records(&a.store_id);
    let store_id = a.store_id.clone();
    let wrong_token = vec![0x5a_u8; 32];
    let client = &mut server.client;

    assert_server_error(
        client.query(
            "SELECT * FROM persist.pull($1, $2, 0, 100)",
            &[&store_id, &wrong_token],
        ),
        &SqlState::INSUFFICIENT_PRIVILEGE,
        "wrong write token",
    );
    assert_server_error(
        client.query_one(
            "SELECT persist.sync_next_seq($1, $2)",
            &[&store_id, &wrong_token],
        ),
        &SqlState::INSUFFICIENT_PRIVILEGE,
        "wrong write token",
    );
    // A forged record for a new record id, and one over an existing record.
    for record_id in [vec![0x11_u8; 16], before[0].record_id.clone()] {
        assert_server_error(
            client.query(
                "SELECT * FROM persist.push($1, $2, $3, $4, $5, $6)",
                &[
                    &store_id,
                    &wrong_token,
                    &vec![record_id],
                    &vec![i64::MAX],
                    &vec![vec![0x22_u8; 16]],
                    &vec![vec![0x33_u8; 64]],
                ],
            ),
            &SqlState::INSUFFICIENT_PRIVILEGE,
            "wrong write token",
        );
    }
    // A token of the wrong length is invalid before it is compared.
    assert_server_error(
        client.query(
            "SELECT * FROM persist.pull($1, $2, 0, 100)",
            &[&store_id, &vec![0x5a_u8; 31]],
        ),
        &SqlState::INVALID_PARAMETER_VALUE,
        "write token must be 32 bytes",
    );

    assert_eq!(
        server.records(&a.store_id),
        before,
        "the rejected calls changed the store"
    );
    let summary = a.sync();
    assert_eq!((summary.pushed, summary.pulled), (0, 0), "{summary:?}");
}

#[test]
fn execute_only_role_syncs_without_table_access() {
    let role = unique_name("syncer");
    let bare_role = unique_name("nobody");
    let mut server = Server::connect();
    server
        .client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             CREATE ROLE {bare_role} LOGIN;
             GRANT USAGE ON SCHEMA persist TO {role};
             GRANT EXECUTE ON FUNCTION
                 persist.push(bytea, bytea, bytea[], bigint[], bytea[], bytea[]),
                 persist.pull(bytea, bytea, bigint, integer),
                 persist.sync_next_seq(bytea, bytea),
                 persist.sync_record_seq(bytea, bytea, bytea),
                 persist.sync_server_id()
             TO {role};"
        ))
        .expect("create the roles");
    let role_conninfo = with_conninfo_value(&conninfo(), "user", &role);

    let dir = tempfile::tempdir().expect("temp dir");
    let a = Device::create(dir.path(), "A");
    let b = Device::join(dir.path(), "B", &a.export());
    for device in [&a, &b] {
        device.exec(DECLARATION);
    }
    a.exec("INSERT INTO notes VALUES (1, 'one'), (2, 'two'), (3, 'three')");
    let summary = a.sync_to(&role_conninfo);
    assert_eq!(
        (summary.pushed, summary.accepted, summary.pulled),
        (3, 3, 3),
        "{summary:?}"
    );
    let summary = b.sync_to(&role_conninfo);
    assert_eq!((summary.pulled, summary.applied), (3, 3), "{summary:?}");
    assert_eq!(b.rows("notes", "id"), a.rows("notes", "id"));
    // A second sync checks the device's cursor with sync_record_seq, so the
    // role needs that grant too.
    b.exec("INSERT INTO notes VALUES (4, 'four')");
    let summary = b.sync_to(&role_conninfo);
    assert_eq!(summary.accepted, 1, "{summary:?}");
    let summary = a.sync_to(&role_conninfo);
    assert!(!summary.server_rolled_back, "{summary:?}");
    assert_eq!(summary.applied, 1, "{summary:?}");
    assert_eq!(b.rows("notes", "id"), a.rows("notes", "id"));

    let mut as_role = Server::connect_to(&role_conninfo);
    for sql in [
        "SELECT count(*) FROM persist.sync_records",
        "SELECT count(*) FROM persist.sync_stores",
        "SELECT count(*) FROM persist.sync_server",
        "DELETE FROM persist.sync_records",
        "UPDATE persist.sync_stores SET next_seq = 1",
    ] {
        assert_server_error(
            as_role.client.query(sql, &[]),
            &SqlState::INSUFFICIENT_PRIVILEGE,
            "permission denied",
        );
    }
    assert_server_error(
        as_role.client.query(
            "SELECT persist.sync_authorize($1, $2)",
            &[&a.store_id, &vec![0_u8; 32]],
        ),
        &SqlState::INSUFFICIENT_PRIVILEGE,
        "permission denied",
    );
    assert_eq!(
        server.records(&a.store_id).len(),
        4,
        "the rejected statements changed the store"
    );

    // A role without the grants cannot sync, and the error names the cause.
    let bare_conninfo = with_conninfo_value(&conninfo(), "user", &bare_role);
    let err = a
        .try_sync(&bare_conninfo)
        .expect_err("a role without grants synced");
    assert!(err.contains("permission denied"), "{err}");
}

#[test]
fn unknown_role_error_names_role() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Device::create(dir.path(), "A");
    let role = unique_name("missing");
    let err = a
        .try_sync(&with_conninfo_value(&conninfo(), "user", &role))
        .expect_err("a role that does not exist synced");
    assert!(
        err.contains("persist_sync: cannot connect to the sync server"),
        "{err}"
    );
    assert!(
        err.contains(&role) && err.contains("does not exist"),
        "the error should pass on the server's reason, role \"{role}\" does not exist: {err}"
    );
}
