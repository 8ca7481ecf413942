//! The source of the device key: the `persist.keyfile` setting or the
//! `keyfile` option of `persist.init`. The checks here keep a keyfile choice
//! from reading arbitrary server files and from landing in the data
//! directory.

use std::ffi::{CStr, CString};
use std::path::{Component, Path, PathBuf};

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PgSqlErrorCode, pg_sys};

use crate::error::PgError;

/// The `persist.keyfile` setting: the server-side keyfile that contains the
/// device key. Only superusers may set it (PGC_SUSET).
pub static KEYFILE_SETTING: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Defines `persist.keyfile`; called once from `_PG_init`.
pub fn define_setting() {
    GucRegistry::define_string_guc(
        c"persist.keyfile",
        c"Path of the keyfile that contains this server's Persist device key.",
        c"An absolute path outside the data directory, readable by the server process. \
          persist.init creates the keyfile (mode 0600, directory 0700) when it does not exist. \
          Only superusers may set it.",
        &KEYFILE_SETTING,
        GucContext::Suset,
        GucFlags::default(),
    );
}

/// A keyfile chosen for `persist.init`, checked and ready to use.
pub struct KeyfileChoice {
    /// The absolute keyfile path.
    pub path: PathBuf,
    /// Whether the current role may have the keyfile created.
    pub may_create: bool,
    /// The origin of the path, for messages: `persist.keyfile` or
    /// `option "keyfile"`.
    pub origin: &'static str,
}

/// Picks the keyfile from the `keyfile` option or else the `persist.keyfile`
/// setting, and checks it; `None` when neither is set.
///
/// # Errors
///
/// 42501 when the role may not pass a keyfile path, and 22023 for a path
/// that is relative, has `.` or `..` components, or lies inside the data
/// directory, the WAL directory or a tablespace.
pub fn choose(option: Option<&Path>) -> Result<Option<KeyfileChoice>, PgError> {
    let choice = match option {
        Some(path) => {
            if !has_privileges_of(pg_sys::ROLE_PG_READ_SERVER_FILES) {
                return Err(PgError::new(
                    PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
                    "persist.init: option \"keyfile\" requires superuser or the privileges of \
                     role pg_read_server_files, because it reads a file on the database server",
                )
                .with_hint(
                    "Ask a superuser to set persist.keyfile for your role, for example with \
                     ALTER ROLE ... SET persist.keyfile = '/etc/persist/app.key'.",
                ));
            }
            KeyfileChoice {
                path: path.to_owned(),
                may_create: has_privileges_of(pg_sys::ROLE_PG_WRITE_SERVER_FILES),
                origin: "option \"keyfile\"",
            }
        }
        None => match setting() {
            Some(path) => KeyfileChoice {
                path,
                may_create: true,
                origin: "persist.keyfile",
            },
            None => return Ok(None),
        },
    };
    check_path(&choice.path, choice.origin)?;
    Ok(Some(choice))
}

/// Returns `persist.keyfile`, or `None` when it is unset or empty.
fn setting() -> Option<PathBuf> {
    let value = KEYFILE_SETTING.get()?;
    let text = value.to_str().ok()?;
    (!text.is_empty()).then(|| PathBuf::from(text))
}

/// Tells whether the current role is a superuser or has the privileges of
/// built-in role `role`, the test that COPY applies to server files.
fn has_privileges_of(role: u32) -> bool {
    // SAFETY: both functions only read the catalog caches of a backend that
    // is inside a transaction, as every SQL function call is.
    unsafe {
        pg_sys::superuser()
            || pg_sys::has_privs_of_role(pg_sys::GetUserId(), pg_sys::Oid::from(role))
    }
}

fn check_path(path: &Path, origin: &str) -> Result<(), PgError> {
    let shown = path.display();
    if !path.is_absolute() {
        return Err(PgError::invalid(format!(
            "persist.init: {origin} {shown:?} is not an absolute path; a relative path would \
             point into the data directory"
        )));
    }
    if path
        .components()
        .any(|part| matches!(part, Component::CurDir | Component::ParentDir))
    {
        return Err(PgError::invalid(format!(
            "persist.init: {origin} {shown:?} contains \".\" or \"..\"; give the path without \
             them"
        )));
    }

    let resolved = resolve(path);
    for (directory, what) in protected_directories() {
        if resolved.starts_with(&directory) {
            return Err(PgError::invalid(format!(
                "persist.init: {origin} {shown:?} is inside the {what} {}; a keyfile there \
                 would be copied with every backup of the cluster, and whoever holds a copy \
                 could open the keyring",
                directory.display()
            ))
            .with_hint(
                "Keep the keyfile outside the data directory, for example in /etc/persist, \
                 readable only by the server's operating system user.",
            ));
        }
    }
    Ok(())
}

/// Resolves symbolic links in the longest existing prefix of `path` and
/// appends the rest, so that a link into the data directory is caught even
/// when the keyfile does not exist yet.
fn resolve(path: &Path) -> PathBuf {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(canonical) = existing.canonicalize() {
            let mut resolved = canonical;
            resolved.extend(rest.iter().rev());
            return resolved;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return path.to_owned(),
        }
    }
}

/// Returns the data directory, the targets of its links (such as a `pg_wal`
/// elsewhere) and the tablespace directories, all resolved.
fn protected_directories() -> Vec<(PathBuf, &'static str)> {
    // SAFETY: DataDir is set once at server start and never freed.
    let data_dir = unsafe {
        if pg_sys::DataDir.is_null() {
            return Vec::new();
        }
        PathBuf::from(
            CStr::from_ptr(pg_sys::DataDir)
                .to_string_lossy()
                .into_owned(),
        )
    };
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);
    let mut protected = vec![(data_dir.clone(), "data directory")];

    let mut links = Vec::new();
    for folder in [data_dir.clone(), data_dir.join("pg_tblspc")] {
        if let Ok(entries) = std::fs::read_dir(&folder) {
            links.extend(entries.flatten().map(|entry| entry.path()));
        }
    }
    for link in links {
        let is_link = link
            .symlink_metadata()
            .is_ok_and(|metadata| metadata.file_type().is_symlink());
        let target = match link.canonicalize() {
            Ok(target) if is_link && target.is_dir() => target,
            _ => continue,
        };
        let what = if link.parent() == Some(&data_dir) {
            "directory linked from the data directory"
        } else {
            "tablespace directory"
        };
        protected.push((target, what));
    }
    protected
}
