//! Sync records and the last-write-wins rule.
//!
//! Every write carries a [`Version`]: its hybrid logical clock value and the
//! id of the device that wrote it. Versions are totally ordered by clock, then
//! by device id, and the larger one wins, on every device and on the server
//! alike, so all replicas converge whatever order they sync in.
//!
//! On the wire a record is an envelope of purpose
//! [`Purpose::SyncRecord`](crate::envelope::Purpose::SyncRecord) whose
//! plaintext names its table and holds the row codec bytes:
//!
//! ```text
//! payload = version (1) = 1 | table (length-prefixed, UTF-8) | row codec bytes
//! AAD context = clock value (8, big-endian) | device id (16)
//! ```
//!
//! The table travels inside the ciphertext, so the server never learns it,
//! and the clock value and device id are bound into the associated data, so a
//! server that changes either, or moves the envelope to another record id, is
//! caught. Payloads are always padded to a Padmé bucket.

use zeroize::Zeroizing;

use crate::clock::Hlc;
use crate::codec::{self, Row};
use crate::envelope::{Cipher, ENVELOPE_VERSION, HEADER_LEN, Header, Location, Purpose};
use crate::error::Error;
use crate::ids::{DeviceId, RecordId};
use crate::keyring::Keyring;
use crate::padding::{self, Padding};
use crate::primitives::{AeadKey, NONCE_LEN, put_lp};
use crate::reader::Reader;

/// Version of the sync record payload.
pub const SYNC_PAYLOAD_VERSION: u8 = 1;

/// The version of one write: hybrid logical clock value, then device id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Hybrid logical clock value.
    pub clock: u64,
    /// The device that wrote it.
    pub device: DeviceId,
}

impl Version {
    /// The associated-data context of a sync record with this version.
    pub fn context(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.clock.to_be_bytes());
        out[8..].copy_from_slice(self.device.as_bytes());
        out
    }

    /// Tells whether a write with this version replaces one with `current`.
    /// Equal versions do not, so applying a record twice changes nothing.
    pub fn wins_over(&self, current: Option<&Version>) -> bool {
        current.is_none_or(|current| self > current)
    }
}

/// Picks the version of a local write that replaces `current`: the next clock
/// value, raised above `current` if needed, so that an edit always wins over
/// the version the user saw even when that version came from a device whose
/// clock runs ahead.
pub fn next_local_version(
    hlc: &mut Hlc,
    now_ms: u64,
    device: DeviceId,
    current: Option<&Version>,
) -> Version {
    let mut clock = hlc.tick(now_ms);
    if let Some(current) = current
        && clock <= current.clock
    {
        clock = current.clock.saturating_add(1);
        hlc.observe(clock, now_ms);
    }
    Version { clock, device }
}

const KEYRING_RECORD_AAD_LABEL: &[u8] = b"persist v1 keyring record";

/// Seals the keyring as the store's keyring record: an envelope of the
/// ordinary layout, so the server cannot tell it from a data record, but
/// sealed under [`Keyring::transport_key`] so that a device lacking the
/// newest data key can open it. The header names the primary key id, as a
/// data record's would; readers ignore it. The plaintext is padded like
/// every sync record's.
///
/// # Errors
///
/// [`Error::Random`] when the operating system provides no randomness.
pub fn seal_keyring_record(keyring: &Keyring, version: &Version) -> Result<Vec<u8>, Error> {
    let key_id = keyring.primary().id();
    let nonce: [u8; NONCE_LEN] = crate::random::pooled()?;
    let plain = keyring.to_bytes();
    let mut out = Vec::with_capacity(HEADER_LEN + plain.len() + 64);
    out.push(ENVELOPE_VERSION);
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&plain);
    padding::pad(&mut out, HEADER_LEN, Padding::Bucket { at_least: 0 });
    let aad = keyring_record_aad(keyring, key_id, version);
    AeadKey::new(&keyring.transport_key()).seal_in_place(&nonce, &aad, &mut out, HEADER_LEN)?;
    Ok(out)
}

/// Opens a keyring record that a device of this store sealed.
///
/// # Errors
///
/// [`Error::Malformed`] or [`Error::UnsupportedVersion`] for bytes that are
/// not an envelope, [`Error::AuthenticationFailed`] when the record was
/// modified, moved or given another version, and the keyring's parse errors;
/// [`Error::Invalid`] when it belongs to another store.
pub fn open_keyring_record(
    keyring: &Keyring,
    version: &Version,
    envelope: &[u8],
) -> Result<Keyring, Error> {
    let header = Header::parse(envelope)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&envelope[5..HEADER_LEN]);
    let aad = keyring_record_aad(keyring, header.key_id, version);
    let mut plain = AeadKey::new(&keyring.transport_key()).open(
        "keyring record",
        &nonce,
        &aad,
        &envelope[HEADER_LEN..],
    )?;
    let len = padding::unpadded_len(&plain)?;
    plain.truncate(len);
    let opened = Keyring::from_bytes(&plain)?;
    if opened.store_id() != keyring.store_id() {
        return Err(Error::invalid(
            "keyring record",
            format!(
                "it belongs to store {}, not to this store {}",
                opened.store_id(),
                keyring.store_id()
            ),
        ));
    }
    Ok(opened)
}

fn keyring_record_aad(keyring: &Keyring, key_id: u32, version: &Version) -> Vec<u8> {
    let mut aad = Vec::with_capacity(96);
    put_lp(&mut aad, KEYRING_RECORD_AAD_LABEL);
    aad.push(ENVELOPE_VERSION);
    aad.extend_from_slice(&key_id.to_be_bytes());
    aad.extend_from_slice(keyring.store_id().as_bytes());
    aad.extend_from_slice(keyring.keyring_record_id().as_bytes());
    aad.extend_from_slice(&version.context());
    aad
}

/// A decoded sync record.
#[derive(Debug, PartialEq)]
pub struct SyncRecord {
    /// The table the record belongs to.
    pub table: String,
    /// The row, or the tombstone of a deleted row.
    pub row: Row,
    /// The row codec bytes of `row`, ready to be sealed again locally.
    pub row_bytes: Zeroizing<Vec<u8>>,
}

/// Seals a row (encoded by the row codec) of `table` for the sync server.
///
/// `at_least` is a payload size whose padding bucket the record must reach,
/// used so that a tombstone is as large as the row it replaces.
///
/// # Errors
///
/// As [`Cipher::seal`].
pub fn seal_record(
    cipher: &Cipher,
    record_id: RecordId,
    version: &Version,
    table: &str,
    row_bytes: &[u8],
    at_least: usize,
) -> Result<Vec<u8>, Error> {
    let mut payload = Zeroizing::new(Vec::with_capacity(5 + table.len() + row_bytes.len()));
    payload.push(SYNC_PAYLOAD_VERSION);
    put_lp(&mut payload, table.as_bytes());
    payload.extend_from_slice(row_bytes);
    let context = version.context();
    let location = Location {
        purpose: Purpose::SyncRecord,
        table: "",
        record_id: record_id.as_bytes(),
        context: &context,
    };
    cipher.seal(&location, &payload, Padding::Bucket { at_least })
}

/// Opens a sync record pulled from the server.
///
/// # Errors
///
/// As [`Cipher::open`], and [`Error::Malformed`] or
/// [`Error::UnsupportedVersion`] for a payload that does not parse.
pub fn open_record(
    cipher: &Cipher,
    record_id: RecordId,
    version: &Version,
    envelope: &[u8],
) -> Result<SyncRecord, Error> {
    let context = version.context();
    let location = Location {
        purpose: Purpose::SyncRecord,
        table: "",
        record_id: record_id.as_bytes(),
        context: &context,
    };
    let payload = cipher.open(&location, envelope)?;
    let mut reader = Reader::new("sync record", &payload);
    let payload_version = reader.u8("version")?;
    if payload_version != SYNC_PAYLOAD_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "sync record",
            version: payload_version,
            supported: SYNC_PAYLOAD_VERSION,
        });
    }
    let table = std::str::from_utf8(reader.lp("table")?)
        .map_err(|err| reader.error(format!("table name is not UTF-8: {err}")))?
        .to_owned();
    let row_bytes = Zeroizing::new(reader.rest().to_vec());
    let row = codec::decode_row(&row_bytes)?;
    Ok(SyncRecord {
        table,
        row,
        row_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{RowKind, Value, ValueRef, encode_row};
    use crate::keyring::Keyring;

    fn version(clock: u64, device: u8) -> Version {
        Version {
            clock,
            device: DeviceId([device; 16]),
        }
    }

    #[test]
    fn order_is_clock_then_device() {
        assert!(version(2, 0) > version(1, 9));
        assert!(version(1, 2) > version(1, 1));
        assert!(version(1, 1).wins_over(None));
        assert!(version(2, 1).wins_over(Some(&version(1, 1))));
        assert!(!version(1, 1).wins_over(Some(&version(1, 1))));
        assert!(!version(1, 1).wins_over(Some(&version(1, 2))));
    }

    #[test]
    fn local_edit_beats_version_from_the_future() {
        let mut hlc = Hlc::new(0, 1000);
        let future = version(crate::clock::clock_value(10_000_000, 0), 9);
        let next = next_local_version(&mut hlc, 1000, DeviceId([1; 16]), Some(&future));
        assert!(next > future);
    }

    #[test]
    fn record_round_trip_and_tampering() {
        let cipher = Cipher::new(Keyring::generate(1).unwrap());
        let rid = cipher.record_id("notes", &[ValueRef::Integer(1)]);
        let v = version(77, 3);
        let row = encode_row(
            RowKind::Row,
            [
                ("id", ValueRef::Integer(1)),
                ("body", ValueRef::Text("milk")),
            ],
        )
        .unwrap();
        let envelope = seal_record(&cipher, rid, &v, "notes", &row, 0).unwrap();
        let record = open_record(&cipher, rid, &v, &envelope).unwrap();
        assert_eq!(record.table, "notes");
        assert_eq!(record.row.get("body"), Some(&Value::Text("milk".into())));

        let other_rid = cipher.record_id("notes", &[ValueRef::Integer(2)]);
        assert!(open_record(&cipher, other_rid, &v, &envelope).is_err());
        assert!(open_record(&cipher, rid, &version(78, 3), &envelope).is_err());
        assert!(open_record(&cipher, rid, &version(77, 4), &envelope).is_err());
    }

    #[test]
    fn keyring_record_round_trip_and_binding() {
        let old = Keyring::generate(1).unwrap();
        let mut new = old.duplicate();
        let rotated = new.rotate(2).unwrap();
        let v = version(5, 1);
        let envelope = seal_keyring_record(&new, &v).unwrap();
        assert_eq!(Header::parse(&envelope).unwrap().key_id, rotated);
        let opened = open_keyring_record(&old, &v, &envelope).unwrap();
        assert_eq!(opened.primary().id(), rotated);
        assert!(open_keyring_record(&old, &version(6, 1), &envelope).is_err());
        let stranger = Keyring::generate(1).unwrap();
        assert!(open_keyring_record(&stranger, &v, &envelope).is_err());
        let mut flipped = envelope.clone();
        flipped[30] ^= 1;
        assert!(open_keyring_record(&old, &v, &flipped).is_err());
    }

    #[test]
    fn tombstone_pads_to_row_size() {
        let cipher = Cipher::new(Keyring::generate(1).unwrap());
        let rid = cipher.record_id("t", &[ValueRef::Integer(1)]);
        let v = version(1, 1);
        let long = "x".repeat(500);
        let row = encode_row(
            RowKind::Row,
            [
                ("id", ValueRef::Integer(1)),
                ("body", ValueRef::Text(&long)),
            ],
        )
        .unwrap();
        let tomb = encode_row(RowKind::Tombstone, [("id", ValueRef::Integer(1))]).unwrap();
        let row_env = seal_record(&cipher, rid, &v, "t", &row, 0).unwrap();
        // The sync payload is the row plus a version byte and the
        // length-prefixed table name "t".
        let tomb_env = seal_record(&cipher, rid, &v, "t", &tomb, row.len() + 6).unwrap();
        assert_eq!(row_env.len(), tomb_env.len());
        let record = open_record(&cipher, rid, &v, &tomb_env).unwrap();
        assert_eq!(record.row.kind, RowKind::Tombstone);
    }
}
