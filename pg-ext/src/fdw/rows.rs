//! Sealing and opening the rows of an encrypted table with the session's
//! open store, as the SQLite extension's encrypted tables do: purpose Row,
//! the table's logical name, the blind record id, no context, the whole row
//! encoded with the row codec and sealed unpadded.

use persist_core::codec::{self, Row, RowKind, Value, ValueRef};
use persist_core::{Location, Padding, Purpose, RecordId};
use pgrx::PgSqlErrorCode;

use super::table::TableDef;
use crate::error::{CoreContext, PgError, Subject};
use crate::session::{self, Counters, OpenStore};

/// Runs `f` with the session's open store after checking that it is the
/// store of `table`.
///
/// # Errors
///
/// 55000 when no store is open or the open store is another one, and
/// whatever `f` returns.
pub fn with_table_store<T>(
    table: &TableDef,
    f: impl FnOnce(&OpenStore, &mut Counters) -> Result<T, PgError>,
) -> Result<T, PgError> {
    let what = format!("encrypted table \"{}\"", table.name);
    session::with_store(&what, |store, counters| {
        let open = store.cipher.store_id();
        if open != table.store_id {
            return Err(PgError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "{what} belongs to store id {}, but the open store {:?} has store id {open}",
                    table.store_id, store.name
                ),
            )
            .with_hint("Open the table's store with SELECT persist.init('<store name>')."));
        }
        f(store, counters)
    })
}

fn location<'a>(table: &'a TableDef, rid: &'a [u8]) -> Location<'a> {
    Location {
        purpose: Purpose::Row,
        table: &table.logical,
        record_id: rid,
        context: b"",
    }
}

/// Computes the blind record id of a primary key.
pub fn record_id(store: &OpenStore, table: &TableDef, key: &[Value]) -> RecordId {
    let key: Vec<ValueRef<'_>> = key.iter().map(Value::as_ref).collect();
    store.cipher.record_id(&table.logical, &key)
}

/// Encodes `columns` (stored name and value) and seals them for record
/// `rid`.
///
/// # Errors
///
/// 54000 for a row over the plaintext limit, and other core errors.
pub fn seal_row(
    store: &OpenStore,
    counters: &mut Counters,
    table: &TableDef,
    rid: &RecordId,
    columns: &[(&str, ValueRef<'_>)],
) -> Result<Vec<u8>, PgError> {
    let what = || format!("encrypted table \"{}\": sealing a row", table.name);
    let plaintext = codec::encode_row(RowKind::Row, columns.iter().copied())
        .context_with(Subject::Other, what)?;
    let envelope = store
        .cipher
        .seal(&location(table, rid.as_bytes()), &plaintext, Padding::None)
        .context_with(Subject::Other, what)?;
    counters.sealed += 1;
    Ok(envelope)
}

/// Opens and decodes the envelope of record `rid`.
///
/// # Errors
///
/// XX001 when the envelope fails authentication or does not decode, and
/// 42704 when it names a key the keyring lacks.
pub fn open_row(
    store: &OpenStore,
    counters: &mut Counters,
    table: &TableDef,
    rid: &[u8],
    envelope: &[u8],
) -> Result<Row, PgError> {
    let what = || {
        format!(
            "encrypted table \"{}\": a stored row cannot be decrypted",
            table.name
        )
    };
    let plaintext = store
        .cipher
        .open(&location(table, rid), envelope)
        .context_with(Subject::StoredMetadata, what)?;
    counters.opened += 1;
    let row = codec::decode_row(&plaintext).context_with(Subject::StoredMetadata, what)?;
    if row.kind != RowKind::Row {
        return Err(PgError::new(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            format!("{}: it is a tombstone, not a row", what()),
        ));
    }
    Ok(row)
}
