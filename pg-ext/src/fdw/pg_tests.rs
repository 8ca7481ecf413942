//! Tests of encrypted tables that run inside the server of `cargo pgrx
//! test`. Each test runs in a transaction that pgrx rolls back, so tables
//! and rows tables do not outlive it; keyfiles live in a temporary directory
//! that each test removes.

// As in crate::pg_tests: tests state their expectations with unwrap and
// expect, which clippy does not see as test code under feature pg_test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[pgrx::pg_schema]
mod tests {
    use std::path::PathBuf;

    use persist_core::codec::{self, Value, ValueRef};
    use persist_core::{Location, Purpose};
    use pgrx::pg_sys::panic::CaughtError;
    use pgrx::prelude::*;
    use pgrx::spi::quote_literal;
    use pgrx::{PgSqlErrorCode, pg_sys};

    use crate::session;

    /// A private directory for one test's keyfile, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let suffix: [u8; 8] = persist_core::random::array().unwrap();
            let name: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
            let path = std::env::temp_dir().join(format!("persist-fdwtest-{name}"));
            std::fs::create_dir(&path).unwrap();
            Self(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn run(sql: &str) {
        Spi::run(sql).unwrap_or_else(|err| panic!("{sql}: {err}"));
    }

    fn one<T: FromDatum + IntoDatum>(sql: &str) -> Option<T> {
        Spi::get_one::<T>(sql).unwrap_or_else(|err| panic!("{sql}: {err}"))
    }

    /// Opens store `name` with a keyfile in `dir`.
    fn open_store(dir: &TempDir, name: &str) {
        let keyfile = dir.0.join(format!("{name}.key"));
        run(&format!(
            "SET persist.keyfile = {}",
            quote_literal(keyfile.to_str().unwrap())
        ));
        run(&format!("SELECT persist.init({})", quote_literal(name)));
    }

    /// Returns the schema-qualified rows table of encrypted table `table`.
    fn rows_table(table: &str) -> String {
        let name: String = one(&format!(
            "SELECT option_value FROM pg_foreign_table, pg_options_to_table(ftoptions) \
             WHERE ftrelid = {}::regclass AND option_name = 'rows_table'",
            quote_literal(table)
        ))
        .unwrap();
        format!("persist_rows.{name}")
    }

    /// The SQLSTATE and message of an error raised by SQL.
    #[derive(Debug)]
    struct SqlError {
        code: PgSqlErrorCode,
        message: String,
        detail: Option<String>,
        hint: Option<String>,
    }

    /// Runs `sql` in a subtransaction and returns its error, or `None`.
    fn sql_error(sql: &str) -> Option<SqlError> {
        // SAFETY: the subtransaction pattern of the PL handlers, as in
        // crate::pg_tests: remember the memory context and resource owner,
        // start an internal subtransaction, restore both after it ends.
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
                    detail: report.detail().map(str::to_owned),
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

    fn explain(sql: &str) -> String {
        Spi::connect(|client| {
            let rows = client.select(&format!("EXPLAIN (COSTS OFF) {sql}"), None, &[])?;
            let mut lines = Vec::new();
            for row in rows {
                lines.push(row.get::<String>(1)?.unwrap_or_default());
            }
            Ok::<_, pgrx::spi::Error>(lines.join("\n"))
        })
        .unwrap()
    }

    #[pg_test]
    fn rows_are_sealed_like_sqlite_rows() {
        let dir = TempDir::new();
        open_store(&dir, "fdw-format");
        run(
            "CREATE FOREIGN TABLE note (id bigint NOT NULL, body text, score real) \
             SERVER persist OPTIONS (primary_key 'id')",
        );
        run("INSERT INTO note VALUES (7, 'milk, eggs', 2.5)");
        let rows = rows_table("note");

        let count = one::<i64>(&format!("SELECT count(*) FROM {rows}"));
        assert_eq!(count, Some(1));
        let rid = one::<Vec<u8>>(&format!("SELECT rid FROM {rows}")).unwrap();
        let env = one::<Vec<u8>>(&format!("SELECT env FROM {rows}")).unwrap();
        assert_eq!(rid.len(), 16, "blind record id length");

        // The blind id is the core's record id of the key, and the envelope
        // opens as a Row sealed for the logical name and that id, holding
        // the row codec's named columns.
        session::with_store("test", |store, _| {
            let expected = store.cipher.record_id("note", &[ValueRef::Integer(7)]);
            assert_eq!(rid, expected.as_bytes().to_vec(), "record id");
            let location = Location {
                purpose: Purpose::Row,
                table: "note",
                record_id: &rid,
                context: b"",
            };
            let plaintext = store.cipher.open(&location, &env).unwrap();
            let row = codec::decode_row(&plaintext).unwrap();
            assert_eq!(row.get("id"), Some(&Value::Integer(7)));
            assert_eq!(row.get("body"), Some(&Value::Text("milk, eggs".into())));
            assert_eq!(row.get("score"), Some(&Value::Real(2.5)));
            Ok(())
        })
        .unwrap();

        let has_plaintext = one::<bool>(&format!(
            "SELECT position('milk'::bytea IN env) > 0 FROM {rows}"
        ));
        assert_eq!(has_plaintext, Some(false), "plaintext in the envelope");
        let body = one::<String>("SELECT body FROM note WHERE id = 7");
        assert_eq!(body.as_deref(), Some("milk, eggs"));
    }

    #[pg_test]
    fn primary_key_equality_is_a_lookup() {
        let dir = TempDir::new();
        open_store(&dir, "fdw-plans");
        run(
            "CREATE FOREIGN TABLE item (id integer NOT NULL, name text) \
             SERVER persist OPTIONS (primary_key 'id')",
        );
        run("INSERT INTO item SELECT g, 'item ' || g FROM generate_series(1, 50) g");

        for sql in [
            "SELECT * FROM item WHERE id = 3",
            "SELECT * FROM item WHERE id IN (3, 4)",
            "SELECT * FROM item WHERE id = (SELECT 3)",
        ] {
            let plan = explain(sql);
            assert!(
                plan.contains("Persist Lookup: primary key"),
                "{sql}:\n{plan}"
            );
        }
        for sql in [
            "SELECT * FROM item WHERE name = 'item 3'",
            "SELECT * FROM item WHERE id < 3",
        ] {
            let plan = explain(sql);
            assert!(plan.contains("Persist Scan: all rows"), "{sql}:\n{plan}");
        }

        run("SET plan_cache_mode = force_generic_plan");
        run("PREPARE by_id(integer) AS SELECT name FROM item WHERE id = $1");
        for id in 1..=8 {
            let name = one::<String>(&format!("EXECUTE by_id({id})"));
            assert_eq!(name, Some(format!("item {id}")), "EXECUTE by_id({id})");
        }
        let plan = explain("EXECUTE by_id(9)");
        assert!(
            plan.contains("$1"),
            "generic plan keeps the parameter:\n{plan}"
        );
        assert!(plan.contains("Persist Lookup: primary key"), "{plan}");
        run("DEALLOCATE by_id");

        let names = one::<String>(
            "SELECT string_agg(name, ',' ORDER BY id) FROM item WHERE id IN (2, 4, 99)",
        );
        assert_eq!(names.as_deref(), Some("item 2,item 4"));
    }

    #[pg_test]
    fn constraint_errors_hide_values() {
        let dir = TempDir::new();
        open_store(&dir, "fdw-constraints");
        run(
            "CREATE FOREIGN TABLE person (id integer NOT NULL, name text NOT NULL) \
             SERVER persist OPTIONS (primary_key 'id')",
        );
        run("INSERT INTO person VALUES (1, 'Secret Name')");

        let error = expect_error(
            "INSERT INTO person VALUES (1, 'Other Secret')",
            PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
            "duplicate key value violates unique constraint \"person_pkey\"",
        );
        for text in [
            Some(&error.message),
            error.detail.as_ref(),
            error.hint.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            assert!(!text.contains("Secret"), "value in {text:?}");
            assert!(!text.contains("(1)"), "key in {text:?}");
        }
        expect_error(
            "INSERT INTO person VALUES (2, NULL)",
            PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
            "null value in column \"name\" of relation \"person\" violates not-null constraint",
        );
        expect_error(
            "UPDATE person SET id = NULL",
            PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
            "column \"id\"",
        );
        run("INSERT INTO person VALUES (2, 'Two')");
        expect_error(
            "UPDATE person SET id = 1 WHERE id = 2",
            PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
            "person_pkey",
        );
        let count = one::<i64>("SELECT count(*) FROM person");
        assert_eq!(count, Some(2));
    }

    #[pg_test]
    fn primary_key_update_moves_the_row() {
        let dir = TempDir::new();
        open_store(&dir, "fdw-move");
        run(
            "CREATE FOREIGN TABLE pair (a integer NOT NULL, b text NOT NULL, note text) \
             SERVER persist OPTIONS (primary_key 'a, b')",
        );
        run("INSERT INTO pair VALUES (1, 'x', 'first'), (2, 'y', 'second')");
        let rows = rows_table("pair");

        let before: Vec<u8> = session::with_store("test", |store, _| {
            Ok(store
                .cipher
                .record_id("pair", &[ValueRef::Integer(1), ValueRef::Text("x")])
                .as_bytes()
                .to_vec())
        })
        .unwrap();
        let after: Vec<u8> = session::with_store("test", |store, _| {
            Ok(store
                .cipher
                .record_id("pair", &[ValueRef::Integer(3), ValueRef::Text("x")])
                .as_bytes()
                .to_vec())
        })
        .unwrap();
        let updated = one::<String>("UPDATE pair SET a = 3 WHERE a = 1 AND b = 'x' RETURNING note");
        assert_eq!(updated.as_deref(), Some("first"));

        let has = |rid: &[u8]| {
            one::<bool>(&format!(
                "SELECT EXISTS (SELECT FROM {rows} WHERE rid = '\\x{}'::bytea)",
                rid.iter().map(|b| format!("{b:02x}")).collect::<String>()
            ))
        };
        assert_eq!(has(&before), Some(false), "old blind id removed");
        assert_eq!(has(&after), Some(true), "new blind id stored");
        let note = one::<String>("SELECT note FROM pair WHERE a = 3 AND b = 'x'");
        assert_eq!(note.as_deref(), Some("first"));
        let count = one::<i64>(&format!("SELECT count(*) FROM {rows}"));
        assert_eq!(count, Some(2));
    }

    #[pg_test]
    fn store_must_be_open_and_match() {
        let dir = TempDir::new();
        open_store(&dir, "fdw-store-a");
        run(
            "CREATE FOREIGN TABLE secret (id integer NOT NULL, body text) \
             SERVER persist OPTIONS (primary_key 'id')",
        );
        run("INSERT INTO secret VALUES (1, 'a')");

        run("SELECT persist.close()");
        let error = expect_error(
            "SELECT * FROM secret WHERE id = 1",
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "no Persist store is open",
        );
        assert!(
            error.hint.as_deref().unwrap_or("").contains("persist.init"),
            "{error:?}"
        );
        expect_error(
            "CREATE FOREIGN TABLE other (id integer) SERVER persist OPTIONS (primary_key 'id')",
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "no Persist store is open",
        );

        open_store(&dir, "fdw-store-b");
        expect_error(
            "INSERT INTO secret VALUES (2, 'b')",
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "belongs to store id",
        );
        open_store(&dir, "fdw-store-a");
        let body = one::<String>("SELECT body FROM secret WHERE id = 1");
        assert_eq!(body.as_deref(), Some("a"));
    }

    #[pg_test]
    fn renamed_and_added_columns_keep_values() {
        let dir = TempDir::new();
        open_store(&dir, "fdw-columns");
        run("CREATE FOREIGN TABLE t (id integer NOT NULL, v text) \
             SERVER persist OPTIONS (primary_key 'id')");
        run("INSERT INTO t VALUES (1, 'one')");
        run("ALTER FOREIGN TABLE t RENAME COLUMN v TO renamed");
        run("ALTER FOREIGN TABLE t ADD COLUMN extra integer");
        let value = one::<String>("SELECT renamed FROM t WHERE id = 1");
        assert_eq!(value.as_deref(), Some("one"));
        let extra = one::<i32>("SELECT extra FROM t WHERE id = 1");
        assert_eq!(extra, None);
        let option = one::<String>(
            "SELECT array_to_string(attfdwoptions, ',') FROM pg_attribute \
             WHERE attrelid = 't'::regclass AND attname = 'extra'",
        );
        assert_eq!(option.as_deref(), Some("column_name=extra#3"));
        run("UPDATE t SET extra = 5 WHERE id = 1");
        let extra = one::<i32>("SELECT extra FROM t WHERE id = 1");
        assert_eq!(extra, Some(5));
    }

    #[pg_test]
    fn drop_removes_the_rows_table() {
        let dir = TempDir::new();
        open_store(&dir, "fdw-drop");
        run("CREATE FOREIGN TABLE gone (id integer NOT NULL) \
             SERVER persist OPTIONS (primary_key 'id')");
        let rows = rows_table("gone");
        let exists = |name: &str| {
            one::<bool>(&format!(
                "SELECT to_regclass({}) IS NOT NULL",
                quote_literal(name)
            ))
        };
        assert_eq!(exists(&rows), Some(true));
        run("DROP FOREIGN TABLE gone");
        assert_eq!(exists(&rows), Some(false));
    }
}
