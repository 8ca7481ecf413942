//! Pairing a new device through the sync server's mailbox: the online flow
//! ends with both devices syncing one table, and a server that modifies the
//! mailbox, an expired invite or a reused one makes pairing fail with a
//! clear error.

use std::path::Path;

use rusqlite::Connection;
use serde_json::{Value as Json, json};

use crate::common::{
    Device, STORE, Server, conninfo, hex, open_sqlite, private_database, unique_name,
    with_conninfo_value,
};

const DECLARATION: &str =
    "CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT)";

/// A database without a store that is being paired: `dir/LABEL.db`, with
/// its device key in `dir/LABEL.key`, as [`Device`] keeps it.
struct Joiner {
    label: String,
    conn: Connection,
    options: Json,
}

impl Joiner {
    fn new(dir: &Path, label: &str) -> Self {
        Self::with_server(dir, label, &conninfo())
    }

    /// A joiner that uses the sync server at `server`.
    fn with_server(dir: &Path, label: &str, server: &str) -> Self {
        let keyfile = dir.join(format!("{label}.key"));
        Self {
            label: label.to_owned(),
            conn: open_sqlite(&dir.join(format!("{label}.db"))),
            options: json!({
                "keyfile": keyfile.to_str().expect("UTF-8 temp path"),
                "server": server,
            }),
        }
    }

    /// Accepts `invite` and posts the response to the mailbox.
    fn accept(&self, invite: &str) -> Result<String, String> {
        self.conn
            .query_row(
                "SELECT persist_accept(?1, ?2, ?3)",
                (STORE, invite, self.options.to_string()),
                |row| row.get(0),
            )
            .map_err(|err| err.to_string())
    }

    /// Picks up the keyring message from the mailbox and creates the store.
    fn join(&self) -> Result<Json, String> {
        let report: String = self
            .conn
            .query_row(
                "SELECT persist_join(?1, NULL, ?2)",
                (STORE, self.options.to_string()),
                |row| row.get(0),
            )
            .map_err(|err| err.to_string())?;
        Ok(serde_json::from_str(&report).expect("persist_join returns JSON"))
    }

    /// Returns the id of the invite this database accepted.
    fn invite_id(&self) -> Vec<u8> {
        self.conn
            .query_row("SELECT invite_id FROM persist_pairing", [], |row| {
                row.get(0)
            })
            .expect("one accepted invite")
    }

    /// Closes the database and opens it as a device of the joined store.
    fn into_device(self, dir: &Path) -> Device {
        drop(self.conn);
        Device::open_with(dir, &self.label, json!({}))
    }
}

fn invite(device: &Device, options: &str) -> String {
    device
        .conn
        .query_row("SELECT persist_invite(?1)", [options], |row| row.get(0))
        .expect("persist_invite")
}

/// Runs `persist_sync` and returns its whole JSON summary, pairing fields
/// included.
fn sync_json(device: &Device) -> Json {
    let text: String = device
        .conn
        .query_row("SELECT persist_sync(?1)", [conninfo()], |row| row.get(0))
        .expect("persist_sync");
    serde_json::from_str(&text).expect("persist_sync returns JSON")
}

/// The condition for mailbox rows whose response names `$1` as its invite
/// id (bytes 2 to 17, counting from 1). The table is keyed by the mailbox
/// id, which these tests do not derive.
const BY_INVITE_ID: &str = "substring(response FROM 2 FOR 16) = $1";

fn mailbox_rows(server: &mut Server, invite_id: &[u8]) -> i64 {
    server
        .client
        .query_one(
            &format!("SELECT count(*) FROM persist.pairing_mailbox WHERE {BY_INVITE_ID}"),
            &[&invite_id],
        )
        .expect("count mailbox rows")
        .get(0)
}

#[test]
fn online_pairing_then_both_devices_converge() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Device::create(dir.path(), "A");
    a.exec(DECLARATION);
    a.exec("INSERT INTO notes VALUES (1, 'written on A before pairing')");
    a.sync();

    let code = invite(&a, r#"{"lifetime": 600}"#);
    assert!(code.starts_with("PERSIST-INVITE-1"), "{code}");
    let joiner = Joiner::new(dir.path(), "B");
    let response = joiner.accept(&code).expect("persist_accept");
    assert!(response.starts_with("PERSIST-RESPONSE-1"), "{response}");
    let invite_id = joiner.invite_id();

    // The mailbox contains the response and nothing that names the store.
    let mut server = Server::connect();
    assert_eq!(mailbox_rows(&mut server, &invite_id), 1);
    let stored: Vec<u8> = server
        .client
        .query_one(
            &format!("SELECT response FROM persist.pairing_mailbox WHERE {BY_INVITE_ID}"),
            &[&invite_id],
        )
        .expect("mailbox row")
        .get(0);
    assert_eq!(stored.len(), 81);
    assert!(
        !hex(&stored).contains(&hex(&a.store_id)),
        "the response names the store"
    );

    // Before A admits the response, B gets an error that says to wait.
    let err = joiner.join().expect_err("joined before A admitted");
    assert!(err.contains("has not admitted invite"), "{err}");

    // A sync inside a transaction leaves the mailbox alone, because a
    // rollback would make the used invite usable again.
    a.exec("BEGIN");
    let summary = sync_json(&a);
    a.exec("ROLLBACK");
    assert_eq!(summary["invites_admitted"], 0, "{summary}");
    let error = summary["pairing_errors"][0].as_str().unwrap_or_default();
    assert!(error.contains("inside a transaction"), "{summary}");

    let summary = sync_json(&a);
    assert_eq!(summary["invites_admitted"], 1, "{summary}");
    assert_eq!(summary["invites_rejected"], 0, "{summary}");
    assert_eq!(summary["pairing_errors"], json!([]), "{summary}");
    let message: Vec<u8> = server
        .client
        .query_one(
            &format!("SELECT message FROM persist.pairing_mailbox WHERE {BY_INVITE_ID}"),
            &[&invite_id],
        )
        .expect("mailbox row")
        .get(0);
    assert!(
        !hex(&message).contains(&hex(&a.store_id)),
        "the keyring message names the store"
    );

    let report = joiner.join().expect("persist_join");
    assert_eq!(report["created"], true, "{report}");
    assert_eq!(report["store_id"], hex(&a.store_id), "{report}");
    // Creating the store deletes the mailbox.
    assert_eq!(mailbox_rows(&mut server, &invite_id), 0);

    let b = joiner.into_device(dir.path());
    assert_eq!(b.store_id, a.store_id);
    b.exec(DECLARATION);
    let pulled = b.sync();
    assert_eq!(pulled.applied, 1, "{pulled:?}");
    b.exec("INSERT INTO notes VALUES (2, 'written on B')");
    b.exec("UPDATE notes SET body = 'edited on B' WHERE id = 1");
    a.exec("INSERT INTO notes VALUES (3, 'written on A after pairing')");
    b.sync();
    a.sync();
    b.sync();
    let rows = a.rows("notes", "id");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows, b.rows("notes", "id"));

    // A later sync of A reports no invite.
    let summary = sync_json(&a);
    assert_eq!(summary["invites_admitted"], 0, "{summary}");
}

#[test]
fn server_that_swaps_the_public_key_is_rejected() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Device::create(dir.path(), "A");
    let code = invite(&a, "{}");
    let joiner = Joiner::new(dir.path(), "B");
    let response = joiner.accept(&code).expect("persist_accept");
    let invite_id = joiner.invite_id();

    // The server puts a public key of its own in place of B's (bytes 18 to
    // 49, counting from 1, after the version and the invite id).
    let mut server = Server::connect();
    server
        .client
        .execute(
            &format!(
                "UPDATE persist.pairing_mailbox
                 SET response = overlay(response PLACING sha256('attacker key') FROM 18 FOR 32)
                 WHERE {BY_INVITE_ID}"
            ),
            &[&invite_id],
        )
        .expect("tamper with the mailbox");

    let summary = sync_json(&a);
    assert_eq!(summary["invites_admitted"], 0, "{summary}");
    assert_eq!(summary["invites_rejected"], 1, "{summary}");
    let error = summary["pairing_errors"][0].as_str().unwrap_or_default();
    assert!(error.contains("failed verification"), "{summary}");
    assert!(error.contains(&hex(&invite_id)), "{summary}");
    // The mailbox is emptied and B learns that pairing failed.
    assert_eq!(mailbox_rows(&mut server, &invite_id), 0);
    let err = joiner.join().expect_err("joined after tampering");
    assert!(err.contains("the mailbox holds nothing"), "{err}");
    assert!(err.contains("rejected"), "{err}");

    // The invite is used up: the genuine response no longer works either.
    let err = a
        .conn
        .query_row("SELECT persist_admit(?1)", [&response], |row| {
            row.get::<_, String>(0)
        })
        .expect_err("the invite was admitted twice");
    assert!(err.to_string().contains("already used"), "{err}");
}

#[test]
fn server_that_modifies_the_message_fails_join() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Device::create(dir.path(), "A");
    let code = invite(&a, "{}");
    let joiner = Joiner::new(dir.path(), "B");
    joiner.accept(&code).expect("persist_accept");
    let invite_id = joiner.invite_id();
    let summary = sync_json(&a);
    assert_eq!(summary["invites_admitted"], 1, "{summary}");

    // One bit of the ciphertext, after the 29-byte header.
    let mut server = Server::connect();
    server
        .client
        .execute(
            &format!(
                "UPDATE persist.pairing_mailbox
                 SET message = set_bit(message, 40 * 8, 1 - get_bit(message, 40 * 8))
                 WHERE {BY_INVITE_ID}"
            ),
            &[&invite_id],
        )
        .expect("tamper with the mailbox");

    let err = joiner.join().expect_err("joined with a modified message");
    assert!(
        err.contains("authentication failed for pairing message"),
        "{err}"
    );
    let stores: i64 = joiner
        .conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE name = 'persist_meta'",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(stores, 0, "a store was created from a modified message");

    // The failed join left the message in the mailbox, so once the bit is
    // restored the join succeeds and deletes the mailbox.
    assert_eq!(mailbox_rows(&mut server, &invite_id), 1);
    server
        .client
        .execute(
            &format!(
                "UPDATE persist.pairing_mailbox
                 SET message = set_bit(message, 40 * 8, 1 - get_bit(message, 40 * 8))
                 WHERE {BY_INVITE_ID}"
            ),
            &[&invite_id],
        )
        .expect("restore the mailbox");
    let report = joiner.join().expect("persist_join after the retry");
    assert_eq!(report["created"], true, "{report}");
    assert!(report.get("mailbox_error").is_none(), "{report}");
    assert_eq!(mailbox_rows(&mut server, &invite_id), 0);
}

#[test]
fn reused_invite_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Device::create(dir.path(), "A");
    let code = invite(&a, "{}");
    let b = Joiner::new(dir.path(), "B");
    b.accept(&code).expect("persist_accept on B");

    // While B's response waits, the server refuses a second one.
    let c = Joiner::new(dir.path(), "C");
    let err = c.accept(&code).expect_err("a second response was posted");
    assert!(
        err.contains("already holds a response to this invite"),
        "{err}"
    );

    assert_eq!(sync_json(&a)["invites_admitted"], 1);
    b.join().expect("persist_join on B");

    // Once B has created its store the mailbox is empty. A has used
    // the invite up and no longer reads its mailbox, so a late response
    // waits there unanswered until the invite expires.
    let d = Joiner::new(dir.path(), "D");
    let late = d.accept(&code).expect("persist_accept on D");
    let summary = sync_json(&a);
    assert_eq!(summary["invites_admitted"], 0, "{summary}");
    assert_eq!(summary["invites_rejected"], 0, "{summary}");
    let err = d.join().expect_err("joined with a used invite");
    assert!(err.contains("has not admitted invite"), "{err}");

    // Given by hand, the late response gets a clear error.
    let err = a
        .conn
        .query_row("SELECT persist_admit(?1)", [&late], |row| {
            row.get::<_, String>(0)
        })
        .expect_err("the invite was admitted twice");
    assert!(err.to_string().contains("already used"), "{err}");
}

/// Runs `sql` with the invite id as `$1`, as a third party would that
/// learned the invite id (from a response or an error message) but not the
/// one-time secret.
fn call_with_invite_id(server: &mut Server, sql: &str, invite_id: &[u8]) -> Vec<postgres::Row> {
    server
        .client
        .query(sql, &[&invite_id])
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
}

#[test]
fn invite_id_alone_opens_no_mailbox() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Device::create(dir.path(), "A");
    a.exec(DECLARATION);
    a.exec("INSERT INTO notes VALUES (1, 'written on A')");
    a.sync();
    let code = invite(&a, "{}");
    let joiner = Joiner::new(dir.path(), "B");
    joiner.accept(&code).expect("persist_accept");
    let invite_id = joiner.invite_id();
    let mut server = Server::connect();
    let genuine: Vec<u8> = server
        .client
        .query_one(
            &format!("SELECT response FROM persist.pairing_mailbox WHERE {BY_INVITE_ID}"),
            &[&invite_id],
        )
        .expect("mailbox row")
        .get(0);

    // Read: nothing under the invite id.
    let rows = call_with_invite_id(
        &mut server,
        "SELECT persist.pairing_get_response($1)",
        &invite_id,
    );
    assert_eq!(rows[0].get::<_, Option<Vec<u8>>>(0), None);

    // Replace: a fake message under the invite id fails, and a fake
    // response lands in a mailbox of its own. B's response stays as it was.
    let err = server
        .client
        .execute(
            "SELECT persist.pairing_post_message($1, $2)",
            &[&invite_id, &vec![1_u8; 100]],
        )
        .expect_err("a message was posted under the invite id");
    assert!(
        err.as_db_error()
            .is_some_and(|db| db.message().contains("holds no response waiting")),
        "{err}"
    );
    let mut fake = genuine.clone();
    fake[20] ^= 0x01;
    server
        .client
        .execute(
            "SELECT persist.pairing_post_response($1, $2, $3)",
            &[&invite_id, &fake, &4_102_444_800_i64],
        )
        .expect("a post under the invite id makes a mailbox of its own");

    // Take and discard reach only the fake mailbox: B's mailbox stays.
    let rows = call_with_invite_id(
        &mut server,
        "SELECT state FROM persist.pairing_get_message($1)",
        &invite_id,
    );
    assert_eq!(rows[0].get::<_, String>(0), "waiting", "the fake mailbox");
    call_with_invite_id(
        &mut server,
        "SELECT persist.pairing_discard($1)",
        &invite_id,
    );
    let kept: i64 = server
        .client
        .query_one(
            "SELECT count(*) FROM persist.pairing_mailbox WHERE response = $1",
            &[&genuine],
        )
        .expect("count")
        .get(0);
    assert_eq!(kept, 1, "B's response was removed");

    // A admits B's response, and the message under the invite id cannot be
    // taken either.
    let summary = sync_json(&a);
    assert_eq!(summary["invites_admitted"], 1, "{summary}");
    assert_eq!(summary["pairing_errors"], json!([]), "{summary}");
    let rows = call_with_invite_id(
        &mut server,
        "SELECT state, message FROM persist.pairing_get_message($1)",
        &invite_id,
    );
    assert_eq!(rows[0].get::<_, String>(0), "missing");
    assert_eq!(rows[0].get::<_, Option<Vec<u8>>>(1), None);

    let report = joiner.join().expect("persist_join");
    assert_eq!(report["created"], true, "{report}");
    let b = joiner.into_device(dir.path());
    b.exec(DECLARATION);
    assert_eq!(b.sync().applied, 1);
}

#[test]
fn expired_invite_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = Device::create(dir.path(), "A");
    let code = invite(&a, r#"{"lifetime": 60}"#);
    let b = Joiner::new(dir.path(), "B");
    b.accept(&code).expect("persist_accept");

    // The invite's time passes on both devices. A's sync wipes the
    // invite's secret and leaves the response unanswered, and B refuses to
    // wait for it.
    a.exec("UPDATE persist_pairing SET expires = unixepoch() - 1");
    b.conn
        .execute("UPDATE persist_pairing SET expires = unixepoch() - 1", [])
        .expect("expire the invite on B");
    let summary = sync_json(&a);
    assert_eq!(summary["invites_admitted"], 0, "{summary}");
    assert_eq!(summary["invites_rejected"], 0, "{summary}");
    assert_eq!(summary["pairing_errors"], json!([]), "{summary}");
    let sealed: i64 = a
        .conn
        .query_row(
            "SELECT count(*) FROM persist_pairing WHERE sealed IS NOT NULL",
            [],
            |row| row.get(0),
        )
        .expect("count sealed invites");
    assert_eq!(sealed, 0, "the expired invite's secret is kept");
    let err = b.join().expect_err("joined with an expired invite");
    assert!(err.contains("expired at"), "{err}");

    // The server keeps no response past the invite's expiry.
    let mut server = Server::connect();
    let err = server
        .client
        .execute(
            "SELECT persist.pairing_post_response($1, $2, $3)",
            &[&vec![0x42_u8; 16], &vec![1_u8; 81], &1_i64],
        )
        .expect_err("the server took a response to an expired invite");
    let message = err.as_db_error().map(|db| db.message().to_owned());
    assert!(
        message
            .as_deref()
            .is_some_and(|text| text.contains("the invite expired")),
        "{err}"
    );
}

#[test]
fn mailbox_functions_check_their_arguments() {
    let mut server = Server::connect();
    for (sql, expected) in [
        (
            "SELECT persist.pairing_get_response('\\x00'::bytea)",
            "mailbox id must be 16 bytes, got 1",
        ),
        (
            "SELECT persist.pairing_post_response(NULL, '\\x00'::bytea, 0)",
            "mailbox id must be 16 bytes, got NULL",
        ),
        (
            "SELECT persist.pairing_post_response('\\x00000000000000000000000000000000'::bytea, \
             '\\x00'::bytea, 4102444800)",
            "a response must be 81 bytes, got 1",
        ),
        (
            "SELECT persist.pairing_post_message('\\x00000000000000000000000000000000'::bytea, \
             '\\x00'::bytea)",
            "a keyring message must be 45 to 65536 bytes, got 1",
        ),
    ] {
        let err = server
            .client
            .execute(sql, &[])
            .expect_err("the server accepted bad arguments");
        let message = err.as_db_error().map(|db| db.message().to_owned());
        assert!(
            message
                .as_deref()
                .is_some_and(|text| text.contains(expected)),
            "{sql}: {err}"
        );
    }
    let state: String = server
        .client
        .query_one(
            "SELECT state FROM persist.pairing_get_message('\\x0123456789abcdef0123456789abcdef'::bytea)",
            &[],
        )
        .expect("take from an empty mailbox")
        .get(0);
    assert_eq!(state, "missing");
}

#[test]
fn invalid_mailbox_result_is_an_error() {
    // A server whose pairing_get_message returns a NULL state, which the
    // real function never does.
    let server = private_database("pairing_null_state");
    Server::connect_to(&server)
        .client
        .batch_execute(
            "CREATE OR REPLACE FUNCTION persist.pairing_get_message(p_mailbox_id bytea)
             RETURNS TABLE (state text, message bytea)
             LANGUAGE sql AS $$ SELECT NULL::text, NULL::bytea $$",
        )
        .expect("replace pairing_get_message");

    let dir = tempfile::tempdir().expect("temp dir");
    let a = Device::create(dir.path(), "A");
    let code = invite(&a, "{}");
    let joiner = Joiner::with_server(dir.path(), "B", &server);
    joiner.accept(&code).expect("persist_accept");
    let err = joiner
        .join()
        .expect_err("joined with an invalid mailbox result");
    assert!(
        err.contains("persist.pairing_get_message on the sync server returned an invalid column 0"),
        "{err}"
    );
}

#[test]
fn role_without_mailbox_grants_still_syncs() {
    // A role that may sync records but not use the pairing mailbox.
    let role = unique_name("no_mailbox");
    Server::connect()
        .client
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN;
             GRANT USAGE ON SCHEMA persist TO {role};
             GRANT EXECUTE ON FUNCTION
                 persist.push(bytea, bytea, bytea[], bigint[], bytea[], bytea[]),
                 persist.pull(bytea, bytea, bigint, integer),
                 persist.sync_next_seq(bytea, bytea),
                 persist.sync_record_seq(bytea, bytea, bytea),
                 persist.sync_server_id()
             TO {role};"
        ))
        .expect("create the role");
    let role_conninfo = with_conninfo_value(&conninfo(), "user", &role);

    let dir = tempfile::tempdir().expect("temp dir");
    let a = Device::create(dir.path(), "A");
    a.exec(DECLARATION);
    a.exec("INSERT INTO notes VALUES (1, 'one')");
    let code = invite(&a, "{}");
    let joiner = Joiner::new(dir.path(), "B");
    joiner.accept(&code).expect("persist_accept");

    let text: String = a
        .conn
        .query_row("SELECT persist_sync(?1)", [&role_conninfo], |row| {
            row.get(0)
        })
        .expect("persist_sync as a role without the mailbox grants");
    let summary: Json = serde_json::from_str(&text).expect("persist_sync returns JSON");
    assert_eq!(summary["pushed"], 1, "{summary}");
    assert_eq!(summary["invites_admitted"], 0, "{summary}");
    let error = summary["pairing_errors"][0].as_str().unwrap_or_default();
    assert!(
        error.contains("lacks EXECUTE on persist.pairing_get_response(bytea)"),
        "{summary}"
    );

    // The invite is still pending, and a sync with the grants admits it.
    let summary = sync_json(&a);
    assert_eq!(summary["invites_admitted"], 1, "{summary}");
    joiner.join().expect("persist_join");
}
