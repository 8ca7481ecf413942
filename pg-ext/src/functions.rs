//! The bodies of the value, export, status and close functions. The
//! `#[pg_extern]` declarations in `lib.rs` convert SQL arguments and call
//! these.
//!
//! Envelopes are those of the SQLite extension's `persist_encrypt`: purpose
//! Value, empty table and record id, the context's UTF-8 bytes as context,
//! and [`codec::encode_single`] of the value as plaintext, unpadded. An
//! envelope sealed by either extension opens in the other with the same
//! keyring.

use persist_core::codec::{self, Value, ValueRef};
use persist_core::envelope::{HEADER_LEN, MAX_PLAINTEXT};
use persist_core::primitives::TAG_LEN;
use persist_core::{Location, Padding, Passphrase, Purpose, export, padding};
use pgrx::PgSqlErrorCode;
use serde_json::json;

use crate::error::{CoreContext, PgError, Subject};
use crate::session;

/// Largest context accepted by `persist.encrypt` and the decrypt functions,
/// as in the SQLite extension.
pub const MAX_CONTEXT_LEN: usize = 64 * 1024;

/// Largest passphrase accepted by `persist.export`.
pub const MAX_PASSPHRASE_LEN: usize = 1024;

/// Largest envelope the decrypt functions accept: the header, the largest
/// plaintext padded to its bucket, and the tag (69,206,049 bytes). An
/// unpadded value envelope is at most 67,108,898 bytes.
pub fn max_envelope_len() -> usize {
    HEADER_LEN + padding::bucket(MAX_PLAINTEXT + 1) + TAG_LEN
}

fn value_location(context: &[u8]) -> Location<'_> {
    Location {
        purpose: Purpose::Value,
        table: "",
        record_id: b"",
        context,
    }
}

/// Returns the context argument as bytes, empty when NULL.
fn context_bytes<'a>(function: &str, context: Option<&'a str>) -> Result<&'a [u8], PgError> {
    let bytes = context.map(str::as_bytes).unwrap_or_default();
    if bytes.len() > MAX_CONTEXT_LEN {
        return Err(PgError::too_large(
            &format!("{function}: argument 2 (context)"),
            bytes.len(),
            MAX_CONTEXT_LEN,
        ));
    }
    Ok(bytes)
}

/// Seals `value` with `context`; NULL stays NULL.
///
/// # Errors
///
/// 54000 for a context or value over its limit, and 55000 when no store is
/// open.
pub fn encrypt(
    value: Option<ValueRef<'_>>,
    context: Option<&str>,
) -> Result<Option<Vec<u8>>, PgError> {
    const FUNCTION: &str = "persist.encrypt";
    let Some(value) = value else {
        return Ok(None);
    };
    let context = context_bytes(FUNCTION, context)?;
    session::with_store(FUNCTION, |store, counters| {
        let what = || format!("{FUNCTION}: argument 1 (value)");
        let plaintext = codec::encode_single(value).context_with(Subject::Other, what)?;
        let envelope = store
            .cipher
            .seal(&value_location(context), &plaintext, Padding::None)
            .context_with(Subject::Other, what)?;
        counters.sealed += 1;
        Ok(Some(envelope))
    })
}

/// The SQL type a decrypt function returns, with the function's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `persist.decrypt`, for TEXT values.
    Text,
    /// `persist.decrypt_bytea`, for BLOB values.
    Bytea,
    /// `persist.decrypt_bigint`, for INTEGER values.
    Bigint,
    /// `persist.decrypt_float8`, for REAL values.
    Float8,
}

impl Target {
    /// The SQL function that returns this type.
    pub fn function(self) -> &'static str {
        match self {
            Self::Text => "persist.decrypt",
            Self::Bytea => "persist.decrypt_bytea",
            Self::Bigint => "persist.decrypt_bigint",
            Self::Float8 => "persist.decrypt_float8",
        }
    }

    fn sql_type(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Bytea => "bytea",
            Self::Bigint => "bigint",
            Self::Float8 => "double precision",
        }
    }

    fn for_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => None,
            Value::Integer(_) => Some(Self::Bigint),
            Value::Real(_) => Some(Self::Float8),
            Value::Text(_) => Some(Self::Text),
            Value::Blob(_) => Some(Self::Bytea),
        }
    }
}

/// Opens `envelope` with `context` and returns its value when it has the
/// storage class that `target` returns. NULL stays NULL, and an envelope
/// that contains NULL returns NULL.
///
/// # Errors
///
/// 54000 for an envelope or context over its limit, 55000 when no store is
/// open, 22P03 for bytes that are not an envelope, 42704 for an unknown key
/// id, XX001 when authentication fails, 42804 for a value of another
/// storage class (the message names the function to use), and 22P05 for
/// TEXT with a NUL character, which PostgreSQL text cannot hold.
pub fn decrypt(
    target: Target,
    envelope: Option<&[u8]>,
    context: Option<&str>,
) -> Result<Option<Value>, PgError> {
    let function = target.function();
    let Some(envelope) = envelope else {
        return Ok(None);
    };
    let limit = max_envelope_len();
    if envelope.len() > limit {
        return Err(PgError::too_large(
            &format!("{function}: argument 1 (envelope)"),
            envelope.len(),
            limit,
        ));
    }
    let context = context_bytes(function, context)?;

    let value = session::with_store(function, |store, counters| {
        let what = || format!("{function}: argument 1 (envelope)");
        let plaintext = store
            .cipher
            .open(&value_location(context), envelope)
            .context_with(Subject::Envelope, what)?;
        counters.opened += 1;
        codec::decode_single(&plaintext).context_with(Subject::Envelope, what)
    })?;

    match Target::for_value(&value) {
        None => Ok(None),
        Some(found) if found == target => {
            if let Value::Text(text) = &value
                && text.contains('\0')
            {
                return Err(PgError::new(
                    PgSqlErrorCode::ERRCODE_UNTRANSLATABLE_CHARACTER,
                    format!(
                        "{function}: argument 1 (envelope) contains TEXT with a NUL character, \
                         which PostgreSQL text cannot hold"
                    ),
                ));
            }
            Ok(Some(value))
        }
        Some(found) => Err(PgError::new(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!(
                "{function}: argument 1 (envelope) contains {} value, not {}; use {}() to \
                 decrypt it as {}",
                article_and_class(&value),
                target.sql_type(),
                found.function(),
                found.sql_type()
            ),
        )),
    }
}

fn article_and_class(value: &Value) -> String {
    let class = value.type_name();
    let article = if class.starts_with(['A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {class}")
}

/// The passphrase argument of `persist.export`, or its absence.
pub enum ExportPassphrase<'a> {
    /// `persist.export()`: a raw export.
    Omitted,
    /// `persist.export(passphrase)`; `None` is SQL NULL.
    Given(Option<&'a str>),
}

/// Exports the open store's keyring as text, raw or under a passphrase.
///
/// # Errors
///
/// 22004 for a NULL passphrase, 22023 for an empty one, 54000 for one over
/// [`MAX_PASSPHRASE_LEN`], and 55000 when no store is open.
pub fn export(passphrase: ExportPassphrase<'_>) -> Result<String, PgError> {
    const FUNCTION: &str = "persist.export";
    let passphrase = match passphrase {
        ExportPassphrase::Omitted => None,
        ExportPassphrase::Given(None) => {
            return Err(PgError::new(
                PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
                "persist.export: argument 1 (passphrase) is NULL; call persist.export() without \
                 arguments for an export without a passphrase",
            ));
        }
        ExportPassphrase::Given(Some("")) => {
            return Err(PgError::invalid(
                "persist.export: argument 1 (passphrase) is empty; call persist.export() \
                 without arguments for an export without a passphrase",
            ));
        }
        ExportPassphrase::Given(Some(text)) if text.len() > MAX_PASSPHRASE_LEN => {
            return Err(PgError::too_large(
                "persist.export: argument 1 (passphrase)",
                text.len(),
                MAX_PASSPHRASE_LEN,
            ));
        }
        ExportPassphrase::Given(Some(text)) => Some(Passphrase::new(text)),
    };
    session::with_store(FUNCTION, |store, _| {
        let text = export::export(store.cipher.keyring(), passphrase.as_ref())
            .context_with(Subject::Other, || FUNCTION)?;
        Ok(text.to_string())
    })
}

/// Returns the session's state as JSON: the open store, its key ids and
/// counters, never key material.
pub fn status() -> String {
    session::inspect(|store, counters| {
        let counters = json!({
            "envelopes_opened": counters.opened,
            "envelopes_sealed": counters.sealed,
        });
        let Some(store) = store else {
            return json!({"open": false, "counters": counters}).to_string();
        };
        let keyring = store.cipher.keyring();
        let keys: Vec<serde_json::Value> = keyring
            .keys()
            .iter()
            .map(|key| {
                json!({
                    "id": key.id(),
                    "created": key.created(),
                    "status": key.status().as_str(),
                    "sealed_this_session": store.cipher.seal_count(key.id()),
                })
            })
            .collect();
        json!({
            "open": true,
            "store": store.name,
            "store_id": store.cipher.store_id().to_string(),
            "device_id": store.device_id.map(|id| id.to_string()),
            "key_location": store.key_location_text(),
            "session_only": store.session_only(),
            "primary_key_id": keyring.primary().id(),
            "keys": keys,
            "counters": counters,
        })
        .to_string()
    })
}
