//! Persist's crypto core: keys, the store keyring, the envelope format, the
//! row codec, blind record ids, the hybrid logical clock and the sync rules.
//!
//! It holds no database code. The SQLite and Postgres extensions translate SQL
//! values to the calls here and back, so every format, derivation and merge
//! rule is written once, in this crate, and specified byte for byte in
//! `docs/FORMAT.md`.
//!
//! Which type for which job:
//!
//! - [`device_key`] finds or creates the device key, in the OS keychain or a
//!   keyfile.
//! - [`Keyring`] holds a store's data keys, index key and write token, and is
//!   stored sealed under the device key ([`Keyring::seal`]).
//! - [`Cipher`] is an open keyring: it seals and opens [`envelope`]s and
//!   computes blind record ids.
//! - [`codec`] turns rows into the plaintext an envelope carries.
//! - [`export`] moves a keyring between devices as one line of text.
//! - [`pairing`] moves it to a new device through an X25519 key agreement
//!   started by an invite code.
//! - [`clock`] and [`sync`] order writes and pick the winner of a conflict.
//!
//! ```
//! use persist_core::{Cipher, Keyring, Location, Padding, Purpose};
//! use persist_core::codec::{self, RowKind, ValueRef};
//!
//! # fn main() -> Result<(), persist_core::Error> {
//! let cipher = Cipher::new(Keyring::generate(1_700_000_000)?);
//! let record_id = cipher.record_id("notes", &[ValueRef::Integer(1)]);
//! let row = codec::encode_row(
//!     RowKind::Row,
//!     [("id", ValueRef::Integer(1)), ("body", ValueRef::Text("milk, eggs"))],
//! )?;
//! let location = Location {
//!     purpose: Purpose::Row,
//!     table: "notes",
//!     record_id: record_id.as_bytes(),
//!     context: b"",
//! };
//! let envelope = cipher.seal(&location, &row, Padding::None)?;
//! let opened = codec::decode_row(&cipher.open(&location, &envelope)?)?;
//! assert_eq!(opened.get("body"), Some(&codec::Value::Text("milk, eggs".into())));
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

pub mod blind;
pub mod clock;
pub mod codec;
pub mod device_key;
pub mod envelope;
pub mod error;
pub mod export;
mod hex;
pub mod ids;
pub mod keyring;
pub mod padding;
pub mod pairing;
pub mod primitives;
pub mod random;
mod reader;
pub mod secret;
pub mod sync;
mod text_form;
#[cfg(test)]
mod vectors;

pub use envelope::{Cipher, Header, Location, Purpose};
pub use error::Error;
pub use ids::{DeviceId, InviteId, RecordId, StoreId};
pub use keyring::{DataKey, KeyStatus, Keyring};
pub use padding::Padding;
pub use secret::{Passphrase, SecretKey};
