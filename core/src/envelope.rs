//! The record envelope: AES-256-GCM under a per-table subkey, with a header
//! that names the key and associated data that binds the envelope to its place.
//!
//! ```text
//! version (1) | key id (4, big-endian) | nonce (12) | ciphertext | tag (16)
//! ```
//!
//! - The nonce is random for every seal. A nonce derived from the record's
//!   place would repeat on every update of that record, and AES-GCM under a
//!   repeated key and nonce leaks the XOR of the plaintexts and the
//!   authentication key.
//! - The cipher key is derived with HKDF-SHA256 from the data key, per store,
//!   purpose and table, so NIST SP 800-38D's budget of 2^32 random-nonce
//!   encryptions applies to each table's rows and key separately. Values and
//!   sync records have no table in their derivation and share one subkey
//!   per data key and purpose.
//! - The associated data binds version, key id, store id, purpose, table,
//!   record id and a caller's context (for synced records the clock value and
//!   device id), so an envelope moved anywhere else fails authentication.
//! - The key id selects the key; there is no trial decryption.
//!
//! [`Cipher`] holds an open keyring with a cache of derived subkeys and is the
//! type the database extensions use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use zeroize::Zeroizing;

use crate::blind;
use crate::codec::ValueRef;
use crate::error::Error;
use crate::ids::{RecordId, StoreId};
use crate::keyring::Keyring;
use crate::padding::{self, Padding};
use crate::primitives::{AeadKey, NONCE_LEN, TAG_LEN, hkdf_sha256, put_lp};
use crate::random;
use crate::reader::Reader;

/// The envelope format version this build writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;

/// Length of the envelope header: version, key id and nonce.
pub const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;

/// Smallest possible envelope: a header, the one-byte padding marker and a tag.
pub const MIN_ENVELOPE_LEN: usize = HEADER_LEN + 1 + TAG_LEN;

/// Largest plaintext an envelope may carry: 64 MiB.
pub const MAX_PLAINTEXT: usize = 64 << 20;

/// Number of seals under one subkey after which rotation is recommended:
/// a quarter of NIST SP 800-38D's limit of 2^32 random-nonce encryptions.
// NOTE: seals are counted per data key and only in memory ([`Cipher::seal_count`]);
// no caller persists the count or compares it with this limit yet.
pub const ROTATION_RECOMMENDED_AFTER: u64 = 1 << 30;

const SUBKEY_LABEL: &[u8] = b"persist v1 subkey";
const AAD_LABEL: &[u8] = b"persist v1 envelope";

/// Most subkeys a [`Cipher`] caches before it starts over.
const MAX_CACHED_SUBKEYS: usize = 4096;

/// What an envelope holds; part of both the subkey derivation and the
/// associated data, so an envelope of one purpose never opens as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A row of an encrypted table, stored locally.
    Row,
    /// A single value sealed by `persist_encrypt`.
    Value,
    /// A record as it travels through the sync server.
    SyncRecord,
}

impl Purpose {
    /// The byte that stands for the purpose in derivations and AAD.
    pub fn to_byte(self) -> u8 {
        match self {
            Self::Row => 1,
            Self::Value => 2,
            Self::SyncRecord => 3,
        }
    }
}

/// Where an envelope belongs. Every field is bound into the associated data.
#[derive(Clone, Copy, Debug)]
pub struct Location<'a> {
    /// What the envelope holds.
    pub purpose: Purpose,
    /// The table name; empty for values and sync records.
    pub table: &'a str,
    /// The blind record id, or empty where there is none.
    pub record_id: &'a [u8],
    /// Extra context chosen by the caller, such as a clock value.
    pub context: &'a [u8],
}

/// The parsed header of an envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The format version.
    pub version: u8,
    /// The id of the data key it was sealed under.
    pub key_id: u32,
}

impl Header {
    /// Parses the header of `envelope` and checks its minimum length.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for an envelope shorter than
    /// [`MIN_ENVELOPE_LEN`], and [`Error::UnsupportedVersion`] for a version
    /// other than [`ENVELOPE_VERSION`].
    pub fn parse(envelope: &[u8]) -> Result<Self, Error> {
        if envelope.len() < MIN_ENVELOPE_LEN {
            return Err(Error::malformed(
                "envelope",
                format!(
                    "{} bytes, shorter than the minimum of {MIN_ENVELOPE_LEN}",
                    envelope.len()
                ),
            ));
        }
        let mut reader = Reader::new("envelope", envelope);
        let version = reader.u8("version")?;
        if version != ENVELOPE_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "envelope",
                version,
                supported: ENVELOPE_VERSION,
            });
        }
        let key_id = reader.u32("key id")?;
        Ok(Self { version, key_id })
    }
}

/// Subkeys by data key and purpose, then by table.
type SubkeyCache = HashMap<(u32, Purpose), HashMap<String, Arc<AeadKey>>>;

/// An open keyring with a cache of derived subkeys: seals and opens envelopes
/// and computes blind record ids for one store.
///
/// Subkeys are derived on first use and wiped when the cipher is dropped.
pub struct Cipher {
    keyring: Keyring,
    state: Mutex<CipherState>,
}

#[derive(Default)]
struct CipherState {
    subkeys: SubkeyCache,
    cached: usize,
    seals: HashMap<u32, u64>,
}

impl Cipher {
    /// Opens `keyring` for use.
    pub fn new(keyring: Keyring) -> Self {
        Self {
            keyring,
            state: Mutex::new(CipherState::default()),
        }
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Consumes the cipher and returns its keyring.
    pub fn into_keyring(self) -> Keyring {
        self.keyring
    }

    /// The store id.
    pub fn store_id(&self) -> StoreId {
        self.keyring.store_id()
    }

    /// Seals `plaintext` for `location` under the primary key.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] for a plaintext over [`MAX_PLAINTEXT`], and
    /// [`Error::Random`] when the operating system provides no randomness.
    pub fn seal(
        &self,
        location: &Location<'_>,
        plaintext: &[u8],
        padding: Padding,
    ) -> Result<Vec<u8>, Error> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(Error::TooLarge {
                what: "plaintext",
                size: plaintext.len(),
                limit: MAX_PLAINTEXT,
            });
        }
        let nonce: [u8; NONCE_LEN] = random::pooled()?;
        self.seal_with_nonce(location, plaintext, padding, &nonce)
    }

    /// Seals like [`Cipher::seal`] with a given nonce; only test vectors may
    /// choose the nonce.
    pub(crate) fn seal_with_nonce(
        &self,
        location: &Location<'_>,
        plaintext: &[u8],
        padding: Padding,
        nonce: &[u8; NONCE_LEN],
    ) -> Result<Vec<u8>, Error> {
        let key_id = self.keyring.primary().id();
        let subkey = self.subkey(key_id, location)?;

        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 1 + TAG_LEN);
        out.push(ENVELOPE_VERSION);
        out.extend_from_slice(&key_id.to_be_bytes());
        out.extend_from_slice(nonce);
        out.extend_from_slice(plaintext);
        padding::pad(&mut out, HEADER_LEN, padding);

        let aad = associated_data(self.store_id(), key_id, location);
        subkey.seal_in_place(nonce, &aad, &mut out, HEADER_LEN)?;
        self.count_seal(key_id);
        Ok(out)
    }

    /// Opens an envelope sealed for `location` and returns its plaintext.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] or [`Error::UnsupportedVersion`] for bytes that
    /// are not a version 1 envelope, [`Error::UnknownKeyId`] when the keyring
    /// lacks the key named in the header, and [`Error::AuthenticationFailed`]
    /// when the envelope was modified, belongs to another location, or was
    /// sealed under another key.
    pub fn open(
        &self,
        location: &Location<'_>,
        envelope: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let header = Header::parse(envelope)?;
        if self.keyring.get(header.key_id).is_none() {
            return Err(Error::UnknownKeyId {
                key_id: header.key_id,
            });
        }
        let subkey = self.subkey(header.key_id, location)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&envelope[5..HEADER_LEN]);
        let aad = associated_data(self.store_id(), header.key_id, location);

        let mut plain = subkey.open("envelope", &nonce, &aad, &envelope[HEADER_LEN..])?;
        let len = padding::unpadded_len(&plain)?;
        plain.truncate(len);
        Ok(plain)
    }

    /// Computes the blind record id of primary key `key` in `table`.
    pub fn record_id(&self, table: &str, key: &[ValueRef<'_>]) -> RecordId {
        blind::record_id(self.keyring.index_key(), self.store_id(), table, key)
    }

    /// Number of envelopes this cipher sealed under key `key_id`.
    pub fn seal_count(&self, key_id: u32) -> u64 {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.seals.get(&key_id).copied().unwrap_or(0)
    }

    fn count_seal(&self, key_id: u32) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        *state.seals.entry(key_id).or_insert(0) += 1;
    }

    fn subkey(&self, key_id: u32, location: &Location<'_>) -> Result<Arc<AeadKey>, Error> {
        // A poisoned lock only means another thread panicked while holding
        // it; the cache stays consistent because every insert is complete.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let id = (key_id, location.purpose);
        if let Some(subkey) = state
            .subkeys
            .get(&id)
            .and_then(|tables| tables.get(location.table))
        {
            return Ok(Arc::clone(subkey));
        }
        let data_key = self
            .keyring
            .get(key_id)
            .ok_or(Error::UnknownKeyId { key_id })?;

        let mut info = Vec::with_capacity(64 + location.table.len());
        put_lp(&mut info, SUBKEY_LABEL);
        info.push(location.purpose.to_byte());
        put_lp(&mut info, location.table.as_bytes());
        let subkey = Arc::new(AeadKey::new(&hkdf_sha256(
            data_key.secret(),
            self.store_id().as_bytes(),
            &info,
        )));

        if state.cached >= MAX_CACHED_SUBKEYS {
            state.subkeys.clear();
            state.cached = 0;
        }
        state
            .subkeys
            .entry(id)
            .or_default()
            .insert(location.table.to_owned(), Arc::clone(&subkey));
        state.cached += 1;
        Ok(subkey)
    }
}

/// Builds the associated data for an envelope.
fn associated_data(store_id: StoreId, key_id: u32, location: &Location<'_>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(
        64 + location.table.len() + location.record_id.len() + location.context.len(),
    );
    put_lp(&mut aad, AAD_LABEL);
    aad.push(ENVELOPE_VERSION);
    aad.extend_from_slice(&key_id.to_be_bytes());
    aad.extend_from_slice(store_id.as_bytes());
    aad.push(location.purpose.to_byte());
    put_lp(&mut aad, location.table.as_bytes());
    put_lp(&mut aad, location.record_id);
    put_lp(&mut aad, location.context);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cipher() -> Cipher {
        Cipher::new(Keyring::generate(1).unwrap())
    }

    fn row_at<'a>(table: &'a str, record_id: &'a [u8]) -> Location<'a> {
        Location {
            purpose: Purpose::Row,
            table,
            record_id,
            context: b"",
        }
    }

    #[test]
    fn seal_open_round_trip() {
        let cipher = cipher();
        let location = row_at("notes", b"0123456789abcdef");
        let envelope = cipher
            .seal(&location, b"milk, eggs", Padding::None)
            .unwrap();
        assert_eq!(envelope.len(), HEADER_LEN + 10 + 1 + TAG_LEN);
        assert_eq!(envelope[0], ENVELOPE_VERSION);
        let header = Header::parse(&envelope).unwrap();
        assert_eq!(header.key_id, cipher.keyring().primary().id());
        assert_eq!(
            cipher.open(&location, &envelope).unwrap().as_slice(),
            b"milk, eggs"
        );
        assert_eq!(cipher.seal_count(header.key_id), 1);
    }

    #[test]
    fn nonces_differ_between_seals() {
        let cipher = cipher();
        let location = row_at("notes", b"id");
        let a = cipher.seal(&location, b"same", Padding::None).unwrap();
        let b = cipher.seal(&location, b"same", Padding::None).unwrap();
        assert_ne!(a[5..HEADER_LEN], b[5..HEADER_LEN]);
        assert_ne!(a, b);
    }

    #[test]
    fn moved_envelope_fails_authentication() {
        let cipher = cipher();
        let envelope = cipher
            .seal(&row_at("notes", b"id1"), b"secret", Padding::None)
            .unwrap();
        let elsewhere = [
            row_at("notes", b"id2"),
            row_at("other", b"id1"),
            Location {
                context: b"ctx",
                ..row_at("notes", b"id1")
            },
            Location {
                purpose: Purpose::SyncRecord,
                ..row_at("notes", b"id1")
            },
        ];
        for location in elsewhere {
            assert!(
                matches!(
                    cipher.open(&location, &envelope),
                    Err(Error::AuthenticationFailed { .. })
                ),
                "{location:?}"
            );
        }
    }

    #[test]
    fn other_store_reports_unknown_key() {
        let envelope = cipher()
            .seal(&row_at("t", b""), b"x", Padding::None)
            .unwrap();
        assert!(matches!(
            cipher().open(&row_at("t", b""), &envelope),
            Err(Error::UnknownKeyId { .. })
        ));
    }

    #[test]
    fn rotated_keyring_opens_old_envelopes() {
        let mut keyring = Keyring::generate(1).unwrap();
        let old = Cipher::new(keyring.duplicate());
        let envelope = old
            .seal(&row_at("t", b"r"), b"before", Padding::None)
            .unwrap();
        keyring.rotate(2).unwrap();
        let new = Cipher::new(keyring);
        let fresh = new
            .seal(&row_at("t", b"r"), b"after", Padding::None)
            .unwrap();
        assert_ne!(
            Header::parse(&fresh).unwrap().key_id,
            Header::parse(&envelope).unwrap().key_id
        );
        assert_eq!(
            new.open(&row_at("t", b"r"), &envelope).unwrap().as_slice(),
            b"before"
        );
    }

    #[test]
    fn malformed_envelopes_are_reported() {
        let cipher = cipher();
        let location = row_at("t", b"");
        let envelope = cipher.seal(&location, b"x", Padding::None).unwrap();
        for len in 0..MIN_ENVELOPE_LEN {
            assert!(matches!(
                cipher.open(&location, &envelope[..len]),
                Err(Error::Malformed { .. })
            ));
        }
        let mut future = envelope.clone();
        future[0] = 2;
        assert!(matches!(
            cipher.open(&location, &future),
            Err(Error::UnsupportedVersion { version: 2, .. })
        ));
    }

    #[test]
    fn padding_hides_exact_length() {
        let cipher = cipher();
        let location = row_at("t", b"");
        let a = cipher
            .seal(&location, b"a", Padding::Bucket { at_least: 0 })
            .unwrap();
        let b = cipher
            .seal(&location, &[7; 50], Padding::Bucket { at_least: 0 })
            .unwrap();
        assert_eq!(a.len(), b.len());
        assert_eq!(cipher.open(&location, &b).unwrap().as_slice(), &[7; 50]);
    }

    #[test]
    fn oversized_plaintext_names_limit() {
        let cipher = cipher();
        let big = vec![0u8; MAX_PLAINTEXT + 1];
        let err = cipher
            .seal(&row_at("t", b""), &big, Padding::None)
            .unwrap_err();
        assert!(err.to_string().contains("limit of 67108864 bytes"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_byte_change_fails_authentication(
            plaintext in proptest::collection::vec(any::<u8>(), 0..200),
            position in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let cipher = cipher();
            let location = row_at("notes", b"record");
            let mut envelope = cipher.seal(&location, &plaintext, Padding::None).unwrap();
            let index = position.index(envelope.len());
            envelope[index] ^= flip;
            let result = cipher.open(&location, &envelope);
            prop_assert!(result.is_err());
            // A changed version byte is reported as such, a changed key id
            // as an unknown key, and anything else fails authentication.
            let expected_kind = matches!(
                (index, &result),
                (0, Err(Error::UnsupportedVersion { .. }))
                    | (1..=4, Err(Error::UnknownKeyId { .. }))
                    | (5.., Err(Error::AuthenticationFailed { .. }))
            );
            prop_assert!(expected_kind, "byte {} changed: {:?}", index, result.err());
        }
    }
}
