//! The store keyring: the data keys, the index key and the write token that
//! all devices of one store share.
//!
//! A keyring holds one or more data keys, each with a random `u32` id, a
//! creation time and a status; exactly one is primary and seals new writes.
//! The index key, used for blind record ids, never changes, so record ids stay
//! stable when data keys rotate. The write token proves to the sync server that
//! a device belongs to the store.
//!
//! On disk a keyring is only ever stored sealed under a device key
//! ([`Keyring::seal`]) or inside a key export ([`crate::export`]). The byte
//! layouts are specified in `docs/FORMAT.md`.

use zeroize::Zeroizing;

use crate::error::Error;
use crate::ids::StoreId;
use crate::primitives::{AeadKey, NONCE_LEN, TAG_LEN, hkdf_sha256, put_lp};
use crate::random;
use crate::reader::Reader;
use crate::secret::{KEY_LEN, SecretKey};

/// Version of the serialized keyring.
pub const KEYRING_VERSION: u8 = 1;

/// Version of the sealed keyring.
pub const SEALED_KEYRING_VERSION: u8 = 1;

/// Most data keys a keyring may hold.
pub const MAX_KEYS: usize = 1024;

const SEAL_KEY_LABEL: &[u8] = b"persist v1 keyring seal key";
const TRANSPORT_KEY_LABEL: &[u8] = b"persist v1 keyring transport key";
const KEYRING_RECORD_LABEL: &[u8] = b"persist v1 keyring record";
const SEAL_AAD_LABEL: &[u8] = b"persist v1 sealed keyring";

/// Length of the header of a sealed keyring: version, store id and nonce.
const SEALED_HEADER_LEN: usize = 1 + 16 + NONCE_LEN;

/// The use a data key is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    /// Seals new writes and opens old ones. Exactly one key is primary.
    Primary,
    /// Opens data sealed while it was primary; seals nothing new.
    Active,
}

impl KeyStatus {
    fn to_byte(self) -> u8 {
        match self {
            Self::Primary => 1,
            Self::Active => 2,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Primary),
            2 => Some(Self::Active),
            _ => None,
        }
    }

    /// Returns the status as it appears in status reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Active => "active",
        }
    }
}

/// One data key with its metadata.
pub struct DataKey {
    id: u32,
    created: u64,
    status: KeyStatus,
    key: SecretKey,
}

impl DataKey {
    /// Returns the key id written into every envelope sealed under this key.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Returns the creation time in seconds since the Unix epoch.
    pub fn created(&self) -> u64 {
        self.created
    }

    /// Returns the key's status.
    pub fn status(&self) -> KeyStatus {
        self.status
    }

    /// Returns the key material.
    ///
    /// # Security
    ///
    /// Only derivations in this crate should read it.
    pub fn secret(&self) -> &SecretKey {
        &self.key
    }
}

/// The changes [`Keyring::merge`] made.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MergeSummary {
    /// Ids of the keys that were added.
    pub added: Vec<u32>,
    /// Whether the primary key changed.
    pub primary_changed: bool,
}

/// The keys shared by all devices of one store.
pub struct Keyring {
    store_id: StoreId,
    write_token: SecretKey,
    index_key: SecretKey,
    keys: Vec<DataKey>,
}

impl std::fmt::Debug for Keyring {
    /// Shows the store id and the key ids and statuses, never key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<(u32, &str)> = self
            .keys
            .iter()
            .map(|key| (key.id, key.status.as_str()))
            .collect();
        f.debug_struct("Keyring")
            .field("store_id", &self.store_id)
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

impl Keyring {
    /// Creates a keyring for a new store: a random store id, write token and
    /// index key, and one primary data key created at `now` (Unix seconds).
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when the operating system provides no randomness.
    pub fn generate(now: u64) -> Result<Self, Error> {
        let mut keyring = Self {
            store_id: StoreId::generate()?,
            write_token: SecretKey::generate()?,
            index_key: SecretKey::generate()?,
            keys: Vec::new(),
        };
        keyring.rotate(now)?;
        Ok(keyring)
    }

    /// Returns the id of the store this keyring belongs to.
    pub fn store_id(&self) -> StoreId {
        self.store_id
    }

    /// Returns the token that authorizes writes and reads on the sync server.
    ///
    /// # Security
    ///
    /// Send it only to the sync server; it is a credential.
    pub fn write_token(&self) -> &SecretKey {
        &self.write_token
    }

    /// Returns the long-lived key for blind record ids.
    pub fn index_key(&self) -> &SecretKey {
        &self.index_key
    }

    /// Returns the primary data key, which seals new writes.
    pub fn primary(&self) -> &DataKey {
        // Every constructor and every mutation keeps exactly one primary key,
        // and `validate` checks it on parse.
        self.keys
            .iter()
            .find(|key| key.status == KeyStatus::Primary)
            .unwrap_or_else(|| unreachable!("a keyring always has a primary key"))
    }

    /// Returns the data key with id `id`, if the keyring contains it.
    pub fn get(&self, id: u32) -> Option<&DataKey> {
        self.keys.iter().find(|key| key.id == id)
    }

    /// Returns all data keys, oldest first.
    pub fn keys(&self) -> &[DataKey] {
        &self.keys
    }

    /// Adds a new data key with status [`KeyStatus::Active`] and returns its id.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when the keyring already holds [`MAX_KEYS`] keys,
    /// and [`Error::Random`] when the operating system provides no randomness.
    pub fn add_key(&mut self, now: u64) -> Result<u32, Error> {
        if self.keys.len() >= MAX_KEYS {
            return Err(Error::invalid(
                "keyring",
                format!("it already holds the maximum of {MAX_KEYS} keys; retire old keys first"),
            ));
        }
        let id = self.unused_key_id()?;
        self.keys.push(DataKey {
            id,
            created: now,
            status: KeyStatus::Active,
            key: SecretKey::generate()?,
        });
        Ok(id)
    }

    /// Makes key `id` the primary key; the former primary becomes active.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownKeyId`] when the keyring has no key `id`.
    pub fn promote(&mut self, id: u32) -> Result<(), Error> {
        if self.get(id).is_none() {
            return Err(Error::UnknownKeyId { key_id: id });
        }
        for key in &mut self.keys {
            key.status = if key.id == id {
                KeyStatus::Primary
            } else {
                KeyStatus::Active
            };
        }
        Ok(())
    }

    /// Adds a new data key and makes it primary at once; returns its id.
    ///
    /// # Errors
    ///
    /// As [`Keyring::add_key`].
    pub fn rotate(&mut self, now: u64) -> Result<u32, Error> {
        let id = self.add_key(now)?;
        self.promote(id)?;
        Ok(id)
    }

    /// Removes key `id` once no data needs it any more.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownKeyId`] when there is no such key, and
    /// [`Error::Invalid`] when it is the primary key.
    pub fn retire(&mut self, id: u32) -> Result<(), Error> {
        let key = self.get(id).ok_or(Error::UnknownKeyId { key_id: id })?;
        if key.status == KeyStatus::Primary {
            return Err(Error::invalid(
                "key id",
                format!("key {id} is the primary key; rotate to a new key before retiring it"),
            ));
        }
        self.keys.retain(|key| key.id != id);
        Ok(())
    }

    /// Adds the keys of `other`, a keyring of the same store, that this one
    /// lacks. The primary key becomes the newer of the two primaries, by
    /// creation time and then by id, so every device that merges the same
    /// keyrings ends with the same primary.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when `other` belongs to another store or holds a
    /// key with a known id but different key material.
    pub fn merge(&mut self, other: &Keyring) -> Result<MergeSummary, Error> {
        if other.store_id != self.store_id {
            return Err(Error::invalid(
                "keyring",
                format!(
                    "it belongs to store {}, not to this store {}",
                    other.store_id, self.store_id
                ),
            ));
        }
        if other.index_key != self.index_key || other.write_token != self.write_token {
            return Err(Error::invalid(
                "keyring",
                "its index key or write token differs from this store's",
            ));
        }
        for key in &other.keys {
            if let Some(existing) = self.get(key.id)
                && existing.key != key.key
            {
                return Err(Error::invalid(
                    "keyring",
                    format!(
                        "key {} has different key material on the two devices",
                        key.id
                    ),
                ));
            }
        }
        if self.keys.len()
            + other
                .keys
                .iter()
                .filter(|k| self.get(k.id).is_none())
                .count()
            > MAX_KEYS
        {
            return Err(Error::invalid(
                "keyring",
                format!("the merged keyring would hold more than {MAX_KEYS} keys"),
            ));
        }

        let mut summary = MergeSummary::default();
        for key in &other.keys {
            if self.get(key.id).is_none() {
                self.keys.push(DataKey {
                    id: key.id,
                    created: key.created,
                    status: KeyStatus::Active,
                    key: key.key.duplicate(),
                });
                summary.added.push(key.id);
            }
        }
        let ours = self.primary();
        let theirs = other.primary();
        if (theirs.created, theirs.id) > (ours.created, ours.id) {
            let id = theirs.id;
            self.promote(id)?;
            summary.primary_changed = true;
        }
        Ok(summary)
    }

    /// Returns the key that carries newer versions of this keyring to the
    /// store's other devices and key slots: HKDF-SHA256 of the index key,
    /// which every version of the keyring holds and which never rotates.
    ///
    /// # Security
    ///
    /// Whoever holds any version of the keyring can open every later one,
    /// so rotating keys keeps each key's use within its nonce budget but
    /// does not lock out a device that once had the keyring.
    pub fn transport_key(&self) -> SecretKey {
        let mut info = Vec::new();
        put_lp(&mut info, TRANSPORT_KEY_LABEL);
        hkdf_sha256(&self.index_key, self.store_id.as_bytes(), &info)
    }

    /// Seals this keyring for the store's other devices and key slots
    /// (a sealed keyring under [`Keyring::transport_key`]).
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when the operating system provides no randomness.
    pub fn seal_for_transport(&self) -> Result<Vec<u8>, Error> {
        self.seal(&self.transport_key())
    }

    /// Opens a keyring that a device of this store sealed for transport.
    ///
    /// # Errors
    ///
    /// As [`Keyring::unseal`], and [`Error::Invalid`] when it belongs to
    /// another store.
    pub fn open_transport(&self, sealed: &[u8]) -> Result<Keyring, Error> {
        let keyring = Keyring::unseal(&self.transport_key(), sealed)?;
        if keyring.store_id != self.store_id {
            return Err(Error::invalid(
                "keyring",
                format!(
                    "it belongs to store {}, not to this store {}",
                    keyring.store_id, self.store_id
                ),
            ));
        }
        Ok(keyring)
    }

    /// Returns the record id under which the keyring travels through the
    /// sync server: HMAC-SHA256 of a fixed label and the store id under the
    /// index key, cut to 16 bytes, so it looks like any other record id.
    pub fn keyring_record_id(&self) -> crate::ids::RecordId {
        let mut message = Vec::with_capacity(64);
        put_lp(&mut message, KEYRING_RECORD_LABEL);
        message.extend_from_slice(self.store_id.as_bytes());
        let mac = crate::primitives::hmac_sha256(&self.index_key, &message);
        let mut id = [0u8; 16];
        id.copy_from_slice(&mac[..16]);
        crate::ids::RecordId(id)
    }

    /// Returns an independent copy of the keyring.
    pub fn duplicate(&self) -> Self {
        Self {
            store_id: self.store_id,
            write_token: self.write_token.duplicate(),
            index_key: self.index_key.duplicate(),
            keys: self
                .keys
                .iter()
                .map(|key| DataKey {
                    id: key.id,
                    created: key.created,
                    status: key.status,
                    key: key.key.duplicate(),
                })
                .collect(),
        }
    }

    /// Serializes the keyring (keyring format version 1).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            1 + 16 + 2 * KEY_LEN + 2 + self.keys.len() * (4 + 8 + 1 + KEY_LEN),
        ));
        out.push(KEYRING_VERSION);
        out.extend_from_slice(self.store_id.as_bytes());
        out.extend_from_slice(self.write_token.expose());
        out.extend_from_slice(self.index_key.expose());
        // `add_key` and `merge` keep the count at or below MAX_KEYS.
        out.extend_from_slice(&(self.keys.len() as u16).to_be_bytes());
        for key in &self.keys {
            out.extend_from_slice(&key.id.to_be_bytes());
            out.extend_from_slice(&key.created.to_be_bytes());
            out.push(key.status.to_byte());
            out.extend_from_slice(key.key.expose());
        }
        out
    }

    /// Parses a serialized keyring.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedVersion`] for another format version, and
    /// [`Error::Malformed`] for truncated input, trailing bytes, an unknown
    /// status, duplicate key ids, or not exactly one primary key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut reader = Reader::new("keyring", bytes);
        let version = reader.u8("version")?;
        if version != KEYRING_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "keyring",
                version,
                supported: KEYRING_VERSION,
            });
        }
        let store_id = StoreId(reader.array("store id")?);
        let write_token = SecretKey::from_slice(reader.take(KEY_LEN, "write token")?)?;
        let index_key = SecretKey::from_slice(reader.take(KEY_LEN, "index key")?)?;
        let count = usize::from(reader.u16("key count")?);
        if count == 0 || count > MAX_KEYS {
            return Err(reader.error(format!("key count is {count}, expected 1 to {MAX_KEYS}")));
        }
        let mut keys: Vec<DataKey> = Vec::with_capacity(count);
        for _ in 0..count {
            let id = reader.u32("key id")?;
            if id == 0 {
                return Err(reader.error("key id 0 is reserved and names no key"));
            }
            let created = reader.u64("creation time")?;
            let status_byte = reader.u8("key status")?;
            let status = KeyStatus::from_byte(status_byte).ok_or_else(|| {
                reader.error(format!("key {id} has unknown status {status_byte}"))
            })?;
            let key = SecretKey::from_slice(reader.take(KEY_LEN, "key")?)?;
            if keys.iter().any(|known| known.id == id) {
                return Err(reader.error(format!("key id {id} appears twice")));
            }
            keys.push(DataKey {
                id,
                created,
                status,
                key,
            });
        }
        reader.finish()?;

        let primaries = keys
            .iter()
            .filter(|key| key.status == KeyStatus::Primary)
            .count();
        if primaries != 1 {
            return Err(Error::malformed(
                "keyring",
                format!("{primaries} primary keys, expected exactly 1"),
            ));
        }
        Ok(Self {
            store_id,
            write_token,
            index_key,
            keys,
        })
    }

    /// Seals the keyring under a device key (sealed keyring version 1).
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when the operating system provides no randomness.
    pub fn seal(&self, device_key: &SecretKey) -> Result<Vec<u8>, Error> {
        self.seal_with_nonce(device_key, &random::array()?)
    }

    /// Seals like [`Keyring::seal`] with a given nonce; only test vectors
    /// may choose the nonce.
    pub(crate) fn seal_with_nonce(
        &self,
        device_key: &SecretKey,
        nonce: &[u8; NONCE_LEN],
    ) -> Result<Vec<u8>, Error> {
        let plain = self.to_bytes();
        let mut out = Vec::with_capacity(SEALED_HEADER_LEN + plain.len() + TAG_LEN);
        out.push(SEALED_KEYRING_VERSION);
        out.extend_from_slice(self.store_id.as_bytes());
        out.extend_from_slice(nonce);
        let aad = sealed_keyring_aad(self.store_id);
        out.extend_from_slice(&plain);
        seal_key(device_key).seal_in_place(nonce, &aad, &mut out, SEALED_HEADER_LEN)?;
        Ok(out)
    }

    /// Reads the store id from a sealed keyring without opening it.
    ///
    /// # Errors
    ///
    /// As [`Keyring::unseal`] for the header.
    pub fn sealed_store_id(sealed: &[u8]) -> Result<StoreId, Error> {
        let mut reader = Reader::new("sealed keyring", sealed);
        let version = reader.u8("version")?;
        if version != SEALED_KEYRING_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "sealed keyring",
                version,
                supported: SEALED_KEYRING_VERSION,
            });
        }
        Ok(StoreId(reader.array("store id")?))
    }

    /// Opens a keyring sealed under `device_key`.
    ///
    /// # Errors
    ///
    /// [`Error::AuthenticationFailed`] when `device_key` is not the key it was
    /// sealed under or the bytes were modified, [`Error::UnsupportedVersion`]
    /// and [`Error::Malformed`] for bytes that are not a sealed keyring.
    pub fn unseal(device_key: &SecretKey, sealed: &[u8]) -> Result<Self, Error> {
        let store_id = Self::sealed_store_id(sealed)?;
        let mut reader = Reader::new("sealed keyring", sealed);
        reader.take(1 + 16, "header")?;
        let nonce: [u8; NONCE_LEN] = reader.array("nonce")?;
        let aad = sealed_keyring_aad(store_id);
        let plain = seal_key(device_key).open("sealed keyring", &nonce, &aad, reader.rest())?;
        let keyring = Self::from_bytes(&plain)?;
        if keyring.store_id != store_id {
            return Err(Error::malformed(
                "sealed keyring",
                "the store id in the header differs from the one inside",
            ));
        }
        Ok(keyring)
    }

    fn unused_key_id(&self) -> Result<u32, Error> {
        // Random ids let two devices rotate independently without choosing
        // the same id; zero is reserved so that it never names a key.
        loop {
            let id = u32::from_be_bytes(random::array()?);
            if id != 0 && self.get(id).is_none() {
                return Ok(id);
            }
        }
    }
}

fn seal_key(device_key: &SecretKey) -> AeadKey {
    let mut info = Vec::new();
    put_lp(&mut info, SEAL_KEY_LABEL);
    AeadKey::new(&hkdf_sha256(device_key, &[], &info))
}

fn sealed_keyring_aad(store_id: StoreId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    put_lp(&mut aad, SEAL_AAD_LABEL);
    aad.push(SEALED_KEYRING_VERSION);
    aad.extend_from_slice(store_id.as_bytes());
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_has_one_primary() {
        let keyring = Keyring::generate(100).unwrap();
        assert_eq!(keyring.keys().len(), 1);
        assert_eq!(keyring.primary().status(), KeyStatus::Primary);
        assert_eq!(keyring.primary().created(), 100);
    }

    #[test]
    fn rotate_keeps_old_key_active() {
        let mut keyring = Keyring::generate(1).unwrap();
        let old = keyring.primary().id();
        let new = keyring.rotate(2).unwrap();
        assert_ne!(old, new);
        assert_eq!(keyring.primary().id(), new);
        assert_eq!(keyring.get(old).unwrap().status(), KeyStatus::Active);
        keyring.promote(old).unwrap();
        assert_eq!(keyring.primary().id(), old);
        assert_eq!(keyring.get(new).unwrap().status(), KeyStatus::Active);
    }

    #[test]
    fn retire_rejects_primary() {
        let mut keyring = Keyring::generate(1).unwrap();
        let old = keyring.primary().id();
        assert!(keyring.retire(old).is_err());
        keyring.rotate(2).unwrap();
        keyring.retire(old).unwrap();
        assert!(keyring.get(old).is_none());
        assert!(matches!(
            keyring.retire(old),
            Err(Error::UnknownKeyId { .. })
        ));
    }

    #[test]
    fn bytes_round_trip() {
        let mut keyring = Keyring::generate(5).unwrap();
        keyring.rotate(6).unwrap();
        let parsed = Keyring::from_bytes(&keyring.to_bytes()).unwrap();
        assert_eq!(parsed.store_id(), keyring.store_id());
        assert_eq!(parsed.keys().len(), 2);
        assert_eq!(parsed.primary().id(), keyring.primary().id());
        assert!(parsed.index_key() == keyring.index_key());
        assert!(parsed.write_token() == keyring.write_token());
        for (a, b) in parsed.keys().iter().zip(keyring.keys()) {
            assert_eq!(a.id(), b.id());
            assert!(a.secret() == b.secret());
        }
    }

    #[test]
    fn from_bytes_rejects_every_truncation() {
        let bytes = Keyring::generate(5).unwrap().to_bytes();
        for len in 0..bytes.len() {
            assert!(Keyring::from_bytes(&bytes[..len]).is_err(), "length {len}");
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(Keyring::from_bytes(&long).is_err());
    }

    #[test]
    fn from_bytes_rejects_two_primaries() {
        let mut keyring = Keyring::generate(5).unwrap();
        keyring.add_key(6).unwrap();
        let mut bytes = keyring.to_bytes().to_vec();
        // The second key's status byte follows its id and creation time.
        let second_status = 1 + 16 + 64 + 2 + (4 + 8 + 1 + 32) + 4 + 8;
        bytes[second_status] = 1;
        let err = Keyring::from_bytes(&bytes).err().unwrap();
        assert!(err.to_string().contains("2 primary keys"), "{err}");
    }

    #[test]
    fn seal_round_trip_and_wrong_key() {
        let device = SecretKey::generate().unwrap();
        let keyring = Keyring::generate(5).unwrap();
        let sealed = keyring.seal(&device).unwrap();
        assert_eq!(
            Keyring::sealed_store_id(&sealed).unwrap(),
            keyring.store_id()
        );
        let opened = Keyring::unseal(&device, &sealed).unwrap();
        assert!(opened.primary().secret() == keyring.primary().secret());

        let other = SecretKey::generate().unwrap();
        assert!(matches!(
            Keyring::unseal(&other, &sealed),
            Err(Error::AuthenticationFailed {
                what: "sealed keyring"
            })
        ));
    }

    #[test]
    fn sealed_store_id_is_authenticated() {
        let device = SecretKey::generate().unwrap();
        let keyring = Keyring::generate(5).unwrap();
        let mut sealed = keyring.seal(&device).unwrap();
        sealed[3] ^= 0x40;
        assert!(matches!(
            Keyring::unseal(&device, &sealed),
            Err(Error::AuthenticationFailed { .. })
        ));
    }

    #[test]
    fn merge_adds_keys_and_newest_primary() {
        let mut a = Keyring::generate(10).unwrap();
        let mut b = a.duplicate();
        let new = b.rotate(20).unwrap();
        let summary = a.merge(&b).unwrap();
        assert_eq!(summary.added, vec![new]);
        assert!(summary.primary_changed);
        assert_eq!(a.primary().id(), new);
        // Merging again changes nothing.
        assert_eq!(a.merge(&b).unwrap(), MergeSummary::default());
    }

    #[test]
    fn transport_carries_rotated_keyring() {
        let old = Keyring::generate(10).unwrap();
        let mut new = old.duplicate();
        let rotated = new.rotate(20).unwrap();
        let sealed = new.seal_for_transport().unwrap();
        let opened = old.open_transport(&sealed).unwrap();
        assert_eq!(opened.primary().id(), rotated);
        let stranger = Keyring::generate(10).unwrap();
        assert!(stranger.open_transport(&sealed).is_err());
        assert_eq!(old.keyring_record_id(), new.keyring_record_id());
        assert_ne!(old.keyring_record_id(), stranger.keyring_record_id());
    }

    #[test]
    fn merge_rejects_other_store() {
        let mut a = Keyring::generate(10).unwrap();
        let b = Keyring::generate(10).unwrap();
        assert!(a.merge(&b).is_err());
    }
}
