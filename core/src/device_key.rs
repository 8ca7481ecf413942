//! The device key: where it lives and how it is created.
//!
//! Each device holds one 256-bit device key per store name. It seals the store
//! keyring kept in the database and never leaves the device except through an
//! explicit key export. By default it lives in the OS keychain (macOS Keychain,
//! Windows Credential Manager, the Secret Service on Linux) when the crate is
//! built with the `keychain` feature and a keychain answers; otherwise, or when
//! the caller asks, in a keyfile.
//!
//! The Linux kernel keyring (keyutils) is never used, because it does not
//! survive a reboot and the device key must.
//!
//! A keyfile is one line of text:
//!
//! ```text
//! persist-device-key-v1 <64 hex digits: the key> <8 hex digits: SHA-256(key)[..4]>
//! ```
//!
//! It is created atomically with mode 0600 in a directory created with mode
//! 0700, and an existing keyfile is never overwritten.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::error::Error;
use crate::hex;
use crate::primitives::{hkdf_sha256, put_lp, sha256};
use crate::random;
use crate::secret::{KEY_LEN, SecretKey};

/// The first word of every keyfile.
pub const KEYFILE_MAGIC: &str = "persist-device-key-v1";

/// Service name under which device keys are stored in the OS keychain.
pub const KEYCHAIN_SERVICE: &str = "persist";

/// Environment variable that overrides the default keyfile directory.
pub const KEY_DIR_ENV: &str = "PERSIST_KEY_DIR";

/// Maximum length of a store name.
pub const MAX_STORE_NAME_LEN: usize = 64;

const KEYFILE_LEN: usize = KEYFILE_MAGIC.len() + 1 + 2 * KEY_LEN + 1 + 8 + 1;
const DEVICE_KEY_ID_LABEL: &[u8] = b"persist v1 device key id";

/// The place to look for the device key, and to create it in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The OS keychain when one is reachable, else the default keyfile.
    Default,
    /// The default keyfile, never the keychain.
    NoKeychain,
    /// The keyfile at this path.
    Keyfile(PathBuf),
}

/// The place a device key was found or created in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyLocation {
    /// The OS keychain, under service [`KEYCHAIN_SERVICE`] and the store name.
    Keychain,
    /// A keyfile.
    Keyfile(PathBuf),
}

impl std::fmt::Display for KeyLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Keychain => write!(f, "OS keychain"),
            Self::Keyfile(path) => write!(f, "keyfile {}", path.display()),
        }
    }
}

/// A device key and where it is kept.
pub struct DeviceKey {
    key: SecretKey,
    location: KeyLocation,
    created: bool,
}

impl DeviceKey {
    /// Returns the key.
    pub fn secret(&self) -> &SecretKey {
        &self.key
    }

    /// Returns the place the key is kept in.
    pub fn location(&self) -> &KeyLocation {
        &self.location
    }

    /// Returns an independent copy.
    pub fn duplicate(&self) -> Self {
        Self {
            key: self.key.duplicate(),
            location: self.location.clone(),
            created: self.created,
        }
    }

    /// Tells whether this call created the key.
    pub fn was_created(&self) -> bool {
        self.created
    }

    /// Returns a public id of the key, so a database can tell which device key sealed
    /// which copy of its keyring: HKDF-SHA256 of the key with a fixed label,
    /// cut to 16 bytes.
    pub fn id(&self) -> [u8; 16] {
        let mut info = Vec::new();
        put_lp(&mut info, DEVICE_KEY_ID_LABEL);
        let derived = hkdf_sha256(&self.key, &[], &info);
        let mut id = [0u8; 16];
        id.copy_from_slice(&derived.expose()[..16]);
        id
    }
}

/// Checks that a store name is 1 to 64 characters of letters, digits, `.`,
/// `_` and `-`, not starting with `.` or `-`, so that it is safe as a file
/// name and a keychain account.
///
/// # Errors
///
/// [`Error::Invalid`] naming the rule that the name breaks.
pub fn check_store_name(name: &str) -> Result<(), Error> {
    let fail = |reason: String| Err(Error::invalid("store name", format!("{name:?} {reason}")));
    if name.is_empty() || name.len() > MAX_STORE_NAME_LEN {
        return fail(format!(
            "has {} characters, expected 1 to {MAX_STORE_NAME_LEN}",
            name.chars().count()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return fail(format!(
            "contains {bad:?}; use letters, digits, '.', '_' and '-'"
        ));
    }
    if name.starts_with(['.', '-']) {
        return fail("starts with '.' or '-'".into());
    }
    Ok(())
}

/// Returns the default keyfile directory: `$PERSIST_KEY_DIR`, else
/// `$XDG_DATA_HOME/persist/keys`, else `$HOME/.local/share/persist/keys`.
///
/// # Errors
///
/// [`Error::Invalid`] when none of these variables is set.
pub fn default_key_dir() -> Result<PathBuf, Error> {
    let from_env = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(dir) = from_env(KEY_DIR_ENV) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = from_env("XDG_DATA_HOME") {
        return Ok(PathBuf::from(dir).join("persist").join("keys"));
    }
    if let Some(home) = from_env("HOME").or_else(|| from_env("USERPROFILE")) {
        return Ok(PathBuf::from(home)
            .join(".local")
            .join("share")
            .join("persist")
            .join("keys"));
    }
    Err(Error::invalid(
        "keyfile directory",
        format!("none of {KEY_DIR_ENV}, XDG_DATA_HOME or HOME is set; give a keyfile path"),
    ))
}

/// Returns the default keyfile path of store `store`.
///
/// # Errors
///
/// As [`check_store_name`] and [`default_key_dir`].
pub fn default_keyfile(store: &str) -> Result<PathBuf, Error> {
    check_store_name(store)?;
    Ok(default_key_dir()?.join(format!("{store}.key")))
}

/// Loads the device key of `store` from `source`, creating it when it does
/// not exist yet and `create` is true.
///
/// # Errors
///
/// [`Error::DeviceKeyNotFound`] when no key exists and `create` is false,
/// [`Error::Keyfile`] for a keyfile that cannot be read, created or parsed or
/// that other users can read, [`Error::Keychain`] for a keychain that returns
/// an error, and [`Error::Invalid`] for a bad store name.
pub fn load_or_create(store: &str, source: &KeySource, create: bool) -> Result<DeviceKey, Error> {
    check_store_name(store)?;
    match source {
        KeySource::Keyfile(path) => from_keyfile(store, path, create),
        KeySource::NoKeychain => from_keyfile(store, &default_keyfile(store)?, create),
        KeySource::Default => {
            let path = default_keyfile(store)?;
            match keychain::get(store)? {
                keychain::Lookup::Found(key) => Ok(DeviceKey {
                    key,
                    location: KeyLocation::Keychain,
                    created: false,
                }),
                // A keyfile made while no keychain was reachable stays in use.
                keychain::Lookup::Missing if path.exists() => from_keyfile(store, &path, false),
                keychain::Lookup::Missing if create => {
                    let key = SecretKey::generate()?;
                    keychain::set(store, &key)?;
                    Ok(DeviceKey {
                        key,
                        location: KeyLocation::Keychain,
                        created: true,
                    })
                }
                keychain::Lookup::Missing => Err(Error::DeviceKeyNotFound {
                    store: store.to_owned(),
                    looked_in: format!("the OS keychain and {}", path.display()),
                }),
                keychain::Lookup::Unavailable => from_keyfile(store, &path, create),
            }
        }
    }
}

fn from_keyfile(store: &str, path: &Path, create: bool) -> Result<DeviceKey, Error> {
    match read_keyfile(path) {
        Ok(key) => Ok(DeviceKey {
            key,
            location: KeyLocation::Keyfile(path.to_owned()),
            created: false,
        }),
        Err(ReadError::Missing) if create => {
            let key = SecretKey::generate()?;
            match write_keyfile(path, &key) {
                Ok(()) => Ok(DeviceKey {
                    key,
                    location: KeyLocation::Keyfile(path.to_owned()),
                    created: true,
                }),
                // Another process created it first: use that one.
                Err(WriteError::Exists) => from_keyfile(store, path, false),
                Err(WriteError::Failed(err)) => Err(err),
            }
        }
        Err(ReadError::Missing) => Err(Error::DeviceKeyNotFound {
            store: store.to_owned(),
            looked_in: path.display().to_string(),
        }),
        Err(ReadError::Failed(err)) => Err(err),
    }
}

enum ReadError {
    Missing,
    Failed(Error),
}

/// Reads and checks a keyfile.
fn read_keyfile(path: &Path) -> Result<SecretKey, ReadError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == ErrorKind::NotFound => return Err(ReadError::Missing),
        Err(err) => {
            return Err(ReadError::Failed(Error::keyfile(
                path,
                format!("cannot open it: {err}"),
            )));
        }
    };
    let fail = |reason: String| ReadError::Failed(Error::keyfile(path, reason));

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = file
            .metadata()
            .map_err(|err| fail(format!("cannot read its metadata: {err}")))?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "other users can access it (mode {mode:04o}); run `chmod 600 {}`",
                path.display()
            )));
        }
    }

    let mut text = Zeroizing::new(Vec::with_capacity(KEYFILE_LEN + 1));
    (&mut file)
        .take(KEYFILE_LEN as u64 + 1)
        .read_to_end(&mut text)
        .map_err(|err| fail(format!("cannot read it: {err}")))?;
    parse_keyfile(&text).map_err(fail)
}

fn parse_keyfile(text: &[u8]) -> Result<SecretKey, String> {
    if !text.starts_with(KEYFILE_MAGIC.as_bytes()) {
        return Err(format!(
            "not a Persist keyfile: it does not start with {KEYFILE_MAGIC:?}"
        ));
    }
    if text.len() < KEYFILE_LEN {
        return Err(format!(
            "truncated: {} bytes, expected {KEYFILE_LEN}",
            text.len()
        ));
    }
    if text.len() > KEYFILE_LEN {
        return Err(format!("longer than the {KEYFILE_LEN} bytes of a keyfile"));
    }
    if text[KEYFILE_LEN - 1] != b'\n' {
        return Err("damaged: it does not end with a newline".into());
    }
    let line = std::str::from_utf8(&text[..KEYFILE_LEN - 1])
        .map_err(|_| "damaged: it contains bytes that are not text".to_owned())?;
    let mut fields = line.split(' ');
    let (Some(_magic), Some(key_hex), Some(check_hex), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("damaged: expected three space-separated fields".into());
    };
    let key_bytes = decode_hex(key_hex)
        .filter(|bytes| bytes.len() == KEY_LEN)
        .ok_or_else(|| "damaged: the key is not 64 hexadecimal digits".to_owned())?;
    let check = decode_hex(check_hex)
        .filter(|bytes| bytes.len() == 4)
        .ok_or_else(|| "damaged: the checksum is not 8 hexadecimal digits".to_owned())?;
    if sha256(&key_bytes)[..4] != check[..] {
        return Err("damaged: the checksum does not match the key".into());
    }
    SecretKey::from_slice(&key_bytes).map_err(|err| err.to_string())
}

fn decode_hex(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    hex::decode(text).map(Zeroizing::new)
}

pub(crate) fn format_keyfile(key: &SecretKey) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::with_capacity(KEYFILE_LEN));
    text.push_str(KEYFILE_MAGIC);
    text.push(' ');
    hex::encode_into(key.expose(), &mut text);
    text.push(' ');
    hex::encode_into(&sha256(key.expose())[..4], &mut text);
    text.push('\n');
    text
}

enum WriteError {
    Exists,
    Failed(Error),
}

/// Writes a new keyfile without ever replacing an existing one: the key goes
/// to a private temporary file that is then hard-linked to `path`, which fails
/// if `path` exists.
fn write_keyfile(path: &Path, key: &SecretKey) -> Result<(), WriteError> {
    let fail = |reason: String| WriteError::Failed(Error::keyfile(path, reason));
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    create_private_dir(&dir).map_err(|err| {
        fail(format!(
            "cannot create its directory {}: {err}",
            dir.display()
        ))
    })?;

    let suffix: [u8; 8] = random::array().map_err(WriteError::Failed)?;
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "device".into());
    let temp = dir.join(format!(".{name}.{suffix}.tmp"));

    let written = (|| -> std::io::Result<()> {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temp)?;
        file.write_all(format_keyfile(key).as_bytes())?;
        file.sync_all()
    })();
    if let Err(err) = written {
        let _ = fs::remove_file(&temp);
        return Err(fail(format!("cannot write it: {err}")));
    }

    let linked = fs::hard_link(&temp, path);
    let _ = fs::remove_file(&temp);
    match linked {
        Ok(()) => {
            // Make the new directory entry durable; a failure here loses
            // nothing that a retry would not recreate.
            if let Ok(dir) = File::open(&dir) {
                let _ = dir.sync_all();
            }
            Ok(())
        }
        Err(err) if err.kind() == ErrorKind::AlreadyExists => Err(WriteError::Exists),
        Err(err) => Err(fail(format!("cannot create it: {err}"))),
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// The OS keychain, through the `keyring` crate.
#[cfg(feature = "keychain")]
mod keychain {
    use super::{Error, KEYCHAIN_SERVICE, SecretKey};

    pub(super) enum Lookup {
        Found(SecretKey),
        Missing,
        Unavailable,
    }

    fn reachable() -> bool {
        // The Secret Service is reached over the D-Bus session bus; without
        // one, asking would only wait for a timeout.
        if cfg!(target_os = "linux") {
            let has_env = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty());
            let runtime_bus = std::env::var_os("XDG_RUNTIME_DIR")
                .map(|dir| std::path::Path::new(&dir).join("bus").exists())
                .unwrap_or(false);
            has_env("DBUS_SESSION_BUS_ADDRESS") || runtime_bus
        } else {
            true
        }
    }

    pub(super) fn get(store: &str) -> Result<Lookup, Error> {
        if !reachable() {
            return Ok(Lookup::Unavailable);
        }
        let entry = match keyring::Entry::new(KEYCHAIN_SERVICE, store) {
            Ok(entry) => entry,
            Err(_) => return Ok(Lookup::Unavailable),
        };
        match entry.get_secret() {
            Ok(bytes) => {
                let bytes = zeroize::Zeroizing::new(bytes);
                SecretKey::from_slice(&bytes)
                    .map(Lookup::Found)
                    .map_err(|_| {
                        Error::Keychain(format!(
                            "the entry for store {store:?} under service {KEYCHAIN_SERVICE:?} \
                         is {} bytes, not a 32-byte device key",
                            bytes.len()
                        ))
                    })
            }
            Err(keyring::Error::NoEntry) => Ok(Lookup::Missing),
            Err(keyring::Error::NoStorageAccess(_) | keyring::Error::PlatformFailure(_)) => {
                Ok(Lookup::Unavailable)
            }
            Err(err) => Err(Error::Keychain(format!(
                "reading the device key of store {store:?} failed: {err}"
            ))),
        }
    }

    pub(super) fn set(store: &str, key: &SecretKey) -> Result<(), Error> {
        let entry = keyring::Entry::new(KEYCHAIN_SERVICE, store)
            .map_err(|err| Error::Keychain(format!("cannot open an entry: {err}")))?;
        entry.set_secret(key.expose()).map_err(|err| {
            Error::Keychain(format!(
                "storing the device key of store {store:?} failed: {err}"
            ))
        })?;
        // Read it back: a keychain that accepts a write but does not keep it
        // would otherwise lose the key.
        match get(store)? {
            Lookup::Found(stored) if stored == *key => Ok(()),
            _ => Err(Error::Keychain(format!(
                "the device key of store {store:?} did not read back after storing it"
            ))),
        }
    }

    /// Deletes the device key of `store` from the keychain.
    pub(super) fn delete(store: &str) -> Result<(), Error> {
        let entry = keyring::Entry::new(KEYCHAIN_SERVICE, store)
            .map_err(|err| Error::Keychain(format!("cannot open an entry: {err}")))?;
        match entry.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(err) => Err(Error::Keychain(format!(
                "deleting the device key of store {store:?} failed: {err}"
            ))),
        }
    }
}

/// Builds without the `keychain` feature use keyfiles only.
#[cfg(not(feature = "keychain"))]
mod keychain {
    use super::{Error, SecretKey};

    pub(super) enum Lookup {
        #[allow(dead_code, reason = "the keychain build returns it")]
        Found(SecretKey),
        #[allow(dead_code, reason = "the keychain build returns it")]
        Missing,
        Unavailable,
    }

    pub(super) fn get(_store: &str) -> Result<Lookup, Error> {
        Ok(Lookup::Unavailable)
    }

    pub(super) fn set(_store: &str, _key: &SecretKey) -> Result<(), Error> {
        Err(Error::Keychain("this build has no keychain support".into()))
    }

    pub(super) fn delete(_store: &str) -> Result<(), Error> {
        Ok(())
    }
}

/// Deletes the keychain entry of `store`, if there is one. Keyfiles are left
/// alone: deleting a key file is the user's decision.
///
/// # Errors
///
/// [`Error::Keychain`] when the keychain answers with an error.
pub fn delete_keychain_entry(store: &str) -> Result<(), Error> {
    check_store_name(store)?;
    keychain::delete(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyfile_is_created_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("notes.key");
        let created = load_or_create("notes", &KeySource::Keyfile(path.clone()), true).unwrap();
        assert!(created.was_created());
        assert_eq!(created.location(), &KeyLocation::Keyfile(path.clone()));

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dir_mode = fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(dir_mode & 0o777, 0o700);
        }

        let loaded = load_or_create("notes", &KeySource::Keyfile(path.clone()), true).unwrap();
        assert!(!loaded.was_created());
        assert!(loaded.secret() == created.secret());
        assert_eq!(loaded.id(), created.id());
        let leftovers = fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(leftovers, 1, "temporary files were left behind");
    }

    #[test]
    fn missing_keyfile_without_create_names_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.key");
        let err = load_or_create("s", &KeySource::Keyfile(path.clone()), false)
            .err()
            .unwrap();
        assert!(matches!(err, Error::DeviceKeyNotFound { .. }));
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn existing_keyfile_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let key = SecretKey::generate().unwrap();
        assert!(write_keyfile(&path, &key).is_ok());
        let before = fs::read(&path).unwrap();
        let other = SecretKey::generate().unwrap();
        assert!(matches!(
            write_keyfile(&path, &other),
            Err(WriteError::Exists)
        ));
        assert_eq!(fs::read(&path).unwrap(), before);
    }

    #[cfg(unix)]
    #[test]
    fn damaged_keyfiles_give_clear_errors() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let good = format_keyfile(&SecretKey::generate().unwrap());
        let mut flipped = good.as_bytes().to_vec();
        flipped[KEYFILE_MAGIC.len() + 3] = if flipped[KEYFILE_MAGIC.len() + 3] == b'a' {
            b'b'
        } else {
            b'a'
        };
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", Vec::new(), "not a Persist keyfile"),
            ("other", b"hello world\n".to_vec(), "not a Persist keyfile"),
            ("truncated", good.as_bytes()[..40].to_vec(), "truncated"),
            ("long", [good.as_bytes(), b"extra"].concat(), "longer than"),
            ("flipped", flipped, "checksum does not match"),
        ];
        for (name, content, expected) in cases {
            let path = dir.path().join(format!("{name}.key"));
            fs::write(&path, &content).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = load_or_create("s", &KeySource::Keyfile(path.clone()), true)
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(expected), "{name}: {err}");
            assert!(err.contains(&path.display().to_string()), "{name}: {err}");
            assert_eq!(fs::read(&path).unwrap(), content, "{name} was modified");
        }
    }

    #[cfg(unix)]
    #[test]
    fn readable_keyfile_is_rejected() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("open.key");
        write_keyfile(&path, &SecretKey::generate().unwrap())
            .ok()
            .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create("s", &KeySource::Keyfile(path), false)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("mode 0644"), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
    }

    /// Runs against a real Secret Service; `scripts/test` starts one with
    /// gnome-keyring-daemon inside dbus-run-session and runs the ignored tests.
    #[cfg(feature = "keychain")]
    #[test]
    #[ignore = "needs a Secret Service on the D-Bus session bus"]
    fn keychain_stores_and_reloads_key() {
        // A name of this process alone, so no default keyfile exists for it.
        let store = format!("persist-test-{}", std::process::id());

        let created = load_or_create(&store, &KeySource::Default, true).unwrap();
        assert_eq!(created.location(), &KeyLocation::Keychain);
        assert!(created.was_created());
        let loaded = load_or_create(&store, &KeySource::Default, false).unwrap();
        assert_eq!(loaded.location(), &KeyLocation::Keychain);
        assert!(!loaded.was_created());
        assert!(loaded.secret() == created.secret());
        assert!(!default_keyfile(&store).unwrap().exists());

        delete_keychain_entry(&store).unwrap();
        let err = load_or_create(&store, &KeySource::Default, false)
            .err()
            .unwrap();
        assert!(matches!(err, Error::DeviceKeyNotFound { .. }), "{err}");
    }

    #[test]
    fn store_names_are_checked() {
        for good in ["a", "my-app", "chinook_2", "A.b"] {
            assert!(check_store_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "../x",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(check_store_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keyfile_never_contains_the_id() {
        let key = SecretKey::generate().unwrap();
        let device = DeviceKey {
            key: key.duplicate(),
            location: KeyLocation::Keychain,
            created: false,
        };
        assert_ne!(&device.id()[..], &key.expose()[..16]);
    }
}
