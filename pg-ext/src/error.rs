//! Errors of the PostgreSQL extension, each with the SQLSTATE it is raised
//! with.
//!
//! | SQLSTATE | name | raised for |
//! |---|---|---|
//! | 22004 | `null_value_not_allowed` | a NULL store name, export passphrase or pairing response |
//! | 22023 | `invalid_parameter_value` | a bad argument, option, store name, key export, pairing code or keyfile path; an invite that is used or expired |
//! | 22P03 | `invalid_binary_representation` | bytes that are not an envelope, or a version this build cannot read |
//! | 22P05 | `untranslatable_character` | decrypted TEXT with a NUL character |
//! | 28P01 | `invalid_password` | a wrong passphrase for a key export |
//! | 40001 | `serialization_failure` | a store created by another session at the same time |
//! | 42501 | `insufficient_privilege` | a keyfile argument without the right role; a keyfile the server may not read or that other users can access |
//! | 42704 | `undefined_object` | an envelope under a key the keyring lacks; a store with no keyring copy for this device key; an invite this database did not create |
//! | 42804 | `datatype_mismatch` | an envelope that contains another storage class than the function returns |
//! | 54000 | `program_limit_exceeded` | an argument over its size limit |
//! | 55000 | `object_not_in_prerequisite_state` | no store open, or no key source configured |
//! | 58P01 | `undefined_file` | a missing keyfile that may not be created |
//! | 58030 | `io_error` | any other keyfile failure: damaged, not a keyfile, cannot be written |
//! | XX001 | `data_corrupted` | authentication failed, a pairing response that fails verification, or damaged store metadata |
//!
//! Messages name the SQL function and the argument, and never contain key
//! material, passphrases or plaintext.

use std::fmt;
use std::path::Path;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// An error to raise as a PostgreSQL `ERROR`.
#[derive(Debug)]
pub struct PgError {
    code: PgSqlErrorCode,
    message: String,
    hint: Option<String>,
}

impl PgError {
    /// Builds an error with SQLSTATE `code`.
    pub fn new(code: PgSqlErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a HINT line.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Builds an `invalid_parameter_value` (22023) error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE, message)
    }

    /// Builds a `program_limit_exceeded` (54000) error for an argument of
    /// `size` bytes over `limit` bytes.
    pub fn too_large(argument: &str, size: usize, limit: usize) -> Self {
        Self::new(
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!("{argument} is {size} bytes, over the limit of {limit} bytes"),
        )
    }

    /// Wraps a core error, prefixed with what was being done, and picks the
    /// SQLSTATE from the kind of error and from `subject`.
    pub fn core(context: impl fmt::Display, subject: Subject, error: persist_core::Error) -> Self {
        let code = sqlstate_of(subject, &error);
        Self::new(code, format!("{context}: {error}"))
    }

    /// Returns the SQLSTATE.
    pub fn code(&self) -> PgSqlErrorCode {
        self.code
    }

    /// Returns the message, without the SQLSTATE.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Returns the HINT, if any.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// Raises the error; Postgres aborts the statement.
    pub fn report(self) -> ! {
        let mut report = ErrorReport::new(self.code, self.message, "persist");
        if let Some(hint) = self.hint {
            report = report.set_hint(hint);
        }
        report.report(PgLogLevel::ERROR);
        unreachable!("an ERROR report does not return")
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

/// What a core error was about, which decides between SQLSTATEs that the
/// core's error kinds alone cannot tell apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    /// An envelope given by the caller: malformed bytes are 22P03.
    Envelope,
    /// A key export string given by the caller: malformed text is 22023.
    KeyExport,
    /// Store metadata read from the `persist` tables: malformed bytes are
    /// XX001, because the database contains damaged data.
    StoredMetadata,
    /// Anything else.
    Other,
}

fn sqlstate_of(subject: Subject, error: &persist_core::Error) -> PgSqlErrorCode {
    use PgSqlErrorCode::*;
    use persist_core::Error;
    match error {
        Error::UnknownKeyId { .. } => ERRCODE_UNDEFINED_OBJECT,
        Error::AuthenticationFailed { .. } => ERRCODE_DATA_CORRUPTED,
        Error::Malformed { .. } | Error::UnsupportedVersion { .. } => match subject {
            Subject::Envelope => ERRCODE_INVALID_BINARY_REPRESENTATION,
            Subject::StoredMetadata => ERRCODE_DATA_CORRUPTED,
            Subject::KeyExport | Subject::Other => ERRCODE_INVALID_PARAMETER_VALUE,
        },
        Error::TooLarge { .. } => ERRCODE_PROGRAM_LIMIT_EXCEEDED,
        Error::Invalid { .. }
        | Error::ExportChecksum
        | Error::PassphraseRequired
        | Error::Checksum { .. }
        | Error::InviteExpired { .. } => ERRCODE_INVALID_PARAMETER_VALUE,
        Error::PairingRejected { .. } => ERRCODE_DATA_CORRUPTED,
        Error::Keyfile { path, .. } => keyfile_sqlstate(path),
        Error::DeviceKeyNotFound { .. } => ERRCODE_UNDEFINED_FILE,
        Error::WrongPassphrase => ERRCODE_INVALID_PASSWORD,
        Error::Keychain(_) | Error::Random(_) => ERRCODE_SYSTEM_ERROR,
        _ => ERRCODE_INTERNAL_ERROR,
    }
}

/// Picks the SQLSTATE of a failed keyfile operation by looking at the file
/// again: 42501 when the server process may not open it or when other users
/// may access it, else 58030.
// NOTE: the core's `Error::Keyfile` carries the operating system's error only
// as text, so a failure that is gone by the time of this second look (or a
// permission error while creating the keyfile) is reported as 58030.
fn keyfile_sqlstate(path: &Path) -> PgSqlErrorCode {
    use std::io::ErrorKind;
    use std::os::unix::fs::PermissionsExt;

    let insufficient = PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE;
    match std::fs::metadata(path) {
        Ok(metadata) if metadata.permissions().mode() & 0o077 != 0 => insufficient,
        Ok(_) => match std::fs::File::open(path) {
            Err(err) if err.kind() == ErrorKind::PermissionDenied => insufficient,
            _ => PgSqlErrorCode::ERRCODE_IO_ERROR,
        },
        Err(err) if err.kind() == ErrorKind::PermissionDenied => insufficient,
        Err(_) => PgSqlErrorCode::ERRCODE_IO_ERROR,
    }
}

/// Adds context to core results.
pub trait CoreContext<T> {
    /// Wraps the error as [`PgError::core`] with `context`, computed only on
    /// failure.
    ///
    /// # Errors
    ///
    /// The wrapped error.
    fn context_with<C: fmt::Display>(
        self,
        subject: Subject,
        context: impl FnOnce() -> C,
    ) -> Result<T, PgError>;
}

impl<T> CoreContext<T> for Result<T, persist_core::Error> {
    fn context_with<C: fmt::Display>(
        self,
        subject: Subject,
        context: impl FnOnce() -> C,
    ) -> Result<T, PgError> {
        self.map_err(|error| PgError::core(context(), subject, error))
    }
}

/// Raises the error of a result, for the `#[pg_extern]` wrappers.
pub trait OrReport<T> {
    /// Returns the value, or raises the error as a PostgreSQL `ERROR`.
    fn or_report(self) -> T;
}

impl<T> OrReport<T> for Result<T, PgError> {
    fn or_report(self) -> T {
        match self {
            Ok(value) => value,
            Err(error) => error.report(),
        }
    }
}
