//! Errors of the SQLite extension and their SQLite result codes.

use std::ffi::c_int;

use rusqlite::ffi;

/// Everything an extension callback can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ExtError {
    /// An error from the crypto core, with what was being done.
    #[error("{context}: {source}")]
    Core {
        /// What failed, naming the table, row or argument.
        context: String,
        /// The core's error.
        #[source]
        source: persist_core::Error,
    },

    /// An error that SQLite returned to one of our statements.
    #[error("{message}")]
    Sqlite {
        /// SQLite's result code.
        code: c_int,
        /// SQLite's message.
        message: String,
    },

    /// A constraint violation, with SQLite's usual message and extended code.
    #[error("{message}")]
    Constraint {
        /// The extended result code, such as `SQLITE_CONSTRAINT_NOTNULL`.
        code: c_int,
        /// The message, in SQLite's wording.
        message: String,
    },

    /// A misuse the user can fix: a wrong argument, a missing call.
    #[error("{0}")]
    Usage(String),
}

impl ExtError {
    /// Builds a usage error.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::Usage(message.into())
    }

    /// Wraps a core error with what was being done.
    pub fn core(context: impl Into<String>, source: persist_core::Error) -> Self {
        Self::Core {
            context: context.into(),
            source,
        }
    }

    /// The SQLite result code to report.
    pub fn code(&self) -> c_int {
        match self {
            Self::Sqlite { code, .. } | Self::Constraint { code, .. } => *code,
            Self::Core { .. } | Self::Usage(_) => ffi::SQLITE_ERROR,
        }
    }
}

/// Adds context to core results.
pub trait CoreContext<T> {
    /// Wraps the error with `context`, computed only on failure.
    ///
    /// # Errors
    ///
    /// The wrapped error.
    fn context_with(self, context: impl FnOnce() -> String) -> Result<T, ExtError>;
}

impl<T> CoreContext<T> for Result<T, persist_core::Error> {
    fn context_with(self, context: impl FnOnce() -> String) -> Result<T, ExtError> {
        self.map_err(|source| ExtError::core(context(), source))
    }
}
