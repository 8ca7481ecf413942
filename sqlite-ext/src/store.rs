//! Opening and creating a store in a database file.
//!
//! A database holds at most one store. Its metadata lives in two tables:
//!
//! - `persist_meta(key, value)`: the store name, store id, this file's device
//!   id and the format version, none of them secret;
//! - `persist_keyslot(device_key_id, sealed, updated)`: the store keyring,
//!   sealed under each device key that has opened this file, so a file copied
//!   to another device opens there once the key is imported.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use persist_core::clock::{DEFAULT_MAX_DRIFT_MS, Hlc};
use persist_core::device_key::{self, DeviceKey, KeySource};
use persist_core::{DeviceId, Keyring, Passphrase, StoreId, export};
use serde_json::{Map, Value as Json, json};

use crate::db::{Db, Step};
use crate::error::{CoreContext, ExtError};
use crate::state::OpenStore;

/// The metadata format this build writes.
pub const META_VERSION: i64 = 1;

/// Options of `persist_init`, parsed from its JSON argument.
#[derive(Default)]
pub struct InitOptions {
    /// An explicit keyfile path.
    pub keyfile: Option<PathBuf>,
    /// `Some(false)` to never use the OS keychain.
    pub keychain: Option<bool>,
    /// An exported keyring to import.
    pub key: Option<zeroize::Zeroizing<String>>,
    /// The passphrase of `key`.
    pub passphrase: Option<Passphrase>,
    /// Milliseconds added to the wall clock, to test clock skew.
    pub clock_offset_ms: i64,
    /// The drift limit for clock values from other devices.
    pub max_drift_ms: u64,
}

/// The options every function that opens or creates a store takes.
const DEVICE_OPTION_NAMES: [&str; 4] = ["keyfile", "keychain", "max_drift_ms", "clock_offset_ms"];

impl InitOptions {
    /// Parses the options object of `persist_init`.
    ///
    /// # Errors
    ///
    /// [`ExtError::Usage`] naming the option that is unknown or has the wrong
    /// type. Values of `key` and `passphrase` never appear in a message.
    pub fn parse(text: &str) -> Result<Self, ExtError> {
        let (options, _) = Self::parse_for("persist_init", text, true, &[])?;
        Ok(options)
    }

    /// Parses the options object of `function`: the device key options, the
    /// key import options when `allow_key` is set, and the fields named in
    /// `extra`, which are returned unparsed for the caller to check.
    ///
    /// # Errors
    ///
    /// As [`InitOptions::parse`].
    pub fn parse_for(
        function: &str,
        text: &str,
        allow_key: bool,
        extra: &[&str],
    ) -> Result<(Self, Vec<(String, Json)>), ExtError> {
        let fail = |reason: String| ExtError::usage(format!("{function}: options {reason}"));
        let UniqueObject(map) = serde_json::from_str(text).map_err(|err| {
            fail(format!(
                "are not valid: {err}; expected a JSON object such as \
                 {{\"keyfile\": \"/path/to/store.key\"}}"
            ))
        })?;
        let mut known: Vec<&str> = DEVICE_OPTION_NAMES[..2].to_vec();
        if allow_key {
            known.extend(["key", "passphrase"]);
        }
        known.extend(&DEVICE_OPTION_NAMES[2..]);
        known.extend(extra);
        let mut options = Self {
            max_drift_ms: DEFAULT_MAX_DRIFT_MS,
            ..Self::default()
        };
        let mut extra_fields = Vec::new();
        for (name, value) in map {
            let expect = |kind: &str| fail(format!("field {name:?} must be {kind}"));
            match name.as_str() {
                "keyfile" => {
                    let path = value
                        .as_str()
                        .ok_or_else(|| expect("a string (a file path)"))?;
                    if path.is_empty() {
                        return Err(expect("a non-empty file path"));
                    }
                    options.keyfile = Some(PathBuf::from(path));
                }
                "keychain" => {
                    options.keychain =
                        Some(value.as_bool().ok_or_else(|| expect("true or false"))?);
                }
                "key" if allow_key => {
                    let key = value
                        .as_str()
                        .ok_or_else(|| expect("a string (an exported key)"))?;
                    options.key = Some(zeroize::Zeroizing::new(key.to_owned()));
                }
                "passphrase" if allow_key => {
                    let passphrase = value.as_str().ok_or_else(|| expect("a string"))?;
                    options.passphrase = Some(Passphrase::new(passphrase));
                }
                "max_drift_ms" => {
                    options.max_drift_ms = value
                        .as_u64()
                        .ok_or_else(|| expect("a non-negative integer"))?;
                }
                "clock_offset_ms" => {
                    options.clock_offset_ms = value.as_i64().ok_or_else(|| expect("an integer"))?;
                }
                other if extra.contains(&other) => extra_fields.push((name, value)),
                _ => {
                    return Err(fail(format!(
                        "field {name:?} is unknown; expected one of {}",
                        known.join(", ")
                    )));
                }
            }
        }
        if options.keyfile.is_some() && options.keychain == Some(true) {
            return Err(fail(
                "ask for both a keyfile and the keychain; choose one".into(),
            ));
        }
        if options.passphrase.is_some() && options.key.is_none() {
            return Err(fail(
                "give a passphrase without a key; the passphrase only opens an exported key".into(),
            ));
        }
        Ok((options, extra_fields))
    }

    /// Returns where to look for the device key, and to create it.
    pub fn key_source(&self) -> KeySource {
        match (&self.keyfile, self.keychain) {
            (Some(path), _) => KeySource::Keyfile(path.clone()),
            (None, Some(false)) => KeySource::NoKeychain,
            (None, _) => KeySource::Default,
        }
    }
}

/// A JSON object whose field names must be unique: a repeated option would
/// otherwise silently override the first.
struct UniqueObject(Vec<(String, Json)>);

impl<'de> serde::Deserialize<'de> for UniqueObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(UniqueObjectVisitor)
    }
}

struct UniqueObjectVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueObjectVisitor {
    type Value = UniqueObject;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueObject, A::Error> {
        let mut fields: Vec<(String, Json)> = Vec::new();
        while let Some((name, value)) = map.next_entry::<String, Json>()? {
            if fields.iter().any(|(known, _)| *known == name) {
                return Err(serde::de::Error::custom(format!(
                    "field {name:?} appears twice"
                )));
            }
            fields.push((name, value));
        }
        Ok(UniqueObject(fields))
    }
}

/// What `persist_init` did, returned to the caller as JSON.
pub struct InitReport {
    created: bool,
    imported: bool,
    device_key_created: bool,
}

/// The store metadata of a database file.
struct Meta {
    name: String,
    store_id: StoreId,
    device_id: DeviceId,
}

/// Opens the store `name` in the database, creating it (and a device key)
/// when the database has none.
///
/// # Errors
///
/// [`ExtError::Usage`] when the database holds another store, the device key
/// does not open it, or the options are inconsistent; core errors for keys
/// and keyfiles; SQLite errors for the metadata tables.
pub fn open(
    db: Db,
    name: &str,
    options: &InitOptions,
) -> Result<(OpenStore, InitReport), ExtError> {
    device_key::check_store_name(name)
        .context_with(|| "persist_init: argument 1 (store)".into())?;
    let in_transaction = db.in_transaction();

    let imported = match &options.key {
        Some(text) => Some(
            export::import(text, options.passphrase.as_ref())
                .context_with(|| "persist_init: option \"key\"".into())?,
        ),
        None => None,
    };

    let meta = read_meta(db)?;
    if meta.is_none()
        && let Some((pending, expires)) = crate::pairing::pending_join(db)?
    {
        // A store created now would take the place of the one the
        // accepted invite is for, and persist_join would then fail.
        return Err(ExtError::usage(format!(
            "persist_init: this database accepted an invite to store {pending:?} and waits \
             for persist_join('{pending}', ...), so it cannot create a store now; finish the \
             pairing, or call persist_init after the invite expires at {expires} (Unix seconds)"
        )));
    }
    let source = options.key_source();
    let writes = meta.is_none() || imported.is_some();
    if !writes {
        // Opening a store only reads, so it may run anywhere.
        return match meta {
            Some(meta) => open_existing(db, name, meta, &source, None, options),
            None => Err(ExtError::usage(
                "persist_init: internal error: no store metadata",
            )),
        };
    }
    // A rollback would undo the new keyring or key slot while this
    // connection went on sealing rows with keys nothing keeps.
    if in_transaction {
        return Err(ExtError::usage(format!(
            "persist_init: {} inside a transaction is not allowed, because a rollback \
             would discard the keys this connection goes on using; call persist_init \
             outside BEGIN ... COMMIT",
            if meta.is_none() {
                format!("creating store {name:?}")
            } else {
                "importing a key".to_owned()
            }
        )));
    }
    with_savepoint(db, "persist_init", || match meta {
        Some(meta) => open_existing(db, name, meta, &source, imported, options),
        None => create(db, name, &source, imported, options),
    })
}

fn open_existing(
    db: Db,
    name: &str,
    meta: Meta,
    source: &KeySource,
    imported: Option<Keyring>,
    options: &InitOptions,
) -> Result<(OpenStore, InitReport), ExtError> {
    if meta.name != name {
        return Err(ExtError::usage(format!(
            "persist_init: this database holds store {:?}, not {name:?}; a database \
             holds one store, so open it as persist_init('{}')",
            meta.name, meta.name
        )));
    }
    if let Some(keyring) = &imported
        && keyring.store_id() != meta.store_id
    {
        return Err(ExtError::usage(format!(
            "persist_init: the imported key belongs to store id {}, but this database \
             holds store id {}",
            keyring.store_id(),
            meta.store_id
        )));
    }

    let device_key = device_key::load_or_create(name, source, imported.is_some())
        .context_with(|| format!("persist_init: the device key of store {name:?}"))?;
    let slot = read_keyslot(db, &device_key)?;
    let is_import = imported.is_some();
    let keyring = match (slot, imported) {
        (Some(sealed), imported) => {
            let mut keyring = Keyring::unseal(device_key.secret(), &sealed).context_with(|| {
                format!(
                    "persist_init: the keyring of store {name:?} sealed under the device key \
                     in {} cannot be opened",
                    device_key.location()
                )
            })?;
            if let Some(imported) = imported {
                keyring
                    .merge(&imported)
                    .context_with(|| "persist_init: merging the imported key".into())?;
            }
            keyring
        }
        (None, Some(imported)) => imported,
        (None, None) => {
            return Err(ExtError::usage(format!(
                "persist_init: the device key in {} does not open store {name:?} in this \
                 database, which was created or last opened with another device key; give \
                 that key's file with {{\"keyfile\": \"...\"}}, or import the store's \
                 exported key with {{\"key\": \"PERSIST-KEY-1...\"}}",
                device_key.location()
            )));
        }
    };
    if keyring.store_id() != meta.store_id {
        return Err(ExtError::usage(format!(
            "persist_init: the keyring sealed in this database belongs to store id {}, \
             but the database's metadata names store id {}",
            keyring.store_id(),
            meta.store_id
        )));
    }
    let mut keyring = keyring;
    let updated = merge_keyring_update(db, &mut keyring)?;
    if is_import || updated {
        write_keyslot(db, &device_key, &keyring)?;
    }
    if is_import {
        // Other key slots learn the imported keys through the update.
        write_keyring_update(db, &keyring, false)?;
    }

    let report = InitReport {
        created: false,
        imported: is_import,
        device_key_created: device_key.was_created(),
    };
    Ok((
        build(name, keyring, meta.device_id, device_key, options),
        report,
    ))
}

fn create(
    db: Db,
    name: &str,
    source: &KeySource,
    imported: Option<Keyring>,
    options: &InitOptions,
) -> Result<(OpenStore, InitReport), ExtError> {
    let is_import = imported.is_some();
    let keyring = match imported {
        Some(keyring) => keyring,
        None => Keyring::generate(now_seconds())
            .context_with(|| "persist_init: generating the store keyring".into())?,
    };
    let device_key = device_key::load_or_create(name, source, true)
        .context_with(|| format!("persist_init: the device key of store {name:?}"))?;
    let device_id =
        DeviceId::generate().context_with(|| "persist_init: generating a device id".into())?;

    db.exec(
        "CREATE TABLE persist_meta(key TEXT PRIMARY KEY NOT NULL, value NOT NULL);
         CREATE TABLE persist_keyslot(
             device_key_id BLOB PRIMARY KEY NOT NULL,
             sealed BLOB NOT NULL,
             updated INTEGER NOT NULL);",
    )?;
    let mut insert = db.prepare("INSERT INTO persist_meta(key, value) VALUES (?1, ?2)")?;
    for (key, value) in [
        ("format", META_VERSION.to_string()),
        ("store_name", name.to_owned()),
        ("store_id", keyring.store_id().to_string()),
        ("device_id", device_id.to_string()),
        ("created", now_seconds().to_string()),
    ] {
        insert.bind_text(1, key)?;
        insert.bind_text(2, &value)?;
        insert.execute()?;
    }
    write_keyslot(db, &device_key, &keyring)?;

    let report = InitReport {
        created: true,
        imported: is_import,
        device_key_created: device_key.was_created(),
    };
    Ok((build(name, keyring, device_id, device_key, options), report))
}

fn build(
    name: &str,
    keyring: Keyring,
    device_id: DeviceId,
    device_key: DeviceKey,
    options: &InitOptions,
) -> OpenStore {
    OpenStore {
        name: name.to_owned(),
        cipher: persist_core::Cipher::new(keyring),
        device_id,
        key_location: device_key.location().clone(),
        device_key,
        hlc: Mutex::new(Hlc::new(0, options.max_drift_ms)),
        clock_offset_ms: options.clock_offset_ms,
    }
}

impl InitReport {
    /// The JSON text `persist_init` returns.
    pub fn to_json(&self, store: &OpenStore) -> String {
        json!({
            "store": store.name,
            "store_id": store.cipher.store_id().to_string(),
            "device_id": store.device_id.to_string(),
            "created": self.created,
            "imported": self.imported,
            "device_key_created": self.device_key_created,
            "key_location": store.key_location.to_string(),
            "keys": store.cipher.keyring().keys().len(),
            "keyring_record_id": store.cipher.keyring().keyring_record_id().to_string(),
        })
        .to_string()
    }
}

/// Returns the name of the store the database holds, or `None` when it
/// holds none.
///
/// # Errors
///
/// As [`open`] for damaged metadata, and SQLite's errors.
pub fn stored_name(db: Db) -> Result<Option<String>, ExtError> {
    Ok(read_meta(db)?.map(|meta| meta.name))
}

/// Creates the store `name` from a keyring another device sent, runs
/// `finish` in the same savepoint, and installs the store on the connection.
/// Returns the report that `persist_init` would.
///
/// # Errors
///
/// A usage error inside a transaction or when the database already holds a
/// store, and as [`open`].
pub fn create_from_keyring(
    conn: &crate::state::Connection,
    function: &str,
    name: &str,
    keyring: Keyring,
    options: &InitOptions,
    finish: impl FnOnce(Db) -> Result<(), ExtError>,
) -> Result<String, ExtError> {
    let db = conn.db;
    if db.in_transaction() {
        return Err(ExtError::usage(format!(
            "{function}: creating store {name:?} inside a transaction is not allowed, because a \
             rollback would discard the keys this connection goes on using; call {function} \
             outside BEGIN ... COMMIT"
        )));
    }
    if let Some(existing) = stored_name(db)? {
        return Err(ExtError::usage(format!(
            "{function}: this database already holds store {existing:?}; a database holds one \
             store, so join in a database without one (a new file)"
        )));
    }
    let source = options.key_source();
    let (store, report) = with_savepoint(db, function, || {
        let created = create(db, name, &source, Some(keyring), options)?;
        finish(db)?;
        Ok(created)
    })?;
    crate::sync::create_tables(db)?;
    let json = report.to_json(&store);
    conn.set_store(Some(Arc::new(store)));
    Ok(json)
}

/// Reads the metadata, or `None` when the database has no store.
fn read_meta(db: Db) -> Result<Option<Meta>, ExtError> {
    if !db.has_table("persist_meta")? {
        return Ok(None);
    }

    let mut fields = Map::new();
    let mut select = db.prepare("SELECT key, value FROM persist_meta")?;
    while select.step()? == Step::Row {
        fields.insert(select.column_text(0), Json::String(select.column_text(1)));
    }
    let field = |key: &str| -> Result<String, ExtError> {
        fields
            .get(key)
            .and_then(Json::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                ExtError::usage(format!(
                    "persist_init: table persist_meta lacks {key:?}; the store metadata is damaged"
                ))
            })
    };
    let format = field("format")?;
    if format != META_VERSION.to_string() {
        return Err(ExtError::usage(format!(
            "persist_init: the store metadata has format {format}, but this build of Persist \
             reads format {META_VERSION}; use a newer Persist"
        )));
    }
    Ok(Some(Meta {
        name: field("store_name")?,
        store_id: StoreId::from_hex(&field("store_id")?)
            .context_with(|| "persist_init: persist_meta.store_id".into())?,
        device_id: DeviceId::from_hex(&field("device_id")?)
            .context_with(|| "persist_init: persist_meta.device_id".into())?,
    }))
}

fn read_keyslot(db: Db, device_key: &DeviceKey) -> Result<Option<Vec<u8>>, ExtError> {
    let mut select = db.prepare("SELECT sealed FROM persist_keyslot WHERE device_key_id = ?1")?;
    select.bind_blob(1, &device_key.id())?;
    Ok(match select.step()? {
        Step::Row => Some(select.column_blob(0)),
        Step::Done => None,
    })
}

/// Seals the keyring under the device key and stores it in the key slot.
///
/// # Errors
///
/// Core errors for sealing and SQLite errors for the write.
pub fn write_keyslot(db: Db, device_key: &DeviceKey, keyring: &Keyring) -> Result<(), ExtError> {
    let sealed = keyring
        .seal(device_key.secret())
        .context_with(|| "sealing the store keyring".into())?;
    let mut upsert = db.prepare(
        "INSERT INTO persist_keyslot(device_key_id, sealed, updated) VALUES (?1, ?2, ?3)
         ON CONFLICT(device_key_id) DO UPDATE SET sealed = excluded.sealed,
                                                  updated = excluded.updated",
    )?;
    upsert.bind_blob(1, &device_key.id())?;
    upsert.bind_blob(2, &sealed)?;
    upsert.bind_i64(3, i64::try_from(now_seconds()).unwrap_or(i64::MAX))?;
    upsert.execute()
}

/// Merges the newest keyring another key slot or device left in
/// `persist_meta`, if it adds anything; returns whether it did.
///
/// # Errors
///
/// Core errors for a damaged update, and SQLite's errors.
pub fn merge_keyring_update(db: Db, keyring: &mut Keyring) -> Result<bool, ExtError> {
    let mut select = db.prepare("SELECT value FROM persist_meta WHERE key = 'keyring_update'")?;
    if select.step()? != Step::Row {
        return Ok(false);
    }
    let sealed = select.column_blob(0);
    drop(select);
    let update = keyring
        .open_transport(&sealed)
        .context_with(|| "persist_init: the keyring update in persist_meta".into())?;
    let summary = keyring
        .merge(&update)
        .context_with(|| "persist_init: merging the keyring update".into())?;
    Ok(!summary.added.is_empty() || summary.primary_changed)
}

/// Stores `keyring` sealed for transport, for the store's other key slots
/// and, when `publish` is set, for the next sync to send to other devices.
///
/// # Errors
///
/// Core errors for sealing, and SQLite's errors.
pub fn write_keyring_update(db: Db, keyring: &Keyring, publish: bool) -> Result<(), ExtError> {
    let sealed = keyring
        .seal_for_transport()
        .context_with(|| "sealing the keyring update".into())?;
    let mut upsert = db.prepare(
        "INSERT INTO persist_meta(key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )?;
    upsert.bind_text(1, "keyring_update")?;
    upsert.bind_blob(2, &sealed)?;
    upsert.execute()?;
    if publish {
        upsert.bind_text(1, "keyring_unpublished")?;
        upsert.bind_text(2, "1")?;
        upsert.execute()?;
    }
    Ok(())
}

/// Installs a changed keyring: seals it in this device's key slot, leaves
/// it for the other slots (and for sync when `publish` is set), and makes
/// it the connection's keyring.
///
/// # Errors
///
/// As [`write_keyslot`] and [`write_keyring_update`].
pub fn replace_keyring(
    conn: &crate::state::Connection,
    store: &OpenStore,
    keyring: Keyring,
    publish: bool,
) -> Result<Arc<OpenStore>, ExtError> {
    write_keyslot(conn.db, &store.device_key, &keyring)?;
    write_keyring_update(conn.db, &keyring, publish)?;
    let replaced = Arc::new(store.with_keyring(keyring));
    conn.set_store(Some(Arc::clone(&replaced)));
    Ok(replaced)
}

/// Runs `body` inside `SAVEPOINT name`, rolled back when it fails.
///
/// # Errors
///
/// The error of `body`, or SQLite's error for the savepoint statements.
pub fn with_savepoint<T>(
    db: Db,
    name: &str,
    body: impl FnOnce() -> Result<T, ExtError>,
) -> Result<T, ExtError> {
    db.exec(&format!("SAVEPOINT {name}"))
        .map_err(|err| match err {
            // SQLite cannot open a savepoint while another statement writes.
            ExtError::Sqlite { .. } if err.to_string().contains("statements in progress") => {
                ExtError::usage(format!(
                    "{name} cannot run inside a statement that writes, such as CREATE TABLE ... \
                 AS SELECT or INSERT ... SELECT; call it in a SELECT of its own"
                ))
            }
            other => other,
        })?;
    match body() {
        Ok(value) => {
            db.exec(&format!("RELEASE {name}"))?;
            Ok(value)
        }
        Err(err) => {
            // The original error matters more than a failure to roll back,
            // which SQLite reports on the next statement anyway.
            let _ = db.exec(&format!("ROLLBACK TO {name}; RELEASE {name}"));
            Err(err)
        }
    }
}

/// Seconds since the Unix epoch.
pub fn now_seconds() -> u64 {
    persist_core::clock::wall_clock_ms() / 1000
}

/// Opens the store and installs it on the connection.
///
/// # Errors
///
/// As [`open`], and a usage error when this connection has another store open.
pub fn init(
    conn: &crate::state::Connection,
    name: &str,
    options: &InitOptions,
) -> Result<String, ExtError> {
    if let Some(current) = conn.current()
        && current.name != name
    {
        return Err(ExtError::usage(format!(
            "persist_init: store {:?} is already open on this connection; a database holds \
             one store",
            current.name
        )));
    }
    let (store, report) = open(conn.db, name, options)?;
    crate::sync::create_tables(conn.db)?;
    let json = report.to_json(&store);
    conn.set_store(Some(Arc::new(store)));
    Ok(json)
}
