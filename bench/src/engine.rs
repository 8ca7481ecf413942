//! The three ways a table is stored: plaintext, a `persist` encrypted table
//! and a SQLCipher database, all in the same SQLCipher build of SQLite.
//!
//! SQLCipher is a full SQLite: a connection that never sets a key reads and
//! writes an ordinary database file, so the plaintext and the `persist` cases
//! run in the same library as the SQLCipher case. The extension is loaded at
//! run time and calls SQLite through the API table it receives, so it works
//! in this host as in the sqlite3 shell.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::error::{BenchError, Context, Result};

/// The storage of a database's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Engine {
    /// Plain SQLite tables in an unencrypted file.
    Plaintext,
    /// `persist` virtual tables in an unencrypted file.
    Persist,
    /// Plain tables in a SQLCipher 4 encrypted file.
    SqlCipher,
}

impl Engine {
    /// Every engine, in report order.
    pub const ALL: [Self; 3] = [Self::Plaintext, Self::Persist, Self::SqlCipher];

    /// Returns the name used in tables and file names.
    pub fn label(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Persist => "persist",
            Self::SqlCipher => "sqlcipher",
        }
    }

    /// Parses a label.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|engine| engine.label() == label)
    }
}

/// Paths and keys for opening connections of each engine.
pub struct Opener {
    /// The `persist` extension, `libpersist.so`.
    pub extension: PathBuf,
    /// Folder for keyfiles.
    pub key_dir: PathBuf,
    /// The SQLCipher raw key as 64 hex digits.
    sqlcipher_key: String,
}

impl Opener {
    /// Creates an opener with a fresh random SQLCipher key.
    ///
    /// # Errors
    ///
    /// When the operating system provides no randomness.
    pub fn new(extension: &Path, key_dir: &Path) -> Result<Self> {
        let key: [u8; 32] = persist_core::random::array()?;
        let sqlcipher_key = key.iter().map(|byte| format!("{byte:02x}")).collect();
        Ok(Self {
            extension: extension.to_path_buf(),
            key_dir: key_dir.to_path_buf(),
            sqlcipher_key,
        })
    }

    /// Returns the keyfile used by `persist` connections.
    pub fn keyfile(&self) -> PathBuf {
        self.key_dir.join("bench.key")
    }

    /// Opens `path` as `engine`: loads the extension and opens the store for
    /// `persist`, sets the raw key for SQLCipher.
    ///
    /// # Errors
    ///
    /// SQLite's errors, and an error naming the extension when it does not
    /// load.
    pub fn open(&self, engine: Engine, path: &Path) -> Result<Connection> {
        let conn = Connection::open(path).context(format!("opening {}", path.display()))?;
        match engine {
            Engine::Plaintext => {}
            Engine::Persist => {
                load_persist(&conn, &self.extension)?;
                init_store(&conn, &self.keyfile(), None)?;
            }
            Engine::SqlCipher => {
                // A raw key (x'<64 hex digits>') is used as the encryption key
                // directly, so SQLCipher's PBKDF2 password derivation is not
                // part of any measurement.
                conn.execute_batch(&format!("PRAGMA key = \"x'{}'\";", self.sqlcipher_key))?;
                let version: String =
                    conn.query_row("PRAGMA cipher_version", [], |row| row.get(0))?;
                if version.is_empty() {
                    return Err(BenchError::new(
                        "PRAGMA cipher_version returned nothing: this SQLite is not SQLCipher",
                    ));
                }
            }
        }
        Ok(conn)
    }
}

/// Loads `libpersist.so` into `conn` and turns extension loading off again.
///
/// # Errors
///
/// SQLite's error message when the library does not load.
pub fn load_persist(conn: &Connection, extension: &Path) -> Result<()> {
    // SAFETY: loading runs the library's initialisation code. The library is
    // this project's own release build, given by path; loading is turned off
    // again right after.
    unsafe {
        conn.load_extension_enable()?;
        let loaded = conn.load_extension(extension, None::<&str>);
        conn.load_extension_disable()?;
        loaded.context(format!(
            "loading the persist extension {} (build it with cargo build --release -p \
             persist-sqlite)",
            extension.display()
        ))?;
    }
    Ok(())
}

/// Opens the store `bench` on `conn` with the device key in `keyfile`,
/// importing the exported keyring `import` if given.
///
/// # Errors
///
/// SQLite's errors and the extension's error message.
pub fn init_store(conn: &Connection, keyfile: &Path, import: Option<&str>) -> Result<()> {
    let keyfile = keyfile
        .to_str()
        .ok_or_else(|| BenchError::new(format!("keyfile path {keyfile:?} is not UTF-8")))?;
    let _report: String = match import {
        None => conn.query_row(
            "SELECT persist_init('bench', json_object('keyfile', ?1))",
            [keyfile],
            |row| row.get(0),
        ),
        Some(key) => conn.query_row(
            "SELECT persist_init('bench', json_object('keyfile', ?1, 'key', ?2))",
            [keyfile, key],
            |row| row.get(0),
        ),
    }
    .context("persist_init")?;
    Ok(())
}

/// Exports the keyring of the store open on `conn`, for a second device.
///
/// # Errors
///
/// SQLite's errors.
pub fn export_key(conn: &Connection) -> Result<String> {
    conn.query_row("SELECT persist_export()", [], |row| row.get(0))
        .context("persist_export")
}

/// Removes a database file and its journal files, if present.
pub fn remove_database(path: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}
