//! Secret key material.
//!
//! Every key Persist handles lives in a [`SecretKey`]: 32 bytes on the heap,
//! wiped when dropped, compared in constant time, with no `Debug`, `Display`
//! or `Clone` that could copy or print it by accident. Bytes leave the type only
//! through [`SecretKey::expose`], so every use of key material can be found by
//! searching for that one name.

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::error::Error;
use crate::random;

/// Length in bytes of every symmetric key Persist uses (AES-256, HMAC-SHA256).
pub const KEY_LEN: usize = 32;

/// A 256-bit symmetric key that is zeroized on drop.
///
/// # Security
///
/// The type deliberately implements neither `Debug` nor `Clone`: a copy must
/// be made with [`SecretKey::duplicate`], which reads as what it is.
pub struct SecretKey(Box<[u8; KEY_LEN]>);

impl SecretKey {
    /// Generates a key from the operating system's CSPRNG.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when the operating system provides no randomness.
    pub fn generate() -> Result<Self, Error> {
        let mut key = Self::zero();
        random::fill(key.0.as_mut())?;
        Ok(key)
    }

    /// Copies a key from a slice that must be exactly 32 bytes long.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] when the slice has another length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != KEY_LEN {
            return Err(Error::malformed(
                "key",
                format!("{} bytes, expected {KEY_LEN}", bytes.len()),
            ));
        }
        let mut key = Self::zero();
        key.0.copy_from_slice(bytes);
        Ok(key)
    }

    /// Takes ownership of a key held in a zeroizing array.
    pub fn from_array(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        let mut key = Self::zero();
        key.0.copy_from_slice(bytes.as_ref());
        key
    }

    /// Returns the key bytes.
    ///
    /// # Security
    ///
    /// The caller must not copy the bytes into a buffer that is not wiped.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Returns a second, independent copy of the key.
    pub fn duplicate(&self) -> Self {
        let mut key = Self::zero();
        key.0.copy_from_slice(self.0.as_ref());
        key
    }

    fn zero() -> Self {
        Self(Box::new([0u8; KEY_LEN]))
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl PartialEq for SecretKey {
    /// Compares two keys in constant time.
    fn eq(&self, other: &Self) -> bool {
        self.0.as_slice().ct_eq(other.0.as_slice()).into()
    }
}

impl Eq for SecretKey {}

/// A passphrase given by the user, zeroized on drop and never printed.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase.
    pub fn new(text: impl Into<String>) -> Self {
        Self(Zeroizing::new(text.into()))
    }

    /// Returns the passphrase bytes.
    ///
    /// # Security
    ///
    /// The caller must not copy the bytes into a buffer that is not wiped.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Tells whether the passphrase is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_differ() {
        let a = SecretKey::generate().unwrap();
        let b = SecretKey::generate().unwrap();
        assert!(a != b);
        assert!(a == a.duplicate());
    }

    #[test]
    fn from_slice_rejects_wrong_length() {
        let err = SecretKey::from_slice(&[0u8; 31]).err().unwrap();
        assert_eq!(err.to_string(), "malformed key: 31 bytes, expected 32");
    }
}
