//! The error type of the benchmark binary: a message that describes what
//! failed.

use std::fmt;

/// A failed step, with the reason.
#[derive(Debug)]
pub struct BenchError(String);

/// The result type used throughout the binary.
pub type Result<T> = std::result::Result<T, BenchError>;

impl BenchError {
    /// Creates an error from a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<rusqlite::Error> for BenchError {
    fn from(err: rusqlite::Error) -> Self {
        Self(format!("SQLite: {err}"))
    }
}

impl From<postgres::Error> for BenchError {
    fn from(err: postgres::Error) -> Self {
        let detail = err
            .as_db_error()
            .map_or_else(|| err.to_string(), |db| db.message().to_owned());
        Self(format!("PostgreSQL: {detail}"))
    }
}

impl From<std::io::Error> for BenchError {
    fn from(err: std::io::Error) -> Self {
        Self(format!("I/O: {err}"))
    }
}

impl From<persist_core::Error> for BenchError {
    fn from(err: persist_core::Error) -> Self {
        Self(format!("persist-core: {err}"))
    }
}

/// Adds what was being done to an error.
pub trait Context<T> {
    /// Prefixes the error message with `step`.
    fn context(self, step: impl fmt::Display) -> Result<T>;
}

impl<T, E: Into<BenchError>> Context<T> for std::result::Result<T, E> {
    fn context(self, step: impl fmt::Display) -> Result<T> {
        self.map_err(|err| BenchError(format!("{step}: {}", err.into())))
    }
}
