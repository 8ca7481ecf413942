//! `persist.init`: opening and creating a store and its keys.
//!
//! A database can hold many stores. Their metadata lives in two tables that
//! the extension script creates:
//!
//! - `persist.stores(name, store_id, device_id, created)`: the store name, its
//!   random store id and this server's device id for the store, none secret;
//! - `persist.keyslots(store_name, device_key_id, sealed, updated)`: the store
//!   keyring sealed under each device key that has opened it, so a keyfile
//!   replaced on purpose (a new server, a rotated device key) opens the store
//!   once the exported key is imported.
//!
//! The device key comes from a keyfile on the database server
//! ([`crate::keyfile`]). Without one, `{"key": ...}` imports a keyring for
//! this session only, and nothing is written.

use persist_core::device_key::{self, DeviceKey, KeySource};
use persist_core::{Cipher, DeviceId, Keyring, StoreId, export};
use pgrx::prelude::*;
use pgrx::{PgSqlErrorCode, pg_sys};
use serde_json::json;

use crate::error::{CoreContext, PgError, Subject};
use crate::keyfile::{self, KeyfileChoice};
use crate::options::InitOptions;
use crate::session::{self, OpenStore};

/// The outcome of `persist.init`, returned to the caller as JSON.
struct InitReport {
    created: bool,
    imported: bool,
    device_key_created: bool,
    /// Whether the tables were written in this transaction.
    saved: bool,
}

impl InitReport {
    fn to_json(&self, store: &OpenStore) -> String {
        json!({
            "store": store.name,
            "store_id": store.cipher.store_id().to_string(),
            "device_id": store.device_id.map(|id| id.to_string()),
            "created": self.created,
            "imported": self.imported,
            "device_key_created": self.device_key_created,
            "key_location": store.key_location_text(),
            "session_only": store.session_only(),
            "keys": store.cipher.keyring().keys().len(),
        })
        .to_string()
    }
}

/// A row of `persist.stores`.
struct StoreRow {
    store_id: StoreId,
    device_id: DeviceId,
}

/// Opens the store `store` for this session, creating it (and the keyfile)
/// when the database does not list it yet, and returns the JSON report.
///
/// # Errors
///
/// 22004 for a NULL store name, 22023 for a bad name, options, key export or
/// keyfile path, 42501 for a keyfile option without the privileges for it,
/// and 55000 when no key source is configured. The keyfile, passphrase and
/// keyring errors are listed in [`crate::error`]. SQL errors from the
/// `persist` tables pass through, such as 42501 when the role may not read
/// them.
pub fn init(store: Option<&str>, options: Option<&str>) -> Result<String, PgError> {
    let name = store.ok_or_else(|| {
        PgError::new(
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "persist.init: argument 1 (store) is NULL; give the store name, such as \
             persist.init('my-app')",
        )
    })?;
    device_key::check_store_name(name)
        .context_with(Subject::Other, || "persist.init: argument 1 (store)")?;
    check_database_encoding()?;
    let options = InitOptions::parse(options)?;
    let choice = keyfile::choose(options.keyfile.as_deref())?;

    let imported = match &options.key {
        Some(text) => Some(
            export::import(text, options.passphrase.as_ref())
                .context_with(Subject::KeyExport, || "persist.init: option \"key\"")?,
        ),
        None => None,
    };

    let (store, report) = match (choice, imported) {
        (Some(choice), imported) => open_with_keyfile(name, &choice, imported)?,
        (None, Some(keyring)) => open_for_session(name, keyring)?,
        (None, None) => {
            return Err(PgError::new(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                format!(
                    "persist.init: no device key for store {name:?}: persist.keyfile is not \
                     set and the options give no \"key\""
                ),
            )
            .with_hint(
                "A superuser sets the server's keyfile with ALTER SYSTEM SET persist.keyfile = \
                 '/etc/persist/server.key' and SELECT pg_reload_conf(), or you import an \
                 exported key for this session with persist.init('<store>', \
                 '{\"key\": \"PERSIST-KEY-1...\"}').",
            ));
        }
    };

    let json = report.to_json(&store);
    session::install(store, report.saved);
    Ok(json)
}

/// Rejects databases whose text is not UTF-8, because envelopes carry text
/// as UTF-8 and must match the SQLite extension's byte for byte.
fn check_database_encoding() -> Result<(), PgError> {
    // SAFETY: reads a value that is fixed for the life of the backend.
    let encoding = unsafe { pg_sys::GetDatabaseEncoding() };
    let utf8 = pg_sys::pg_enc::PG_UTF8 as i32;
    let sql_ascii = pg_sys::pg_enc::PG_SQL_ASCII as i32;
    if encoding == utf8 || encoding == sql_ascii {
        return Ok(());
    }
    // SAFETY: returns a pointer to a static string naming the encoding.
    let encoding_name = unsafe {
        std::ffi::CStr::from_ptr(pg_sys::GetDatabaseEncodingName())
            .to_string_lossy()
            .into_owned()
    };
    Err(PgError::new(
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        format!(
            "persist.init: this database's encoding is {encoding_name}; Persist needs a UTF8 \
             database (or SQL_ASCII holding UTF-8 text)"
        ),
    ))
}

fn open_with_keyfile(
    name: &str,
    choice: &KeyfileChoice,
    imported: Option<Keyring>,
) -> Result<(OpenStore, InitReport), PgError> {
    match read_store(name)? {
        Some(row) => open_existing(name, row, choice, imported),
        None => create(name, choice, imported),
    }
}

fn open_existing(
    name: &str,
    row: StoreRow,
    choice: &KeyfileChoice,
    imported: Option<Keyring>,
) -> Result<(OpenStore, InitReport), PgError> {
    if let Some(keyring) = &imported
        && keyring.store_id() != row.store_id
    {
        return Err(PgError::invalid(format!(
            "persist.init: the imported key belongs to store id {}, but store {name:?} in \
             persist.stores has store id {}",
            keyring.store_id(),
            row.store_id
        )));
    }

    // A new device key would open nothing here unless a key is imported to
    // seal under it.
    let create = imported.is_some() && choice.may_create;
    let missing_hint = if imported.is_some() {
        HINT_CREATE_PRIVILEGE
    } else {
        HINT_RESTORE_KEYFILE
    };
    let device_key = load_device_key(name, choice, create, missing_hint)?;
    let slot = read_keyslot(name, &device_key)?;
    let is_import = imported.is_some();
    let keyring = match (slot, imported) {
        (Some(sealed), imported) => {
            let mut keyring = Keyring::unseal(device_key.secret(), &sealed).context_with(
                Subject::StoredMetadata,
                || {
                    format!(
                        "persist.init: the keyring of store {name:?} sealed under the device \
                         key in {} cannot be opened",
                        device_key.location()
                    )
                },
            )?;
            if let Some(imported) = imported {
                keyring
                    .merge(&imported)
                    .context_with(Subject::Other, || "persist.init: merging the imported key")?;
            }
            keyring
        }
        (None, Some(imported)) => imported,
        (None, None) => {
            return Err(PgError::new(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!(
                    "persist.init: the device key in {} does not open store {name:?}: \
                     persist.keyslots contains no copy of its keyring sealed under this device key",
                    device_key.location()
                ),
            )
            .with_hint(
                "Use the keyfile that created the store, or import the store's exported key \
                 with persist.init('<store>', '{\"key\": \"PERSIST-KEY-1...\"}') to seal the \
                 keyring under this device key.",
            ));
        }
    };
    if keyring.store_id() != row.store_id {
        return Err(PgError::new(
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            format!(
                "persist.init: the keyring sealed in persist.keyslots for store {name:?} belongs \
                 to store id {}, but persist.stores names store id {}",
                keyring.store_id(),
                row.store_id
            ),
        ));
    }
    if is_import {
        write_keyslot(name, &device_key, &keyring)?;
    }

    let report = InitReport {
        created: false,
        imported: is_import,
        device_key_created: device_key.was_created(),
        saved: is_import,
    };
    Ok((
        build(name, keyring, Some(row.device_id), &device_key),
        report,
    ))
}

fn create(
    name: &str,
    choice: &KeyfileChoice,
    imported: Option<Keyring>,
) -> Result<(OpenStore, InitReport), PgError> {
    let is_import = imported.is_some();
    let device_key = load_device_key(name, choice, choice.may_create, HINT_CREATE_PRIVILEGE)?;
    let keyring = match imported {
        Some(keyring) => keyring,
        None => Keyring::generate(now_seconds()).context_with(
            Subject::Other,
            || "persist.init: generating the store keyring",
        )?,
    };
    let device_id = DeviceId::generate()
        .context_with(Subject::Other, || "persist.init: generating a device id")?;

    if !insert_store(name, keyring.store_id(), device_id)? {
        // Another session created the store after read_store looked. Under
        // READ COMMITTED this statement sees its committed row; open that.
        return match read_store(name)? {
            Some(row) => open_existing(name, row, choice, is_import.then_some(keyring)),
            None => Err(PgError::new(
                PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
                format!(
                    "persist.init: store {name:?} was created by another session at the same \
                     time; call persist.init again"
                ),
            )),
        };
    }
    write_keyslot(name, &device_key, &keyring)?;
    // DEBUG1, not LOG: Postgres attaches the statement text to every message
    // at LOG or above (log_min_error_statement defaults to ERROR, which LOG
    // outranks), and the statement may carry an exported key.
    pgrx::debug1!(
        "persist: created store {name:?} with store id {}, keyring sealed under the device key \
         in {}",
        keyring.store_id(),
        device_key.location()
    );

    let report = InitReport {
        created: true,
        imported: is_import,
        device_key_created: device_key.was_created(),
        saved: true,
    };
    Ok((build(name, keyring, Some(device_id), &device_key), report))
}

fn open_for_session(name: &str, keyring: Keyring) -> Result<(OpenStore, InitReport), PgError> {
    // A role that may not read persist.stores can still use an imported key;
    // the check that the key belongs to the listed store is then skipped.
    let row = if may_read_stores()? {
        read_store(name)?
    } else {
        None
    };
    if let Some(row) = &row
        && row.store_id != keyring.store_id()
    {
        return Err(PgError::invalid(format!(
            "persist.init: the imported key belongs to store id {}, but store {name:?} in \
             persist.stores has store id {}",
            keyring.store_id(),
            row.store_id
        )));
    }
    let store = OpenStore {
        name: name.to_owned(),
        cipher: Cipher::new(keyring),
        device_id: row.map(|row| row.device_id),
        key_location: None,
    };
    let report = InitReport {
        created: false,
        imported: true,
        device_key_created: false,
        saved: false,
    };
    Ok((store, report))
}

/// What to tell a user whose keyfile is missing and may not be created.
const HINT_RESTORE_KEYFILE: &str = "The store exists and its keyring is sealed under the device \
    key that was in this keyfile. Restore the keyfile, or import the store's exported key with \
    persist.init('<store>', '{\"key\": \"PERSIST-KEY-1...\"}') to seal the keyring under a new \
    device key.";
const HINT_CREATE_PRIVILEGE: &str = "persist.init creates a missing keyfile named by option \
    \"keyfile\" only for superusers and roles with the privileges of pg_write_server_files.";

/// Loads the device key from the chosen keyfile, creating it when `create`.
/// `missing_hint` is the HINT for a keyfile that does not exist.
fn load_device_key(
    name: &str,
    choice: &KeyfileChoice,
    create: bool,
    missing_hint: &str,
) -> Result<DeviceKey, PgError> {
    let source = KeySource::Keyfile(choice.path.clone());
    let device_key = device_key::load_or_create(name, &source, create).map_err(|error| {
        let missing = matches!(error, persist_core::Error::DeviceKeyNotFound { .. });
        let context = format!(
            "persist.init: the device key of store {name:?} ({})",
            choice.origin
        );
        let error = PgError::core(context, Subject::Other, error);
        if missing {
            error.with_hint(missing_hint)
        } else {
            error
        }
    })?;
    if device_key.was_created() {
        pgrx::debug1!("persist: created a device key in {}", device_key.location());
    }
    Ok(device_key)
}

fn build(
    name: &str,
    keyring: Keyring,
    device_id: Option<DeviceId>,
    device_key: &DeviceKey,
) -> OpenStore {
    OpenStore {
        name: name.to_owned(),
        cipher: Cipher::new(keyring),
        device_id,
        key_location: Some(device_key.location().clone()),
    }
}

fn spi_failed(what: &str, error: pgrx::spi::SpiError) -> PgError {
    PgError::new(
        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        format!("persist.init: {what} failed: {error}"),
    )
}

fn stored_id<T>(
    what: &str,
    name: &str,
    bytes: Option<Vec<u8>>,
    parse: impl FnOnce(&[u8]) -> Result<T, persist_core::Error>,
) -> Result<T, PgError> {
    let bytes = bytes.unwrap_or_default();
    parse(&bytes).context_with(Subject::StoredMetadata, || {
        format!("persist.init: persist.stores.{what} of store {name:?}")
    })
}

fn read_store(name: &str) -> Result<Option<StoreRow>, PgError> {
    let row = Spi::connect(|client| {
        let table = client.select(
            "SELECT store_id, device_id FROM persist.stores \
             WHERE name OPERATOR(pg_catalog.=) $1",
            Some(1),
            &[name.into()],
        )?;
        match table.into_iter().next() {
            Some(row) => Ok(Some((row.get::<Vec<u8>>(1)?, row.get::<Vec<u8>>(2)?))),
            None => Ok(None),
        }
    })
    .map_err(|error| spi_failed("reading persist.stores", error))?;
    let Some((store_id, device_id)) = row else {
        return Ok(None);
    };
    Ok(Some(StoreRow {
        store_id: stored_id("store_id", name, store_id, StoreId::from_slice)?,
        device_id: stored_id("device_id", name, device_id, DeviceId::from_slice)?,
    }))
}

fn may_read_stores() -> Result<bool, PgError> {
    Spi::get_one::<bool>("SELECT pg_catalog.has_table_privilege('persist.stores', 'SELECT')")
        .map(|allowed| allowed.unwrap_or(false))
        .map_err(|error| spi_failed("checking the privileges on persist.stores", error))
}

/// Inserts the store's row; returns false when a row with that name exists.
fn insert_store(name: &str, store_id: StoreId, device_id: DeviceId) -> Result<bool, PgError> {
    Spi::connect_mut(|client| {
        let inserted = client.update(
            "INSERT INTO persist.stores (name, store_id, device_id) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING RETURNING 1",
            None,
            &[
                name.into(),
                store_id.as_bytes().as_slice().into(),
                device_id.as_bytes().as_slice().into(),
            ],
        )?;
        Ok(!inserted.is_empty())
    })
    .map_err(|error| spi_failed("writing persist.stores", error))
}

fn read_keyslot(name: &str, device_key: &DeviceKey) -> Result<Option<Vec<u8>>, PgError> {
    let device_key_id = device_key.id();
    Spi::connect(|client| {
        let table = client.select(
            "SELECT sealed FROM persist.keyslots \
             WHERE store_name OPERATOR(pg_catalog.=) $1 \
               AND device_key_id OPERATOR(pg_catalog.=) $2",
            Some(1),
            &[name.into(), device_key_id.as_slice().into()],
        )?;
        match table.into_iter().next() {
            Some(row) => row.get::<Vec<u8>>(1),
            None => Ok(None),
        }
    })
    .map_err(|error| spi_failed("reading persist.keyslots", error))
}

/// Seals the keyring under the device key and stores it in the key slot.
fn write_keyslot(name: &str, device_key: &DeviceKey, keyring: &Keyring) -> Result<(), PgError> {
    let sealed = keyring
        .seal(device_key.secret())
        .context_with(Subject::Other, || "persist.init: sealing the store keyring")?;
    let device_key_id = device_key.id();
    Spi::connect_mut(|client| {
        client.update(
            "INSERT INTO persist.keyslots (store_name, device_key_id, sealed) \
             VALUES ($1, $2, $3) \
             ON CONFLICT (store_name, device_key_id) \
             DO UPDATE SET sealed = excluded.sealed, updated = pg_catalog.now()",
            None,
            &[
                name.into(),
                device_key_id.as_slice().into(),
                sealed.as_slice().into(),
            ],
        )?;
        Ok(())
    })
    .map_err(|error| spi_failed("writing persist.keyslots", error))
}

fn now_seconds() -> u64 {
    persist_core::clock::wall_clock_ms() / 1000
}
