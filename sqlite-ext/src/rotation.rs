//! Key rotation: a new primary data key, re-encryption of old rows in short
//! batches, and retirement of keys nothing uses any more.
//!
//! `persist_rotate()` makes a new data key primary at once: new writes use
//! it, and rows under older keys still open because the keyring keeps them.
//! `persist_reencrypt([batch])` seals up to `batch` old rows again under the
//! primary key in one short statement, so readers and writers wait for one
//! batch at most; calling it until `remaining` is 0 finishes the job, and
//! stopping in between loses nothing. A re-encrypted row counts as a local
//! write, so the next sync pushes it. `persist_retire(key_id)` removes a key
//! once no row, held record or quarantined record uses it.

use std::collections::BTreeMap;

use persist_core::Padding;
use persist_core::codec;
use serde_json::json;

use crate::db::Db;
use crate::error::{CoreContext, ExtError};
use crate::state::Connection;
use crate::store::{now_seconds, replace_keyring, with_savepoint};
use crate::vtab::shadow::{self, Shadow};

/// Default number of rows `persist_reencrypt` seals again per call.
pub const DEFAULT_BATCH: i64 = 1000;

/// Most rows one `persist_reencrypt` call may seal again.
pub const MAX_BATCH: i64 = 100_000;

/// Makes a new data key primary; returns the JSON report.
///
/// # Errors
///
/// A usage error inside an open transaction, core and SQLite errors.
pub fn rotate(conn: &Connection) -> Result<String, ExtError> {
    let store = conn.store()?;
    refuse_in_transaction(conn.db, "persist_rotate")?;
    let previous = store.cipher.keyring().primary().id();
    let mut keyring = store.cipher.keyring().duplicate();
    let key_id = keyring
        .rotate(now_seconds())
        .context_with(|| "persist_rotate".into())?;
    with_savepoint(conn.db, "persist_rotate", || {
        replace_keyring(conn, &store, keyring, true).map(|_| ())
    })?;
    let remaining = count_other_keys(conn.db, key_id)?;
    Ok(json!({
        "key_id": key_id,
        "previous_key_id": previous,
        "rows_to_reencrypt": remaining,
    })
    .to_string())
}

/// Seals up to `batch` rows under older keys again with the primary key;
/// returns the JSON report with the rows done and remaining.
///
/// # Errors
///
/// A usage error for a batch size outside 1 to [`MAX_BATCH`], core and
/// SQLite errors.
pub fn reencrypt(conn: &Connection, batch: i64) -> Result<String, ExtError> {
    if !(1..=MAX_BATCH).contains(&batch) {
        return Err(ExtError::usage(format!(
            "persist_reencrypt: argument 1 (batch size) is {batch}, expected 1 to {MAX_BATCH}"
        )));
    }
    let store = conn.store()?;
    let primary = store.cipher.keyring().primary().id();
    let shadows = shadow::open_all(conn.db)?;
    let mut done = 0i64;
    with_savepoint(conn.db, "persist_reencrypt", || {
        for shadow in &shadows {
            if done >= batch {
                break;
            }
            for stored in shadow.under_other_keys(primary, batch - done)? {
                let row = shadow.open_row(
                    &store,
                    &conn.counters,
                    stored.rowid,
                    stored.rid.as_bytes(),
                    &stored.envelope,
                    stored.deleted,
                )?;
                let bytes = codec::encode_row(
                    row.kind,
                    row.columns
                        .iter()
                        .map(|(name, value)| (name.as_str(), value.as_ref())),
                )
                .context_with(|| "persist_reencrypt: encoding a row".into())?;
                let padding = if stored.deleted {
                    Padding::Bucket {
                        at_least: shadow::payload_len(&stored.envelope),
                    }
                } else {
                    Padding::None
                };
                let sealed = shadow.seal(&store, &conn.counters, &stored.rid, &bytes, padding)?;
                let version = store.next_version(Some(&stored.version));
                let seq = shadow.next_seq()?;
                shadow.write(
                    stored.rowid,
                    &stored.rid,
                    &sealed,
                    &version,
                    stored.deleted,
                    seq,
                )?;
                done += 1;
            }
        }
        Ok(())
    })?;
    if done > 0 {
        conn.bump_generation();
    }
    let remaining = count_other_keys(conn.db, primary)?;
    Ok(json!({
        "primary_key_id": primary,
        "reencrypted": done,
        "remaining": remaining,
    })
    .to_string())
}

/// Removes key `key_id` from the keyring once nothing uses it.
///
/// # Errors
///
/// A usage error for the primary key, a key still in use or an open
/// transaction; core and SQLite errors.
pub fn retire(conn: &Connection, key_id: u32) -> Result<String, ExtError> {
    let store = conn.store()?;
    refuse_in_transaction(conn.db, "persist_retire")?;
    let mut keyring = store.cipher.keyring().duplicate();
    keyring
        .retire(key_id)
        .context_with(|| format!("persist_retire: argument 1 (key id) {key_id}"))?;
    let usage = key_usage(conn.db, &[key_id])?;
    let in_use = usage.get(&key_id).copied().unwrap_or(0);
    if in_use > 0 {
        return Err(ExtError::usage(format!(
            "persist_retire: key {key_id} still seals {in_use} {}; run persist_reencrypt() \
             until it reports 0 remaining, then retire the key",
            if in_use == 1 {
                "row or record"
            } else {
                "rows or records"
            }
        )));
    }
    with_savepoint(conn.db, "persist_retire", || {
        replace_keyring(conn, &store, keyring, true).map(|_| ())
    })?;
    Ok(json!({"retired_key_id": key_id}).to_string())
}

/// How many rows and held or quarantined records each key of `key_ids`
/// seals. Each key is counted by its own scan, which streams; a GROUP BY
/// would sort every row in memory first.
///
/// # Errors
///
/// SQLite's errors.
pub fn key_usage(db: Db, key_ids: &[u32]) -> Result<BTreeMap<u32, i64>, ExtError> {
    let mut usage = BTreeMap::new();
    let mut tables: Vec<String> = shadow::table_names(db)?
        .iter()
        .map(|name| crate::db::quote_identifier(&format!("{name}_rows")))
        .collect();
    tables.push("persist_inbox".into());
    tables.push("persist_quarantine".into());
    for table in tables {
        let Ok(mut select) = db.prepare(&format!(
            "SELECT count(*) FROM {table} WHERE substr(env, 2, 4) = ?1"
        )) else {
            // The sync tables do not exist before the first sync.
            continue;
        };
        for key_id in key_ids {
            select.bind_blob(1, &key_id.to_be_bytes())?;
            select.step()?;
            *usage.entry(*key_id).or_insert(0) += select.column_i64(0);
            select.reset();
        }
    }
    Ok(usage)
}

fn count_other_keys(db: Db, primary: u32) -> Result<i64, ExtError> {
    let mut remaining = 0;
    for shadow in shadow::open_all(db)? {
        remaining += shadow.count_other_keys(primary)?;
    }
    Ok(remaining)
}

fn refuse_in_transaction(db: Db, function: &str) -> Result<(), ExtError> {
    if db.in_transaction() {
        return Err(ExtError::usage(format!(
            "{function} inside a transaction is not allowed, because a rollback would discard \
             the new keyring while this connection goes on using it; call it outside BEGIN \
             ... COMMIT"
        )));
    }
    Ok(())
}

impl Shadow {
    /// Up to `limit` shadow rows sealed under another key than `primary`.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn under_other_keys(
        &self,
        primary: u32,
        limit: i64,
    ) -> Result<Vec<shadow::Stored>, ExtError> {
        self.select_rows(
            "WHERE substr(env, 2, 4) <> ?1 LIMIT ?2",
            &[
                persist_core::codec::ValueRef::Blob(&primary.to_be_bytes()),
                persist_core::codec::ValueRef::Integer(limit),
            ],
        )
    }

    /// The number of shadow rows sealed under another key than `primary`.
    ///
    /// # Errors
    ///
    /// SQLite's errors.
    pub fn count_other_keys(&self, primary: u32) -> Result<i64, ExtError> {
        let mut select = self.db().prepare(&format!(
            "SELECT count(*) FROM {} WHERE substr(env, 2, 4) <> ?1",
            self.quoted("rows")
        ))?;
        select.bind_blob(1, &primary.to_be_bytes())?;
        select.step()?;
        Ok(select.column_i64(0))
    }
}
