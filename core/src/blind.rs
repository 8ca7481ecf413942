//! Blind record ids.
//!
//! ```text
//! record id = HMAC-SHA256(index key, "persist v1 record id" (length-prefixed)
//!                                    | store id | table (length-prefixed)
//!                                    | canonical primary key)[..16]
//! ```
//!
//! Deterministic within a store, so lookups and merges find the record, and
//! unlinkable across stores, because each store has its own index key and id.
//! The canonical primary key is the column count (2 bytes, big-endian) and
//! each value in the row codec's value encoding, after one normalization: a
//! REAL that holds an integer in the 64-bit range is encoded as that INTEGER
//! (and -0.0 as 0), because SQL compares `1 = 1.0` as equal, so both must name
//! the same record.

use crate::codec::{ValueRef, put_value};
use crate::ids::{RecordId, StoreId};
use crate::primitives::{hmac_sha256, put_lp};
use crate::secret::SecretKey;

const RECORD_ID_LABEL: &[u8] = b"persist v1 record id";

/// Computes the blind record id of primary key `key` in `table`.
pub fn record_id(
    index_key: &SecretKey,
    store_id: StoreId,
    table: &str,
    key: &[ValueRef<'_>],
) -> RecordId {
    let mut message = Vec::with_capacity(64 + table.len());
    put_lp(&mut message, RECORD_ID_LABEL);
    message.extend_from_slice(store_id.as_bytes());
    put_lp(&mut message, table.as_bytes());
    // A primary key has at most MAX_COLUMNS (2000) columns, which callers
    // check when they parse the table, so the count fits in two bytes.
    let count = u16::try_from(key.len()).unwrap_or(u16::MAX);
    message.extend_from_slice(&count.to_be_bytes());
    for value in key {
        put_value(&mut message, canonical(*value));
    }
    let mac = hmac_sha256(index_key, &message);
    let mut id = [0u8; 16];
    id.copy_from_slice(&mac[..16]);
    RecordId(id)
}

/// Maps numerically equal values to one encoding.
pub fn canonical(value: ValueRef<'_>) -> ValueRef<'_> {
    match value {
        ValueRef::Real(real) => {
            // 2^63 is the first double past i64::MAX; -2^63 is exactly i64::MIN.
            const LIMIT: f64 = 9_223_372_036_854_775_808.0;
            if real.fract() == 0.0 && (-LIMIT..LIMIT).contains(&real) {
                ValueRef::Integer(real as i64)
            } else {
                ValueRef::Real(real)
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_within_store() {
        let key = SecretKey::generate().unwrap();
        let store = StoreId::generate().unwrap();
        let a = record_id(&key, store, "notes", &[ValueRef::Integer(1)]);
        let b = record_id(&key, store, "notes", &[ValueRef::Integer(1)]);
        assert_eq!(a, b);
    }

    #[test]
    fn differs_by_store_table_and_key() {
        let key = SecretKey::generate().unwrap();
        let store = StoreId::generate().unwrap();
        let base = record_id(&key, store, "notes", &[ValueRef::Integer(1)]);
        let other_store = StoreId::generate().unwrap();
        assert_ne!(
            base,
            record_id(&key, other_store, "notes", &[ValueRef::Integer(1)])
        );
        assert_ne!(
            base,
            record_id(&key, store, "notez", &[ValueRef::Integer(1)])
        );
        assert_ne!(
            base,
            record_id(&key, store, "notes", &[ValueRef::Integer(2)])
        );
        assert_ne!(
            base,
            record_id(&key, store, "notes", &[ValueRef::Text("1")])
        );
        let other_key = SecretKey::generate().unwrap();
        assert_ne!(
            base,
            record_id(&other_key, store, "notes", &[ValueRef::Integer(1)])
        );
    }

    #[test]
    fn composite_keys_do_not_collide_by_concatenation() {
        let key = SecretKey::generate().unwrap();
        let store = StoreId::generate().unwrap();
        let ab_c = record_id(
            &key,
            store,
            "t",
            &[ValueRef::Text("ab"), ValueRef::Text("c")],
        );
        let a_bc = record_id(
            &key,
            store,
            "t",
            &[ValueRef::Text("a"), ValueRef::Text("bc")],
        );
        assert_ne!(ab_c, a_bc);
    }

    #[test]
    fn equal_numbers_share_an_id() {
        let key = SecretKey::generate().unwrap();
        let store = StoreId::generate().unwrap();
        let id = |v| record_id(&key, store, "t", &[v]);
        assert_eq!(id(ValueRef::Integer(1)), id(ValueRef::Real(1.0)));
        assert_eq!(id(ValueRef::Integer(0)), id(ValueRef::Real(-0.0)));
        assert_ne!(id(ValueRef::Integer(1)), id(ValueRef::Real(1.5)));
        assert_eq!(
            id(ValueRef::Integer(i64::MIN)),
            id(ValueRef::Real(i64::MIN as f64))
        );
        assert_ne!(
            id(ValueRef::Integer(i64::MAX)),
            id(ValueRef::Real(2f64.powi(63)))
        );
    }
}
