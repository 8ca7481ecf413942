//! Device pairing: a new device receives a store's keyring through an X25519
//! key agreement that an invite code starts.
//!
//! ```text
//! inviter (device A, opens the store)       joiner (device B, no store yet)
//! PendingInvite::create  -- invite code --> Acceptance::accept
//!                        <-- response ----
//! PendingInvite::admit   -- message ----->  Acceptance::open -> Keyring
//! ```
//!
//! The invite code carries the store id, a random invite id, the inviter's
//! one-time X25519 public key, a 256-bit one-time secret and an expiry time.
//! It travels outside the sync server (shown on one screen and typed or
//! pasted on the other). The response and the message may travel through
//! the server's mailbox or by hand.
//!
//! Both devices derive the pairing key with HKDF-SHA256 (RFC 5869) from the
//! X25519 (RFC 7748) shared secret, salted with the one-time secret, and
//! bind the store id, the invite id and both public keys in `info`. A server
//! that swaps a public key for its own cannot derive the key, because it
//! does not know the one-time secret, and it cannot make the joiner's
//! confirmation MAC match, so the inviter rejects the response. The keyring
//! travels sealed with AES-256-GCM under a key derived from the pairing key.
//!
//! One-time X25519 secrets are consumed by value when used, secrets and
//! derived keys are wiped on drop, and no type here prints key material in
//! `Debug` or in an error. The byte layouts are specified in
//! `docs/FORMAT.md`, section 13.

use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::ids::{InviteId, StoreId};
use crate::keyring::Keyring;
use crate::primitives::{AeadKey, NONCE_LEN, TAG_LEN, hkdf_sha256, hmac_sha256, put_lp};
use crate::random;
use crate::reader::Reader;
use crate::secret::{KEY_LEN, SecretKey};
use crate::text_form::TextForm;

/// Version of every pairing payload and sealed pairing state.
pub const PAIRING_VERSION: u8 = 1;

/// The prefix of an invite code.
pub const INVITE_PREFIX: &str = "PERSIST-INVITE-1";

/// The prefix of a pairing response.
pub const RESPONSE_PREFIX: &str = "PERSIST-RESPONSE-1";

/// The prefix of a pairing message, the sealed keyring.
pub const MESSAGE_PREFIX: &str = "PERSIST-KEYRING-1";

/// Invite lifetime when the caller chooses none: one hour.
pub const DEFAULT_LIFETIME_SECS: u64 = 3600;

/// Minimum invite lifetime: one minute.
pub const MIN_LIFETIME_SECS: u64 = 60;

/// Maximum invite lifetime: one day, so that a code that leaks later (from
/// a screenshot or a chat log) has most likely expired.
pub const MAX_LIFETIME_SECS: u64 = 86_400;

/// Length of an X25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;

/// Length of the confirmation MAC in a response.
const MAC_LEN: usize = 32;

/// Length of an invite payload: version, store id, invite id, public key,
/// one-time secret and expiry.
const INVITE_LEN: usize = 1 + 16 + 16 + PUBLIC_KEY_LEN + KEY_LEN + 8;

/// Length of a response payload: version, invite id, public key and MAC.
pub const RESPONSE_LEN: usize = 1 + 16 + PUBLIC_KEY_LEN + MAC_LEN;

/// Length of a message header: version, invite id and nonce.
const MESSAGE_HEADER_LEN: usize = 1 + 16 + NONCE_LEN;

/// Maximum length of a message payload: the header, a keyring of
/// [`crate::keyring::MAX_KEYS`] keys (46,163 bytes) and the tag.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

const PAIRING_KEY_LABEL: &[u8] = b"persist v1 pairing key";
const CONFIRM_KEY_LABEL: &[u8] = b"persist v1 pairing confirm key";
const MESSAGE_KEY_LABEL: &[u8] = b"persist v1 pairing message key";
const RESPONSE_MAC_LABEL: &[u8] = b"persist v1 pairing response";
const MESSAGE_AAD_LABEL: &[u8] = b"persist v1 pairing message";
const STATE_KEY_LABEL: &[u8] = b"persist v1 pairing state key";
const STATE_AAD_LABEL: &[u8] = b"persist v1 pairing state";
const MAILBOX_ID_LABEL: &[u8] = b"persist v1 pairing mailbox id";

const STATE_INVITER: u8 = 1;
const STATE_JOINER: u8 = 2;

pub(crate) const INVITE_FORM: TextForm = TextForm {
    prefix: INVITE_PREFIX,
    what: "invite code",
    max_len: 1024,
};

pub(crate) const RESPONSE_FORM: TextForm = TextForm {
    prefix: RESPONSE_PREFIX,
    what: "pairing response",
    max_len: 1024,
};

pub(crate) const MESSAGE_FORM: TextForm = TextForm {
    prefix: MESSAGE_PREFIX,
    what: "pairing message",
    max_len: 128 * 1024,
};

/// Checks an invite lifetime in seconds against the limits.
///
/// # Errors
///
/// [`Error::Invalid`] outside [`MIN_LIFETIME_SECS`] to [`MAX_LIFETIME_SECS`].
pub fn check_lifetime(lifetime: u64) -> Result<(), Error> {
    if (MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS).contains(&lifetime) {
        Ok(())
    } else {
        Err(Error::invalid(
            "invite lifetime",
            format!(
                "{lifetime} seconds is outside the allowed {MIN_LIFETIME_SECS} to \
                 {MAX_LIFETIME_SECS} seconds"
            ),
        ))
    }
}

fn check_unexpired(invite_id: InviteId, expires: u64, now: u64) -> Result<(), Error> {
    if now >= expires {
        Err(Error::InviteExpired { invite_id, expires })
    } else {
        Ok(())
    }
}

fn check_version(what: &'static str, version: u8) -> Result<(), Error> {
    if version == PAIRING_VERSION {
        Ok(())
    } else {
        Err(Error::UnsupportedVersion {
            what,
            version,
            supported: PAIRING_VERSION,
        })
    }
}

/// A one-time X25519 secret, consumed by the key agreement.
pub(crate) struct EphemeralKey(StaticSecret);

impl EphemeralKey {
    /// Takes a secret from 32 bytes; X25519 clamps them when they are used.
    pub(crate) fn from_bytes(bytes: &Zeroizing<[u8; KEY_LEN]>) -> Self {
        Self(StaticSecret::from(**bytes))
    }

    fn generate() -> Result<Self, Error> {
        let bytes = Zeroizing::new(random::array::<KEY_LEN>()?);
        Ok(Self::from_bytes(&bytes))
    }

    /// Returns the public key.
    pub(crate) fn public(&self) -> [u8; PUBLIC_KEY_LEN] {
        PublicKey::from(&self.0).to_bytes()
    }

    /// Runs X25519 with `peer` and returns the shared secret, consuming this
    /// secret so it is used once.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] when `peer` is a low-order point, which makes the
    /// shared secret all zeros whatever this secret is.
    pub(crate) fn agree(self, peer: &[u8; PUBLIC_KEY_LEN]) -> Result<SecretKey, Error> {
        let shared = self.0.diffie_hellman(&PublicKey::from(*peer));
        if !shared.was_contributory() {
            return Err(Error::invalid(
                "X25519 public key",
                "it is a low-order point, so the shared secret would be all zeros and \
                 not depend on this device's secret; the code was modified",
            ));
        }
        Ok(SecretKey::from_array(Zeroizing::new(shared.to_bytes())))
    }

    fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.as_bytes()
    }
}

/// Length of a mailbox id in bytes.
pub const MAILBOX_ID_LEN: usize = 16;

/// The id of an invite's mailbox on the sync server, derived from the
/// one-time secret so that only the two devices can compute it.
///
/// The server stores it and sees it in every mailbox call, so it is no
/// secret from the server, but it is the capability to read, write or
/// discard the mailbox: a party that knows only the invite id (which the
/// response carries and errors name) cannot derive it. `Debug` does not
/// print it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct MailboxId([u8; MAILBOX_ID_LEN]);

impl MailboxId {
    /// Derives the mailbox id: HKDF-SHA256 of the one-time secret with an
    /// empty salt and `lp(label) || invite id` as `info`, cut to 16 bytes.
    pub(crate) fn derive(one_time_secret: &SecretKey, invite_id: InviteId) -> Self {
        let mut info = Vec::with_capacity(64);
        put_lp(&mut info, MAILBOX_ID_LABEL);
        info.extend_from_slice(invite_id.as_bytes());
        let okm = hkdf_sha256(one_time_secret, &[], &info);
        let mut id = [0u8; MAILBOX_ID_LEN];
        id.copy_from_slice(&okm.expose()[..MAILBOX_ID_LEN]);
        Self(id)
    }

    /// Returns the id bytes, as the mailbox functions take them.
    pub fn as_bytes(&self) -> &[u8; MAILBOX_ID_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for MailboxId {
    /// Hides the id, because it is the capability to use the mailbox.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailboxId(..)")
    }
}

/// Derives the pairing key: HKDF-SHA256 of the X25519 shared secret,
/// salted with the one-time secret, with the transcript in `info`.
pub(crate) fn pairing_key(
    shared: &SecretKey,
    one_time_secret: &SecretKey,
    transcript: &[u8],
) -> SecretKey {
    let mut info = Vec::with_capacity(128);
    put_lp(&mut info, PAIRING_KEY_LABEL);
    info.extend_from_slice(transcript);
    hkdf_sha256(shared, one_time_secret.expose(), &info)
}

/// The keys both devices derive from the pairing key.
pub(crate) struct PairingKeys {
    /// Key of the joiner's confirmation MAC.
    pub(crate) confirm: SecretKey,
    /// Key that seals the keyring message.
    pub(crate) message: SecretKey,
}

impl PairingKeys {
    pub(crate) fn derive(
        shared: &SecretKey,
        one_time_secret: &SecretKey,
        transcript: &[u8],
    ) -> Self {
        let pairing = pairing_key(shared, one_time_secret, transcript);
        let subkey = |label: &[u8]| {
            let mut info = Vec::with_capacity(64);
            put_lp(&mut info, label);
            hkdf_sha256(&pairing, &[], &info)
        };
        Self {
            confirm: subkey(CONFIRM_KEY_LABEL),
            message: subkey(MESSAGE_KEY_LABEL),
        }
    }

    pub(crate) fn response_mac(&self, transcript: &[u8]) -> [u8; MAC_LEN] {
        let mut input = Vec::with_capacity(128);
        put_lp(&mut input, RESPONSE_MAC_LABEL);
        input.extend_from_slice(transcript);
        hmac_sha256(&self.confirm, &input)
    }
}

/// The values both devices bind into the key derivation and the MAC:
/// version, store id, invite id, expiry time, inviter's and joiner's
/// public keys. Binding the expiry means a code whose expiry was changed
/// derives other keys, so the inviter rejects the response.
pub(crate) fn transcript(invite: &Invite, joiner_public: &[u8; PUBLIC_KEY_LEN]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 32 + 8 + 2 * PUBLIC_KEY_LEN);
    out.push(PAIRING_VERSION);
    out.extend_from_slice(invite.store_id.as_bytes());
    out.extend_from_slice(invite.invite_id.as_bytes());
    out.extend_from_slice(&invite.expires.to_be_bytes());
    out.extend_from_slice(&invite.inviter_public);
    out.extend_from_slice(joiner_public);
    out
}

fn message_aad(store_id: StoreId, invite_id: InviteId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    put_lp(&mut aad, MESSAGE_AAD_LABEL);
    aad.push(PAIRING_VERSION);
    aad.extend_from_slice(store_id.as_bytes());
    aad.extend_from_slice(invite_id.as_bytes());
    aad
}

/// An invite: what the invite code carries.
pub struct Invite {
    store_id: StoreId,
    invite_id: InviteId,
    inviter_public: [u8; PUBLIC_KEY_LEN],
    one_time_secret: SecretKey,
    expires: u64,
}

impl std::fmt::Debug for Invite {
    /// Shows the ids and the expiry, never the one-time secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invite")
            .field("store_id", &self.store_id)
            .field("invite_id", &self.invite_id)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Invite {
    /// Returns the id of the store the invite joins.
    pub fn store_id(&self) -> StoreId {
        self.store_id
    }

    /// Returns the invite's random id.
    pub fn invite_id(&self) -> InviteId {
        self.invite_id
    }

    /// Returns the expiry time in seconds since the Unix epoch.
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// Derives the id of the invite's mailbox on the sync server.
    pub fn mailbox_id(&self) -> MailboxId {
        MailboxId::derive(&self.one_time_secret, self.invite_id)
    }

    /// Encodes the invite code.
    ///
    /// # Security
    ///
    /// The code contains the one-time secret: whoever reads it before the
    /// invited device uses it can join the store in its place.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut payload = Zeroizing::new(Vec::with_capacity(INVITE_LEN));
        payload.push(PAIRING_VERSION);
        payload.extend_from_slice(self.store_id.as_bytes());
        payload.extend_from_slice(self.invite_id.as_bytes());
        payload.extend_from_slice(&self.inviter_public);
        payload.extend_from_slice(self.one_time_secret.expose());
        payload.extend_from_slice(&self.expires.to_be_bytes());
        INVITE_FORM.encode(&payload)
    }

    /// Parses an invite code.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for text that is not an invite code or has the
    /// wrong length, [`Error::Checksum`] for a damaged one, and
    /// [`Error::UnsupportedVersion`] for another format version.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let payload = INVITE_FORM.decode(text)?;
        let mut reader = Reader::new("invite code", &payload);
        check_version("invite code", reader.u8("version")?)?;
        let invite = Self {
            store_id: StoreId(reader.array("store id")?),
            invite_id: InviteId(reader.array("invite id")?),
            inviter_public: reader.array("public key")?,
            one_time_secret: SecretKey::from_slice(reader.take(KEY_LEN, "one-time secret")?)?,
            expires: reader.u64("expiry time")?,
        };
        reader.finish()?;
        Ok(invite)
    }

    /// Fails when the invite has expired at `now` (Unix seconds).
    ///
    /// # Errors
    ///
    /// [`Error::InviteExpired`].
    pub fn check_unexpired(&self, now: u64) -> Result<(), Error> {
        check_unexpired(self.invite_id, self.expires, now)
    }
}

/// The inviter's side of an invite: the invite and its one-time X25519
/// secret, kept (sealed under the device key) until the response arrives.
pub struct PendingInvite {
    invite: Invite,
    secret: EphemeralKey,
}

impl std::fmt::Debug for PendingInvite {
    /// Shows the invite's ids and expiry, never a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingInvite")
            .field("invite", &self.invite)
            .finish_non_exhaustive()
    }
}

impl PendingInvite {
    /// Creates an invite to store `store_id` that expires `lifetime` seconds
    /// after `now` (Unix seconds).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a lifetime outside the limits, and
    /// [`Error::Random`] when the operating system provides no randomness.
    pub fn create(store_id: StoreId, now: u64, lifetime: u64) -> Result<Self, Error> {
        check_lifetime(lifetime)?;
        Ok(Self::from_parts(
            store_id,
            InviteId::generate()?,
            EphemeralKey::generate()?,
            SecretKey::generate()?,
            now.saturating_add(lifetime),
        ))
    }

    /// Builds an invite from given parts; only test vectors and unsealing
    /// choose them.
    pub(crate) fn from_parts(
        store_id: StoreId,
        invite_id: InviteId,
        secret: EphemeralKey,
        one_time_secret: SecretKey,
        expires: u64,
    ) -> Self {
        Self {
            invite: Invite {
                store_id,
                invite_id,
                inviter_public: secret.public(),
                one_time_secret,
                expires,
            },
            secret,
        }
    }

    /// Returns the invite, to encode as the invite code.
    pub fn invite(&self) -> &Invite {
        &self.invite
    }

    /// Checks the joiner's response and seals `keyring` for the joiner,
    /// consuming the invite's one-time secret.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a response to another invite, a keyring of
    /// another store or a low-order public key, [`Error::InviteExpired`]
    /// after the expiry time, [`Error::PairingRejected`] when the
    /// confirmation MAC does not verify, and [`Error::Random`] when the
    /// operating system provides no randomness.
    pub fn admit(
        self,
        response: &Response,
        keyring: &Keyring,
        now: u64,
    ) -> Result<PairingMessage, Error> {
        let nonce = random::array()?;
        self.admit_with_nonce(response, keyring, now, &nonce)
    }

    /// Admits like [`PendingInvite::admit`] with a given nonce; only test
    /// vectors may choose it.
    pub(crate) fn admit_with_nonce(
        self,
        response: &Response,
        keyring: &Keyring,
        now: u64,
        nonce: &[u8; NONCE_LEN],
    ) -> Result<PairingMessage, Error> {
        let invite = &self.invite;
        if response.invite_id != invite.invite_id {
            return Err(Error::invalid(
                "pairing response",
                format!(
                    "it is for invite {}, not invite {}",
                    response.invite_id, invite.invite_id
                ),
            ));
        }
        invite.check_unexpired(now)?;
        if keyring.store_id() != invite.store_id {
            return Err(Error::invalid(
                "keyring",
                format!(
                    "it belongs to store {}, but the invite is for store {}",
                    keyring.store_id(),
                    invite.store_id
                ),
            ));
        }

        let transcript = transcript(invite, &response.joiner_public);
        let invite_id = invite.invite_id;
        let store_id = invite.store_id;
        let shared = self.secret.agree(&response.joiner_public)?;
        let keys = PairingKeys::derive(&shared, &invite.one_time_secret, &transcript);
        let expected = keys.response_mac(&transcript);
        if !bool::from(expected.ct_eq(&response.mac)) {
            return Err(Error::PairingRejected { invite_id });
        }

        let plain = keyring.to_bytes();
        let mut bytes = Vec::with_capacity(MESSAGE_HEADER_LEN + plain.len() + TAG_LEN);
        bytes.push(PAIRING_VERSION);
        bytes.extend_from_slice(invite_id.as_bytes());
        bytes.extend_from_slice(nonce);
        bytes.extend_from_slice(&plain);
        AeadKey::new(&keys.message).seal_in_place(
            nonce,
            &message_aad(store_id, invite_id),
            &mut bytes,
            MESSAGE_HEADER_LEN,
        )?;
        Ok(PairingMessage { bytes, invite_id })
    }

    /// Seals the pending invite under a device key, for storage until the
    /// response arrives.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when the operating system provides no randomness.
    pub fn seal(&self, device_key: &SecretKey) -> Result<Vec<u8>, Error> {
        let mut plain = Zeroizing::new(Vec::with_capacity(INVITE_LEN + KEY_LEN));
        plain.extend_from_slice(INVITE_FORM.decode(&self.invite.to_text())?.as_slice());
        plain.extend_from_slice(self.secret.expose());
        seal_state(
            device_key,
            STATE_INVITER,
            self.invite.invite_id,
            &plain,
            &random::array()?,
        )
    }

    /// Opens a pending invite sealed by [`PendingInvite::seal`].
    ///
    /// # Errors
    ///
    /// [`Error::AuthenticationFailed`] under another device key or after a
    /// modification, and [`Error::Malformed`] or
    /// [`Error::UnsupportedVersion`] for bytes that are not a sealed invite.
    pub fn unseal(device_key: &SecretKey, sealed: &[u8]) -> Result<Self, Error> {
        let plain = open_state(device_key, STATE_INVITER, sealed)?;
        let mut reader = Reader::new("sealed pairing state", &plain);
        check_version("sealed pairing state", reader.u8("version")?)?;
        let store_id = StoreId(reader.array("store id")?);
        let invite_id = InviteId(reader.array("invite id")?);
        let inviter_public: [u8; PUBLIC_KEY_LEN] = reader.array("public key")?;
        let one_time_secret = SecretKey::from_slice(reader.take(KEY_LEN, "one-time secret")?)?;
        let expires = reader.u64("expiry time")?;
        let secret = Zeroizing::new(reader.array::<KEY_LEN>("secret")?);
        reader.finish()?;
        let pending = Self::from_parts(
            store_id,
            invite_id,
            EphemeralKey::from_bytes(&secret),
            one_time_secret,
            expires,
        );
        if pending.invite.inviter_public != inviter_public {
            return Err(Error::malformed(
                "sealed pairing state",
                "the public key does not match the secret",
            ));
        }
        Ok(pending)
    }
}

/// The joiner's response: its one-time public key and the confirmation MAC
/// that proves it derived the same pairing key. It contains nothing secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    invite_id: InviteId,
    joiner_public: [u8; PUBLIC_KEY_LEN],
    mac: [u8; MAC_LEN],
}

impl Response {
    /// Returns the id of the invite this response is for.
    pub fn invite_id(&self) -> InviteId {
        self.invite_id
    }

    /// Serializes the response: the bytes the mailbox holds.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RESPONSE_LEN);
        out.push(PAIRING_VERSION);
        out.extend_from_slice(self.invite_id.as_bytes());
        out.extend_from_slice(&self.joiner_public);
        out.extend_from_slice(&self.mac);
        out
    }

    /// Parses serialized response bytes.
    ///
    /// # Errors
    ///
    /// [`Error::Malformed`] for the wrong length and
    /// [`Error::UnsupportedVersion`] for another format version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let mut reader = Reader::new("pairing response", bytes);
        check_version("pairing response", reader.u8("version")?)?;
        let response = Self {
            invite_id: InviteId(reader.array("invite id")?),
            joiner_public: reader.array("public key")?,
            mac: reader.array("confirmation MAC")?,
        };
        reader.finish()?;
        Ok(response)
    }

    /// Encodes the response as text, for the offline path.
    pub fn to_text(&self) -> String {
        RESPONSE_FORM.encode(&self.to_bytes()).to_string()
    }

    /// Parses the text form.
    ///
    /// # Errors
    ///
    /// As [`Response::from_bytes`], and [`Error::Checksum`] for a damaged
    /// text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::from_bytes(&RESPONSE_FORM.decode(text)?)
    }
}

/// The keyring sealed for the joiner under the pairing key.
#[derive(Clone)]
pub struct PairingMessage {
    bytes: Vec<u8>,
    invite_id: InviteId,
}

impl std::fmt::Debug for PairingMessage {
    /// Shows the invite id and the size; the contents are ciphertext.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairingMessage")
            .field("invite_id", &self.invite_id)
            .field("len", &self.bytes.len())
            .finish()
    }
}

impl PairingMessage {
    /// Returns the id of the invite the message is for.
    pub fn invite_id(&self) -> InviteId {
        self.invite_id
    }

    /// Returns the serialized message: the bytes the mailbox holds.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Checks the header of serialized message bytes.
    ///
    /// # Errors
    ///
    /// [`Error::TooLarge`] over [`MAX_MESSAGE_LEN`], [`Error::Malformed`]
    /// when shorter than a header and a tag, and
    /// [`Error::UnsupportedVersion`] for another format version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(Error::TooLarge {
                what: "pairing message",
                size: bytes.len(),
                limit: MAX_MESSAGE_LEN,
            });
        }
        let mut reader = Reader::new("pairing message", bytes);
        check_version("pairing message", reader.u8("version")?)?;
        let invite_id = InviteId(reader.array("invite id")?);
        reader.take(NONCE_LEN + TAG_LEN, "nonce and tag")?;
        Ok(Self {
            bytes: bytes.to_vec(),
            invite_id,
        })
    }

    /// Encodes the message as text, for the offline path.
    pub fn to_text(&self) -> String {
        MESSAGE_FORM.encode(&self.bytes).to_string()
    }

    /// Parses the text form.
    ///
    /// # Errors
    ///
    /// As [`PairingMessage::from_bytes`], and [`Error::Checksum`] for a
    /// damaged text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        Self::from_bytes(&MESSAGE_FORM.decode(text)?)
    }
}

/// The joiner's side after accepting an invite: the key that will open the
/// keyring message, kept (sealed under the device key) until it arrives.
pub struct Acceptance {
    store_id: StoreId,
    invite_id: InviteId,
    expires: u64,
    mailbox_id: MailboxId,
    message_key: SecretKey,
}

impl std::fmt::Debug for Acceptance {
    /// Shows the ids and the expiry, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acceptance")
            .field("store_id", &self.store_id)
            .field("invite_id", &self.invite_id)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Acceptance {
    /// Accepts `invite` at `now` (Unix seconds): runs the key agreement
    /// with a fresh one-time secret and returns the state to keep and the
    /// response to send to the inviter.
    ///
    /// # Errors
    ///
    /// [`Error::InviteExpired`] after the expiry time, [`Error::Invalid`]
    /// for a low-order public key in the invite, and [`Error::Random`] when
    /// the operating system provides no randomness.
    pub fn accept(invite: &Invite, now: u64) -> Result<(Self, Response), Error> {
        invite.check_unexpired(now)?;
        Self::accept_with_secret(invite, EphemeralKey::generate()?)
    }

    /// Accepts with a given one-time secret; only test vectors may choose it.
    pub(crate) fn accept_with_secret(
        invite: &Invite,
        secret: EphemeralKey,
    ) -> Result<(Self, Response), Error> {
        let joiner_public = secret.public();
        let transcript = transcript(invite, &joiner_public);
        let shared = secret.agree(&invite.inviter_public)?;
        let keys = PairingKeys::derive(&shared, &invite.one_time_secret, &transcript);
        let response = Response {
            invite_id: invite.invite_id,
            joiner_public,
            mac: keys.response_mac(&transcript),
        };
        let acceptance = Self {
            store_id: invite.store_id,
            invite_id: invite.invite_id,
            expires: invite.expires,
            mailbox_id: invite.mailbox_id(),
            message_key: keys.message,
        };
        Ok((acceptance, response))
    }

    /// Returns the id of the store being joined.
    pub fn store_id(&self) -> StoreId {
        self.store_id
    }

    /// Returns the id of the accepted invite.
    pub fn invite_id(&self) -> InviteId {
        self.invite_id
    }

    /// Returns the invite's expiry time in seconds since the Unix epoch.
    pub fn expires(&self) -> u64 {
        self.expires
    }

    /// Returns the id of the invite's mailbox on the sync server.
    pub fn mailbox_id(&self) -> MailboxId {
        self.mailbox_id
    }

    /// Opens the inviter's message and returns the store keyring.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a message to another invite or a keyring of
    /// another store, [`Error::InviteExpired`] after the expiry time,
    /// [`Error::AuthenticationFailed`] for a modified message or one sealed
    /// under another pairing key, and the keyring's parse errors.
    pub fn open(&self, message: &PairingMessage, now: u64) -> Result<Keyring, Error> {
        if message.invite_id != self.invite_id {
            return Err(Error::invalid(
                "pairing message",
                format!(
                    "it is for invite {}, not invite {}",
                    message.invite_id, self.invite_id
                ),
            ));
        }
        check_unexpired(self.invite_id, self.expires, now)?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&message.bytes[1 + 16..MESSAGE_HEADER_LEN]);
        let plain = AeadKey::new(&self.message_key).open(
            "pairing message",
            &nonce,
            &message_aad(self.store_id, self.invite_id),
            &message.bytes[MESSAGE_HEADER_LEN..],
        )?;
        let keyring = Keyring::from_bytes(&plain)?;
        if keyring.store_id() != self.store_id {
            return Err(Error::invalid(
                "pairing message",
                format!(
                    "its keyring belongs to store {}, but the invite is for store {}",
                    keyring.store_id(),
                    self.store_id
                ),
            ));
        }
        Ok(keyring)
    }

    /// Seals the acceptance under a device key, for storage until the
    /// message arrives.
    ///
    /// # Errors
    ///
    /// [`Error::Random`] when the operating system provides no randomness.
    pub fn seal(&self, device_key: &SecretKey) -> Result<Vec<u8>, Error> {
        let mut plain = Zeroizing::new(Vec::with_capacity(1 + 16 + 8 + MAILBOX_ID_LEN + KEY_LEN));
        plain.push(PAIRING_VERSION);
        plain.extend_from_slice(self.store_id.as_bytes());
        plain.extend_from_slice(&self.expires.to_be_bytes());
        plain.extend_from_slice(self.mailbox_id.as_bytes());
        plain.extend_from_slice(self.message_key.expose());
        seal_state(
            device_key,
            STATE_JOINER,
            self.invite_id,
            &plain,
            &random::array()?,
        )
    }

    /// Opens an acceptance sealed by [`Acceptance::seal`].
    ///
    /// # Errors
    ///
    /// As [`PendingInvite::unseal`].
    pub fn unseal(device_key: &SecretKey, sealed: &[u8]) -> Result<Self, Error> {
        let invite_id = sealed_state_invite_id(sealed)?;
        let plain = open_state(device_key, STATE_JOINER, sealed)?;
        let mut reader = Reader::new("sealed pairing state", &plain);
        check_version("sealed pairing state", reader.u8("version")?)?;
        let acceptance = Self {
            store_id: StoreId(reader.array("store id")?),
            invite_id,
            expires: reader.u64("expiry time")?,
            mailbox_id: MailboxId(reader.array("mailbox id")?),
            message_key: SecretKey::from_slice(reader.take(KEY_LEN, "message key")?)?,
        };
        reader.finish()?;
        Ok(acceptance)
    }
}

/// Length of a sealed state's header: version, kind, invite id and nonce.
const STATE_HEADER_LEN: usize = 1 + 1 + 16 + NONCE_LEN;

fn state_key(device_key: &SecretKey) -> AeadKey {
    let mut info = Vec::new();
    put_lp(&mut info, STATE_KEY_LABEL);
    AeadKey::new(&hkdf_sha256(device_key, &[], &info))
}

fn state_aad(kind: u8, invite_id: InviteId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(64);
    put_lp(&mut aad, STATE_AAD_LABEL);
    aad.push(PAIRING_VERSION);
    aad.push(kind);
    aad.extend_from_slice(invite_id.as_bytes());
    aad
}

fn seal_state(
    device_key: &SecretKey,
    kind: u8,
    invite_id: InviteId,
    plain: &[u8],
    nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(STATE_HEADER_LEN + plain.len() + TAG_LEN);
    out.push(PAIRING_VERSION);
    out.push(kind);
    out.extend_from_slice(invite_id.as_bytes());
    out.extend_from_slice(nonce);
    out.extend_from_slice(plain);
    state_key(device_key).seal_in_place(
        nonce,
        &state_aad(kind, invite_id),
        &mut out,
        STATE_HEADER_LEN,
    )?;
    Ok(out)
}

/// Reads the invite id from the header of a sealed pairing state.
///
/// # Errors
///
/// [`Error::Malformed`] for a truncated header and
/// [`Error::UnsupportedVersion`] for another format version.
pub fn sealed_state_invite_id(sealed: &[u8]) -> Result<InviteId, Error> {
    let mut reader = Reader::new("sealed pairing state", sealed);
    check_version("sealed pairing state", reader.u8("version")?)?;
    reader.u8("kind")?;
    Ok(InviteId(reader.array("invite id")?))
}

fn open_state(
    device_key: &SecretKey,
    kind: u8,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut reader = Reader::new("sealed pairing state", sealed);
    check_version("sealed pairing state", reader.u8("version")?)?;
    let found = reader.u8("kind")?;
    if found != kind {
        return Err(reader.error(format!("kind {found}, expected {kind}")));
    }
    let invite_id = InviteId(reader.array("invite id")?);
    let nonce: [u8; NONCE_LEN] = reader.array("nonce")?;
    state_key(device_key).open(
        "sealed pairing state",
        &nonce,
        &state_aad(kind, invite_id),
        reader.rest(),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn pair() -> (PendingInvite, Invite) {
        let keyring_store = StoreId([7; 16]);
        let pending = PendingInvite::create(keyring_store, NOW, DEFAULT_LIFETIME_SECS).unwrap();
        let invite = Invite::parse(&pending.invite().to_text()).unwrap();
        (pending, invite)
    }

    fn keyring_of(store_id: StoreId) -> Keyring {
        let generated = Keyring::generate(NOW).unwrap();
        let mut bytes = generated.to_bytes().to_vec();
        bytes[1..17].copy_from_slice(store_id.as_bytes());
        Keyring::from_bytes(&bytes).unwrap()
    }

    fn same_keys(a: &Keyring, b: &Keyring) -> bool {
        a.to_bytes().as_slice() == b.to_bytes().as_slice()
    }

    #[test]
    fn offline_round_trip() {
        let (pending, invite) = pair();
        let keyring = keyring_of(invite.store_id());
        let (acceptance, response) = Acceptance::accept(&invite, NOW + 10).unwrap();
        let response = Response::parse(&response.to_text()).unwrap();
        let message = pending.admit(&response, &keyring, NOW + 20).unwrap();
        let message = PairingMessage::parse(&message.to_text()).unwrap();
        let opened = acceptance.open(&message, NOW + 30).unwrap();
        assert!(same_keys(&opened, &keyring));
    }

    #[test]
    fn sealed_states_round_trip() {
        let device = SecretKey::generate().unwrap();
        let (pending, invite) = pair();
        let keyring = keyring_of(invite.store_id());
        let pending = PendingInvite::unseal(&device, &pending.seal(&device).unwrap()).unwrap();
        let (acceptance, response) = Acceptance::accept(&invite, NOW).unwrap();
        let sealed = acceptance.seal(&device).unwrap();
        assert_eq!(sealed_state_invite_id(&sealed).unwrap(), invite.invite_id());
        let acceptance = Acceptance::unseal(&device, &sealed).unwrap();
        assert!(acceptance.mailbox_id() == pending.invite().mailbox_id());
        let message = pending.admit(&response, &keyring, NOW).unwrap();
        assert!(same_keys(
            &acceptance.open(&message, NOW).unwrap(),
            &keyring
        ));
    }

    #[test]
    fn sealed_state_needs_its_device_key_and_kind() {
        let device = SecretKey::generate().unwrap();
        let (pending, invite) = pair();
        let sealed = pending.seal(&device).unwrap();
        let other = SecretKey::generate().unwrap();
        assert!(matches!(
            PendingInvite::unseal(&other, &sealed),
            Err(Error::AuthenticationFailed { .. })
        ));
        let err = Acceptance::unseal(&device, &sealed).unwrap_err();
        assert!(err.to_string().contains("kind 1, expected 2"), "{err}");
        let mut moved = sealed.clone();
        moved[2] ^= 1;
        assert!(matches!(
            PendingInvite::unseal(&device, &moved),
            Err(Error::AuthenticationFailed { .. })
        ));
        let (acceptance, _) = Acceptance::accept(&invite, NOW).unwrap();
        assert!(Acceptance::unseal(&device, &acceptance.seal(&device).unwrap()).is_ok());
    }

    #[test]
    fn mailbox_id_needs_one_time_secret() {
        let (pending, invite) = pair();
        let (acceptance, _) = Acceptance::accept(&invite, NOW).unwrap();
        let mailbox_id = pending.invite().mailbox_id();
        assert!(acceptance.mailbox_id() == mailbox_id);
        assert_ne!(mailbox_id.as_bytes(), invite.invite_id().as_bytes());
        assert_eq!(format!("{mailbox_id:?}"), "MailboxId(..)");

        // The same invite id with another one-time secret names another
        // mailbox, so the invite id alone does not give the mailbox id.
        let mut payload = INVITE_FORM.decode(&invite.to_text()).unwrap().to_vec();
        payload[1 + 16 + 16 + 32] ^= 0x01;
        let other = Invite::parse(&INVITE_FORM.encode(&payload)).unwrap();
        assert_eq!(other.invite_id(), invite.invite_id());
        assert!(other.mailbox_id() != mailbox_id);
    }

    #[test]
    fn wrong_one_time_secret_is_rejected() {
        let (pending, invite) = pair();
        let keyring = keyring_of(invite.store_id());
        let mut payload = INVITE_FORM.decode(&invite.to_text()).unwrap().to_vec();
        // The one-time secret follows version, store id, invite id and key.
        payload[1 + 16 + 16 + 32] ^= 0x01;
        let forged = Invite::parse(&INVITE_FORM.encode(&payload)).unwrap();
        let (_, response) = Acceptance::accept(&forged, NOW).unwrap();
        let err = pending.admit(&response, &keyring, NOW).unwrap_err();
        assert!(matches!(err, Error::PairingRejected { .. }), "{err}");
        assert!(err.to_string().contains("failed verification"), "{err}");
    }

    #[test]
    fn changed_expiry_is_rejected() {
        // A code whose expiry was pushed later, with a valid checksum.
        let (pending, invite) = pair();
        let keyring = keyring_of(invite.store_id());
        let mut payload = INVITE_FORM.decode(&invite.to_text()).unwrap().to_vec();
        let at = 1 + 16 + 16 + 32 + 32;
        payload[at..].copy_from_slice(&(invite.expires() + 3600).to_be_bytes());
        let extended = Invite::parse(&INVITE_FORM.encode(&payload)).unwrap();
        let (_, response) = Acceptance::accept(&extended, NOW).unwrap();
        let err = pending.admit(&response, &keyring, NOW).unwrap_err();
        assert!(matches!(err, Error::PairingRejected { .. }), "{err}");
    }

    #[test]
    fn swapped_public_key_is_rejected() {
        // A server in the middle replaces the joiner's public key with its
        // own, keeping the MAC it cannot recompute.
        let (pending, invite) = pair();
        let keyring = keyring_of(invite.store_id());
        let (_, mut response) = Acceptance::accept(&invite, NOW).unwrap();
        response.joiner_public = EphemeralKey::generate().unwrap().public();
        assert!(matches!(
            pending.admit(&response, &keyring, NOW),
            Err(Error::PairingRejected { .. })
        ));
    }

    #[test]
    fn swapped_inviter_key_cannot_open_message() {
        // A server that hands the joiner an invite with its own public key
        // (it never sees the real code, so it must guess the secret too)
        // makes the joiner derive another key: the message does not open.
        let (pending, invite) = pair();
        let keyring = keyring_of(invite.store_id());
        let mut payload = INVITE_FORM.decode(&invite.to_text()).unwrap().to_vec();
        let attacker = EphemeralKey::generate().unwrap().public();
        payload[1 + 16 + 16..1 + 16 + 16 + 32].copy_from_slice(&attacker);
        let forged = Invite::parse(&INVITE_FORM.encode(&payload)).unwrap();
        let (acceptance, _) = Acceptance::accept(&forged, NOW).unwrap();
        let (_, genuine) = Acceptance::accept(&invite, NOW).unwrap();
        let message = pending.admit(&genuine, &keyring, NOW).unwrap();
        let err = acceptance.open(&message, NOW).unwrap_err();
        assert!(matches!(err, Error::AuthenticationFailed { .. }), "{err}");
    }

    #[test]
    fn tampered_message_is_rejected() {
        let (pending, invite) = pair();
        let keyring = keyring_of(invite.store_id());
        let (acceptance, response) = Acceptance::accept(&invite, NOW).unwrap();
        let message = pending.admit(&response, &keyring, NOW).unwrap();
        for index in [0, 5, 20, 40, message.as_bytes().len() - 1] {
            let mut bytes = message.as_bytes().to_vec();
            bytes[index] ^= 0x04;
            let result = PairingMessage::from_bytes(&bytes)
                .and_then(|tampered| acceptance.open(&tampered, NOW));
            assert!(result.is_err(), "byte {index} flipped and accepted");
        }
        let mut bytes = message.as_bytes().to_vec();
        bytes[30] ^= 0x04;
        let tampered = PairingMessage::from_bytes(&bytes).unwrap();
        assert!(matches!(
            acceptance.open(&tampered, NOW),
            Err(Error::AuthenticationFailed {
                what: "pairing message"
            })
        ));
    }

    #[test]
    fn expired_invite_is_rejected_on_both_sides() {
        let (pending, invite) = pair();
        let keyring = keyring_of(invite.store_id());
        let expires = invite.expires();
        assert_eq!(expires, NOW + DEFAULT_LIFETIME_SECS);
        let err = Acceptance::accept(&invite, expires).unwrap_err();
        assert!(matches!(err, Error::InviteExpired { .. }), "{err}");
        assert!(err.to_string().contains("expired at"), "{err}");

        let (acceptance, response) = Acceptance::accept(&invite, expires - 1).unwrap();
        let err = pending.admit(&response, &keyring, expires).unwrap_err();
        assert!(matches!(err, Error::InviteExpired { .. }), "{err}");

        let (pending, invite) = pair();
        let keyring = keyring_of(invite.store_id());
        let (late, response) = Acceptance::accept(&invite, NOW).unwrap();
        let message = pending.admit(&response, &keyring, NOW).unwrap();
        assert!(matches!(
            late.open(&message, invite.expires()),
            Err(Error::InviteExpired { .. })
        ));
        drop(acceptance);
    }

    #[test]
    fn response_to_other_invite_is_rejected() {
        let (pending, invite) = pair();
        let (_, other_invite) = pair();
        let keyring = keyring_of(invite.store_id());
        let (_, response) = Acceptance::accept(&other_invite, NOW).unwrap();
        let err = pending.admit(&response, &keyring, NOW).unwrap_err();
        assert!(err.to_string().contains("not invite"), "{err}");
    }

    #[test]
    fn keyring_of_other_store_is_rejected() {
        let (pending, invite) = pair();
        let (_, response) = Acceptance::accept(&invite, NOW).unwrap();
        let stranger = Keyring::generate(NOW).unwrap();
        let err = pending.admit(&response, &stranger, NOW).unwrap_err();
        assert!(err.to_string().contains("belongs to store"), "{err}");
    }

    #[test]
    fn low_order_public_key_is_rejected() {
        let (_, invite) = pair();
        let mut payload = INVITE_FORM.decode(&invite.to_text()).unwrap().to_vec();
        payload[1 + 16 + 16..1 + 16 + 16 + 32].fill(0);
        let forged = Invite::parse(&INVITE_FORM.encode(&payload)).unwrap();
        let err = Acceptance::accept(&forged, NOW).unwrap_err();
        assert!(err.to_string().contains("low-order point"), "{err}");
    }

    #[test]
    fn codes_name_the_expected_prefix() {
        let (pending, invite) = pair();
        let (_, response) = Acceptance::accept(&invite, NOW).unwrap();
        let err = Invite::parse(&response.to_text()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "malformed invite code: it does not start with PERSIST-INVITE-1; paste the whole string"
        );
        let err = Response::parse(&pending.invite().to_text()).unwrap_err();
        assert!(err.to_string().contains("PERSIST-RESPONSE-1"), "{err}");
        let err = PairingMessage::parse("PERSIST-KEYRING-1").unwrap_err();
        assert!(err.to_string().contains("too short"), "{err}");
    }

    #[test]
    fn lifetime_limits() {
        assert!(check_lifetime(MIN_LIFETIME_SECS).is_ok());
        assert!(check_lifetime(MAX_LIFETIME_SECS).is_ok());
        let err = PendingInvite::create(StoreId([1; 16]), NOW, 59).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid invite lifetime: 59 seconds is outside the allowed 60 to 86400 seconds"
        );
        assert!(check_lifetime(MAX_LIFETIME_SECS + 1).is_err());
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let hex = |bytes: &[u8]| {
            let mut out = String::new();
            crate::hex::encode_into(bytes, &mut out);
            out
        };
        let device = SecretKey::generate().unwrap();
        let (pending, invite) = pair();
        let (acceptance, _) = Acceptance::accept(&invite, NOW).unwrap();
        let secret_hex = hex(invite.one_time_secret.expose());
        let inviter_secret_hex = hex(pending.secret.expose());
        let message_key_hex = hex(acceptance.message_key.expose());
        for text in [
            format!("{invite:?}"),
            format!("{pending:?}"),
            format!("{acceptance:?}"),
        ] {
            assert!(!text.contains(&secret_hex), "{text}");
            assert!(!text.contains(&inviter_secret_hex), "{text}");
            assert!(!text.contains(&message_key_hex), "{text}");
            assert!(text.contains(&invite.invite_id().to_string()), "{text}");
        }

        // The sealed states hold these secrets, but only as ciphertext.
        let contains = |haystack: &[u8], needle: &[u8]| {
            haystack
                .windows(needle.len())
                .any(|window| window == needle)
        };
        let sealed = pending.seal(&device).unwrap();
        assert!(
            !contains(&sealed, pending.secret.expose()),
            "the sealed invite holds the X25519 secret in the clear"
        );
        assert!(
            !contains(&sealed, invite.one_time_secret.expose()),
            "the sealed invite holds the one-time secret in the clear"
        );
        let sealed = acceptance.seal(&device).unwrap();
        assert!(
            !contains(&sealed, acceptance.message_key.expose()),
            "the sealed acceptance holds the message key in the clear"
        );
        assert!(
            !contains(&sealed, acceptance.mailbox_id().as_bytes()),
            "the sealed acceptance holds the mailbox id in the clear"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn any_flipped_response_byte_is_rejected(index in 0..RESPONSE_LEN, bit in 0..8u8) {
            let (pending, invite) = pair();
            let keyring = keyring_of(invite.store_id());
            let (_, response) = Acceptance::accept(&invite, NOW).unwrap();
            let mut bytes = response.to_bytes();
            bytes[index] ^= 1 << bit;
            let result = Response::from_bytes(&bytes)
                .and_then(|tampered| pending.admit(&tampered, &keyring, NOW));
            prop_assert!(result.is_err());
        }

        #[test]
        fn parsers_reject_arbitrary_input_without_panicking(
            text in "\\PC{0,300}",
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            for prefix in ["", INVITE_PREFIX, RESPONSE_PREFIX, MESSAGE_PREFIX] {
                let candidate = format!("{prefix}{text}");
                let _ = Invite::parse(&candidate);
                let _ = Response::parse(&candidate);
                let _ = PairingMessage::parse(&candidate);
            }
            let _ = Response::from_bytes(&bytes);
            let _ = PairingMessage::from_bytes(&bytes);
            let _ = sealed_state_invite_id(&bytes);
            let device = SecretKey::from_slice(&[3; 32]).unwrap();
            prop_assert!(PendingInvite::unseal(&device, &bytes).is_err());
            prop_assert!(Acceptance::unseal(&device, &bytes).is_err());
            // Well-formed payloads with a valid checksum but random contents.
            let mut payload = vec![PAIRING_VERSION];
            payload.extend_from_slice(&bytes);
            let _ = Invite::parse(&INVITE_FORM.encode(&payload));
            let _ = Response::parse(&RESPONSE_FORM.encode(&payload));
            if let Ok(message) = PairingMessage::parse(&MESSAGE_FORM.encode(&payload)) {
                let (acceptance, _) = Acceptance::accept(&pair().1, NOW).unwrap();
                prop_assert!(acceptance.open(&message, NOW).is_err());
            }
        }

        #[test]
        fn round_trip_at_any_time_before_expiry(
            lifetime in MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS,
            elapsed in 0u64..MAX_LIFETIME_SECS,
        ) {
            let store_id = StoreId([9; 16]);
            let pending = PendingInvite::create(store_id, NOW, lifetime).unwrap();
            let invite = Invite::parse(&pending.invite().to_text()).unwrap();
            let keyring = keyring_of(store_id);
            let now = NOW + elapsed;
            let accepted = Acceptance::accept(&invite, now);
            if elapsed >= lifetime {
                let expired = matches!(accepted, Err(Error::InviteExpired { .. }));
                prop_assert!(expired);
            } else {
                let (acceptance, response) = accepted.unwrap();
                let message = pending.admit(&response, &keyring, now).unwrap();
                prop_assert!(same_keys(&acceptance.open(&message, now).unwrap(), &keyring));
            }
        }
    }
}
