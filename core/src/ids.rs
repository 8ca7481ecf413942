//! Sixteen-byte identifiers: store ids, device ids, blind record ids and
//! invite ids.
//!
//! None of them is secret. Store and device ids are random; record ids are
//! blinded with the store's index key (see [`crate::blind`]).

use std::fmt;

use crate::error::Error;
use crate::random;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// Copies the id from a slice of exactly 16 bytes.
            ///
            /// # Errors
            ///
            /// [`Error::Malformed`] when the slice has another length.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
                let array: [u8; 16] = bytes.try_into().map_err(|_| {
                    Error::malformed($what, format!("{} bytes, expected 16", bytes.len()))
                })?;
                Ok(Self(array))
            }

            /// Parses the 32-digit hexadecimal form.
            ///
            /// # Errors
            ///
            /// [`Error::Malformed`] when the text is not 32 hexadecimal digits.
            pub fn from_hex(text: &str) -> Result<Self, Error> {
                let bytes = crate::hex::decode(text).ok_or_else(|| {
                    Error::malformed($what, format!("{text:?} is not 32 hexadecimal digits"))
                })?;
                Self::from_slice(&bytes)
            }

            /// Returns the id bytes.
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for byte in self.0 {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

id_type!(
    /// The random id of a store, shared by all its devices and visible to the
    /// sync server.
    StoreId,
    "store id"
);

id_type!(
    /// The random id of one replica of a store (one database file), visible to
    /// the sync server.
    DeviceId,
    "device id"
);

id_type!(
    /// A blind record id: an HMAC of table and primary key under the store's
    /// index key, cut to 16 bytes.
    RecordId,
    "record id"
);

id_type!(
    /// The random id of a pairing invite. It is not secret: responses carry
    /// it through the sync server and errors name it. The invite's mailbox
    /// is named by [`crate::pairing::MailboxId`], which needs the one-time
    /// secret.
    InviteId,
    "invite id"
);

impl StoreId {
    /// Generates a random store id.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when the operating system provides no randomness.
    pub fn generate() -> Result<Self, Error> {
        Ok(Self(random::array()?))
    }
}

impl InviteId {
    /// Generates a random invite id.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when the operating system provides no randomness.
    pub fn generate() -> Result<Self, Error> {
        Ok(Self(random::array()?))
    }
}

impl DeviceId {
    /// Generates a random device id.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when the operating system provides no randomness.
    pub fn generate() -> Result<Self, Error> {
        Ok(Self(random::array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = StoreId::generate().unwrap();
        assert_eq!(StoreId::from_hex(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn from_hex_rejects_bad_text() {
        for text in ["", "zz", "00", &"0".repeat(33), &"é".repeat(16)] {
            assert!(StoreId::from_hex(text).is_err(), "{text:?}");
        }
    }
}
