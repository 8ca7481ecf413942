//! Tests that run inside a PostgreSQL server started by `cargo pgrx test`.
//!
//! Each test runs in its own connection and transaction, which pgrx rolls
//! back at the end, so tables, roles and settings do not leak between tests.
//! Keyfiles are files, so each test keeps them in its own temporary
//! directory outside the data directory and removes it at the end.

// Tests state their expectations with unwrap and expect, as clippy.toml
// allows for test code; clippy does not count cfg(feature = "pg_test") code,
// which these tests must be for pgrx to load them into the server, as tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[pgrx::pg_schema]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use persist_core::codec::{self, Value, ValueRef};
    use persist_core::{Cipher, Location, Padding, Purpose, export};
    use pgrx::pg_sys::panic::CaughtError;
    use pgrx::prelude::*;
    use pgrx::spi::quote_literal;
    use pgrx::{PgSqlErrorCode, pg_sys};
    use serde_json::Value as Json;

    use crate::error::PgError;
    use crate::functions::{self, Target};
    use crate::session;

    /// A private directory for one test's keyfiles, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let suffix: [u8; 8] = persist_core::random::array().unwrap();
            let name: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
            let path = std::env::temp_dir().join(format!("persist-pgtest-{name}"));
            std::fs::create_dir(&path).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
            Self(path)
        }

        fn file(&self, name: &str) -> String {
            self.0.join(name).to_str().unwrap().to_owned()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The SQLSTATE, message and hint of an error raised by SQL.
    #[derive(Debug)]
    struct SqlError {
        code: PgSqlErrorCode,
        message: String,
        hint: Option<String>,
    }

    /// Runs `sql` in a subtransaction and returns its error, rolling the
    /// subtransaction back, or `None` when it succeeds.
    fn sql_error(sql: &str) -> Option<SqlError> {
        // SAFETY: this is the subtransaction pattern of the PL handlers:
        // remember the memory context and resource owner, start an internal
        // subtransaction, and restore both after releasing or rolling it back.
        unsafe {
            let context = pg_sys::CurrentMemoryContext;
            let owner = pg_sys::CurrentResourceOwner;
            pg_sys::BeginInternalSubTransaction(std::ptr::null());
            pg_sys::MemoryContextSwitchTo(context);

            let caught = PgTryBuilder::new(|| {
                Spi::run(sql).unwrap();
                None
            })
            .catch_others(|error| {
                let report = match error {
                    CaughtError::PostgresError(report)
                    | CaughtError::ErrorReport(report)
                    | CaughtError::RustPanic {
                        ereport: report, ..
                    } => report,
                };
                Some(SqlError {
                    code: report.sql_error_code(),
                    message: report.message().to_owned(),
                    hint: report.hint().map(str::to_owned),
                })
            })
            .execute();

            if caught.is_some() {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            } else {
                pg_sys::ReleaseCurrentSubTransaction();
            }
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::CurrentResourceOwner = owner;
            caught
        }
    }

    /// Asserts that `sql` fails with `code` and a message containing
    /// `fragment`, and returns the error.
    #[track_caller]
    fn expect_error(sql: &str, code: PgSqlErrorCode, fragment: &str) -> SqlError {
        let error = sql_error(sql).unwrap_or_else(|| panic!("expected an error from {sql}"));
        assert_eq!(error.code, code, "SQLSTATE of {sql}: {error:?}");
        assert!(
            error.message.contains(fragment),
            "message of {sql} lacks {fragment:?}: {}",
            error.message
        );
        error
    }

    /// Asserts that a Rust-level call failed with `code`.
    #[track_caller]
    fn expect_pg_error<T: std::fmt::Debug>(
        result: Result<T, PgError>,
        code: PgSqlErrorCode,
        fragment: &str,
    ) {
        let error = result.expect_err("expected an error");
        assert_eq!(error.code(), code, "{}", error.message());
        assert!(
            error.message().contains(fragment),
            "message lacks {fragment:?}: {}",
            error.message()
        );
    }

    fn run(sql: &str) {
        Spi::run(sql).unwrap_or_else(|err| panic!("{sql}: {err}"));
    }

    fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
        Spi::get_one::<T>(sql).unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    fn json(sql: &str) -> Json {
        let text: String = one(sql).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    fn set_keyfile(path: &str) {
        run(&format!("SET persist.keyfile = {}", quote_literal(path)));
    }

    fn init(store: &str) -> Json {
        json(&format!("SELECT persist.init({})", quote_literal(store)))
    }

    fn init_with(store: &str, options: &Json) -> Json {
        json(&format!(
            "SELECT persist.init({}, {})",
            quote_literal(store),
            quote_literal(options.to_string())
        ))
    }

    fn init_sql(store: &str, options: &Json) -> String {
        format!(
            "SELECT persist.init({}, {})",
            quote_literal(store),
            quote_literal(options.to_string())
        )
    }

    fn mode_of(path: &str) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn chmod(path: &str, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Opens store `name` with a new keyfile in `dir`.
    fn open_new_store(dir: &TempDir, name: &str) -> String {
        let keyfile = dir.file(&format!("{name}.key"));
        set_keyfile(&keyfile);
        init(name);
        keyfile
    }

    fn sealed(sql_value: &str, context: &str) -> Vec<u8> {
        one::<Vec<u8>>(&format!("SELECT persist.encrypt({sql_value}, {context})")).unwrap()
    }

    fn bytea_literal(bytes: &[u8]) -> String {
        format!("'\\x{}'::bytea", hex(bytes))
    }

    #[pg_test]
    fn version_returns_crate_version() -> Result<(), spi::Error> {
        let version = Spi::get_one::<String>("SELECT persist.version()")?;
        assert_eq!(version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
        Ok(())
    }

    #[pg_test]
    fn declared_flags_in_pg_proc() {
        // (signature, provolatile, proisstrict, proparallel)
        let expected = [
            ("persist.version()", "s", true, "s"),
            ("persist.init(text, text)", "v", false, "u"),
            ("persist.encrypt(text, text)", "v", false, "r"),
            ("persist.encrypt(bytea, text)", "v", false, "r"),
            ("persist.encrypt(bigint, text)", "v", false, "r"),
            ("persist.encrypt(integer, text)", "v", false, "r"),
            ("persist.encrypt(smallint, text)", "v", false, "r"),
            ("persist.encrypt(double precision, text)", "v", false, "r"),
            ("persist.decrypt(bytea, text)", "s", false, "r"),
            ("persist.decrypt_bytea(bytea, text)", "s", false, "r"),
            ("persist.decrypt_bigint(bytea, text)", "s", false, "r"),
            ("persist.decrypt_float8(bytea, text)", "s", false, "r"),
            ("persist.export()", "v", true, "r"),
            ("persist.export(text)", "v", false, "r"),
            ("persist.status()", "v", true, "r"),
            ("persist.close()", "v", true, "r"),
            ("persist.invite(text)", "v", false, "u"),
            ("persist.admit(text)", "v", false, "u"),
            // Encrypted tables: the wrapper's handler and validator, and the
            // event trigger function, which Postgres calls itself.
            ("persist.fdw_handler()", "v", true, "u"),
            ("persist.fdw_validator(text[], oid)", "v", false, "u"),
            ("persist.fdw_ddl_end()", "v", false, "u"),
        ];
        for (signature, volatility, strict, parallel) in expected {
            let (found_volatility, found_strict, found_parallel) =
                Spi::get_three::<String, bool, String>(&format!(
                    "SELECT provolatile::text, proisstrict, proparallel::text \
                     FROM pg_proc WHERE oid = {}::regprocedure",
                    quote_literal(signature)
                ))
                .unwrap();
            assert_eq!(
                found_volatility.as_deref(),
                Some(volatility),
                "{signature} provolatile"
            );
            assert_eq!(found_strict, Some(strict), "{signature} proisstrict");
            assert_eq!(
                found_parallel.as_deref(),
                Some(parallel),
                "{signature} proparallel"
            );
        }

        let count = one::<i64>(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'persist'::regnamespace \
             AND prolang = (SELECT oid FROM pg_language WHERE lanname = 'c')",
        );
        assert_eq!(
            count,
            Some(expected.len() as i64),
            "C functions in schema persist"
        );
        let defaults = one::<i64>(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'persist'::regnamespace \
             AND pronargdefaults = 1",
        );
        // init, invite, six encrypt overloads and four decrypt functions
        // default their last argument to NULL; export(text) has no default.
        assert_eq!(defaults, Some(12), "functions with a default argument");
    }

    #[pg_test]
    fn pairing_invite_admit_round_trip() {
        use persist_core::pairing::{Acceptance, Invite, PairingMessage};

        let dir = TempDir::new();
        open_new_store(&dir, "app");
        let store_id = json("SELECT persist.status()")["store_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let code: String = one("SELECT persist.invite('{\"lifetime\": 600}')").unwrap();
        assert!(code.starts_with("PERSIST-INVITE-1"), "{code}");
        let sealed_bytes = one::<i32>("SELECT length(sealed) FROM persist.pairing_invites");
        assert_eq!(sealed_bytes, Some(183), "sealed invite state");

        // The joining side, as an SQLite database runs it with persist_accept.
        let invite = Invite::parse(&code).unwrap();
        assert_eq!(invite.store_id().to_string(), store_id);
        let now = persist_core::clock::wall_clock_ms() / 1000;
        let (acceptance, response) = Acceptance::accept(&invite, now).unwrap();
        let message: String = one(&format!(
            "SELECT persist.admit({})",
            quote_literal(response.to_text())
        ))
        .unwrap();
        let keyring = acceptance
            .open(&PairingMessage::parse(&message).unwrap(), now)
            .unwrap();
        assert_eq!(keyring.store_id().to_string(), store_id);
        let state_deleted =
            one::<bool>("SELECT sealed IS NULL AND used IS NOT NULL FROM persist.pairing_invites");
        assert_eq!(state_deleted, Some(true));

        expect_error(
            &format!(
                "SELECT persist.admit({})",
                quote_literal(response.to_text())
            ),
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "was already used",
        );
    }

    #[pg_test]
    fn pairing_rejects_bad_input() {
        let dir = TempDir::new();
        open_new_store(&dir, "app");
        expect_error(
            "SELECT persist.invite('{\"lifetime\": 59}')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "outside the allowed 60 to 86400 seconds",
        );
        expect_error(
            "SELECT persist.invite('{\"ttl\": 60}')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "field \"ttl\" is unknown",
        );
        expect_error(
            "SELECT persist.admit(NULL)",
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "argument 1 (response) is NULL",
        );
        let code: String = one("SELECT persist.invite()").unwrap();
        expect_error(
            &format!("SELECT persist.admit({})", quote_literal(&code)),
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "does not start with PERSIST-RESPONSE-1",
        );

        // A response to an invite whose time has passed.
        let invite = persist_core::pairing::Invite::parse(&code).unwrap();
        let now = persist_core::clock::wall_clock_ms() / 1000;
        let (_, response) = persist_core::pairing::Acceptance::accept(&invite, now).unwrap();
        run("UPDATE persist.pairing_invites SET expires = 1");
        expect_error(
            &format!(
                "SELECT persist.admit({})",
                quote_literal(response.to_text())
            ),
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "expired at 1 (Unix seconds)",
        );

        // A forged response: another public key with the same MAC.
        run("UPDATE persist.pairing_invites SET expires = 4102444800");
        let mut bytes = response.to_bytes();
        bytes[20] ^= 0x01;
        let forged = persist_core::pairing::Response::from_bytes(&bytes).unwrap();
        expect_error(
            &format!("SELECT persist.admit({})", quote_literal(forged.to_text())),
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            "failed verification",
        );
        // The failed admit rolled its claim back: the invite is still
        // pending, and the genuine response is admitted.
        let pending =
            one::<bool>("SELECT used IS NULL AND sealed IS NOT NULL FROM persist.pairing_invites");
        assert_eq!(pending, Some(true), "the failed admit used the invite up");
        let message: Option<String> = one(&format!(
            "SELECT persist.admit({})",
            quote_literal(response.to_text())
        ));
        assert!(message.is_some_and(|text| text.starts_with("PERSIST-KEYRING-1")));

        run("SELECT persist.close()");
        expect_error(
            "SELECT persist.invite()",
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "no Persist store is open",
        );
    }

    #[pg_test]
    fn init_creates_store_and_private_keyfile() {
        let dir = TempDir::new();
        let keyfile = dir.file("keys/nested/app.key");
        set_keyfile(&keyfile);

        let report = init("app");
        assert_eq!(report["store"], "app");
        assert_eq!(report["created"], true);
        assert_eq!(report["imported"], false);
        assert_eq!(report["device_key_created"], true);
        assert_eq!(report["session_only"], false);
        assert_eq!(report["keys"], 1);
        assert_eq!(report["key_location"], format!("keyfile {keyfile}"));
        assert_eq!(report["store_id"].as_str().unwrap().len(), 32);
        assert_eq!(report["device_id"].as_str().unwrap().len(), 32);

        assert_eq!(mode_of(&keyfile), 0o600, "keyfile mode");
        assert_eq!(
            mode_of(&dir.file("keys/nested")),
            0o700,
            "keyfile directory mode"
        );
        let stored =
            one::<String>("SELECT encode(store_id, 'hex') FROM persist.stores WHERE name = 'app'");
        assert_eq!(stored.as_deref(), report["store_id"].as_str());
        assert_eq!(
            one::<i64>("SELECT count(*) FROM persist.keyslots WHERE store_name = 'app'"),
            Some(1)
        );

        assert_eq!(one::<bool>("SELECT persist.close()"), Some(true));
        let again = init("app");
        assert_eq!(again["created"], false);
        assert_eq!(again["device_key_created"], false);
        assert_eq!(again["store_id"], report["store_id"]);
        assert_eq!(again["device_id"], report["device_id"]);
    }

    #[pg_test]
    fn round_trip_every_type() {
        let dir = TempDir::new();
        open_new_store(&dir, "types");

        for context in ["NULL", "'row 7'"] {
            let text_cases = ["''", "'plain'", "'Zoë 東京 🎵'"];
            for literal in text_cases {
                let same = one::<bool>(&format!(
                    "SELECT persist.decrypt(persist.encrypt({literal}::text, {context}), {context}) \
                     = {literal}"
                ));
                assert_eq!(same, Some(true), "text {literal} context {context}");
            }
            for literal in ["''::bytea", "'\\x00ff10'::bytea"] {
                let same = one::<bool>(&format!(
                    "SELECT persist.decrypt_bytea(persist.encrypt({literal}, {context}), \
                     {context}) = {literal}"
                ));
                assert_eq!(same, Some(true), "bytea {literal} context {context}");
            }
            for literal in [
                "(-9223372036854775808)::bigint",
                "9223372036854775807::bigint",
                "42",
                "(-7)::smallint",
            ] {
                let same = one::<bool>(&format!(
                    "SELECT persist.decrypt_bigint(persist.encrypt({literal}, {context}), \
                     {context}) = {literal}"
                ));
                assert_eq!(same, Some(true), "integer {literal} context {context}");
            }
            for literal in [
                "'-0'::float8",
                "'NaN'::float8",
                "'-Infinity'::float8",
                "1.5",
                "'1e308'::float8",
            ] {
                let same = one::<bool>(&format!(
                    "SELECT float8send(persist.decrypt_float8(persist.encrypt({literal}, \
                     {context}), {context})) = float8send({literal})"
                ));
                assert_eq!(same, Some(true), "float8 {literal} context {context}");
            }
        }

        let counters = json("SELECT persist.status()")["counters"].clone();
        assert_eq!(counters["envelopes_sealed"], counters["envelopes_opened"]);
    }

    #[pg_test]
    fn nulls_and_empty_context() {
        let dir = TempDir::new();
        open_new_store(&dir, "nulls");

        assert_eq!(one::<Vec<u8>>("SELECT persist.encrypt(NULL)"), None);
        assert_eq!(
            one::<Vec<u8>>("SELECT persist.encrypt(NULL::bigint, 'c')"),
            None
        );
        assert_eq!(one::<String>("SELECT persist.decrypt(NULL)"), None);
        assert_eq!(
            one::<Vec<u8>>("SELECT persist.decrypt_bytea(NULL, 'c')"),
            None
        );
        assert_eq!(one::<i64>("SELECT persist.decrypt_bigint(NULL)"), None);
        assert_eq!(one::<f64>("SELECT persist.decrypt_float8(NULL)"), None);

        // A NULL context, an empty one and none at all are the same context.
        let envelope = bytea_literal(&sealed("'x'::text", "NULL"));
        for call in [
            format!("persist.decrypt({envelope})"),
            format!("persist.decrypt({envelope}, NULL)"),
            format!("persist.decrypt({envelope}, '')"),
        ] {
            assert_eq!(
                one::<String>(&format!("SELECT {call}")).as_deref(),
                Some("x"),
                "{call}"
            );
        }

        // An envelope that contains NULL, which the SQLite extension's codec
        // can express, opens to NULL in every decrypt function.
        let null_envelope = session::with_store("test", |store, _| {
            let plaintext = codec::encode_single(ValueRef::Null).unwrap();
            Ok(store
                .cipher
                .seal(&value_location(b""), &plaintext, Padding::None)
                .unwrap())
        })
        .unwrap();
        let literal = bytea_literal(&null_envelope);
        for function in [
            "decrypt",
            "decrypt_bytea",
            "decrypt_bigint",
            "decrypt_float8",
        ] {
            let is_null = one::<bool>(&format!("SELECT persist.{function}({literal}) IS NULL"));
            assert_eq!(is_null, Some(true), "{function}");
        }
    }

    fn value_location(context: &[u8]) -> Location<'_> {
        Location {
            purpose: Purpose::Value,
            table: "",
            record_id: b"",
            context,
        }
    }

    #[pg_test]
    fn envelope_matches_core_format() {
        let dir = TempDir::new();
        open_new_store(&dir, "format");
        let exported: String = one("SELECT persist.export()").unwrap();
        let cipher = Cipher::new(export::import(&exported, None).unwrap());

        let envelope = sealed("'Zoë'::text", "'ctx'");
        let plaintext = cipher.open(&value_location(b"ctx"), &envelope).unwrap();
        // The single-value encoding of TEXT "Zoë" from docs/FORMAT.md 5.4.
        assert_eq!(hex(&plaintext), "0103000000045a6fc3ab");
        assert_eq!(
            codec::decode_single(&plaintext).unwrap(),
            Value::Text("Zoë".into())
        );

        let envelope = sealed("(-7)::bigint", "NULL");
        let plaintext = cipher.open(&value_location(b""), &envelope).unwrap();
        assert_eq!(hex(&plaintext), "0101fffffffffffffff9");

        // An envelope sealed by the core opens in Postgres.
        let plaintext = codec::encode_single(ValueRef::Real(-2.5)).unwrap();
        let envelope = cipher
            .seal(&value_location(b"r"), &plaintext, Padding::None)
            .unwrap();
        let opened = one::<f64>(&format!(
            "SELECT persist.decrypt_float8({}, 'r')",
            bytea_literal(&envelope)
        ));
        assert_eq!(opened, Some(-2.5));
    }

    #[pg_test]
    fn decrypt_rejects_bad_envelopes() {
        let dir = TempDir::new();
        open_new_store(&dir, "tamper");
        let envelope = sealed("'secret'::text", "'ctx'");

        let wrong_context = format!(
            "SELECT persist.decrypt({}, 'other')",
            bytea_literal(&envelope)
        );
        expect_error(
            &wrong_context,
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            "authentication failed",
        );
        let no_context = format!("SELECT persist.decrypt({})", bytea_literal(&envelope));
        expect_error(
            &no_context,
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            "authentication failed",
        );

        let mut tampered = envelope.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0x01;
        let sql = format!(
            "SELECT persist.decrypt({}, 'ctx')",
            bytea_literal(&tampered)
        );
        let error = expect_error(
            &sql,
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            "persist.decrypt: argument 1 (envelope)",
        );
        assert!(!error.message.contains("secret"), "{}", error.message);

        let sql = format!(
            "SELECT persist.decrypt({}, 'ctx')",
            bytea_literal(&envelope[..20])
        );
        expect_error(
            &sql,
            PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION,
            "malformed envelope",
        );

        let mut version = envelope.clone();
        version[0] = 9;
        let sql = format!("SELECT persist.decrypt({}, 'ctx')", bytea_literal(&version));
        expect_error(
            &sql,
            PgSqlErrorCode::ERRCODE_INVALID_BINARY_REPRESENTATION,
            "unsupported envelope version 9",
        );

        let mut unknown_key = envelope.clone();
        unknown_key[1] ^= 0xff;
        let sql = format!(
            "SELECT persist.decrypt({}, 'ctx')",
            bytea_literal(&unknown_key)
        );
        expect_error(
            &sql,
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "unknown key id",
        );

        let too_long = vec![1u8; functions::max_envelope_len() + 1];
        expect_pg_error(
            functions::decrypt(Target::Text, Some(&too_long), None),
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            "over the limit of 69206049 bytes",
        );
    }

    #[pg_test]
    fn decrypt_with_other_store_is_unknown_key() {
        let dir = TempDir::new();
        open_new_store(&dir, "first");
        let envelope = bytea_literal(&sealed("'from the first store'::text", "NULL"));
        open_new_store(&dir, "second");
        let status = json("SELECT persist.status()");
        assert_eq!(status["store"], "second", "init replaces the open store");
        expect_error(
            &format!("SELECT persist.decrypt({envelope})"),
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "unknown key id",
        );
    }

    #[pg_test]
    fn decrypt_names_function_for_other_type() {
        let dir = TempDir::new();
        open_new_store(&dir, "classes");
        let cases = [
            (
                "42",
                "persist.decrypt",
                "contains an INTEGER value, not text; use persist.decrypt_bigint()",
            ),
            (
                "'t'::text",
                "persist.decrypt_bigint",
                "contains a TEXT value, not bigint; use persist.decrypt()",
            ),
            (
                "1.5",
                "persist.decrypt_bytea",
                "contains a REAL value, not bytea; use persist.decrypt_float8()",
            ),
            (
                "'\\x01'::bytea",
                "persist.decrypt_float8",
                "contains a BLOB value, not double precision; use persist.decrypt_bytea()",
            ),
        ];
        for (value, function, fragment) in cases {
            let envelope = bytea_literal(&sealed(value, "NULL"));
            let error = expect_error(
                &format!("SELECT {function}({envelope})"),
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                fragment,
            );
            assert!(error.message.starts_with(function), "{}", error.message);
        }
    }

    #[pg_test]
    fn decrypt_rejects_text_with_nul() {
        let dir = TempDir::new();
        open_new_store(&dir, "nul");
        let envelope = session::with_store("test", |store, _| {
            let plaintext = codec::encode_single(ValueRef::Text("a\0b")).unwrap();
            Ok(store
                .cipher
                .seal(&value_location(b""), &plaintext, Padding::None)
                .unwrap())
        })
        .unwrap();
        expect_error(
            &format!("SELECT persist.decrypt({})", bytea_literal(&envelope)),
            PgSqlErrorCode::ERRCODE_UNTRANSLATABLE_CHARACTER,
            "NUL character",
        );
    }

    #[pg_test]
    fn functions_need_open_store() {
        for sql in [
            "SELECT persist.encrypt('x')",
            "SELECT persist.decrypt('\\x00'::bytea)",
            "SELECT persist.export()",
            "SELECT persist.export('pass')",
        ] {
            let error = expect_error(
                sql,
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "no Persist store is open in this session",
            );
            assert!(error.hint.unwrap().contains("persist.init"), "{sql}");
        }
        assert_eq!(json("SELECT persist.status()")["open"], false);
        assert_eq!(one::<bool>("SELECT persist.close()"), Some(false));
    }

    #[pg_test]
    fn argument_errors() {
        let dir = TempDir::new();
        set_keyfile(&dir.file("args.key"));

        expect_error(
            "SELECT persist.init(NULL)",
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "persist.init: argument 1 (store) is NULL",
        );
        expect_error(
            "SELECT persist.init('')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "persist.init: argument 1 (store): invalid store name",
        );
        expect_error(
            "SELECT persist.init('a/b')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "contains '/'",
        );
        expect_error(
            "SELECT persist.init('a', 'not json')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "persist.init: options are not valid JSON",
        );
        expect_error(
            "SELECT persist.init('a', '[]')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "must be a JSON object",
        );
        expect_error(
            "SELECT persist.init('a', '{\"colour\": 1}')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "field \"colour\" is unknown",
        );
        expect_error(
            "SELECT persist.init('a', '{\"keychain\": true}')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "no OS keychain",
        );
        expect_error(
            "SELECT persist.init('a', '{\"passphrase\": \"p\"}')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "passphrase without a key",
        );
        expect_error(
            "SELECT persist.init('a', '{\"key\": 5}')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "field \"key\" must be a string",
        );
        expect_error(
            "SELECT persist.init('a', repeat(' ', 262145))",
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            "argument 2 (options) is 262145 bytes, over the limit of 262144 bytes",
        );
        expect_error(
            "SELECT persist.init('a', '{\"key\": \"PERSIST-KEY-1ABC\"}')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "persist.init: option \"key\"",
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM persist.stores"),
            Some(0),
            "no store after errors"
        );

        init("args");
        expect_error(
            "SELECT persist.encrypt('x', repeat('c', 65537))",
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            "persist.encrypt: argument 2 (context) is 65537 bytes, over the limit of 65536 bytes",
        );
        expect_error(
            "SELECT persist.decrypt('\\x00'::bytea, repeat('c', 65537))",
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            "persist.decrypt: argument 2 (context)",
        );
        expect_error(
            "SELECT persist.export(NULL)",
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "persist.export: argument 1 (passphrase) is NULL",
        );
        expect_error(
            "SELECT persist.export('')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "persist.export: argument 1 (passphrase) is empty",
        );
        expect_error(
            "SELECT persist.export(repeat('p', 1025))",
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            "over the limit of 1024 bytes",
        );

        let big = vec![0u8; persist_core::envelope::MAX_PLAINTEXT];
        expect_pg_error(
            functions::encrypt(Some(ValueRef::Blob(&big)), None),
            PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            "persist.encrypt: argument 1 (value): value is",
        );
    }

    #[pg_test]
    fn init_without_key_source() {
        run("SET persist.keyfile = ''");
        let error = expect_error(
            "SELECT persist.init('nothing')",
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "persist.keyfile is not set",
        );
        assert!(
            error
                .hint
                .unwrap()
                .contains("ALTER SYSTEM SET persist.keyfile")
        );
    }

    #[pg_test]
    fn keyfile_missing_for_existing_store() {
        let dir = TempDir::new();
        let keyfile = open_new_store(&dir, "lost");
        run("SELECT persist.close()");
        std::fs::remove_file(&keyfile).unwrap();

        let error = expect_error(
            "SELECT persist.init('lost')",
            PgSqlErrorCode::ERRCODE_UNDEFINED_FILE,
            "no device key for store \"lost\"",
        );
        assert!(error.message.contains(&keyfile), "{}", error.message);
        assert!(error.hint.unwrap().contains("Restore the keyfile"));
        assert!(
            !Path::new(&keyfile).exists(),
            "no new keyfile for an existing store"
        );
    }

    #[pg_test]
    fn keyfile_with_bad_permissions() {
        let dir = TempDir::new();
        let keyfile = open_new_store(&dir, "perms");
        run("SELECT persist.close()");

        chmod(&keyfile, 0o644);
        let error = expect_error(
            "SELECT persist.init('perms')",
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "other users can access it (mode 0644)",
        );
        assert!(error.message.contains("chmod 600"), "{}", error.message);

        chmod(&keyfile, 0o000);
        expect_error(
            "SELECT persist.init('perms')",
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "cannot open it",
        );

        chmod(&keyfile, 0o600);
        std::fs::write(&keyfile, "not a keyfile\n").unwrap();
        expect_error(
            "SELECT persist.init('perms')",
            PgSqlErrorCode::ERRCODE_IO_ERROR,
            "not a Persist keyfile",
        );
    }

    #[pg_test]
    fn keyfile_paths_rejected() {
        let data_dir = one::<String>("SELECT current_setting('data_directory')").unwrap();
        let inside = format!("{data_dir}/persist.key");
        set_keyfile(&inside);
        let error = expect_error(
            "SELECT persist.init('datadir')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "is inside the data directory",
        );
        assert!(error.hint.unwrap().contains("outside the data directory"));
        assert!(
            !Path::new(&inside).exists(),
            "no keyfile created in the data directory"
        );

        set_keyfile(&format!("{data_dir}/base/new/persist.key"));
        expect_error(
            "SELECT persist.init('datadir')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "is inside the data directory",
        );

        // A symbolic link that leads into the data directory counts as inside.
        let dir = TempDir::new();
        let link = dir.file("link");
        std::os::unix::fs::symlink(&data_dir, &link).unwrap();
        set_keyfile(&format!("{link}/persist.key"));
        expect_error(
            "SELECT persist.init('datadir')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "is inside the data directory",
        );

        set_keyfile("keys/relative.key");
        expect_error(
            "SELECT persist.init('datadir')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "is not an absolute path",
        );
        set_keyfile(&format!("{}/../x.key", dir.file("a")));
        expect_error(
            "SELECT persist.init('datadir')",
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "contains \".\" or \"..\"",
        );
        let option = serde_json::json!({"keyfile": inside});
        expect_error(
            &init_sql("datadir", &option),
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "option \"keyfile\"",
        );
    }

    #[pg_test]
    fn keyfile_privileges_for_roles() {
        let dir = TempDir::new();
        let shared = open_new_store(&dir, "shared");
        run("SELECT persist.close()");
        run("SET persist.keyfile = ''");

        run("CREATE ROLE persist_test_app");
        run("CREATE ROLE persist_test_reader IN ROLE pg_read_server_files");
        run("GRANT USAGE ON SCHEMA persist TO persist_test_app, persist_test_reader");
        run(
            "GRANT SELECT, INSERT, UPDATE ON persist.stores, persist.keyslots \
             TO persist_test_app, persist_test_reader",
        );

        // A plain role may not name a keyfile, nor set persist.keyfile.
        run("SET ROLE persist_test_app");
        let option = serde_json::json!({"keyfile": shared});
        let error = expect_error(
            &init_sql("shared", &option),
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "requires superuser or the privileges of role pg_read_server_files",
        );
        assert!(error.hint.unwrap().contains("ALTER ROLE"));
        let missing = dir.file("probe.key");
        let option = serde_json::json!({"keyfile": missing});
        expect_error(
            &init_sql("shared", &option),
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "pg_read_server_files",
        );
        expect_error(
            &format!("SET persist.keyfile = {}", quote_literal(&shared)),
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied to set parameter",
        );
        run("RESET ROLE");

        // persist.keyfile set by a superuser serves a plain role, which may
        // have a new store's keyfile created.
        set_keyfile(&dir.file("app.key"));
        run("SET ROLE persist_test_app");
        let report = init("app-store");
        assert_eq!(report["device_key_created"], true);
        assert_eq!(
            one::<String>("SELECT persist.decrypt(persist.encrypt('ok'))").as_deref(),
            Some("ok")
        );
        run("RESET ROLE");
        run("SET persist.keyfile = ''");

        // A member of pg_read_server_files may name an existing keyfile but
        // not have a missing one created.
        run("SET ROLE persist_test_reader");
        let option = serde_json::json!({"keyfile": shared});
        assert_eq!(init_with("shared", &option)["created"], false);
        let option = serde_json::json!({"keyfile": missing});
        let error = expect_error(
            &init_sql("reader-new", &option),
            PgSqlErrorCode::ERRCODE_UNDEFINED_FILE,
            "no device key for store \"reader-new\"",
        );
        assert!(error.hint.unwrap().contains("pg_write_server_files"));
        run("RESET ROLE");
        assert!(!Path::new(&missing).exists());
    }

    #[pg_test]
    fn export_import_round_trip() {
        let dir = TempDir::new();
        let keyfile = open_new_store(&dir, "moving");
        let envelope = bytea_literal(&sealed("'moved'::text", "'c'"));
        let raw: String = one("SELECT persist.export()").unwrap();
        assert!(raw.starts_with("PERSIST-KEY-1"));
        let protected: String = one("SELECT persist.export('correct horse')").unwrap();
        assert!(protected.starts_with("PERSIST-KEY-1"));
        let status = json("SELECT persist.status()");
        run("SELECT persist.close()");

        // Without a keyfile the imported keyring serves this session only.
        run("SET persist.keyfile = ''");
        let slots = one::<i64>("SELECT count(*) FROM persist.keyslots");
        let report = init_with("moving", &serde_json::json!({"key": raw}));
        assert_eq!(report["session_only"], true);
        assert_eq!(report["imported"], true);
        assert_eq!(report["key_location"], "imported key, this session only");
        assert_eq!(
            report["device_id"], status["device_id"],
            "device id from persist.stores"
        );
        assert_eq!(
            one::<String>(&format!("SELECT persist.decrypt({envelope}, 'c')")).as_deref(),
            Some("moved")
        );
        assert_eq!(
            one::<i64>("SELECT count(*) FROM persist.keyslots"),
            slots,
            "nothing written"
        );

        let wrong = serde_json::json!({"key": protected, "passphrase": "hunter2"});
        let error = expect_error(
            &init_sql("moving", &wrong),
            PgSqlErrorCode::ERRCODE_INVALID_PASSWORD,
            "wrong passphrase",
        );
        assert!(!error.message.contains("hunter2"), "{}", error.message);
        assert!(!error.message.contains(&protected), "{}", error.message);
        let missing = serde_json::json!({"key": protected});
        expect_error(
            &init_sql("moving", &missing),
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "protected by a passphrase",
        );
        let right = serde_json::json!({"key": protected, "passphrase": "correct horse"});
        assert_eq!(init_with("moving", &right)["session_only"], true);
        assert_eq!(
            one::<String>(&format!("SELECT persist.decrypt({envelope}, 'c')")).as_deref(),
            Some("moved")
        );

        // With another keyfile, the import seals the keyring under that
        // device key, and the new keyfile then opens the store alone.
        let second = dir.file("second.key");
        set_keyfile(&second);
        let report = init_with("moving", &serde_json::json!({"key": raw}));
        assert_eq!(report["imported"], true);
        assert_eq!(report["device_key_created"], true);
        assert_eq!(report["session_only"], false);
        assert_eq!(
            one::<i64>("SELECT count(*) FROM persist.keyslots WHERE store_name = 'moving'"),
            Some(2)
        );
        run("SELECT persist.close()");
        assert_eq!(init("moving")["imported"], false);
        assert_eq!(
            one::<String>(&format!("SELECT persist.decrypt({envelope}, 'c')")).as_deref(),
            Some("moved")
        );

        // A key of another store does not open this one.
        set_keyfile(&keyfile);
        open_new_store(&dir, "other");
        let foreign: String = one("SELECT persist.export()").unwrap();
        set_keyfile(&second);
        expect_error(
            &init_sql("moving", &serde_json::json!({"key": foreign})),
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "the imported key belongs to store id",
        );
        run("SET persist.keyfile = ''");
        expect_error(
            &init_sql("moving", &serde_json::json!({"key": foreign})),
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "the imported key belongs to store id",
        );
    }

    #[pg_test]
    fn device_key_without_keyslot() {
        let dir = TempDir::new();
        open_new_store(&dir, "slotless");
        run("SELECT persist.close()");
        set_keyfile(&dir.file("stranger.key"));
        // The stranger keyfile does not exist and the store does, so it is
        // not created.
        expect_error(
            "SELECT persist.init('slotless')",
            PgSqlErrorCode::ERRCODE_UNDEFINED_FILE,
            "no device key",
        );
        // A stranger keyfile that exists opens nothing.
        open_new_store(&dir, "stranger");
        run("SELECT persist.close()");
        let error = expect_error(
            "SELECT persist.init('slotless')",
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            "does not open store \"slotless\"",
        );
        assert!(
            error
                .hint
                .unwrap()
                .contains("import the store's exported key")
        );
    }

    #[pg_test]
    fn damaged_keyslot_is_data_corrupted() {
        let dir = TempDir::new();
        open_new_store(&dir, "damaged");
        run("SELECT persist.close()");
        run("UPDATE persist.keyslots SET sealed = set_byte(sealed, 40, get_byte(sealed, 40) # 1)");
        expect_error(
            "SELECT persist.init('damaged')",
            PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
            "cannot be opened: authentication failed",
        );
    }

    #[pg_test]
    fn reports_hold_no_key_material() {
        let dir = TempDir::new();
        let keyfile = dir.file("secret.key");
        set_keyfile(&keyfile);
        let report: String = one("SELECT persist.init('secrets')").unwrap();
        let status: String = one("SELECT persist.status()").unwrap();
        let device_key_hex = std::fs::read_to_string(&keyfile).unwrap();
        let device_key_hex = device_key_hex.split(' ').nth(1).unwrap().to_owned();
        let exported: String = one("SELECT persist.export()").unwrap();
        let keyring = export::import(&exported, None).unwrap();
        let data_key_hex = hex(keyring.primary().secret().expose());
        for text in [&report, &status] {
            assert!(!text.contains(&device_key_hex), "device key in {text}");
            assert!(!text.contains(&data_key_hex), "data key in {text}");
        }
        let status: Json = serde_json::from_str(&status).unwrap();
        assert_eq!(status["open"], true);
        assert_eq!(status["primary_key_id"], keyring.primary().id());
        assert_eq!(status["keys"][0]["status"], "primary");
    }

    /// Runs `body` in a subtransaction and rolls it back or releases it.
    fn in_subtransaction(rollback: bool, body: impl FnOnce()) {
        // SAFETY: as in sql_error.
        unsafe {
            let context = pg_sys::CurrentMemoryContext;
            let owner = pg_sys::CurrentResourceOwner;
            pg_sys::BeginInternalSubTransaction(std::ptr::null());
            pg_sys::MemoryContextSwitchTo(context);
            body();
            if rollback {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            } else {
                pg_sys::ReleaseCurrentSubTransaction();
            }
            pg_sys::MemoryContextSwitchTo(context);
            pg_sys::CurrentResourceOwner = owner;
        }
    }

    #[pg_test]
    fn rollback_closes_unsaved_store() {
        let dir = TempDir::new();
        set_keyfile(&dir.file("rollback.key"));

        in_subtransaction(true, || {
            init("rolled-back");
        });
        assert_eq!(json("SELECT persist.status()")["open"], false);
        expect_error(
            "SELECT persist.encrypt('x')",
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "store \"rolled-back\" was closed because its savepoint rolled back",
        );
        assert_eq!(one::<i64>("SELECT count(*) FROM persist.stores"), Some(0));

        in_subtransaction(false, || {
            init("kept");
        });
        in_subtransaction(true, || {
            run("SELECT 1");
        });
        assert_eq!(json("SELECT persist.status()")["store"], "kept");

        // Opening a store that exists writes nothing, so a rollback keeps it
        // open.
        run("SELECT persist.close()");
        in_subtransaction(true, || {
            init("kept");
        });
        assert_eq!(json("SELECT persist.status()")["store"], "kept");

        // Reopening a store whose rows the same savepoint wrote depends on
        // those rows, so rolling the savepoint back closes it too.
        in_subtransaction(true, || {
            init("reopened");
            run("SELECT persist.close()");
            assert_eq!(init("reopened")["created"], false);
        });
        assert_eq!(json("SELECT persist.status()")["open"], false);

        // A session-only import does not depend on any row.
        in_subtransaction(true, || {
            init("fresh");
            let exported: String = one("SELECT persist.export()").unwrap();
            run("SET persist.keyfile = ''");
            init_with("fresh", &serde_json::json!({"key": exported}));
        });
        let status = json("SELECT persist.status()");
        assert_eq!(status["store"], "fresh");
        assert_eq!(status["session_only"], true);
    }
}
