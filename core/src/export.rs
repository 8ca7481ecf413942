//! Key export and import: a keyring as one line of text.
//!
//! ```text
//! PERSIST-KEY-1<Crockford base32 of: payload | SHA-256(payload)[..4]>
//!
//! payload = export version (1) = 1 | protection (1) | body
//!   protection 0, raw:        body = serialized keyring
//!   protection 1, passphrase: body = memory KiB (4) | iterations (4) | lanes (4)
//!                                    | salt (16) | nonce (12)
//!                                    | AES-256-GCM(key, keyring) with tag
//!     key = Argon2id (RFC 9106, version 0x13) of the passphrase and salt
//!     AAD = the payload bytes before the nonce
//! ```
//!
//! The text form (prefix, Crockford base32, checksum) is shared with the
//! pairing codes and lives in [`crate::text_form`].

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::keyring::Keyring;
use crate::primitives::{AeadKey, NONCE_LEN};
use crate::random;
use crate::reader::Reader;
use crate::secret::{KEY_LEN, Passphrase, SecretKey};
use crate::text_form::TextForm;

/// The prefix of every export string.
pub const PREFIX: &str = "PERSIST-KEY-1";

/// Version of the export payload.
pub const EXPORT_VERSION: u8 = 1;

const PROTECTION_RAW: u8 = 0;
const PROTECTION_PASSPHRASE: u8 = 1;
const SALT_LEN: usize = 16;

/// Maximum length of an export string in bytes, ample for a keyring of
/// [`crate::keyring::MAX_KEYS`] keys.
pub const MAX_EXPORT_LEN: usize = 128 * 1024;

const TEXT_FORM: TextForm = TextForm {
    prefix: PREFIX,
    what: "key export",
    max_len: MAX_EXPORT_LEN,
};

/// Argon2id cost of a passphrase-protected export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism.
    pub lanes: u32,
}

impl KdfParams {
    /// RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes.
    pub const RECOMMENDED: Self = Self {
        memory_kib: 64 * 1024,
        iterations: 3,
        lanes: 4,
    };

    /// Highest memory cost an import accepts (1 GiB), so that a crafted
    /// export cannot exhaust the importing machine.
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;

    /// Highest pass count an import accepts.
    pub const MAX_ITERATIONS: u32 = 64;

    /// Highest parallelism an import accepts.
    pub const MAX_LANES: u32 = 64;

    fn check(self) -> Result<Params, Error> {
        if self.memory_kib > Self::MAX_MEMORY_KIB
            || self.iterations > Self::MAX_ITERATIONS
            || self.lanes > Self::MAX_LANES
        {
            return Err(Error::invalid(
                "key export",
                format!(
                    "Argon2id cost of {} KiB, {} passes and {} lanes is above the limit of \
                     {} KiB, {} passes and {} lanes",
                    self.memory_kib,
                    self.iterations,
                    self.lanes,
                    Self::MAX_MEMORY_KIB,
                    Self::MAX_ITERATIONS,
                    Self::MAX_LANES
                ),
            ));
        }
        Params::new(self.memory_kib, self.iterations, self.lanes, Some(KEY_LEN))
            .map_err(|err| Error::invalid("key export", format!("invalid Argon2id cost: {err}")))
    }
}

/// Exports `keyring` as text, raw or protected by `passphrase`.
///
/// # Security
///
/// A raw export is the store's keys in the clear: anyone who reads it can
/// decrypt the store.
///
/// # Errors
///
/// [`Error::Invalid`] for an empty passphrase, and [`Error::Random`] when the
/// operating system provides no randomness.
pub fn export(
    keyring: &Keyring,
    passphrase: Option<&Passphrase>,
) -> Result<Zeroizing<String>, Error> {
    export_with(keyring, passphrase, KdfParams::RECOMMENDED)
}

/// Exports like [`export`] with a chosen Argon2id cost.
///
/// # Errors
///
/// As [`export`], and [`Error::Invalid`] for a cost outside the limits.
pub fn export_with(
    keyring: &Keyring,
    passphrase: Option<&Passphrase>,
    params: KdfParams,
) -> Result<Zeroizing<String>, Error> {
    export_inner(
        keyring,
        passphrase,
        params,
        &random::array()?,
        &random::array()?,
    )
}

/// Exports with a given salt and nonce; only test vectors may choose them.
pub(crate) fn export_inner(
    keyring: &Keyring,
    passphrase: Option<&Passphrase>,
    params: KdfParams,
    salt: &[u8; SALT_LEN],
    nonce: &[u8; NONCE_LEN],
) -> Result<Zeroizing<String>, Error> {
    let keyring_bytes = keyring.to_bytes();
    let mut payload = Zeroizing::new(Vec::with_capacity(keyring_bytes.len() + 64));
    payload.push(EXPORT_VERSION);
    match passphrase {
        None => {
            payload.push(PROTECTION_RAW);
            payload.extend_from_slice(&keyring_bytes);
        }
        Some(passphrase) => {
            if passphrase.is_empty() {
                return Err(Error::invalid("passphrase", "it is empty"));
            }
            let argon_params = params.check()?;
            payload.push(PROTECTION_PASSPHRASE);
            payload.extend_from_slice(&params.memory_kib.to_be_bytes());
            payload.extend_from_slice(&params.iterations.to_be_bytes());
            payload.extend_from_slice(&params.lanes.to_be_bytes());
            payload.extend_from_slice(salt);
            let aad = payload.to_vec();
            payload.extend_from_slice(nonce);
            let start = payload.len();
            payload.extend_from_slice(&keyring_bytes);
            let key = passphrase_key(passphrase, salt, argon_params)?;
            AeadKey::new(&key).seal_in_place(nonce, &aad, &mut payload, start)?;
        }
    }
    Ok(TEXT_FORM.encode(&payload))
}

/// Tells whether an export string needs a passphrase, after checking its
/// checksum.
///
/// # Errors
///
/// As [`import`] for the text form.
pub fn needs_passphrase(text: &str) -> Result<bool, Error> {
    let payload = decode_text(text)?;
    if payload[0] != EXPORT_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "key export",
            version: payload[0],
            supported: EXPORT_VERSION,
        });
    }
    Ok(payload[1] == PROTECTION_PASSPHRASE)
}

/// Imports a keyring from an export string.
///
/// # Errors
///
/// [`Error::Malformed`] for text that is not an export string,
/// [`Error::ExportChecksum`] for a damaged one, [`Error::PassphraseRequired`]
/// and [`Error::WrongPassphrase`] for a protected one, [`Error::Invalid`] for
/// a passphrase given with an unprotected one, and the keyring's parse errors
/// for its contents.
pub fn import(text: &str, passphrase: Option<&Passphrase>) -> Result<Keyring, Error> {
    let payload = decode_text(text)?;
    let mut reader = Reader::new("key export", &payload);
    let version = reader.u8("version")?;
    if version != EXPORT_VERSION {
        return Err(Error::UnsupportedVersion {
            what: "key export",
            version,
            supported: EXPORT_VERSION,
        });
    }
    match reader.u8("protection")? {
        // A passphrase the export does not need is rejected rather than
        // ignored, so that a user does not take an unprotected key for a
        // protected one.
        PROTECTION_RAW if passphrase.is_some() => Err(Error::invalid(
            "key export",
            "it is not protected by a passphrase, but a passphrase was given; leave the \
             passphrase out, or export the key again with one",
        )),
        PROTECTION_RAW => Keyring::from_bytes(reader.rest()),
        PROTECTION_PASSPHRASE => {
            let passphrase = passphrase.ok_or(Error::PassphraseRequired)?;
            let params = KdfParams {
                memory_kib: reader.u32("memory cost")?,
                iterations: reader.u32("iterations")?,
                lanes: reader.u32("lanes")?,
            };
            let salt: [u8; SALT_LEN] = reader.array("salt")?;
            let aad_len = payload.len() - reader.remaining();
            let nonce: [u8; NONCE_LEN] = reader.array("nonce")?;
            let key = passphrase_key(passphrase, &salt, params.check()?)?;
            let plain = AeadKey::new(&key)
                .open("key export", &nonce, &payload[..aad_len], reader.rest())
                .map_err(|err| match err {
                    Error::AuthenticationFailed { .. } => Error::WrongPassphrase,
                    other => other,
                })?;
            Keyring::from_bytes(&plain)
        }
        other => Err(reader.error(format!(
            "unknown protection {other}, expected 0 (raw) or 1 (passphrase)"
        ))),
    }
}

fn passphrase_key(
    passphrase: &Passphrase,
    salt: &[u8],
    params: Params,
) -> Result<SecretKey, Error> {
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(passphrase.expose(), salt, out.as_mut())
        .map_err(|err| Error::invalid("passphrase", format!("Argon2id failed: {err}")))?;
    Ok(SecretKey::from_array(out))
}

/// Strips the prefix, decodes the base32 and checks the checksum.
fn decode_text(text: &str) -> Result<Zeroizing<Vec<u8>>, Error> {
    TEXT_FORM.decode(text).map_err(|err| match err {
        // The export keeps its own error, which tells the user to copy the
        // key again.
        Error::Checksum { .. } => Error::ExportChecksum,
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cheap cost so that the tests stay fast; the format is the same.
    const FAST: KdfParams = KdfParams {
        memory_kib: 256,
        iterations: 1,
        lanes: 1,
    };

    fn same_keys(a: &Keyring, b: &Keyring) -> bool {
        a.store_id() == b.store_id()
            && a.index_key() == b.index_key()
            && a.write_token() == b.write_token()
            && a.keys().len() == b.keys().len()
            && a.keys()
                .iter()
                .zip(b.keys())
                .all(|(x, y)| x.id() == y.id() && x.secret() == y.secret())
    }

    #[test]
    fn raw_round_trip() {
        let keyring = Keyring::generate(3).unwrap();
        let text = export(&keyring, None).unwrap();
        assert!(text.starts_with(PREFIX));
        assert!(!needs_passphrase(&text).unwrap());
        assert!(same_keys(&import(&text, None).unwrap(), &keyring));
        let err = import(&text, Some(&Passphrase::new("x"))).unwrap_err();
        assert!(
            matches!(err, Error::Invalid { .. }) && err.to_string().contains("not protected"),
            "{err}"
        );
    }

    #[test]
    fn survives_case_spaces_hyphens_and_lookalikes() {
        let keyring = Keyring::generate(3).unwrap();
        let text = export(&keyring, None).unwrap();
        let body = &text[PREFIX.len()..];
        let mangled: String = body
            .chars()
            .enumerate()
            .flat_map(|(i, c)| {
                let c = match c {
                    '0' => 'o',
                    '1' => 'l',
                    c => c.to_ascii_lowercase(),
                };
                let sep = match i % 20 {
                    7 => Some('-'),
                    19 => Some('\n'),
                    _ => None,
                };
                std::iter::once(c).chain(sep)
            })
            .collect();
        let pasted = format!("  persist-key-1{mangled}\r\n");
        assert!(same_keys(&import(&pasted, None).unwrap(), &keyring));
    }

    #[test]
    fn every_single_typo_is_detected() {
        let keyring = Keyring::generate(3).unwrap();
        let text = export(&keyring, None).unwrap();
        let chars: Vec<char> = text.chars().collect();
        for index in PREFIX.len()..chars.len() {
            let mut typo = chars.clone();
            typo[index] = if typo[index] == 'X' { 'Y' } else { 'X' };
            let typo: String = typo.into_iter().collect();
            assert!(import(&typo, None).is_err(), "typo at {index} accepted");
        }
        let cut: String = chars[..chars.len() - 1].iter().collect();
        assert!(import(&cut, None).is_err());
    }

    #[test]
    fn passphrase_round_trip() {
        let keyring = Keyring::generate(3).unwrap();
        let passphrase = Passphrase::new("correct horse battery staple");
        let text = export_with(&keyring, Some(&passphrase), FAST).unwrap();
        assert!(needs_passphrase(&text).unwrap());
        assert!(matches!(
            import(&text, None),
            Err(Error::PassphraseRequired)
        ));
        assert!(matches!(
            import(&text, Some(&Passphrase::new("wrong"))),
            Err(Error::WrongPassphrase)
        ));
        assert!(same_keys(
            &import(&text, Some(&passphrase)).unwrap(),
            &keyring
        ));
    }

    #[test]
    fn recommended_cost_round_trip() {
        let keyring = Keyring::generate(3).unwrap();
        let passphrase = Passphrase::new("p");
        let text = export(&keyring, Some(&passphrase)).unwrap();
        assert!(same_keys(
            &import(&text, Some(&passphrase)).unwrap(),
            &keyring
        ));
    }

    #[test]
    fn empty_passphrase_is_rejected() {
        let keyring = Keyring::generate(3).unwrap();
        let err = export(&keyring, Some(&Passphrase::new(""))).unwrap_err();
        assert_eq!(err.to_string(), "invalid passphrase: it is empty");
    }

    #[test]
    fn excessive_cost_is_rejected() {
        let keyring = Keyring::generate(3).unwrap();
        let huge = KdfParams {
            memory_kib: KdfParams::MAX_MEMORY_KIB + 1,
            ..FAST
        };
        let err = export_with(&keyring, Some(&Passphrase::new("p")), huge).unwrap_err();
        assert!(err.to_string().contains("above the limit"), "{err}");
    }

    #[test]
    fn garbage_is_rejected_with_reason() {
        for text in [
            "",
            "hello",
            "PERSIST-KEY-1",
            "PERSIST-KEY-1UUUU",
            "PERSIST-KEY-1!!",
        ] {
            let err = import(text, None).unwrap_err();
            assert!(!err.to_string().is_empty(), "{text:?}");
        }
        let err = import("PERSIST-KEY-1AB#", None).unwrap_err();
        assert!(err.to_string().contains("'#'"), "{err}");
    }
}
