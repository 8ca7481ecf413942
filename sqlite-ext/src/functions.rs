//! The SQL functions, all registered by [`register`] in one place.
//!
//! | function | flags | result |
//! |---|---|---|
//! | `persist_init(store [, options])` | direct only | JSON report |
//! | `persist_encrypt(value [, context])` | | BLOB envelope, NULL for NULL |
//! | `persist_decrypt(envelope [, context])` | | the value, NULL for NULL |
//! | `persist_export([passphrase])` | direct only | TEXT export string |
//! | `persist_status()` | | JSON status, never key material |
//! | `persist_close()` | direct only | 1 if a store was closed, else 0 |
//! | `persist_rotate()` | direct only | JSON: the new primary key id |
//! | `persist_reencrypt([batch])` | direct only | JSON: rows done and remaining |
//! | `persist_retire(key_id)` | direct only | JSON |
//! | `persist_sync(conninfo)` | direct only | JSON summary |
//! | `persist_quarantined()` | | JSON list of quarantined records |
//! | `persist_invite([options])` | direct only | TEXT invite code |
//! | `persist_accept(store, invite [, options])` | direct only | TEXT response code |
//! | `persist_admit(response)` | direct only | TEXT keyring message code |
//! | `persist_join(store, message [, options])` | direct only | JSON report |
//! | `persist_version()` | deterministic, innocuous | TEXT |
//!
//! None that uses a random nonce or the connection's keys is deterministic.
//! Functions that create, export or drop keys are direct-only, so a view or
//! trigger planted in an untrusted database file cannot call them.

use std::sync::Arc;

use persist_core::codec::{self, Value, ValueRef};
use persist_core::{Location, Padding, Passphrase, Purpose, export};
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value as SqlValue, ValueRef as SqlRef};
use serde_json::json;

use crate::error::{CoreContext, ExtError};
use crate::state::Connection;
use crate::store::{self, InitOptions};

/// Largest context accepted by `persist_encrypt` and `persist_decrypt`.
pub const MAX_CONTEXT_LEN: usize = 64 * 1024;

/// Largest options text accepted by `persist_init`.
pub const MAX_OPTIONS_LEN: usize = 256 * 1024;

/// Registers every SQL function on `db`.
///
/// # Errors
///
/// SQLite's error when a function cannot be registered.
pub fn register(db: &rusqlite::Connection, conn: &Arc<Connection>) -> rusqlite::Result<()> {
    let direct = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    let plain = FunctionFlags::SQLITE_UTF8;
    let pure = FunctionFlags::SQLITE_UTF8
        | FunctionFlags::SQLITE_DETERMINISTIC
        | FunctionFlags::SQLITE_INNOCUOUS;

    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_init", -1, direct, move |ctx| {
        sql_result(persist_init(&state, ctx))
    })?;
    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_encrypt", -1, plain, move |ctx| {
        sql_result(persist_encrypt(&state, ctx))
    })?;
    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_decrypt", -1, plain, move |ctx| {
        sql_result(persist_decrypt(&state, ctx))
    })?;
    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_export", -1, direct, move |ctx| {
        sql_result(persist_export(&state, ctx))
    })?;
    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_status", 0, plain, move |_ctx| {
        sql_result(persist_status(&state))
    })?;
    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_close", 0, direct, move |_ctx| {
        let closed = state.current().is_some();
        state.set_store(None);
        Ok(SqlValue::Integer(i64::from(closed)))
    })?;
    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_sync", 1, direct, move |ctx| {
        sql_result(persist_sync(&state, ctx))
    })?;
    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_rotate", 0, direct, move |_ctx| {
        sql_result(crate::rotation::rotate(&state).map(SqlValue::Text))
    })?;
    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_reencrypt", -1, direct, move |ctx| {
        sql_result(persist_reencrypt(&state, ctx))
    })?;
    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_retire", 1, direct, move |ctx| {
        sql_result(persist_retire(&state, ctx))
    })?;
    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_quarantined", 0, plain, move |_ctx| {
        sql_result(crate::sync::quarantined(state.db).map(SqlValue::Text))
    })?;
    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_invite", -1, direct, move |ctx| {
        sql_result(persist_invite(&state, ctx))
    })?;
    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_accept", -1, direct, move |ctx| {
        sql_result(persist_accept(&state, ctx))
    })?;
    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_admit", -1, direct, move |ctx| {
        sql_result(persist_admit(&state, ctx))
    })?;
    let state = Arc::clone(conn);
    db.create_scalar_function(c"persist_join", -1, direct, move |ctx| {
        sql_result(persist_join(&state, ctx))
    })?;
    db.create_scalar_function(c"persist_version", 0, pure, |_ctx| {
        Ok(SqlValue::Text(env!("CARGO_PKG_VERSION").to_owned()))
    })?;
    Ok(())
}

/// Converts an extension error into the error SQLite reports, with the
/// extension's result code rather than rusqlite's default.
fn sql_result(result: Result<SqlValue, ExtError>) -> rusqlite::Result<SqlValue> {
    result.map_err(|err| {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(err.code()), Some(err.to_string()))
    })
}

fn check_arity(
    ctx: &Context<'_>,
    function: &str,
    min: usize,
    max: usize,
    usage: &str,
) -> Result<(), ExtError> {
    if (min..=max).contains(&ctx.len()) {
        Ok(())
    } else {
        Err(ExtError::usage(format!(
            "{function} takes {} argument{}, got {}; usage: {usage}",
            if min == max {
                min.to_string()
            } else {
                format!("{min} to {max}")
            },
            if max == 1 && min == 1 { "" } else { "s" },
            ctx.len()
        )))
    }
}

fn type_name(value: SqlRef<'_>) -> &'static str {
    match value {
        SqlRef::Null => "NULL",
        SqlRef::Integer(_) => "INTEGER",
        SqlRef::Real(_) => "REAL",
        SqlRef::Text(_) => "TEXT",
        SqlRef::Blob(_) => "BLOB",
    }
}

fn wrong_type(
    function: &str,
    position: usize,
    name: &str,
    expected: &str,
    got: SqlRef<'_>,
) -> ExtError {
    ExtError::usage(format!(
        "{function}: argument {position} ({name}) must be {expected}, got {}",
        type_name(got)
    ))
}

fn text_arg<'a>(
    ctx: &'a Context<'_>,
    index: usize,
    function: &str,
    name: &str,
) -> Result<&'a str, ExtError> {
    match ctx.get_raw(index) {
        SqlRef::Text(bytes) => std::str::from_utf8(bytes).map_err(|_| {
            ExtError::usage(format!(
                "{function}: argument {} ({name}) is not valid UTF-8",
                index + 1
            ))
        }),
        other => Err(wrong_type(function, index + 1, name, "TEXT", other)),
    }
}

/// The optional context argument as bytes: TEXT or BLOB, empty when absent
/// or NULL.
fn context_arg<'a>(
    ctx: &'a Context<'_>,
    index: usize,
    function: &str,
) -> Result<&'a [u8], ExtError> {
    if ctx.len() <= index {
        return Ok(&[]);
    }
    let bytes = match ctx.get_raw(index) {
        SqlRef::Null => &[][..],
        SqlRef::Text(bytes) | SqlRef::Blob(bytes) => bytes,
        other => {
            return Err(wrong_type(
                function,
                index + 1,
                "context",
                "TEXT, BLOB or NULL",
                other,
            ));
        }
    };
    if bytes.len() > MAX_CONTEXT_LEN {
        return Err(ExtError::usage(format!(
            "{function}: argument {} (context) is {} bytes, over the limit of {MAX_CONTEXT_LEN} bytes",
            index + 1,
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn value_location(context: &[u8]) -> Location<'_> {
    Location {
        purpose: Purpose::Value,
        table: "",
        record_id: b"",
        context,
    }
}

fn persist_init(conn: &Connection, ctx: &Context<'_>) -> Result<SqlValue, ExtError> {
    const USAGE: &str = "persist_init(store [, options JSON])";
    check_arity(ctx, "persist_init", 1, 2, USAGE)?;
    let name = text_arg(ctx, 0, "persist_init", "store")?;
    let options = if ctx.len() == 2 {
        match ctx.get_raw(1) {
            SqlRef::Null => InitOptions::parse("{}")?,
            SqlRef::Text(bytes) => {
                if bytes.len() > MAX_OPTIONS_LEN {
                    return Err(ExtError::usage(format!(
                        "persist_init: argument 2 (options) is {} bytes, over the limit of \
                         {MAX_OPTIONS_LEN} bytes",
                        bytes.len()
                    )));
                }
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    ExtError::usage("persist_init: argument 2 (options) is not valid UTF-8")
                })?;
                InitOptions::parse(text)?
            }
            other => {
                return Err(wrong_type(
                    "persist_init",
                    2,
                    "options",
                    "TEXT (a JSON object) or NULL",
                    other,
                ));
            }
        }
    } else {
        InitOptions::parse("{}")?
    };
    Ok(SqlValue::Text(store::init(conn, name, &options)?))
}

fn persist_encrypt(conn: &Connection, ctx: &Context<'_>) -> Result<SqlValue, ExtError> {
    check_arity(
        ctx,
        "persist_encrypt",
        1,
        2,
        "persist_encrypt(value [, context])",
    )?;
    let value = match ctx.get_raw(0) {
        SqlRef::Null => return Ok(SqlValue::Null),
        SqlRef::Integer(v) => ValueRef::Integer(v),
        SqlRef::Real(v) => ValueRef::Real(v),
        SqlRef::Text(bytes) => ValueRef::Text(std::str::from_utf8(bytes).map_err(|_| {
            ExtError::usage(
                "persist_encrypt: argument 1 (value) is TEXT that is not valid UTF-8; \
                 pass binary data as a BLOB",
            )
        })?),
        SqlRef::Blob(bytes) => ValueRef::Blob(bytes),
    };
    let context = context_arg(ctx, 1, "persist_encrypt")?;
    let store = conn.store()?;
    let plaintext = codec::encode_single(value)
        .context_with(|| "persist_encrypt: argument 1 (value)".into())?;
    let envelope = store
        .cipher
        .seal(&value_location(context), &plaintext, Padding::None)
        .context_with(|| "persist_encrypt: argument 1 (value)".into())?;
    conn.counters.count_seal();
    Ok(SqlValue::Blob(envelope))
}

fn persist_decrypt(conn: &Connection, ctx: &Context<'_>) -> Result<SqlValue, ExtError> {
    check_arity(
        ctx,
        "persist_decrypt",
        1,
        2,
        "persist_decrypt(envelope [, context])",
    )?;
    let envelope = match ctx.get_raw(0) {
        SqlRef::Null => return Ok(SqlValue::Null),
        SqlRef::Blob(bytes) => bytes,
        other => {
            return Err(wrong_type(
                "persist_decrypt",
                1,
                "envelope",
                "a BLOB made by persist_encrypt",
                other,
            ));
        }
    };
    let context = context_arg(ctx, 1, "persist_decrypt")?;
    let store = conn.store()?;
    let plaintext = store
        .cipher
        .open(&value_location(context), envelope)
        .context_with(|| "persist_decrypt: argument 1 (envelope)".into())?;
    conn.counters.count_open();
    let value = codec::decode_single(&plaintext)
        .context_with(|| "persist_decrypt: argument 1 (envelope)".into())?;
    Ok(match value {
        Value::Null => SqlValue::Null,
        Value::Integer(v) => SqlValue::Integer(v),
        Value::Real(v) => SqlValue::Real(v),
        Value::Text(v) => SqlValue::Text(v),
        Value::Blob(v) => SqlValue::Blob(v),
    })
}

fn persist_export(conn: &Connection, ctx: &Context<'_>) -> Result<SqlValue, ExtError> {
    check_arity(ctx, "persist_export", 0, 1, "persist_export([passphrase])")?;
    let passphrase = if ctx.len() == 1 {
        match ctx.get_raw(0) {
            SqlRef::Text(bytes) => {
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    ExtError::usage("persist_export: argument 1 (passphrase) is not valid UTF-8")
                })?;
                if text.is_empty() {
                    return Err(ExtError::usage(
                        "persist_export: argument 1 (passphrase) is empty; call persist_export() \
                         without arguments for an export without a passphrase",
                    ));
                }
                Some(Passphrase::new(text))
            }
            SqlRef::Null => {
                return Err(ExtError::usage(
                    "persist_export: argument 1 (passphrase) is NULL; call persist_export() \
                     without arguments for an export without a passphrase",
                ));
            }
            other => return Err(wrong_type("persist_export", 1, "passphrase", "TEXT", other)),
        }
    } else {
        None
    };
    let store = conn.store()?;
    let text = export::export(store.cipher.keyring(), passphrase.as_ref())
        .context_with(|| "persist_export".into())?;
    Ok(SqlValue::Text(text.to_string()))
}

fn persist_reencrypt(conn: &Connection, ctx: &Context<'_>) -> Result<SqlValue, ExtError> {
    check_arity(
        ctx,
        "persist_reencrypt",
        0,
        1,
        "persist_reencrypt([batch size])",
    )?;
    let batch = if ctx.len() == 1 {
        match ctx.get_raw(0) {
            SqlRef::Integer(batch) => batch,
            other => {
                return Err(wrong_type(
                    "persist_reencrypt",
                    1,
                    "batch size",
                    "an INTEGER",
                    other,
                ));
            }
        }
    } else {
        crate::rotation::DEFAULT_BATCH
    };
    Ok(SqlValue::Text(crate::rotation::reencrypt(conn, batch)?))
}

fn persist_retire(conn: &Connection, ctx: &Context<'_>) -> Result<SqlValue, ExtError> {
    let key_id = match ctx.get_raw(0) {
        SqlRef::Integer(id) => u32::try_from(id).map_err(|_| {
            ExtError::usage(format!(
                "persist_retire: argument 1 (key id) is {id}, expected a key id from \
                 persist_status(), 1 to {}",
                u32::MAX
            ))
        })?,
        other => {
            return Err(wrong_type(
                "persist_retire",
                1,
                "key id",
                "an INTEGER",
                other,
            ));
        }
    };
    Ok(SqlValue::Text(crate::rotation::retire(conn, key_id)?))
}

fn persist_sync(conn: &Connection, ctx: &Context<'_>) -> Result<SqlValue, ExtError> {
    let conninfo = match ctx.get_raw(0) {
        SqlRef::Text(bytes) => std::str::from_utf8(bytes).map_err(|_| {
            ExtError::usage("persist_sync: argument 1 (connection string) is not valid UTF-8")
        })?,
        other => {
            return Err(wrong_type(
                "persist_sync",
                1,
                "connection string",
                "TEXT, a libpq connection string or postgresql:// URI",
                other,
            ));
        }
    };
    Ok(SqlValue::Text(crate::sync::run(conn, conninfo)?))
}

/// Reads the optional options argument at `index`: TEXT (a JSON object),
/// NULL or absent.
fn options_arg<'a>(
    ctx: &'a Context<'_>,
    index: usize,
    function: &str,
) -> Result<Option<&'a str>, ExtError> {
    if ctx.len() <= index {
        return Ok(None);
    }
    match ctx.get_raw(index) {
        SqlRef::Null => Ok(None),
        SqlRef::Text(bytes) => {
            if bytes.len() > MAX_OPTIONS_LEN {
                return Err(ExtError::usage(format!(
                    "{function}: argument {} (options) is {} bytes, over the limit of \
                     {MAX_OPTIONS_LEN} bytes",
                    index + 1,
                    bytes.len()
                )));
            }
            std::str::from_utf8(bytes).map(Some).map_err(|_| {
                ExtError::usage(format!(
                    "{function}: argument {} (options) is not valid UTF-8",
                    index + 1
                ))
            })
        }
        other => Err(wrong_type(
            function,
            index + 1,
            "options",
            "TEXT (a JSON object) or NULL",
            other,
        )),
    }
}

fn persist_invite(conn: &Connection, ctx: &Context<'_>) -> Result<SqlValue, ExtError> {
    check_arity(
        ctx,
        "persist_invite",
        0,
        1,
        "persist_invite([options JSON])",
    )?;
    let options = options_arg(ctx, 0, "persist_invite")?;
    Ok(SqlValue::Text(crate::pairing::invite(conn, options)?))
}

fn persist_accept(conn: &Connection, ctx: &Context<'_>) -> Result<SqlValue, ExtError> {
    const USAGE: &str = "persist_accept(store, invite code [, options JSON])";
    check_arity(ctx, "persist_accept", 2, 3, USAGE)?;
    let name = text_arg(ctx, 0, "persist_accept", "store")?;
    let invite = match ctx.get_raw(1) {
        SqlRef::Text(_) => text_arg(ctx, 1, "persist_accept", "invite")?,
        other => {
            return Err(wrong_type(
                "persist_accept",
                2,
                "invite",
                "TEXT, an invite code PERSIST-INVITE-1... from persist_invite()",
                other,
            ));
        }
    };
    let options = options_arg(ctx, 2, "persist_accept")?;
    Ok(SqlValue::Text(crate::pairing::accept(
        conn, name, invite, options,
    )?))
}

fn persist_admit(conn: &Connection, ctx: &Context<'_>) -> Result<SqlValue, ExtError> {
    check_arity(ctx, "persist_admit", 1, 1, "persist_admit(response code)")?;
    let response = match ctx.get_raw(0) {
        SqlRef::Text(_) => text_arg(ctx, 0, "persist_admit", "response")?,
        other => {
            return Err(wrong_type(
                "persist_admit",
                1,
                "response",
                "TEXT, a response code PERSIST-RESPONSE-1... from persist_accept()",
                other,
            ));
        }
    };
    Ok(SqlValue::Text(crate::pairing::admit(conn, response)?))
}

fn persist_join(conn: &Connection, ctx: &Context<'_>) -> Result<SqlValue, ExtError> {
    const USAGE: &str = "persist_join(store, keyring message or NULL [, options JSON])";
    check_arity(ctx, "persist_join", 2, 3, USAGE)?;
    let name = text_arg(ctx, 0, "persist_join", "store")?;
    let message = match ctx.get_raw(1) {
        SqlRef::Null => None,
        SqlRef::Text(_) => Some(text_arg(ctx, 1, "persist_join", "message")?),
        other => {
            return Err(wrong_type(
                "persist_join",
                2,
                "message",
                "TEXT, a keyring message PERSIST-KEYRING-1... from persist_admit(), or NULL \
                 with a server in the options",
                other,
            ));
        }
    };
    let options = options_arg(ctx, 2, "persist_join")?;
    Ok(SqlValue::Text(crate::pairing::join(
        conn, name, message, options,
    )?))
}

fn persist_status(conn: &Connection) -> Result<SqlValue, ExtError> {
    use std::sync::atomic::Ordering;
    let counters = json!({
        "envelopes_opened": conn.counters.opened.load(Ordering::Relaxed),
        "envelopes_sealed": conn.counters.sealed.load(Ordering::Relaxed),
    });
    let Some(store) = conn.current() else {
        return Ok(SqlValue::Text(
            json!({"open": false, "counters": counters}).to_string(),
        ));
    };
    let keyring = store.cipher.keyring();
    let key_ids: Vec<u32> = keyring.keys().iter().map(|key| key.id()).collect();
    let usage = crate::rotation::key_usage(conn.db, &key_ids)?;
    let keys: Vec<serde_json::Value> = keyring
        .keys()
        .iter()
        .map(|key| {
            let sealed = store.cipher.seal_count(key.id());
            json!({
                "id": key.id(),
                "created": key.created(),
                "status": key.status().as_str(),
                "rows": usage.get(&key.id()).copied().unwrap_or(0),
                "sealed_this_session": sealed,
            })
        })
        .collect();
    let tables = crate::vtab::shadow::table_names(conn.db)?;
    Ok(SqlValue::Text(
        json!({
            "open": true,
            "store": store.name,
            "store_id": store.cipher.store_id().to_string(),
            "device_id": store.device_id.to_string(),
            "key_location": store.key_location.to_string(),
            "primary_key_id": keyring.primary().id(),
            "keyring_record_id": keyring.keyring_record_id().to_string(),
            "keys": keys,
            "tables": tables,
            "counters": counters,
        })
        .to_string(),
    ))
}
