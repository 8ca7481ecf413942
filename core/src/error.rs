//! The error type of the crypto core.
//!
//! Decryption failures are distinct enough for a user to act on (a key this
//! device lacks, data that was tampered with or sealed under another key, bytes
//! that are not an envelope at all) and never carry key material or plaintext.

use std::path::PathBuf;

use crate::ids::InviteId;

/// Everything that can go wrong in the crypto core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The envelope names a key id that is not in the keyring.
    #[error(
        "unknown key id {key_id}: this device's keyring has no such key \
         (a key it has not received yet, or data from another store)"
    )]
    UnknownKeyId {
        /// The key id from the envelope header.
        key_id: u32,
    },

    /// AES-GCM authentication failed.
    #[error(
        "authentication failed for {what}: it was modified, moved to another \
         place, or sealed under another key"
    )]
    AuthenticationFailed {
        /// What was being opened, such as "envelope" or "sealed keyring".
        what: &'static str,
    },

    /// Bytes that do not follow the format they claim to be.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// The format, such as "envelope" or "row".
        what: &'static str,
        /// What is wrong, with the offending size or value.
        reason: String,
    },

    /// A format version this build cannot read.
    #[error("unsupported {what} version {version}; this build reads version {supported}")]
    UnsupportedVersion {
        /// The format.
        what: &'static str,
        /// The version found.
        version: u8,
        /// The version this build reads.
        supported: u8,
    },

    /// An input over a size limit.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The input.
        what: &'static str,
        /// Its size in bytes.
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },

    /// An argument outside what the function accepts.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The argument.
        what: &'static str,
        /// What was expected.
        reason: String,
    },

    /// A keyfile that could not be read, created or parsed.
    #[error("keyfile {}: {reason}", path.display())]
    Keyfile {
        /// The keyfile's path.
        path: PathBuf,
        /// What failed, including the operating system's message.
        reason: String,
    },

    /// No device key exists for the store and none may be created.
    #[error(
        "no device key for store {store:?} on this device (looked in {looked_in}); \
         give the key file that holds it, or import the store's exported key"
    )]
    DeviceKeyNotFound {
        /// The store name.
        store: String,
        /// Where the key was looked for.
        looked_in: String,
    },

    /// The OS keychain failed in a way that is not "no keychain here".
    #[error("keychain: {0}")]
    Keychain(String),

    /// An export string whose checksum does not match its contents.
    #[error(
        "the key export string is damaged: its checksum does not match, so it \
         was changed or mistyped; copy it again"
    )]
    ExportChecksum,

    /// A passphrase-protected export opened with another passphrase.
    #[error("wrong passphrase for this key export, or the export was modified")]
    WrongPassphrase,

    /// A passphrase-protected export opened without a passphrase.
    #[error("this key export is protected by a passphrase; give the passphrase to import it")]
    PassphraseRequired,

    /// A text code (an invite, a pairing response or a pairing message)
    /// whose checksum does not match its contents.
    #[error(
        "the {what} is damaged: its checksum does not match, so it was changed \
         or mistyped; copy it again"
    )]
    Checksum {
        /// The kind of code, such as "invite code".
        what: &'static str,
    },

    /// A pairing invite used after its expiry time.
    #[error(
        "invite {invite_id} expired at {expires} (Unix seconds); create a new invite \
         on a device that has the store"
    )]
    InviteExpired {
        /// The invite's id.
        invite_id: InviteId,
        /// The expiry time in seconds since the Unix epoch.
        expires: u64,
    },

    /// A pairing response whose confirmation MAC does not verify.
    #[error(
        "the pairing response to invite {invite_id} failed verification: it was \
         modified on the way (by the sync server, for example), or made without \
         this invite's one-time secret; create a new invite"
    )]
    PairingRejected {
        /// The invite the response claims to be for.
        invite_id: InviteId,
    },

    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Random(getrandom::Error),
}

impl Error {
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Malformed {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn keyfile(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Self::Keyfile {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

/// Shorthand for results of the crypto core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
