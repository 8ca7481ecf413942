//! SQLite's type affinity, applied by hand.
//!
//! SQLite converts values to a column's affinity when they are stored in an
//! ordinary table, but not when they are passed to a virtual table. Encrypted
//! tables apply the same rules themselves (<https://sqlite.org/datatype3.html>,
//! section 3), so `INSERT INTO t VALUES ('5')` stores the INTEGER 5 in an
//! INTEGER column exactly as a plain table would, and the blind id of `'5'`
//! and `5` agree. Conversions between text and numbers are done by SQLite
//! itself, on a copy of the value, so the results match SQLite's formatting
//! and parsing exactly.

use std::ffi::c_int;

use persist_core::codec::{Value, ValueRef};
use rusqlite::ffi;

use crate::error::ExtError;

/// A column's type affinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affinity {
    /// Declared type contains "INT".
    Integer,
    /// Declared type contains "CHAR", "CLOB" or "TEXT".
    Text,
    /// Declared type contains "BLOB", or no type was declared.
    Blob,
    /// Declared type contains "REAL", "FLOA" or "DOUB".
    Real,
    /// Any other declared type.
    Numeric,
}

impl Affinity {
    /// Determines the affinity of a declared type by SQLite's rules, in their
    /// order of precedence.
    pub fn from_declared_type(declared: &str) -> Self {
        let upper = declared.to_ascii_uppercase();
        if upper.contains("INT") {
            Self::Integer
        } else if ["CHAR", "CLOB", "TEXT"].iter().any(|s| upper.contains(s)) {
            Self::Text
        } else if upper.contains("BLOB") || upper.trim().is_empty() {
            Self::Blob
        } else if ["REAL", "FLOA", "DOUB"].iter().any(|s| upper.contains(s)) {
            Self::Real
        } else {
            Self::Numeric
        }
    }
}

/// A value read from SQLite, borrowed where it needed no conversion.
pub enum Converted<'a> {
    /// The value as SQLite passed it.
    Borrowed(ValueRef<'a>),
    /// A converted copy.
    Owned(Value),
}

impl Converted<'_> {
    /// Borrows the value.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Self::Borrowed(value) => *value,
            Self::Owned(value) => value.as_ref(),
        }
    }
}

/// Reads a value that SQLite passed to a callback.
///
/// # Safety
///
/// `value` must be a valid `sqlite3_value` that outlives `'a` and is not
/// modified meanwhile.
///
/// # Errors
///
/// [`ExtError::Usage`] for TEXT that is not valid UTF-8.
pub unsafe fn read<'a>(
    value: *mut ffi::sqlite3_value,
    what: &str,
) -> Result<ValueRef<'a>, ExtError> {
    // SAFETY: the caller guarantees `value` is valid for 'a. The pointers
    // returned by sqlite3_value_text and _blob are valid for the byte count
    // from sqlite3_value_bytes, read after them as SQLite requires.
    unsafe {
        Ok(match ffi::sqlite3_value_type(value) {
            ffi::SQLITE_INTEGER => ValueRef::Integer(ffi::sqlite3_value_int64(value)),
            ffi::SQLITE_FLOAT => ValueRef::Real(ffi::sqlite3_value_double(value)),
            ffi::SQLITE_TEXT => {
                let data = ffi::sqlite3_value_text(value);
                let bytes = raw_bytes(data, ffi::sqlite3_value_bytes(value));
                let text = std::str::from_utf8(bytes).map_err(|_| {
                    ExtError::usage(format!(
                        "{what}: TEXT value is not valid UTF-8; store binary data as a BLOB"
                    ))
                })?;
                ValueRef::Text(text)
            }
            ffi::SQLITE_BLOB => {
                let data = ffi::sqlite3_value_blob(value).cast::<u8>();
                ValueRef::Blob(raw_bytes(data, ffi::sqlite3_value_bytes(value)))
            }
            _ => ValueRef::Null,
        })
    }
}

/// Builds a slice from a pointer and length returned by SQLite.
///
/// # Safety
///
/// `data` must be null or point to `len` readable bytes valid for `'a`.
unsafe fn raw_bytes<'a>(data: *const u8, len: c_int) -> &'a [u8] {
    if data.is_null() || len <= 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(data, len as usize) }
    }
}

/// Reads a value and converts it to `affinity`.
///
/// # Safety
///
/// As [`read`].
///
/// # Errors
///
/// As [`read`].
pub unsafe fn read_with_affinity<'a>(
    value: *mut ffi::sqlite3_value,
    affinity: Affinity,
    what: &str,
) -> Result<Converted<'a>, ExtError> {
    // SAFETY: guaranteed by the caller.
    let raw = unsafe { read(value, what)? };
    let converted = match (affinity, raw) {
        (Affinity::Integer | Affinity::Numeric, ValueRef::Text(_)) => {
            // SAFETY: `value` is valid; the copy is converted and freed here.
            match unsafe { numeric_copy(value) } {
                Some(Value::Real(real)) => {
                    Some(integral(real).map_or(Value::Real(real), Value::Integer))
                }
                other => other,
            }
        }
        (Affinity::Integer | Affinity::Numeric, ValueRef::Real(real)) => {
            integral(real).map(Value::Integer)
        }
        (Affinity::Real, ValueRef::Integer(integer)) => Some(Value::Real(integer as f64)),
        (Affinity::Real, ValueRef::Text(_)) => {
            // SAFETY: as above.
            match unsafe { numeric_copy(value) } {
                Some(Value::Integer(integer)) => Some(Value::Real(integer as f64)),
                other => other,
            }
        }
        (Affinity::Text, ValueRef::Integer(_) | ValueRef::Real(_)) => {
            // SAFETY: as above.
            unsafe { text_copy(value) }
        }
        _ => None,
    };
    Ok(match converted {
        Some(value) => Converted::Owned(value),
        None => Converted::Borrowed(raw),
    })
}

/// The INTEGER a REAL converts to under NUMERIC affinity, if any: SQLite
/// converts a REAL that holds an integer strictly inside the 64-bit range.
fn integral(real: f64) -> Option<i64> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if real.fract() == 0.0 && real > -LIMIT && real < LIMIT {
        let integer = real as i64;
        (integer > i64::MIN && integer < i64::MAX).then_some(integer)
    } else {
        None
    }
}

/// Applies SQLite's numeric conversion to a copy of a TEXT value; `None` when
/// the text does not look like a number.
///
/// # Safety
///
/// `value` must be a valid `sqlite3_value`.
unsafe fn numeric_copy(value: *mut ffi::sqlite3_value) -> Option<Value> {
    // SAFETY: the copy is owned here and freed before returning.
    unsafe {
        let copy = ffi::sqlite3_value_dup(value);
        if copy.is_null() {
            return None;
        }
        let result = match ffi::sqlite3_value_numeric_type(copy) {
            ffi::SQLITE_INTEGER => Some(Value::Integer(ffi::sqlite3_value_int64(copy))),
            ffi::SQLITE_FLOAT => Some(Value::Real(ffi::sqlite3_value_double(copy))),
            _ => None,
        };
        ffi::sqlite3_value_free(copy);
        result
    }
}

/// Renders a copy of a numeric value as SQLite's TEXT.
///
/// # Safety
///
/// `value` must be a valid `sqlite3_value`.
unsafe fn text_copy(value: *mut ffi::sqlite3_value) -> Option<Value> {
    // SAFETY: the copy is owned here and freed before returning; the text is
    // copied out before the free.
    unsafe {
        let copy = ffi::sqlite3_value_dup(value);
        if copy.is_null() {
            return None;
        }
        let data = ffi::sqlite3_value_text(copy);
        let bytes = raw_bytes(data, ffi::sqlite3_value_bytes(copy));
        let text = String::from_utf8_lossy(bytes).into_owned();
        ffi::sqlite3_value_free(copy);
        Some(Value::Text(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_rules_in_order() {
        for (declared, expected) in [
            ("INTEGER", Affinity::Integer),
            ("BIGINT", Affinity::Integer),
            ("VARCHAR(40)", Affinity::Text),
            ("NVARCHAR(120)", Affinity::Text),
            ("CLOB", Affinity::Text),
            ("BLOB", Affinity::Blob),
            ("", Affinity::Blob),
            ("REAL", Affinity::Real),
            ("DOUBLE PRECISION", Affinity::Real),
            ("FLOATING POINT", Affinity::Integer),
            ("NUMERIC(10,2)", Affinity::Numeric),
            ("DATETIME", Affinity::Numeric),
            ("BOOLEAN", Affinity::Numeric),
        ] {
            assert_eq!(
                Affinity::from_declared_type(declared),
                expected,
                "{declared}"
            );
        }
    }

    #[test]
    fn integral_bounds() {
        assert_eq!(integral(5.0), Some(5));
        assert_eq!(integral(-0.0), Some(0));
        assert_eq!(integral(5.5), None);
        assert_eq!(integral(9.3e18), None);
        assert_eq!(integral(f64::NAN), None);
    }
}
