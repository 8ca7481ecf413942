//! Options of encrypted tables and their columns, and the validator.
//!
//! Table options:
//!
//! | option | set by | meaning |
//! |---|---|---|
//! | `primary_key` | the user | the primary key columns, comma-separated, as in a column list |
//! | `logical_name` | the event trigger | the name that envelopes and blind ids are bound to: the table's name at creation |
//! | `rows_table` | the event trigger | the table in schema `persist_rows` that contains the rows |
//! | `store_id` | the event trigger | the id of the store whose keys seal the rows |
//!
//! The last three are set together or not at all. A `CREATE FOREIGN TABLE`
//! that sets them (as `pg_dump` output does) names rows that exist already.
//!
//! Column option `column_name` is the column's name inside sealed rows. The
//! event trigger sets it to the column's name when the column is created, so
//! a renamed column keeps reading its values.

use std::ffi::CStr;

use persist_core::StoreId;
use pgrx::pg_sys;

use crate::error::PgError;

/// Option `primary_key`.
pub const PRIMARY_KEY: &str = "primary_key";
/// Option `logical_name`.
pub const LOGICAL_NAME: &str = "logical_name";
/// Option `rows_table`.
pub const ROWS_TABLE: &str = "rows_table";
/// Option `store_id`.
pub const STORE_ID: &str = "store_id";
/// Column option `column_name`.
pub const COLUMN_NAME: &str = "column_name";

/// Maximum length of an identifier in Postgres (NAMEDATALEN - 1), in bytes.
const MAX_IDENTIFIER_LEN: usize = 63;

/// Reads a `List` of `DefElem` into name and value pairs.
///
/// # Safety
///
/// `list` must be NIL or a valid `List` of `DefElem` nodes whose arguments
/// are strings.
pub unsafe fn read_def_elems(list: *mut pg_sys::List) -> Vec<(String, String)> {
    // SAFETY: guaranteed by the caller.
    let list = unsafe { pgrx::PgList::<pg_sys::DefElem>::from_pg(list) };
    list.iter_ptr()
        .map(|def| {
            // SAFETY: every element is a DefElem with a name and a string
            // argument; defGetString raises an error for other arguments.
            unsafe {
                let name = CStr::from_ptr((*def).defname)
                    .to_string_lossy()
                    .into_owned();
                let value = CStr::from_ptr(pg_sys::defGetString(def))
                    .to_string_lossy()
                    .into_owned();
                (name, value)
            }
        })
        .collect()
}

/// Checks the options given for an object in `catalog`.
///
/// # Errors
///
/// HV00D (`fdw_invalid_option_name`, as postgres_fdw reports it) for an
/// unknown option, and 22023 for a missing or invalid value.
pub fn validate(options: &[(String, String)], catalog: pg_sys::Oid) -> Result<(), PgError> {
    if catalog == pg_sys::ForeignTableRelationId {
        return validate_table(options);
    }
    let (allowed, object): (&[&str], &str) = if catalog == pg_sys::AttributeRelationId {
        (&[COLUMN_NAME], "a column of an encrypted table")
    } else if catalog == pg_sys::ForeignServerRelationId {
        (&[], "a server of foreign data wrapper persist")
    } else if catalog == pg_sys::UserMappingRelationId {
        (&[], "a user mapping of foreign data wrapper persist")
    } else {
        (&[], "foreign data wrapper persist")
    };
    for (name, value) in options {
        if !allowed.contains(&name.as_str()) {
            return Err(unknown_option(name, object, allowed));
        }
        if name == COLUMN_NAME {
            check_identifier(COLUMN_NAME, value)?;
        }
    }
    Ok(())
}

fn unknown_option(name: &str, object: &str, allowed: &[&str]) -> PgError {
    let valid = if allowed.is_empty() {
        "it takes no options".to_owned()
    } else {
        format!("valid options are {}", allowed.join(", "))
    };
    PgError::new(
        pgrx::PgSqlErrorCode::ERRCODE_FDW_INVALID_OPTION_NAME,
        format!("invalid option \"{name}\" for {object}; {valid}"),
    )
}

fn check_identifier(option: &str, value: &str) -> Result<(), PgError> {
    if value.is_empty() || value.len() > MAX_IDENTIFIER_LEN {
        return Err(PgError::invalid(format!(
            "option \"{option}\" must be a name of 1 to {MAX_IDENTIFIER_LEN} bytes"
        )));
    }
    Ok(())
}

fn validate_table(options: &[(String, String)]) -> Result<(), PgError> {
    const TABLE_OPTIONS: &[&str] = &[PRIMARY_KEY, LOGICAL_NAME, ROWS_TABLE, STORE_ID];
    for (name, value) in options {
        match name.as_str() {
            PRIMARY_KEY => {
                parse_column_list(value)?;
            }
            LOGICAL_NAME => check_identifier(LOGICAL_NAME, value)?,
            ROWS_TABLE => check_rows_table_name(value)?,
            STORE_ID => {
                StoreId::from_hex(value).map_err(|_| {
                    PgError::invalid(format!(
                        "option \"{STORE_ID}\" must be a store id of 32 hexadecimal digits"
                    ))
                })?;
            }
            _ => return Err(unknown_option(name, "an encrypted table", TABLE_OPTIONS)),
        }
    }
    if !options.iter().any(|(name, _)| name == PRIMARY_KEY) {
        return Err(PgError::invalid(
            "an encrypted table needs option \"primary_key\", such as OPTIONS (primary_key 'id') \
             or OPTIONS (primary_key 'order_id, line')",
        ));
    }
    let managed = [LOGICAL_NAME, ROWS_TABLE, STORE_ID]
        .iter()
        .filter(|managed| options.iter().any(|(name, _)| name == *managed))
        .count();
    if managed != 0 && managed != 3 {
        return Err(PgError::invalid(format!(
            "options \"{LOGICAL_NAME}\", \"{ROWS_TABLE}\" and \"{STORE_ID}\" are set together: \
             the event trigger sets all three for a new table, and pg_dump output restores all \
             three"
        )));
    }
    Ok(())
}

/// Checks the name of a rows table: `r_` and 16 lowercase hexadecimal digits.
///
/// # Errors
///
/// 22023 for any other name.
pub fn check_rows_table_name(name: &str) -> Result<(), PgError> {
    let valid = name.len() == 18
        && name.starts_with("r_")
        && name[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if valid {
        Ok(())
    } else {
        Err(PgError::invalid(format!(
            "option \"{ROWS_TABLE}\" must name a rows table: r_ followed by 16 lowercase \
             hexadecimal digits"
        )))
    }
}

/// Parses a column list such as `a, "Mixed Case", b`: names are separated by
/// commas, and unquoted names are folded to lower case, as in SQL.
///
/// # Errors
///
/// 22023 for an empty list, an empty name or an unterminated quote.
pub fn parse_column_list(text: &str) -> Result<Vec<String>, PgError> {
    let invalid = |reason: &str| {
        PgError::invalid(format!(
            "option \"{PRIMARY_KEY}\" is not a column list ({reason}); give names separated by \
             commas, such as 'playlist_id, track_id'"
        ))
    };
    let mut names = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut name = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        name.push('"');
                    }
                    Some('"') => break,
                    Some(c) => name.push(c),
                    None => return Err(invalid("a quoted name is not terminated")),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    break;
                }
                name.push(c.to_ascii_lowercase());
                chars.next();
            }
        }
        if name.is_empty() {
            return Err(invalid("a name is empty"));
        }
        if name.len() > MAX_IDENTIFIER_LEN {
            return Err(invalid("a name is longer than 63 bytes"));
        }
        names.push(name);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => break,
            Some(',') => {}
            Some(_) => return Err(invalid("names must be separated by commas")),
        }
    }
    Ok(names)
}

/// Returns the value of option `name`, if set.
pub fn find<'a>(options: &'a [(String, String)], name: &str) -> Option<&'a str> {
    options
        .iter()
        .find(|(option, _)| option == name)
        .map(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_list_folds_and_quotes() {
        assert_eq!(
            parse_column_list(" Playlist_ID ,track_id").ok(),
            Some(vec!["playlist_id".to_owned(), "track_id".to_owned()])
        );
        assert_eq!(
            parse_column_list("\"Mixed \"\"Case\"\"\", b").ok(),
            Some(vec!["Mixed \"Case\"".to_owned(), "b".to_owned()])
        );
    }

    #[test]
    fn column_list_rejects_bad_syntax() {
        for text in ["", " , a", "a b", "\"open", "a,"] {
            assert!(parse_column_list(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn rows_table_name_format() {
        assert!(check_rows_table_name("r_0123456789abcdef").is_ok());
        for name in [
            "r_0123456789ABCDEF",
            "r_0123",
            "x_0123456789abcdef",
            "customer",
        ] {
            assert!(check_rows_table_name(name).is_err(), "{name}");
        }
    }
}
