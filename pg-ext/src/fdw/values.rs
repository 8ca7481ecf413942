//! Postgres datums to row codec values and back.
//!
//! | Postgres type | stored as |
//! |---|---|
//! | smallint, integer, bigint | INTEGER |
//! | real, double precision | REAL |
//! | boolean | INTEGER 0 or 1 |
//! | bytea | BLOB |
//! | text, varchar, char | TEXT |
//! | any other type (numeric, date, timestamp, uuid, jsonb, arrays ...) | TEXT: the type's output function, read back with its input function and the column's typmod |
//!
//! The text form of other types must not depend on the session, or a value
//! written under one `DateStyle` would be read back wrongly under another,
//! and equal keys would get different blind ids. [`with_text_form`] fixes
//! the settings that change it, as postgres_fdw does for the values it
//! sends: `DateStyle` ISO, `IntervalStyle` postgres, `extra_float_digits` 3,
//! `TimeZone` UTC and `search_path` pg_catalog.

use std::ffi::{CStr, CString};
use std::panic::AssertUnwindSafe;

use persist_core::codec::Value;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, pg_sys};

use super::table::Column;
use crate::error::PgError;

/// The storage class of a Postgres type's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueClass {
    /// smallint, as INTEGER.
    Int2,
    /// integer, as INTEGER.
    Int4,
    /// bigint, as INTEGER.
    Int8,
    /// real, as REAL.
    Float4,
    /// double precision, as REAL.
    Float8,
    /// boolean, as INTEGER 0 or 1.
    Bool,
    /// bytea, as BLOB.
    Bytea,
    /// text, varchar and char, as TEXT.
    Text,
    /// Any other type, as the TEXT of its output function.
    Other,
}

impl ValueClass {
    /// Returns the class of type `type_oid`. Domains are `Other`, so their
    /// input function checks their constraints when a value is read back.
    pub fn of(type_oid: pg_sys::Oid) -> Self {
        match type_oid {
            pg_sys::INT2OID => Self::Int2,
            pg_sys::INT4OID => Self::Int4,
            pg_sys::INT8OID => Self::Int8,
            pg_sys::FLOAT4OID => Self::Float4,
            pg_sys::FLOAT8OID => Self::Float8,
            pg_sys::BOOLOID => Self::Bool,
            pg_sys::BYTEAOID => Self::Bytea,
            pg_sys::TEXTOID | pg_sys::VARCHAROID | pg_sys::BPCHAROID => Self::Text,
            _ => Self::Other,
        }
    }
}

/// Runs `f` with the settings that fix the text form of values, and restores
/// the previous settings afterwards. When `f` raises a Postgres error, the
/// transaction's abort restores them.
///
/// # Errors
///
/// Whatever `f` returns.
pub fn with_text_form<T>(
    needed: bool,
    f: impl FnOnce() -> Result<T, PgError>,
) -> Result<T, PgError> {
    if !needed {
        return f();
    }
    // SAFETY: the GUC nesting protocol: a new nest level, settings saved at
    // that level, and AtEOXact_GUC to pop it. Every name and value is valid,
    // so set_config_option cannot fail.
    let level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        for (name, value) in [
            (c"datestyle", c"ISO"),
            (c"intervalstyle", c"postgres"),
            (c"extra_float_digits", c"3"),
            (c"timezone", c"UTC"),
            (c"search_path", c"pg_catalog"),
        ] {
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
        }
        level
    };
    let result = f();
    // SAFETY: pops the nest level pushed above.
    unsafe { pg_sys::AtEOXact_GUC(true, level) };
    result
}

/// Converts datum `datum` of type `type_oid` to a codec value.
///
/// # Safety
///
/// `datum` must be a valid, non-null datum of type `type_oid`. For a type of
/// class `Other`, the caller runs inside [`with_text_form`].
///
/// # Errors
///
/// 22021 for text that is not valid UTF-8 (in a SQL_ASCII database).
pub unsafe fn datum_to_value(
    datum: pg_sys::Datum,
    type_oid: pg_sys::Oid,
    what: &dyn Fn() -> String,
) -> Result<Value, PgError> {
    // SAFETY: guaranteed by the caller: the datum has the type that selects
    // each conversion.
    unsafe {
        Ok(match ValueClass::of(type_oid) {
            ValueClass::Int2 => Value::Integer(i64::from(datum.value() as i16)),
            ValueClass::Int4 => Value::Integer(i64::from(datum.value() as i32)),
            ValueClass::Int8 => Value::Integer(datum.value() as i64),
            ValueClass::Float4 => {
                Value::Real(f64::from(f32::from_datum(datum, false).unwrap_or_default()))
            }
            ValueClass::Float8 => Value::Real(f64::from_datum(datum, false).unwrap_or_default()),
            ValueClass::Bool => Value::Integer(i64::from(datum.value() != 0)),
            ValueClass::Bytea => Value::Blob(varlena_bytes(datum).to_vec()),
            ValueClass::Text => Value::Text(utf8(varlena_bytes(datum), what)?),
            ValueClass::Other => {
                let mut output = pg_sys::Oid::INVALID;
                let mut is_varlena = false;
                pg_sys::getTypeOutputInfo(type_oid, &mut output, &mut is_varlena);
                let text = pg_sys::OidOutputFunctionCall(output, datum);
                let bytes = CStr::from_ptr(text).to_bytes();
                let value = utf8(bytes, what)?;
                pg_sys::pfree(text.cast());
                Value::Text(value)
            }
        })
    }
}

/// Returns the bytes of a varlena datum, detoasted into the current memory
/// context.
///
/// # Safety
///
/// `datum` must be a valid varlena datum that outlives the returned slice.
unsafe fn varlena_bytes<'a>(datum: pg_sys::Datum) -> &'a [u8] {
    // SAFETY: guaranteed by the caller; the detoasted copy lives in the
    // current memory context.
    unsafe {
        let varlena = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
        pgrx::varlena::varlena_to_byte_slice(varlena)
    }
}

fn utf8(bytes: &[u8], what: &dyn Fn() -> String) -> Result<String, PgError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        PgError::new(
            PgSqlErrorCode::ERRCODE_CHARACTER_NOT_IN_REPERTOIRE,
            format!(
                "{}: the text is not valid UTF-8, which sealed rows require",
                what()
            ),
        )
    })
}

/// Converts a codec value read from a sealed row to a datum of `column`'s
/// type in the current memory context; `None` is SQL NULL.
///
/// # Safety
///
/// For a column of class `Other`, or a value stored with another class than
/// the column's (after `ALTER COLUMN ... TYPE`), the caller runs inside
/// [`with_text_form`].
///
/// # Errors
///
/// 22003 for a number out of the column type's range, 42804 for a BLOB in a
/// column of another type, and the input function's SQLSTATE when a stored
/// text does not parse as the column's type. No message contains the value.
pub unsafe fn value_to_datum(
    value: &Value,
    column: &Column,
    table: &str,
) -> Result<Option<pg_sys::Datum>, PgError> {
    let where_ = || format!("encrypted table \"{table}\", column \"{}\"", column.name);
    let out_of_range = || {
        PgError::new(
            PgSqlErrorCode::ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE,
            format!("{}: a stored value is out of range for its type", where_()),
        )
    };
    let mismatch = |stored: &str| {
        PgError::new(
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!(
                "{}: a stored {stored} value cannot be read as type {}",
                where_(),
                type_name(column.type_oid)
            ),
        )
    };
    let integer = |value: &Value| -> Result<i64, PgError> {
        match value {
            Value::Integer(i) => Ok(*i),
            Value::Real(f) if f.fract() == 0.0 && (-9.2e18..9.2e18).contains(f) => Ok(*f as i64),
            _ => Err(out_of_range()),
        }
    };
    if matches!(value, Value::Null) {
        return Ok(None);
    }
    let datum = match (column.class, value) {
        (ValueClass::Int2, Value::Integer(_) | Value::Real(_)) => i16::try_from(integer(value)?)
            .map_err(|_| out_of_range())?
            .into_datum(),
        (ValueClass::Int4, Value::Integer(_) | Value::Real(_)) => i32::try_from(integer(value)?)
            .map_err(|_| out_of_range())?
            .into_datum(),
        (ValueClass::Int8, Value::Integer(_) | Value::Real(_)) => integer(value)?.into_datum(),
        (ValueClass::Float4, Value::Real(f)) => (*f as f32).into_datum(),
        (ValueClass::Float4, Value::Integer(i)) => (*i as f32).into_datum(),
        (ValueClass::Float8, Value::Real(f)) => f.into_datum(),
        (ValueClass::Float8, Value::Integer(i)) => (*i as f64).into_datum(),
        (ValueClass::Bool, Value::Integer(i)) => (*i != 0).into_datum(),
        (ValueClass::Bytea, Value::Blob(bytes)) => bytes.as_slice().into_datum(),
        (ValueClass::Text, Value::Text(text)) => text_datum(text),
        (ValueClass::Text, Value::Integer(i)) => text_datum(&i.to_string()),
        (ValueClass::Text, Value::Real(f)) => text_datum(&f.to_string()),
        (_, Value::Blob(_)) => return Err(mismatch("BLOB")),
        (_, Value::Text(text)) => {
            // SAFETY: guaranteed by the caller.
            return unsafe { input_function(text, column, table) }.map(Some);
        }
        (_, Value::Integer(i)) => {
            // SAFETY: as above.
            return unsafe { input_function(&i.to_string(), column, table) }.map(Some);
        }
        (_, Value::Real(f)) => {
            // SAFETY: as above.
            return unsafe { input_function(&f.to_string(), column, table) }.map(Some);
        }
        (_, Value::Null) => None,
    };
    Ok(datum)
}

fn text_datum(text: &str) -> Option<pg_sys::Datum> {
    // SAFETY: cstring_to_text_with_len copies `len` bytes into a new text in
    // the current memory context.
    let text = unsafe { pg_sys::cstring_to_text_with_len(text.as_ptr().cast(), text.len() as i32) };
    Some(pg_sys::Datum::from(text))
}

/// Calls the input function of `column`'s type on `text`. An error it raises
/// would quote the decrypted text, so it is replaced with one that names the
/// column and keeps the SQLSTATE.
///
/// # Safety
///
/// The caller runs inside [`with_text_form`].
unsafe fn input_function(
    text: &str,
    column: &Column,
    table: &str,
) -> Result<pg_sys::Datum, PgError> {
    let Ok(c_text) = CString::new(text) else {
        return Err(PgError::new(
            PgSqlErrorCode::ERRCODE_UNTRANSLATABLE_CHARACTER,
            format!(
                "encrypted table \"{table}\", column \"{}\": a stored text contains a NUL \
                 character",
                column.name
            ),
        ));
    };
    let type_oid = column.type_oid;
    let typmod = column.typmod;
    let attempt = AssertUnwindSafe(move || {
        let mut input = pg_sys::Oid::INVALID;
        let mut io_param = pg_sys::Oid::INVALID;
        // SAFETY: the type exists (it is the column's), and the input function
        // reads a NUL-terminated string.
        unsafe {
            pg_sys::getTypeInputInfo(type_oid, &mut input, &mut io_param);
            Ok(pg_sys::OidInputFunctionCall(
                input,
                c_text.as_ptr().cast_mut(),
                io_param,
                typmod,
            ))
        }
    });
    let message = format!(
        "encrypted table \"{table}\", column \"{}\": a stored value cannot be read as type {}",
        column.name,
        type_name(type_oid)
    );
    PgTryBuilder::new(attempt)
        .catch_others(move |error| {
            let code = match &error {
                CaughtError::PostgresError(report)
                | CaughtError::ErrorReport(report)
                | CaughtError::RustPanic {
                    ereport: report, ..
                } => report.sql_error_code(),
            };
            Err(PgError::new(code, message.clone()).with_hint(
                "The column's type was changed after values were stored; change it back, or \
                 rewrite the rows with the old type.",
            ))
        })
        .execute()
}

/// The SQL name of type `type_oid`.
pub fn type_name(type_oid: pg_sys::Oid) -> String {
    // SAFETY: format_type_be returns a palloc'd string for any oid.
    unsafe {
        CStr::from_ptr(pg_sys::format_type_be(type_oid))
            .to_string_lossy()
            .into_owned()
    }
}
