//! The sync client: `persist_sync(conninfo)`.
//!
//! One call pushes every local write the server does not have yet, then pulls
//! what is new since this device's cursor, page by page, and applies it with
//! last-write-wins by (clock value, device id), the order persist-core's
//! [`Version`] defines.
//!
//! - Push: each unpushed shadow row is opened and sealed again as a sync
//!   record (its table inside the ciphertext, its version in the associated
//!   data, its size padded) and sent in batches. A row is marked pushed once
//!   the server has answered, whether it kept the row or already had a newer
//!   version.
//! - Pull: every record is verified before it is used. One that does not open
//!   is quarantined in `persist_quarantine` with the reason, and the sync goes
//!   on. A record older than a version this device already synced means the
//!   server replayed or rolled it back; it is quarantined too. A record of a
//!   table this device has not created waits, encrypted, in `persist_inbox`
//!   until the table is created.
//! - Pairing: responses to this device's invites that wait in the server's
//!   mailbox are admitted, and the keyring message is posted for the new
//!   device ([`crate::pairing::admit_from_mailbox`]). This runs after the
//!   sync's savepoint is released, each invite in a savepoint of its own.
//! - Applied records are stored as already pushed, so they are not echoed
//!   back. All local changes of one call run in the caller's transaction:
//!   an interrupted sync leaves the database as it was, and the next call
//!   pushes and pulls again, which changes nothing twice because both sides
//!   apply the same versions idempotently.

pub mod conninfo;
pub mod mailbox;
mod tls;

use std::collections::HashMap;

use persist_core::codec::RowKind;
use persist_core::sync::{self, Version};
use persist_core::{DeviceId, Error as CoreError, Padding, RecordId, envelope};
use serde_json::json;

use crate::db::{Db, Step};
use crate::error::ExtError;
use crate::state::{Connection, Counters, OpenStore};
use crate::store::{now_seconds, with_savepoint};
use crate::vtab::shadow::{self, Shadow, Stored, clock_from_sql, clock_to_sql};
use conninfo::ConnInfo;

/// Records sent per push call.
const PUSH_BATCH: i64 = 1000;

/// Records asked for per pull call.
const PULL_PAGE: i32 = 1000;

/// What one sync did.
#[derive(Default)]
struct Summary {
    pushed: u64,
    accepted: u64,
    pulled: u64,
    applied: u64,
    conflicts: u64,
    quarantined: u64,
    released: u64,
    pending: u64,
    clock_bounded: u64,
    server_rolled_back: bool,
    cursor: i64,
    keyring_published: bool,
    keyring_updates: u64,
    full_push: bool,
    /// Counts and errors of admitting pairing responses from the mailbox.
    invites: crate::pairing::Admitted,
    /// Records whose push the server rejected because it had a newer
    /// version; pulling that version resolves a conflict.
    rejected: std::collections::HashSet<RecordId>,
}

/// Where this device's pulls from one server stopped: the sequence number
/// and the record that had it.
#[derive(Clone, Copy)]
struct Cursor {
    seq: i64,
    record_id: Option<RecordId>,
}

/// Creates the local tables sync needs, if they do not exist.
///
/// # Errors
///
/// SQLite's errors.
pub fn create_tables(db: Db) -> Result<(), ExtError> {
    db.exec(
        "CREATE TABLE IF NOT EXISTS persist_inbox(
             rid BLOB PRIMARY KEY NOT NULL,
             clock INTEGER NOT NULL,
             device BLOB NOT NULL,
             env BLOB NOT NULL);
         CREATE TABLE IF NOT EXISTS persist_quarantine(
             id INTEGER PRIMARY KEY,
             rid BLOB NOT NULL,
             clock INTEGER NOT NULL,
             device BLOB NOT NULL,
             env BLOB NOT NULL,
             kind TEXT NOT NULL,
             reason TEXT NOT NULL,
             received INTEGER NOT NULL);",
    )
}

/// Runs one sync against the server at `conninfo` and returns the JSON
/// summary.
///
/// # Errors
///
/// A usage error for a bad connection string or an unreachable server, and
/// SQLite's errors; a record that fails verification is not an error.
pub fn run(conn: &Connection, conninfo: &str) -> Result<String, ExtError> {
    let store = conn.store()?;
    let db = conn.db;
    let info = ConnInfo::parse(conninfo)?;
    let mut client = connect("persist_sync", &info)?;
    create_tables(db)?;

    let server: String =
        query_one(&mut client, "SELECT persist.sync_server_id()::text", &[])?.get(0);
    let store_id = store.cipher.store_id().as_bytes().to_vec();
    let token = store.cipher.keyring().write_token().expose().to_vec();
    let token = zeroize::Zeroizing::new(token);
    let shadows = shadow::open_all(db)?;

    let mut summary = Summary::default();
    let cursor_key = format!("sync_cursor:{server}");
    let mut cursor = read_cursor(db, &cursor_key)?;
    if !server_has_cursor(&mut client, &store_id, &token, cursor)? {
        // A server this device never synced with, or one restored from an
        // older backup, lacks records this device has: send all of them.
        // Pulling from the start again loses nothing, because applying a
        // version twice changes nothing.
        summary.server_rolled_back = cursor.seq > 0;
        summary.full_push = true;
        cursor = Cursor {
            seq: 0,
            record_id: None,
        };
    }

    // Applied records change tables behind the back of per-table caches.
    conn.bump_generation();
    with_savepoint(db, "persist_sync", || {
        if summary.full_push {
            crate::store::write_keyring_update(db, store.cipher.keyring(), true)?;
        }
        push(
            &mut client,
            &store,
            &conn.counters,
            &shadows,
            &store_id,
            &token,
            &mut summary,
        )?;
        publish_keyring(&mut client, conn, &store, &store_id, &token, &mut summary)?;
        retry_quarantine(db, &store, &conn.counters, &shadows, &mut summary)?;
        let session = Session {
            conn,
            shadows: &shadows,
        };
        pull(
            &mut client,
            &session,
            &store_id,
            &token,
            (&cursor_key, cursor),
            &mut summary,
        )?;
        if summary.keyring_updates > 0 {
            // Records sealed under keys that just arrived can open now.
            let store = conn.store()?;
            retry_quarantine(db, &store, &conn.counters, &shadows, &mut summary)?;
        }
        Ok(())
    })?;

    // Outside the sync's savepoint, so that each admitted invite is marked
    // used for good before its keyring message goes to the server. The
    // newest keyring, with any keys this sync received, goes to the new
    // devices.
    let store = conn.store()?;
    summary.invites = crate::pairing::admit_from_mailbox(&mut client, db, &store)?;

    Ok(json!({
        "pushed": summary.pushed,
        "accepted": summary.accepted,
        "pulled": summary.pulled,
        "applied": summary.applied,
        "conflicts_resolved": summary.conflicts,
        "quarantined": summary.quarantined,
        "released_from_quarantine": summary.released,
        "pending_for_missing_tables": summary.pending,
        "clock_values_bounded": summary.clock_bounded,
        "server_rolled_back": summary.server_rolled_back,
        "full_push": summary.full_push,
        "keyring_published": summary.keyring_published,
        "keyring_updates": summary.keyring_updates,
        "invites_admitted": summary.invites.admitted,
        "invites_rejected": summary.invites.rejected,
        "pairing_errors": summary.invites.errors,
        "cursor": summary.cursor,
    })
    .to_string())
}

/// Tells whether the server still has the record this device's cursor
/// names, at the cursor's sequence number or later, as a server that only
/// moves forward does. A cursor at 0 names nothing and never matches.
fn server_has_cursor(
    client: &mut postgres::Client,
    store_id: &[u8],
    token: &[u8],
    cursor: Cursor,
) -> Result<bool, ExtError> {
    let Some(record_id) = cursor.record_id else {
        return Ok(false);
    };
    let seq: Option<i64> = query_one(
        client,
        "SELECT persist.sync_record_seq($1, $2, $3)",
        &[&store_id, &token, &record_id.as_bytes().as_slice()],
    )?
    .get(0);
    Ok(seq.is_some_and(|seq| seq >= cursor.seq))
}

/// Describes a client error with its causes, which the top-level message of
/// tokio-postgres leaves out (such as the TLS error behind "error performing
/// TLS handshake", or the server's message behind "db error").
pub(crate) fn describe(err: &postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return db.message().to_owned();
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Connects to the sync server for `function`, which names the SQL
/// function in errors.
///
/// # Errors
///
/// A usage error naming `function` when the server cannot be reached.
pub(crate) fn connect(function: &str, info: &ConnInfo) -> Result<postgres::Client, ExtError> {
    let fail = |err: postgres::Error| {
        ExtError::usage(format!(
            "{function}: cannot connect to the sync server: {}",
            describe(&err)
        ))
    };
    match info.ssl_mode {
        conninfo::SslMode::Disable => info.config.connect(postgres::NoTls).map_err(fail),
        mode => {
            let mut config = info.config.clone();
            config.ssl_mode(if mode == conninfo::SslMode::Prefer {
                postgres::config::SslMode::Prefer
            } else {
                postgres::config::SslMode::Require
            });
            config.connect(tls::connector(info)?).map_err(fail)
        }
    }
}

fn server_error(what: &str, err: &postgres::Error) -> ExtError {
    ExtError::usage(format!(
        "persist_sync: {what} failed on the server: {}",
        describe(err)
    ))
}

fn query_one(
    client: &mut postgres::Client,
    sql: &str,
    params: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<postgres::Row, ExtError> {
    client.query_one(sql, params).map_err(|err| {
        if err
            .as_db_error()
            .is_some_and(|db| db.code() == &postgres::error::SqlState::UNDEFINED_FUNCTION)
        {
            ExtError::usage(
                "persist_sync: the server has no Persist sync functions; run CREATE EXTENSION \
                 persist in its database",
            )
        } else {
            server_error("a query", &err)
        }
    })
}

fn push(
    client: &mut postgres::Client,
    store: &OpenStore,
    counters: &Counters,
    shadows: &[Shadow],
    store_id: &[u8],
    token: &[u8],
    summary: &mut Summary,
) -> Result<(), ExtError> {
    let statement = client
        .prepare("SELECT record_id FROM persist.push($1, $2, $3, $4, $5, $6)")
        .map_err(|err| server_error("preparing push", &err))?;
    for shadow in shadows {
        if summary.full_push {
            // Every row, those pulled from another server included, in
            // rowid order.
            let mut after_rowid = 0i64;
            loop {
                let rows = shadow.select_rows(
                    "WHERE id > ?1 ORDER BY id LIMIT ?2",
                    &[
                        persist_core::codec::ValueRef::Integer(after_rowid),
                        persist_core::codec::ValueRef::Integer(PUSH_BATCH),
                    ],
                )?;
                let Some(last) = rows.last() else {
                    break;
                };
                after_rowid = last.rowid;
                push_rows(
                    client,
                    &statement,
                    store,
                    counters,
                    shadow,
                    &rows,
                    (store_id, token),
                    summary,
                )?;
            }
            let last_seq = shadow.next_seq()?.saturating_sub(1);
            shadow.set_pushed_seq(last_seq)?;
            continue;
        }
        let mut pushed_seq = shadow.pushed_seq()?;
        loop {
            let rows = shadow.written_after(pushed_seq, PUSH_BATCH)?;
            let Some(last) = rows.last() else {
                break;
            };
            let last_seq = last.seq;
            push_rows(
                client,
                &statement,
                store,
                counters,
                shadow,
                &rows,
                (store_id, token),
                summary,
            )?;
            // The server has every one of these writes now, or a newer
            // version of its record.
            pushed_seq = last_seq;
            shadow.set_pushed_seq(pushed_seq)?;
        }
    }
    Ok(())
}

/// Seals `rows` as sync records and sends them in one push.
#[allow(
    clippy::too_many_arguments,
    reason = "one push's state, passed down once"
)]
fn push_rows(
    client: &mut postgres::Client,
    statement: &postgres::Statement,
    store: &OpenStore,
    counters: &Counters,
    shadow: &Shadow,
    rows: &[Stored],
    (store_id, token): (&[u8], &[u8]),
    summary: &mut Summary,
) -> Result<(), ExtError> {
    let mut record_ids = Vec::with_capacity(rows.len());
    let mut clocks = Vec::with_capacity(rows.len());
    let mut devices = Vec::with_capacity(rows.len());
    let mut envelopes = Vec::with_capacity(rows.len());
    for row in rows {
        let plaintext = open_local(store, counters, shadow, row)?;
        // A tombstone's local envelope is padded to the row it
        // replaced; the sync record keeps that size.
        let at_least = shadow::payload_len(&row.envelope);
        let sealed = sync::seal_record(
            &store.cipher,
            row.rid,
            &row.version,
            shadow.logical(),
            &plaintext,
            at_least,
        )
        .map_err(|err| ExtError::core("persist_sync: sealing a sync record", err))?;
        counters.count_seal();
        record_ids.push(row.rid.as_bytes().to_vec());
        clocks.push(clock_to_sql(row.version.clock));
        devices.push(row.version.device.as_bytes().to_vec());
        envelopes.push(sealed);
    }
    let accepted = client
        .query(
            statement,
            &[
                &store_id,
                &token,
                &record_ids,
                &clocks,
                &devices,
                &envelopes,
            ],
        )
        .map_err(|err| server_error("push", &err))?;
    summary.pushed += rows.len() as u64;
    summary.accepted += accepted.len() as u64;
    let accepted: std::collections::HashSet<Vec<u8>> = accepted
        .iter()
        .map(|row| row.get::<_, Vec<u8>>(0))
        .collect();
    for row in rows {
        if !accepted.contains(row.rid.as_bytes().as_slice()) {
            summary.rejected.insert(row.rid);
        }
    }
    Ok(())
}

fn open_local(
    store: &OpenStore,
    counters: &Counters,
    shadow: &Shadow,
    stored: &Stored,
) -> Result<zeroize::Zeroizing<Vec<u8>>, ExtError> {
    // open_spans checks the decrypted row's encoding and kind, so the
    // plaintext is the row encoding the sync record carries.
    let opened = shadow.open_spans(
        store,
        counters,
        stored.rowid,
        stored.rid.as_bytes(),
        &stored.envelope,
        stored.deleted,
    )?;
    Ok(opened.plaintext)
}

/// The local side of one sync call.
struct Session<'a> {
    conn: &'a Connection,
    shadows: &'a [Shadow],
}

fn pull(
    client: &mut postgres::Client,
    session: &Session<'_>,
    store_id: &[u8],
    token: &[u8],
    (cursor_key, mut cursor): (&str, Cursor),
    summary: &mut Summary,
) -> Result<(), ExtError> {
    let Session { conn, shadows } = *session;
    let db = conn.db;
    let counters = &conn.counters;

    let by_table: HashMap<&str, &Shadow> = shadows
        .iter()
        .map(|shadow| (shadow.logical(), shadow))
        .collect();
    let statement = client
        .prepare(
            "SELECT record_id, clock, device_id, envelope, seq FROM persist.pull($1, $2, $3, $4)",
        )
        .map_err(|err| server_error("preparing pull", &err))?;
    loop {
        let rows = client
            .query(&statement, &[&store_id, &token, &cursor.seq, &PULL_PAGE])
            .map_err(|err| server_error("pull", &err))?;
        // A keyring record in the page is taken first, so that the records
        // sealed under keys it brings open at once.
        let keyring_record = conn.store()?.cipher.keyring().keyring_record_id();
        let (keyrings, records): (Vec<&postgres::Row>, Vec<&postgres::Row>) = rows
            .iter()
            .partition(|row| row.get::<_, &[u8]>(0) == keyring_record.as_bytes());
        for row in keyrings.into_iter().chain(records) {
            let record_id: Vec<u8> = row.get(0);
            let clock: i64 = row.get(1);
            let device: Vec<u8> = row.get(2);
            let envelope: Vec<u8> = row.get(3);
            let seq: i64 = row.get(4);
            let incoming = Incoming {
                record_id,
                clock,
                device,
                envelope,
            };
            // The keyring record may change the store's keys mid-page.
            let store = conn.store()?;
            // The index key behind the keyring record's id never changes.
            if incoming.record_id == keyring_record.as_bytes() {
                receive_keyring(conn, &store, &incoming, summary)?;
            } else {
                summary.pulled += 1;
                receive(db, &store, counters, &by_table, &incoming, summary)?;
            }
            if seq > cursor.seq {
                cursor = Cursor {
                    seq,
                    record_id: RecordId::from_slice(&incoming.record_id).ok(),
                };
            }
        }
        write_cursor(db, cursor_key, cursor)?;
        if rows.len() < PULL_PAGE as usize {
            break;
        }
    }
    summary.cursor = cursor.seq;
    Ok(())
}

/// A record as the server sent it.
struct Incoming {
    record_id: Vec<u8>,
    clock: i64,
    device: Vec<u8>,
    envelope: Vec<u8>,
}

/// What kind of failure put a record in quarantine.
#[derive(Clone, Copy)]
enum QuarantineKind {
    /// Sealed under a key this device does not have yet; retried each sync.
    UnknownKey,
    /// Modified, moved, malformed or replayed; kept for inspection.
    Rejected,
}

impl QuarantineKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::UnknownKey => "unknown_key",
            Self::Rejected => "rejected",
        }
    }
}

fn receive(
    db: Db,
    store: &OpenStore,
    counters: &Counters,
    by_table: &HashMap<&str, &Shadow>,
    incoming: &Incoming,
    summary: &mut Summary,
) -> Result<(), ExtError> {
    let parsed = RecordId::from_slice(&incoming.record_id).and_then(|rid| {
        DeviceId::from_slice(&incoming.device).map(|device| {
            (
                rid,
                Version {
                    clock: clock_from_sql(incoming.clock),
                    device,
                },
            )
        })
    });
    let (rid, version) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => {
            quarantine(db, incoming, QuarantineKind::Rejected, &err.to_string())?;
            summary.quarantined += 1;
            return Ok(());
        }
    };
    let record = match sync::open_record(&store.cipher, rid, &version, &incoming.envelope) {
        Ok(record) => record,
        Err(err) => {
            let kind = match err {
                CoreError::UnknownKeyId { .. } => QuarantineKind::UnknownKey,
                _ => QuarantineKind::Rejected,
            };
            quarantine(db, incoming, kind, &err.to_string())?;
            summary.quarantined += 1;
            return Ok(());
        }
    };
    counters.count_open();
    observe_clock(store, version.clock, summary);

    let Some(shadow) = by_table.get(record.table.as_str()) else {
        hold_in_inbox(db, &rid, &version, &incoming.envelope)?;
        summary.pending += 1;
        return Ok(());
    };
    match apply(store, counters, shadow, rid, version, &record)? {
        Applied::Written { replaced_unpushed } => {
            summary.applied += 1;
            let lost_push = summary.rejected.remove(&rid);
            summary.conflicts += u64::from(replaced_unpushed || lost_push);
        }
        Applied::Kept => {}
        Applied::Replayed => {
            quarantine(
                db,
                incoming,
                QuarantineKind::Rejected,
                "the server sent a version older than one this device already synced: it \
                 replayed or rolled back this record",
            )?;
            summary.quarantined += 1;
        }
    }
    Ok(())
}

/// Sends the keyring to the server when it changed since the last sync. It
/// travels as one more record that looks like any other, sealed under the
/// keyring's transport key so that a device that lacks the newest data key
/// can still open it.
fn publish_keyring(
    client: &mut postgres::Client,
    conn: &Connection,
    store: &OpenStore,
    store_id: &[u8],
    token: &[u8],
    summary: &mut Summary,
) -> Result<(), ExtError> {
    let db = conn.db;
    let mut select = db.prepare("SELECT 1 FROM persist_meta WHERE key = 'keyring_unpublished'")?;
    if select.step()? != Step::Row {
        return Ok(());
    }
    drop(select);
    let keyring = store.cipher.keyring();
    let version = store.next_version(None);
    let sealed = sync::seal_keyring_record(keyring, &version)
        .map_err(|err| ExtError::core("persist_sync: sealing the keyring", err))?;
    let record_ids = vec![keyring.keyring_record_id().as_bytes().to_vec()];
    let clocks = vec![clock_to_sql(version.clock)];
    let devices = vec![version.device.as_bytes().to_vec()];
    let envelopes = vec![sealed];
    client
        .query(
            "SELECT record_id FROM persist.push($1, $2, $3, $4, $5, $6)",
            &[
                &store_id,
                &token,
                &record_ids,
                &clocks,
                &devices,
                &envelopes,
            ],
        )
        .map_err(|err| server_error("publishing the keyring", &err))?;
    db.exec("DELETE FROM persist_meta WHERE key = 'keyring_unpublished'")?;
    summary.keyring_published = true;
    Ok(())
}

/// Merges a keyring another device published. When this device holds keys
/// the published one lacks, the merged keyring is published in turn, so
/// that every device ends with every key.
fn receive_keyring(
    conn: &Connection,
    store: &OpenStore,
    incoming: &Incoming,
    summary: &mut Summary,
) -> Result<(), ExtError> {
    let current = store.cipher.keyring();
    let opened = DeviceId::from_slice(&incoming.device).and_then(|device| {
        let version = Version {
            clock: clock_from_sql(incoming.clock),
            device,
        };
        sync::open_keyring_record(current, &version, &incoming.envelope)
    });
    let published = match opened {
        Ok(published) => published,
        Err(err) => {
            quarantine(
                conn.db,
                incoming,
                QuarantineKind::Rejected,
                &err.to_string(),
            )?;
            summary.quarantined += 1;
            return Ok(());
        }
    };
    let mut merged = current.duplicate();
    let change = merged
        .merge(&published)
        .map_err(|err| ExtError::core("persist_sync: merging a published keyring", err))?;
    let published_lacks = merged.keys().len() > published.keys().len()
        || merged.primary().id() != published.primary().id();
    if !change.added.is_empty() || change.primary_changed {
        crate::store::replace_keyring(conn, store, merged, published_lacks)?;
        summary.keyring_updates += 1;
    } else if published_lacks {
        crate::store::write_keyring_update(conn.db, current, true)?;
    }
    Ok(())
}

fn observe_clock(store: &OpenStore, clock: u64, summary: &mut Summary) {
    let mut hlc = store
        .hlc
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if hlc.observe(clock, store.now_ms()) == persist_core::clock::Observed::Bounded {
        summary.clock_bounded += 1;
    }
}

/// What applying a pulled record did.
enum Applied {
    /// The record won and was written.
    Written {
        /// Whether it replaced a local change that was not pushed yet.
        replaced_unpushed: bool,
    },
    /// The local version is the same or newer.
    Kept,
    /// The record is older than a version this device already synced.
    Replayed,
}

fn apply(
    store: &OpenStore,
    counters: &Counters,
    shadow: &Shadow,
    rid: RecordId,
    version: Version,
    record: &sync::SyncRecord,
) -> Result<Applied, ExtError> {
    let probe = shadow.probe(&rid)?;
    let local = probe.found;
    // Whether the server has had the local version: it came from the server,
    // or a push sent it.
    let synced = |local: &Stored| -> Result<bool, ExtError> {
        Ok(local.seq == 0 || local.seq <= shadow.pushed_seq()?)
    };
    if let Some(local) = &local
        && !version.wins_over(Some(&local.version))
    {
        return Ok(if version < local.version && synced(local)? {
            Applied::Replayed
        } else {
            Applied::Kept
        });
    }
    let deleted = record.row.kind == RowKind::Tombstone;
    let padding = match (&local, deleted) {
        (Some(local), true) => Padding::Bucket {
            at_least: shadow::payload_len(&local.envelope),
        },
        _ => Padding::None,
    };
    let sealed = shadow.seal(store, counters, &rid, &record.row_bytes, padding)?;
    let replaced_unpushed = match &local {
        Some(local) => !synced(local)?,
        None => false,
    };
    // Written with seq 0, which marks a row as the server has it, so it is
    // not pushed back.
    match (local, probe.free_slot) {
        (Some(local), _) => shadow.write(local.rowid, &rid, &sealed, &version, deleted, 0)?,
        (None, Some(slot)) => shadow.insert(slot, &rid, &sealed, &version, deleted, 0)?,
        (None, None) => {
            return Err(ExtError::usage(format!(
                "encrypted table {}: no free slot for a pulled record",
                shadow.name()
            )));
        }
    }
    Ok(Applied::Written { replaced_unpushed })
}

fn quarantine(
    db: Db,
    incoming: &Incoming,
    kind: QuarantineKind,
    reason: &str,
) -> Result<(), ExtError> {
    let mut insert = db.prepare(
        "INSERT INTO persist_quarantine(rid, clock, device, env, kind, reason, received)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    insert.bind_blob(1, &incoming.record_id)?;
    insert.bind_i64(2, incoming.clock)?;
    insert.bind_blob(3, &incoming.device)?;
    insert.bind_blob(4, &incoming.envelope)?;
    insert.bind_text(5, kind.as_str())?;
    insert.bind_text(6, reason)?;
    insert.bind_i64(7, i64::try_from(now_seconds()).unwrap_or(i64::MAX))?;
    insert.execute()
}

/// Keeps a record of a table this device lacks, unless a newer version of it
/// is held already.
fn hold_in_inbox(
    db: Db,
    rid: &RecordId,
    version: &Version,
    envelope: &[u8],
) -> Result<(), ExtError> {
    let mut upsert = db.prepare(
        "INSERT INTO persist_inbox(rid, clock, device, env) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(rid) DO UPDATE SET clock = excluded.clock, device = excluded.device,
                                        env = excluded.env
         WHERE (excluded.clock, excluded.device) > (persist_inbox.clock, persist_inbox.device)",
    )?;
    upsert.bind_blob(1, rid.as_bytes())?;
    upsert.bind_i64(2, clock_to_sql(version.clock))?;
    upsert.bind_blob(3, version.device.as_bytes())?;
    upsert.bind_blob(4, envelope)?;
    upsert.execute()
}

/// Applies the records held in the inbox for the table behind `shadow`,
/// which was just created.
///
/// # Errors
///
/// SQLite's errors.
pub fn apply_inbox(
    store: &OpenStore,
    counters: &Counters,
    shadow: &Shadow,
) -> Result<(), ExtError> {
    let db = shadow.db();
    create_tables(db)?;
    let mut select = db.prepare("SELECT rid, clock, device, env FROM persist_inbox")?;
    let mut held = Vec::new();
    while select.step()? == Step::Row {
        held.push(Incoming {
            record_id: select.column_blob(0),
            clock: select.column_i64(1),
            device: select.column_blob(2),
            envelope: select.column_blob(3),
        });
    }
    drop(select);
    let mut delete = db.prepare("DELETE FROM persist_inbox WHERE rid = ?1")?;
    for incoming in held {
        let (Ok(rid), Ok(device)) = (
            RecordId::from_slice(&incoming.record_id),
            DeviceId::from_slice(&incoming.device),
        ) else {
            continue;
        };
        let version = Version {
            clock: clock_from_sql(incoming.clock),
            device,
        };
        // Records in the inbox were verified when they arrived.
        let Ok(record) = sync::open_record(&store.cipher, rid, &version, &incoming.envelope) else {
            continue;
        };
        if record.table != shadow.logical() {
            continue;
        }
        apply(store, counters, shadow, rid, version, &record)?;
        delete.bind_blob(1, rid.as_bytes())?;
        delete.execute()?;
    }
    Ok(())
}

/// Tries again the quarantined records that failed for want of a key,
/// which a key import since may have supplied.
fn retry_quarantine(
    db: Db,
    store: &OpenStore,
    counters: &Counters,
    shadows: &[Shadow],
    summary: &mut Summary,
) -> Result<(), ExtError> {
    let mut select = db.prepare(
        "SELECT id, rid, clock, device, env FROM persist_quarantine WHERE kind = 'unknown_key'",
    )?;
    let mut waiting = Vec::new();
    while select.step()? == Step::Row {
        waiting.push((
            select.column_i64(0),
            Incoming {
                record_id: select.column_blob(1),
                clock: select.column_i64(2),
                device: select.column_blob(3),
                envelope: select.column_blob(4),
            },
        ));
    }
    drop(select);
    let by_table: HashMap<&str, &Shadow> = shadows
        .iter()
        .map(|shadow| (shadow.logical(), shadow))
        .collect();
    let mut delete = db.prepare("DELETE FROM persist_quarantine WHERE id = ?1")?;
    for (id, incoming) in waiting {
        let key_id = envelope::Header::parse(&incoming.envelope).map(|header| header.key_id);
        let Ok(key_id) = key_id else { continue };
        if store.cipher.keyring().get(key_id).is_none() {
            continue;
        }
        // The key has arrived: receive the record as if it were pulled now.
        delete.bind_i64(1, id)?;
        delete.execute()?;
        summary.released += 1;
        receive(db, store, counters, &by_table, &incoming, summary)?;
    }
    Ok(())
}

/// Reads a cursor stored as `<seq>:<record id in hex>`; anything else
/// reads as no cursor, which makes the next sync start over.
fn read_cursor(db: Db, key: &str) -> Result<Cursor, ExtError> {
    let mut select = db.prepare("SELECT value FROM persist_meta WHERE key = ?1")?;
    select.bind_text(1, key)?;
    let text = match select.step()? {
        Step::Row => select.column_text(0),
        Step::Done => String::new(),
    };
    let parsed = text.split_once(':').and_then(|(seq, record_id)| {
        Some(Cursor {
            seq: seq.parse().ok()?,
            record_id: Some(RecordId::from_hex(record_id).ok()?),
        })
    });
    Ok(parsed.unwrap_or(Cursor {
        seq: 0,
        record_id: None,
    }))
}

fn write_cursor(db: Db, key: &str, cursor: Cursor) -> Result<(), ExtError> {
    let Some(record_id) = cursor.record_id else {
        return Ok(());
    };
    let mut upsert = db.prepare(
        "INSERT INTO persist_meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?;
    upsert.bind_text(1, key)?;
    upsert.bind_text(2, &format!("{}:{record_id}", cursor.seq))?;
    upsert.execute()
}

/// The quarantined records as a JSON array, for `persist_quarantined()`.
///
/// # Errors
///
/// SQLite's errors.
pub fn quarantined(db: Db) -> Result<String, ExtError> {
    create_tables(db)?;
    let mut select = db.prepare(
        "SELECT id, hex(rid), clock, hex(device), length(env), kind, reason, received
         FROM persist_quarantine ORDER BY id",
    )?;
    let mut records = Vec::new();
    while select.step()? == Step::Row {
        records.push(json!({
            "id": select.column_i64(0),
            "record_id": select.column_text(1).to_lowercase(),
            "clock": select.column_i64(2),
            "device_id": select.column_text(3).to_lowercase(),
            "envelope_size": select.column_i64(4),
            "kind": select.column_text(5),
            "reason": select.column_text(6),
            "received": select.column_i64(7),
        }));
    }
    Ok(serde_json::Value::Array(records).to_string())
}
