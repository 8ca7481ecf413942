//! PostgreSQL extension for Persist, built with pgrx.
//!
//! `CREATE EXTENSION persist` creates the schema `persist` with
//!
//! - the device role: `persist.init`, `persist.encrypt`, the four decrypt
//!   functions, `persist.export`, `persist.status`, `persist.close`, and
//!   `persist.invite` and `persist.admit` to pair a new device. They
//!   seal and open values byte for byte like the SQLite extension's
//!   `persist_*` functions. The tables `persist.stores` and
//!   `persist.keyslots` contain each store's keyring sealed under a device
//!   key;
//! - the sync server role: the ciphertext-only tables and functions of
//!   `pg-ext/sql/sync_server.sql`;
//! - encrypted tables: the foreign data wrapper and server `persist`, the
//!   schema `persist_rows` for their rows, and the event trigger
//!   `persist_fdw_ddl_end` ([`fdw`]).
//!
//! `DROP EXTENSION persist` drops the schema with all of it. `docs/POSTGRES.md`
//! is the user's guide, with every function's flags and errors.
//!
//! | module | what it owns |
//! |---|---|
//! | [`fdw`] | encrypted tables: the foreign data wrapper `persist` |
//! | [`store`] | `persist.init`: keyfiles, key import, the metadata tables |
//! | [`keyfile`] | the `persist.keyfile` setting and the checks on keyfile paths |
//! | [`functions`] | encrypt, decrypt, export and status |
//! | [`pairing`] | invite and admit: the inviting side of device pairing |
//! | [`session`] | the backend's open store and when its keys are dropped |
//! | [`options`] | the JSON options of `persist.init` |
//! | [`error`] | errors and their SQLSTATEs |
//!
//! Install and test it with cargo-pgrx, as `scripts/test-pg.sh` does, because
//! cargo-pgrx writes the extension SQL from these Rust definitions. Even a
//! plain `cargo build` of this crate needs `cargo pgrx init` first, which
//! records the `pg_config` whose headers pgrx compiles against.

pub mod error;
pub mod fdw;
pub mod functions;
pub mod keyfile;
pub mod options;
pub mod pairing;
pub mod session;
pub mod store;

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

// No `name, version` arguments: only PostgreSQL 18 reads them, and in pgrx
// 0.18.1 the `version` argument overwrites the module name with the version.
::pgrx::pg_module_magic!();

/// Defines `persist.keyfile` and registers the callbacks that drop the keys.
#[pgrx::pg_guard]
pub extern "C-unwind" fn _PG_init() {
    keyfile::define_setting();
    session::register_callbacks();
}

/// SQL functions and tables in the schema `persist`.
///
/// pgrx emits `CREATE SCHEMA IF NOT EXISTS persist` in the extension script,
/// so the schema is a member of the extension and `DROP EXTENSION` drops it.
#[pgrx::pg_schema]
mod persist {
    use persist_core::codec::{Value, ValueRef};
    use pgrx::prelude::*;

    use crate::error::OrReport;
    use crate::functions::{self, ExportPassphrase, Target};

    // pg_extension_config_dump makes pg_dump include the rows: without the
    // sealed keyrings, a restored database could not open its stores.
    pgrx::extension_sql!(
        r#"
CREATE TABLE persist.stores (
    name text PRIMARY KEY,
    store_id bytea NOT NULL CHECK (length(store_id) = 16),
    device_id bytea NOT NULL CHECK (length(device_id) = 16),
    created timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE persist.stores IS
    'Persist stores of this database: name, random store id and this server''s device id. Nothing here is secret.';

CREATE TABLE persist.keyslots (
    store_name text REFERENCES persist.stores (name),
    device_key_id bytea CHECK (length(device_key_id) = 16),
    sealed bytea NOT NULL,
    updated timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (store_name, device_key_id)
);
COMMENT ON TABLE persist.keyslots IS
    'Each store''s keyring, sealed (AES-256-GCM) under each device key that has opened it. Useless without the keyfile.';

-- Invites this database created: the one-time X25519 secret sealed under
-- the device key until the invite is used or expires. Not dumped, because
-- an invite lives one day at most.
CREATE TABLE persist.pairing_invites (
    invite_id bytea PRIMARY KEY CHECK (length(invite_id) = 16),
    store_name text NOT NULL REFERENCES persist.stores (name),
    sealed bytea,
    expires bigint NOT NULL,
    used bigint
);
COMMENT ON TABLE persist.pairing_invites IS
    'Pending and used pairing invites; each secret is sealed (AES-256-GCM) under the device key and deleted when the invite is used or expires.';

REVOKE ALL ON persist.stores, persist.keyslots, persist.pairing_invites FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('persist.stores', '');
SELECT pg_catalog.pg_extension_config_dump('persist.keyslots', '');
"#,
        name = "metadata_tables",
    );

    // The sync server role's tables and functions. They use the schema and
    // gen_random_uuid(), built in since PostgreSQL 13.
    pgrx::extension_sql_file!(
        "../sql/sync_server.sql",
        name = "sync_server",
        requires = ["metadata_tables"],
    );

    /// Returns the version of the `persist-pg` crate that built the loaded
    /// library, such as `0.1.0`.
    ///
    /// Declared STABLE, not IMMUTABLE, because Postgres may fold an IMMUTABLE
    /// result into stored plans and indexes, and installing a newer library
    /// changes the result.
    #[pg_extern(stable, strict, parallel_safe)]
    fn version() -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    /// Opens or creates store `store` for this session and returns a JSON
    /// report. PARALLEL UNSAFE because it writes the metadata tables and may
    /// create the keyfile.
    #[pg_extern(volatile, parallel_unsafe)]
    fn init(store: Option<&str>, options: default!(Option<&str>, "NULL")) -> String {
        crate::store::init(store, options).or_report()
    }

    // The encrypt overloads. VOLATILE because every envelope gets a random
    // nonce; PARALLEL RESTRICTED because the keys live in the leader backend
    // only. integer and smallint have their own overloads because Postgres
    // would otherwise resolve persist.encrypt(42) to double precision, its
    // preferred numeric type, and seal a REAL where SQLite seals an INTEGER.

    /// Seals TEXT `value`. A NULL value returns NULL, and a NULL context means
    /// no context.
    #[pg_extern(name = "encrypt", volatile, parallel_restricted)]
    fn encrypt_text(
        value: Option<&str>,
        context: default!(Option<&str>, "NULL"),
    ) -> Option<Vec<u8>> {
        functions::encrypt(value.map(ValueRef::Text), context).or_report()
    }

    /// Seals bytea `value` as a BLOB.
    #[pg_extern(name = "encrypt", volatile, parallel_restricted)]
    fn encrypt_bytea(
        value: Option<&[u8]>,
        context: default!(Option<&str>, "NULL"),
    ) -> Option<Vec<u8>> {
        functions::encrypt(value.map(ValueRef::Blob), context).or_report()
    }

    /// Seals bigint `value` as an INTEGER.
    #[pg_extern(name = "encrypt", volatile, parallel_restricted)]
    fn encrypt_bigint(
        value: Option<i64>,
        context: default!(Option<&str>, "NULL"),
    ) -> Option<Vec<u8>> {
        functions::encrypt(value.map(ValueRef::Integer), context).or_report()
    }

    /// Seals integer `value` as an INTEGER.
    #[pg_extern(name = "encrypt", volatile, parallel_restricted)]
    fn encrypt_integer(
        value: Option<i32>,
        context: default!(Option<&str>, "NULL"),
    ) -> Option<Vec<u8>> {
        let value = value.map(|value| ValueRef::Integer(i64::from(value)));
        functions::encrypt(value, context).or_report()
    }

    /// Seals smallint `value` as an INTEGER.
    #[pg_extern(name = "encrypt", volatile, parallel_restricted)]
    fn encrypt_smallint(
        value: Option<i16>,
        context: default!(Option<&str>, "NULL"),
    ) -> Option<Vec<u8>> {
        let value = value.map(|value| ValueRef::Integer(i64::from(value)));
        functions::encrypt(value, context).or_report()
    }

    /// Seals double precision `value` as a REAL, bit for bit.
    #[pg_extern(name = "encrypt", volatile, parallel_restricted)]
    fn encrypt_float8(
        value: Option<f64>,
        context: default!(Option<&str>, "NULL"),
    ) -> Option<Vec<u8>> {
        functions::encrypt(value.map(ValueRef::Real), context).or_report()
    }

    // The decrypt functions. STABLE: within one statement the same envelope
    // opens to the same value. PARALLEL RESTRICTED for the same reason as
    // encrypt.

    /// Opens an envelope that contains TEXT.
    #[pg_extern(stable, parallel_restricted)]
    fn decrypt(envelope: Option<&[u8]>, context: default!(Option<&str>, "NULL")) -> Option<String> {
        match functions::decrypt(Target::Text, envelope, context).or_report() {
            Some(Value::Text(text)) => Some(text),
            _ => None,
        }
    }

    /// Opens an envelope that contains a BLOB.
    #[pg_extern(stable, parallel_restricted)]
    fn decrypt_bytea(
        envelope: Option<&[u8]>,
        context: default!(Option<&str>, "NULL"),
    ) -> Option<Vec<u8>> {
        match functions::decrypt(Target::Bytea, envelope, context).or_report() {
            Some(Value::Blob(bytes)) => Some(bytes),
            _ => None,
        }
    }

    /// Opens an envelope that contains an INTEGER.
    #[pg_extern(stable, parallel_restricted)]
    fn decrypt_bigint(
        envelope: Option<&[u8]>,
        context: default!(Option<&str>, "NULL"),
    ) -> Option<i64> {
        match functions::decrypt(Target::Bigint, envelope, context).or_report() {
            Some(Value::Integer(value)) => Some(value),
            _ => None,
        }
    }

    /// Opens an envelope that contains a REAL.
    #[pg_extern(stable, parallel_restricted)]
    fn decrypt_float8(
        envelope: Option<&[u8]>,
        context: default!(Option<&str>, "NULL"),
    ) -> Option<f64> {
        match functions::decrypt(Target::Float8, envelope, context).or_report() {
            Some(Value::Real(value)) => Some(value),
            _ => None,
        }
    }

    // export has two overloads instead of DEFAULT NULL, so that an explicit
    // NULL passphrase is an error, as in SQLite, while no argument means an
    // export without a passphrase. VOLATILE: random salt and nonce.

    /// Exports the open store's keyring without a passphrase.
    #[pg_extern(name = "export", volatile, parallel_restricted)]
    fn export_raw() -> String {
        functions::export(ExportPassphrase::Omitted).or_report()
    }

    /// Exports the open store's keyring under `passphrase`.
    #[pg_extern(name = "export", volatile, parallel_restricted)]
    fn export_with_passphrase(passphrase: Option<&str>) -> String {
        functions::export(ExportPassphrase::Given(passphrase)).or_report()
    }

    /// Returns the session's Persist state as JSON. VOLATILE because its
    /// counters change within a statement.
    #[pg_extern(volatile, parallel_restricted)]
    fn status() -> String {
        functions::status()
    }

    /// Drops the open store and its keys; returns whether one was open.
    #[pg_extern(volatile, parallel_restricted)]
    fn close() -> bool {
        crate::session::close()
    }

    /// Creates an invite to the open store and returns the invite code.
    /// PARALLEL UNSAFE because it writes `persist.pairing_invites`.
    #[pg_extern(volatile, parallel_unsafe)]
    fn invite(options: default!(Option<&str>, "NULL")) -> String {
        crate::pairing::invite(options).or_report()
    }

    /// Checks a new device's response to an invite and returns the keyring
    /// message code. PARALLEL UNSAFE because it writes
    /// `persist.pairing_invites`.
    #[pg_extern(volatile, parallel_unsafe)]
    fn admit(response: Option<&str>) -> String {
        crate::pairing::admit(response).or_report()
    }
}

/// Hooks that `cargo pgrx test` calls before it starts the test server.
///
/// pgrx requires this module at the crate root under exactly this name.
#[cfg(test)]
pub mod pg_test {
    /// Runs one-off setup when the test framework starts. Persist needs none.
    pub fn setup(_options: Vec<&str>) {}

    /// Returns the `postgresql.conf` settings that the test server needs.
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        Vec::new()
    }
}
