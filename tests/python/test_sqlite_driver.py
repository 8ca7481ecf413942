"""Tests of the Persist SQLite extension through Python's sqlite3 module.

Run them with a Python whose sqlite3 module can load extensions, such as
Debian's /usr/bin/python3, and the path of the built extension:

    cargo build --release -p persist-sqlite
    PERSIST_EXTENSION=target/release/libpersist.so \\
        /usr/bin/python3 -m unittest discover -s tests/python -v

Each test works in a temporary directory of its own, with PERSIST_KEY_DIR
pointing into it and DBUS_SESSION_BUS_ADDRESS and XDG_RUNTIME_DIR removed,
so device keys always go to keyfiles there and the OS keychain is never
used. The memory test starts fresh Python processes to read their peak RSS.
"""

import json
import math
import os
import shutil
import sqlite3
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import unittest

EXTENSION = os.path.abspath(os.environ["PERSIST_EXTENSION"]) if os.environ.get("PERSIST_EXTENSION") else ""

# Flags reported by pragma_function_list (sqlite3.h).
DETERMINISTIC = 0x000000800
DIRECTONLY = 0x000080000
INNOCUOUS = 0x000200000

MAX_BLOB = 67108858
"""Largest BLOB persist_encrypt accepts: 64 MiB minus the 6 bytes of its encoding."""


def setUpModule():
    if not EXTENSION:
        raise RuntimeError(
            "PERSIST_EXTENSION is not set; build the extension with "
            "`cargo build --release -p persist-sqlite` and run "
            "PERSIST_EXTENSION=target/release/libpersist.so "
            "/usr/bin/python3 -m unittest discover -s tests/python -v"
        )
    if not (os.path.isfile(EXTENSION) or os.path.isfile(EXTENSION + ".so")):
        raise RuntimeError(
            f"PERSIST_EXTENSION={EXTENSION} does not exist; build it with "
            "`cargo build --release -p persist-sqlite`"
        )
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        raise RuntimeError(
            f"{sys.executable}: this Python's sqlite3 module cannot load "
            "extensions; run the tests with Debian's /usr/bin/python3"
        )
    os.environ.pop("DBUS_SESSION_BUS_ADDRESS", None)
    os.environ.pop("XDG_RUNTIME_DIR", None)


def load(path):
    """Open a connection to `path` in autocommit mode with the extension loaded."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.enable_load_extension(True)
    conn.load_extension(EXTENSION)
    conn.enable_load_extension(False)
    return conn


def float_bits(value):
    return struct.pack("<d", value)


def same_value(a, b):
    """Tell whether two values have the same type and bytes (bits for floats)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return float_bits(a) == float_bits(b)
    return a == b


def status(conn):
    return json.loads(conn.execute("SELECT persist_status()").fetchone()[0])


def envelopes_opened(conn):
    return status(conn)["counters"]["envelopes_opened"]


# Values of every storage class, as Python binds them: INTEGER, REAL, TEXT,
# BLOB and NULL, with the edge cases of each.
ROUND_TRIP_VALUES = [
    0,
    1,
    -1,
    2**63 - 1,
    -(2**63),
    0.0,
    -0.0,
    0.1,
    math.inf,
    -math.inf,
    5e-324,
    1.7976931348623157e308,
    "",
    "text",
    "Zoë 日本語 😀",
    "a\x00b",
    b"",
    b"\x00",
    b"\xff\xfe\x80\xc3\x28",
    bytes(range(256)) * 4,
    None,
]


class PersistTestCase(unittest.TestCase):
    """A temporary directory with PERSIST_KEY_DIR inside it, removed afterwards."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="persist-python-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.key_dir = os.path.join(self.dir, "keys")
        previous = os.environ.get("PERSIST_KEY_DIR")
        os.environ["PERSIST_KEY_DIR"] = self.key_dir
        if previous is None:
            self.addCleanup(os.environ.pop, "PERSIST_KEY_DIR", None)
        else:
            self.addCleanup(os.environ.__setitem__, "PERSIST_KEY_DIR", previous)

    def path(self, name):
        return os.path.join(self.dir, name)

    def connect(self, name="test.db"):
        conn = load(self.path(name))
        self.addCleanup(conn.close)
        return conn

    def open_store(self, name="test.db", store="test", **options):
        """Connect to `name`, open `store` and return the connection and the persist_init report."""
        conn = self.connect(name)
        report = conn.execute(
            "SELECT persist_init(?, ?)", (store, json.dumps(options))
        ).fetchone()[0]
        return conn, json.loads(report)

    def assertFails(self, conn, sql, params, error, message):
        """Assert that `sql` raises `error` with exactly `message`."""
        with self.assertRaises(error) as caught:
            conn.execute(sql, params).fetchall()
        self.assertEqual(str(caught.exception), message)
        return caught.exception


class FunctionListTest(PersistTestCase):
    EXPECTED = {
        ("persist_close", 0, DIRECTONLY),
        ("persist_decrypt", -1, 0),
        ("persist_encrypt", -1, 0),
        ("persist_export", -1, DIRECTONLY),
        ("persist_init", -1, DIRECTONLY),
        ("persist_quarantined", 0, 0),
        ("persist_accept", -1, DIRECTONLY),
        ("persist_admit", -1, DIRECTONLY),
        ("persist_invite", -1, DIRECTONLY),
        ("persist_join", -1, DIRECTONLY),
        ("persist_reencrypt", -1, DIRECTONLY),
        ("persist_retire", 1, DIRECTONLY),
        ("persist_rotate", 0, DIRECTONLY),
        ("persist_status", 0, 0),
        ("persist_sync", 1, DIRECTONLY),
        ("persist_version", 0, DETERMINISTIC | INNOCUOUS),
    }

    def functions(self, conn):
        rows = conn.execute(
            "SELECT name, narg, flags FROM pragma_function_list "
            "WHERE name LIKE 'persist%' ORDER BY name, narg"
        ).fetchall()
        return set(rows)

    def test_nothing_before_loading(self):
        conn = sqlite3.connect(self.path("test.db"))
        self.addCleanup(conn.close)
        self.assertEqual(self.functions(conn), set())
        modules = conn.execute(
            "SELECT name FROM pragma_module_list WHERE name = 'persist'"
        ).fetchall()
        self.assertEqual(modules, [])

    def test_functions_after_loading(self):
        conn = self.connect()
        self.assertEqual(self.functions(conn), self.EXPECTED)
        kinds = conn.execute(
            "SELECT DISTINCT type, enc, builtin FROM pragma_function_list "
            "WHERE name LIKE 'persist%'"
        ).fetchall()
        self.assertEqual(kinds, [("s", "utf8", 0)])

    def test_encrypt_is_not_deterministic(self):
        flags = dict(((name, flags) for name, _, flags in self.functions(self.connect())))
        self.assertEqual(flags["persist_encrypt"] & DETERMINISTIC, 0)
        self.assertEqual(flags["persist_decrypt"] & DETERMINISTIC, 0)
        self.assertEqual(flags["persist_status"] & DETERMINISTIC, 0)

    def test_version_is_deterministic(self):
        flags = dict(((name, flags) for name, _, flags in self.functions(self.connect())))
        self.assertEqual(flags["persist_version"] & DETERMINISTIC, DETERMINISTIC)
        self.assertEqual(flags["persist_version"] & INNOCUOUS, INNOCUOUS)

    def test_key_functions_are_direct_only(self):
        flags = dict(((name, flags) for name, _, flags in self.functions(self.connect())))
        for name in (
            "persist_init",
            "persist_export",
            "persist_close",
            "persist_sync",
            "persist_rotate",
            "persist_reencrypt",
            "persist_retire",
            "persist_invite",
            "persist_accept",
            "persist_admit",
            "persist_join",
        ):
            with self.subTest(name):
                self.assertEqual(flags[name] & DIRECTONLY, DIRECTONLY)

    def test_module_after_loading(self):
        conn = self.connect()
        modules = conn.execute(
            "SELECT name FROM pragma_module_list WHERE name = 'persist'"
        ).fetchall()
        self.assertEqual(modules, [("persist",)])

    def test_loading_is_per_connection(self):
        self.connect()
        other = sqlite3.connect(self.path("other.db"))
        self.addCleanup(other.close)
        self.assertEqual(self.functions(other), set())

    def test_version_text(self):
        conn = self.connect()
        version = conn.execute("SELECT persist_version()").fetchone()[0]
        self.assertRegex(version, r"^\d+\.\d+\.\d+")


class RoundTripTest(PersistTestCase):
    def setUp(self):
        super().setUp()
        self.conn, _ = self.open_store()
        self.conn.execute(
            "CREATE VIRTUAL TABLE t USING persist(id INTEGER PRIMARY KEY, v, r REAL)"
        )

    def test_table_round_trip(self):
        for key, value in enumerate(ROUND_TRIP_VALUES):
            with self.subTest(value=value):
                self.conn.execute("INSERT INTO t(id, v) VALUES (?, ?)", (key, value))
                (stored,) = self.conn.execute(
                    "SELECT v FROM t WHERE id = ?", (key,)
                ).fetchone()
                self.assertTrue(same_value(stored, value), f"stored {stored!r}")

    def test_table_scan_round_trip(self):
        self.conn.executemany(
            "INSERT INTO t(id, v) VALUES (?, ?)", enumerate(ROUND_TRIP_VALUES)
        )
        rows = self.conn.execute("SELECT id, v FROM t ORDER BY id").fetchall()
        self.assertEqual([key for key, _ in rows], list(range(len(ROUND_TRIP_VALUES))))
        for key, stored in rows:
            value = ROUND_TRIP_VALUES[key]
            with self.subTest(value=value):
                self.assertTrue(same_value(stored, value), f"stored {stored!r}")

    def test_function_round_trip(self):
        for value in ROUND_TRIP_VALUES:
            for context in (None, "row 1", b"\x00\xff"):
                with self.subTest(value=value, context=context):
                    (opened,) = self.conn.execute(
                        "SELECT persist_decrypt(persist_encrypt(?1, ?2), ?2)",
                        (value, context),
                    ).fetchone()
                    self.assertTrue(same_value(opened, value), f"opened {opened!r}")

    def test_negative_zero_bits(self):
        self.conn.execute("INSERT INTO t VALUES (1, ?, ?)", (-0.0, -0.0))
        v, r = self.conn.execute("SELECT v, r FROM t WHERE id = 1").fetchone()
        self.assertEqual(float_bits(v), float_bits(-0.0))
        self.assertEqual(float_bits(r), float_bits(-0.0))
        (opened,) = self.conn.execute(
            "SELECT persist_decrypt(persist_encrypt(?))", (-0.0,)
        ).fetchone()
        self.assertEqual(float_bits(opened), float_bits(-0.0))

    def test_nan_becomes_null(self):
        # sqlite3_bind_double binds a NaN as NULL before the extension gets
        # the value, so the encrypted table must store NULL as a plain one does.
        self.conn.execute("CREATE TABLE plain(id INTEGER PRIMARY KEY, v, r REAL)")
        for table in ("t", "plain"):
            with self.subTest(table=table):
                self.conn.execute(f"INSERT INTO {table} VALUES (1, ?, ?)", (math.nan, math.nan))
                row = self.conn.execute(
                    f"SELECT v, typeof(v), r, typeof(r) FROM {table} WHERE id = 1"
                ).fetchone()
                self.assertEqual(row, (None, "null", None, "null"))
        (sealed,) = self.conn.execute("SELECT persist_encrypt(?)", (math.nan,)).fetchone()
        self.assertIsNone(sealed)

    def test_nan_in_not_null_column(self):
        self.conn.execute("CREATE VIRTUAL TABLE n USING persist(id INTEGER PRIMARY KEY, r REAL NOT NULL)")
        self.assertFails(
            self.conn, "INSERT INTO n VALUES (1, ?)", (math.nan,),
            sqlite3.IntegrityError, "NOT NULL constraint failed: n.r",
        )

    def test_ten_megabyte_blob(self):
        blob = os.urandom(10 * 1024 * 1024)
        self.conn.execute("INSERT INTO t(id, v) VALUES (1, ?)", (blob,))
        (stored,) = self.conn.execute("SELECT v FROM t WHERE id = 1").fetchone()
        self.assertEqual(stored, blob)
        (opened,) = self.conn.execute(
            "SELECT persist_decrypt(persist_encrypt(?))", (blob,)
        ).fetchone()
        self.assertEqual(opened, blob)

    def test_ten_megabyte_text(self):
        text = "é" * (5 * 1024 * 1024)
        self.conn.execute("INSERT INTO t(id, v) VALUES (1, ?)", (text,))
        (stored,) = self.conn.execute("SELECT v FROM t WHERE id = 1").fetchone()
        self.assertEqual(stored, text)

    def test_largest_value(self):
        blob = bytes(MAX_BLOB)
        (length,) = self.conn.execute(
            "SELECT length(persist_decrypt(persist_encrypt(?)))", (blob,)
        ).fetchone()
        self.assertEqual(length, MAX_BLOB)

    def test_over_limit_message_gives_value_size(self):
        # The limit applies to the encoded value, which is 6 bytes longer than
        # the BLOB. The message must still give the size of the value passed
        # in, because that is the size the caller can check.
        size = MAX_BLOB + 2
        with self.assertRaises(sqlite3.OperationalError) as caught:
            self.conn.execute("SELECT persist_encrypt(zeroblob(?))", (size,)).fetchone()
        message = str(caught.exception)
        self.assertIn("persist_encrypt: argument 1 (value)", message)
        self.assertIn(f"{size} bytes", message)

    def test_encryption_is_randomized(self):
        a, b = self.conn.execute(
            "SELECT persist_encrypt('same'), persist_encrypt('same')"
        ).fetchone()
        self.assertNotEqual(a, b)
        self.assertEqual(len(a), len(b))


class ErrorTest(PersistTestCase):
    def setUp(self):
        super().setUp()
        self.conn, _ = self.open_store()
        self.conn.execute(
            "CREATE VIRTUAL TABLE t USING persist(id INTEGER PRIMARY KEY, name TEXT NOT NULL)"
        )
        self.conn.execute(
            "CREATE VIRTUAL TABLE c USING persist(a TEXT, b INTEGER, v, PRIMARY KEY (a, b))"
        )
        self.conn.execute("INSERT INTO t VALUES (1, 'one')")
        self.conn.execute("INSERT INTO c VALUES ('x', 1, 'v')")

    def test_constraint_errors(self):
        cases = [
            ("INSERT INTO t VALUES (1, 'again')", (),
             "UNIQUE constraint failed: t.id", "SQLITE_CONSTRAINT_PRIMARYKEY"),
            ("INSERT INTO t VALUES (2, NULL)", (),
             "NOT NULL constraint failed: t.name", "SQLITE_CONSTRAINT_NOTNULL"),
            ("UPDATE t SET name = ? WHERE id = 1", (None,),
             "NOT NULL constraint failed: t.name", "SQLITE_CONSTRAINT_NOTNULL"),
            ("INSERT INTO c VALUES ('x', 1, 'w')", (),
             "UNIQUE constraint failed: c.a, c.b", "SQLITE_CONSTRAINT_PRIMARYKEY"),
            ("INSERT INTO c VALUES (?, 2, 'w')", (None,),
             "NOT NULL constraint failed: c.a", "SQLITE_CONSTRAINT_NOTNULL"),
        ]
        for sql, params, message, code in cases:
            with self.subTest(sql=sql):
                error = self.assertFails(self.conn, sql, params, sqlite3.IntegrityError, message)
                self.assertEqual(error.sqlite_errorname, code)

    def test_constraint_codes_match_plain_sqlite(self):
        self.conn.execute("CREATE TABLE p(id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        self.conn.execute("INSERT INTO p VALUES (1, 'one')")
        for template in ("INSERT INTO {} VALUES (1, 'again')", "INSERT INTO {} VALUES (2, NULL)"):
            with self.subTest(template=template):
                codes = []
                for table in ("t", "p"):
                    with self.assertRaises(sqlite3.IntegrityError) as caught:
                        self.conn.execute(template.format(table))
                    codes.append(caught.exception.sqlite_errorcode)
                self.assertEqual(codes[0], codes[1])

    def test_operational_errors(self):
        cases = [
            ("SELECT persist_init(?)", (1,),
             "persist_init: argument 1 (store) must be TEXT, got INTEGER"),
            ("SELECT persist_init('other')", (),
             'persist_init: store "test" is already open on this connection; '
             "a database holds one store"),
            ("SELECT persist_encrypt(?, ?)", (1, 2),
             "persist_encrypt: argument 2 (context) must be TEXT, BLOB or NULL, got INTEGER"),
            ("SELECT persist_decrypt(?)", ("text",),
             "persist_decrypt: argument 1 (envelope) must be a BLOB made by "
             "persist_encrypt, got TEXT"),
            ("SELECT persist_decrypt(?)", (b"\x01",),
             "persist_decrypt: argument 1 (envelope): malformed envelope: 1 bytes, "
             "shorter than the minimum of 34"),
            ("SELECT persist_decrypt(persist_encrypt(1, 'a'), 'b')", (),
             "persist_decrypt: argument 1 (envelope): authentication failed for "
             "envelope: it was modified, moved to another place, or sealed under another key"),
            ("SELECT persist_encrypt()", (),
             "persist_encrypt takes 1 to 2 arguments, got 0; usage: persist_encrypt(value [, context])"),
            ("SELECT persist_status(1)", (),
             "wrong number of arguments to function persist_status()"),
            ("SELECT persist_export(?)", ("",),
             "persist_export: argument 1 (passphrase) is empty; call persist_export() "
             "without arguments for an export without a passphrase"),
            ("INSERT INTO t(rowid, id, name) VALUES (5, 5, 'x')", (),
             "encrypted table t: setting the rowid is not supported"),
            ("CREATE VIRTUAL TABLE u USING persist(a TEXT UNIQUE)", (),
             'persist table u: UNIQUE is not supported by persist tables; only PRIMARY '
             'KEY, NOT NULL and NULL are in "a TEXT UNIQUE"'),
        ]
        for sql, params, message in cases:
            with self.subTest(sql=sql):
                error = self.assertFails(self.conn, sql, params, sqlite3.OperationalError, message)
                self.assertEqual(error.sqlite_errorname, "SQLITE_ERROR")

    def test_invalid_utf8_names_table_and_column(self):
        # TEXT that is not UTF-8 is rejected, and the message must name the
        # table and the column the value was for.
        with self.assertRaises(sqlite3.OperationalError) as caught:
            self.conn.execute("INSERT INTO t VALUES (3, CAST(x'ff' AS TEXT))")
        message = str(caught.exception)
        self.assertIn("TEXT value is not valid UTF-8", message)
        self.assertRegex(message, r"encrypted table t\b")
        self.assertIn("name", message)

    def test_no_store_open(self):
        conn = self.connect("other.db")
        message = (
            "no Persist store is open on this connection; call "
            "SELECT persist_init('<store name>') first"
        )
        for sql in ("SELECT persist_encrypt(1)", "SELECT persist_decrypt(x'00')", "SELECT persist_export()"):
            with self.subTest(sql=sql):
                self.assertFails(conn, sql, (), sqlite3.OperationalError, message)

    def test_duplicate_option_names_rejected(self):
        # Two "keyfile" fields are ambiguous: whichever is used, the caller
        # may have meant the other, so persist_init must fail and create
        # nothing.
        conn = self.connect("dup.db")
        first, second = self.path("first.key"), self.path("second.key")
        with self.assertRaises(sqlite3.OperationalError) as caught:
            conn.execute(
                "SELECT persist_init('dup', ?)",
                (f'{{"keyfile": "{first}", "keyfile": "{second}"}}',),
            ).fetchone()
        self.assertIn("keyfile", str(caught.exception))
        tables = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
        self.assertEqual(tables, 0)
        self.assertFalse(os.path.exists(first))
        self.assertFalse(os.path.exists(second))

    def test_init_inside_write_statement(self):
        # CREATE TABLE ... AS SELECT persist_init(...) must either work or
        # fail with a message that names persist_init, not with the "cannot
        # open savepoint" error of an internal statement.
        conn = self.connect("write.db")
        try:
            conn.execute("CREATE TABLE report AS SELECT persist_init('write') AS r")
        except sqlite3.OperationalError as error:
            self.assertIn("persist_init", str(error))
        else:
            (report,) = conn.execute("SELECT r FROM report").fetchone()
            self.assertTrue(json.loads(report)["created"])


class ParameterTest(PersistTestCase):
    def setUp(self):
        super().setUp()
        self.conn, _ = self.open_store()
        self.conn.execute(
            "CREATE VIRTUAL TABLE items USING persist(id INTEGER PRIMARY KEY, name TEXT, price REAL)"
        )
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "INSERT INTO items VALUES (?, ?, ?)",
            ((i, f"item {i}", i / 4) for i in range(1, 1001)),
        )
        self.conn.execute("COMMIT")

    def test_executemany_inserted_all(self):
        (count,) = self.conn.execute("SELECT count(*) FROM items").fetchone()
        self.assertEqual(count, 1000)

    def test_lookup_with_bound_key(self):
        for key in (500, "500", 500.0):
            with self.subTest(key=key):
                before = envelopes_opened(self.conn)
                rows = self.conn.execute(
                    "SELECT name, price FROM items WHERE id = ?", (key,)
                ).fetchall()
                self.assertEqual(rows, [("item 500", 125.0)])
                self.assertEqual(envelopes_opened(self.conn) - before, 1)

    def test_lookup_with_named_parameter(self):
        before = envelopes_opened(self.conn)
        rows = self.conn.execute(
            "SELECT name FROM items WHERE id = :id", {"id": 42}
        ).fetchall()
        self.assertEqual(rows, [("item 42",)])
        self.assertEqual(envelopes_opened(self.conn) - before, 1)

    def test_lookup_misses(self):
        for key in (None, 5000, 42.5, "forty-two", b"42"):
            with self.subTest(key=key):
                before = envelopes_opened(self.conn)
                rows = self.conn.execute(
                    "SELECT name FROM items WHERE id = ?", (key,)
                ).fetchall()
                self.assertEqual(rows, [])
                self.assertEqual(envelopes_opened(self.conn) - before, 0)

    def test_in_list_with_parameters(self):
        before = envelopes_opened(self.conn)
        rows = self.conn.execute(
            "SELECT id FROM items WHERE id IN (?, ?, ?) ORDER BY id", (3, 30, 3000)
        ).fetchall()
        self.assertEqual(rows, [(3,), (30,)])
        self.assertEqual(envelopes_opened(self.conn) - before, 2)

    def test_composite_key_with_parameters(self):
        self.conn.execute(
            "CREATE VIRTUAL TABLE stock USING persist(store TEXT, item INTEGER, qty INTEGER, PRIMARY KEY (store, item))"
        )
        self.conn.executemany(
            "INSERT INTO stock VALUES (?, ?, ?)",
            ((f"s{i % 3}", i, i % 7) for i in range(300)),
        )
        before = envelopes_opened(self.conn)
        rows = self.conn.execute(
            "SELECT qty FROM stock WHERE store = ? AND item = ?", ("s1", 10)
        ).fetchall()
        self.assertEqual(rows, [(3,)])
        self.assertEqual(envelopes_opened(self.conn) - before, 1)

    def test_update_and_delete_with_parameters(self):
        self.conn.executemany(
            "UPDATE items SET price = ? WHERE id = ?", ((0.5, i) for i in range(1, 11))
        )
        self.conn.executemany("DELETE FROM items WHERE id = ?", ((i,) for i in range(11, 21)))
        (changed,) = self.conn.execute(
            "SELECT count(*) FROM items WHERE price = 0.5"
        ).fetchone()
        (count,) = self.conn.execute("SELECT count(*) FROM items").fetchone()
        self.assertEqual(changed, 10)
        self.assertEqual(count, 990)

    def test_failed_executemany_rolls_back(self):
        conn = sqlite3.connect(self.path("test.db"))  # implicit transactions
        self.addCleanup(conn.close)
        conn.enable_load_extension(True)
        conn.load_extension(EXTENSION)
        conn.execute("SELECT persist_init('test')")
        with self.assertRaises(sqlite3.IntegrityError):
            conn.executemany(
                "INSERT INTO items VALUES (?, 'new', 0)", [(2001,), (2002,), (1,)]
            )
        conn.rollback()
        (count,) = conn.execute("SELECT count(*) FROM items WHERE id > 2000").fetchone()
        self.assertEqual(count, 0)


class ExportImportTest(PersistTestCase):
    def setUp(self):
        super().setUp()
        self.first, self.first_report = self.open_store(
            "first.db", keyfile=self.path("keys/first.key")
        )
        self.first.execute("CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT)")
        self.first.execute("INSERT INTO notes VALUES (1, 'from the first database')")
        self.raw, self.protected, self.sealed = self.first.execute(
            "SELECT persist_export(), persist_export('correct horse'), persist_encrypt('sealed', 'ctx')"
        ).fetchone()

    def test_export_text(self):
        self.assertTrue(self.raw.startswith("PERSIST-KEY-1"))
        self.assertTrue(self.protected.startswith("PERSIST-KEY-1"))
        self.assertNotEqual(self.raw, self.protected)
        (again,) = self.first.execute("SELECT persist_export()").fetchone()
        self.assertEqual(again, self.raw)

    def test_import_raw_into_second_database(self):
        second, report = self.open_store(
            "second.db", key=self.raw, keyfile=self.path("keys/second.key")
        )
        self.assertTrue(report["created"])
        self.assertTrue(report["imported"])
        self.assertEqual(report["store_id"], self.first_report["store_id"])
        self.assertNotEqual(report["device_id"], self.first_report["device_id"])
        (opened,) = second.execute(
            "SELECT persist_decrypt(?, 'ctx')", (self.sealed,)
        ).fetchone()
        self.assertEqual(opened, "sealed")
        second.execute("ATTACH ? AS first", (self.path("first.db"),))
        rows = second.execute("SELECT body FROM first.notes WHERE id = 1").fetchall()
        self.assertEqual(rows, [("from the first database",)])

    def test_import_with_passphrase(self):
        second, report = self.open_store(
            "second.db", key=self.protected, passphrase="correct horse",
            keyfile=self.path("keys/second.key"),
        )
        self.assertTrue(report["imported"])
        (opened,) = second.execute(
            "SELECT persist_decrypt(?, 'ctx')", (self.sealed,)
        ).fetchone()
        self.assertEqual(opened, "sealed")

    def test_copied_file_on_new_device(self):
        shutil.copy(self.path("first.db"), self.path("copy.db"))
        new_key = self.path("keys/new-device.key")
        conn, report = self.open_store("copy.db", key=self.raw, keyfile=new_key)
        self.assertFalse(report["created"])
        self.assertTrue(report["imported"])
        self.assertTrue(report["device_key_created"])
        self.assertEqual(conn.execute("SELECT body FROM notes").fetchall(), [("from the first database",)])
        conn.close()
        # Afterwards each device's keyfile alone opens the copy.
        for keyfile in (new_key, self.path("keys/first.key")):
            with self.subTest(keyfile=keyfile):
                again, report = self.open_store("copy.db", keyfile=keyfile)
                self.assertFalse(report["imported"])
                self.assertEqual(again.execute("SELECT count(*) FROM notes").fetchone(), (1,))

    def test_wrong_passphrase(self):
        conn = self.connect("second.db")
        for options, message in [
            ({"key": self.protected}, "this key export is protected by a passphrase; give the passphrase to import it"),
            ({"key": self.protected, "passphrase": "wrong"}, "wrong passphrase for this key export, or the export was modified"),
        ]:
            with self.subTest(options=sorted(options)):
                options["keyfile"] = self.path("keys/second.key")
                self.assertFails(
                    conn, "SELECT persist_init('test', ?)", (json.dumps(options),),
                    sqlite3.OperationalError, 'persist_init: option "key": ' + message,
                )
        self.assertEqual(conn.execute("SELECT count(*) FROM sqlite_schema").fetchone(), (0,))
        self.assertFalse(os.path.exists(self.path("keys/second.key")))

    def test_other_keyfile_rejected(self):
        self.open_store("other.db", keyfile=self.path("keys/other.key"))
        conn = self.connect("first.db")
        with self.assertRaises(sqlite3.OperationalError) as caught:
            conn.execute(
                "SELECT persist_init('test', ?)",
                (json.dumps({"keyfile": self.path("keys/other.key")}),),
            )
        self.assertIn('does not open store "test" in this database', str(caught.exception))
        self.assertFalse(status(conn)["open"])

    def test_other_store_export_rejected(self):
        other, _ = self.open_store("other.db", keyfile=self.path("keys/other.key"))
        (other_export,) = other.execute("SELECT persist_export()").fetchone()
        conn = self.connect("first.db")
        with self.assertRaises(sqlite3.OperationalError) as caught:
            conn.execute(
                "SELECT persist_init('test', ?)", (json.dumps({"key": other_export}),)
            )
        self.assertRegex(
            str(caught.exception),
            r"^persist_init: the imported key belongs to store id [0-9a-f]{32}, "
            r"but this database holds store id [0-9a-f]{32}$",
        )

    def test_other_store_envelope_rejected(self):
        other, _ = self.open_store("other.db", keyfile=self.path("keys/other.key"))
        with self.assertRaises(sqlite3.OperationalError) as caught:
            other.execute("SELECT persist_decrypt(?, 'ctx')", (self.sealed,)).fetchone()
        self.assertRegex(
            str(caught.exception),
            r"^persist_decrypt: argument 1 \(envelope\): unknown key id \d+: ",
        )

    def test_tables_of_other_store_unreadable(self):
        other, _ = self.open_store("other.db", keyfile=self.path("keys/other.key"))
        other.execute("ATTACH ? AS first", (self.path("first.db"),))
        with self.assertRaises(sqlite3.OperationalError) as caught:
            other.execute("SELECT body FROM first.notes").fetchall()
        self.assertRegex(
            str(caught.exception),
            r"^encrypted table notes, row -?\d+: the stored envelope cannot be "
            r"decrypted: unknown key id \d+",
        )


class TwoConnectionTest(PersistTestCase):
    def setUp(self):
        super().setUp()
        self.writer, _ = self.open_store()
        self.writer.execute("CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT)")
        self.reader, report = self.open_store()
        self.assertFalse(report["created"])

    def test_reader_sees_only_committed_rows(self):
        self.writer.execute("BEGIN")
        self.writer.execute("INSERT INTO notes VALUES (1, 'draft')")
        self.assertEqual(self.reader.execute("SELECT count(*) FROM notes").fetchone(), (0,))
        self.assertEqual(self.reader.execute("SELECT body FROM notes WHERE id = 1").fetchall(), [])
        self.writer.execute("COMMIT")
        self.assertEqual(self.reader.execute("SELECT body FROM notes WHERE id = 1").fetchall(), [("draft",)])
        self.writer.execute("UPDATE notes SET body = 'final' WHERE id = 1")
        self.assertEqual(self.reader.execute("SELECT body FROM notes").fetchall(), [("final",)])
        self.writer.execute("DELETE FROM notes WHERE id = 1")
        self.assertEqual(self.reader.execute("SELECT count(*) FROM notes").fetchone(), (0,))

    def test_integer_keys_across_connections(self):
        keys = []
        for conn in (self.writer, self.reader, self.writer, self.reader):
            conn.execute("INSERT INTO notes(body) VALUES ('auto')")
            keys.append(conn.execute("SELECT max(id) FROM notes").fetchone()[0])
        self.assertEqual(keys, [1, 2, 3, 4])
        (count,) = self.reader.execute("SELECT count(DISTINCT id) FROM notes").fetchone()
        self.assertEqual(count, 4)

    def test_tables_created_by_other_connection(self):
        self.writer.execute("CREATE VIRTUAL TABLE later USING persist(k TEXT PRIMARY KEY, v)")
        self.writer.execute("INSERT INTO later VALUES ('a', 1)")
        self.assertEqual(self.reader.execute("SELECT v FROM later WHERE k = 'a'").fetchall(), [(1,)])


class CloseTest(PersistTestCase):
    def setUp(self):
        super().setUp()
        self.conn, _ = self.open_store()
        self.conn.execute("CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT)")
        self.conn.executemany("INSERT INTO notes VALUES (?, 'body')", ((i,) for i in range(100)))

    def test_close_drops_keys(self):
        self.assertEqual(self.conn.execute("SELECT persist_close()").fetchone(), (1,))
        self.assertFalse(status(self.conn)["open"])
        self.assertNotIn("keys", status(self.conn))
        table_message = (
            "encrypted table notes needs an open store: call SELECT "
            "persist_init('<store name>') on this connection first"
        )
        for sql in (
            "SELECT * FROM notes",
            "SELECT body FROM notes WHERE id = 1",
            "INSERT INTO notes VALUES (500, 'x')",
            "UPDATE notes SET body = 'x'",
            "DELETE FROM notes",
        ):
            with self.subTest(sql=sql):
                self.assertFails(self.conn, sql, (), sqlite3.OperationalError, table_message)
        self.assertFails(
            self.conn, "SELECT persist_encrypt(1)", (), sqlite3.OperationalError,
            "no Persist store is open on this connection; call SELECT "
            "persist_init('<store name>') first",
        )

    def test_close_twice(self):
        self.assertEqual(self.conn.execute("SELECT persist_close()").fetchone(), (1,))
        self.assertEqual(self.conn.execute("SELECT persist_close()").fetchone(), (0,))

    def test_close_during_scan(self):
        cursor = self.conn.execute("SELECT body FROM notes")
        self.assertEqual(cursor.fetchone(), ("body",))
        self.conn.execute("SELECT persist_close()")
        with self.assertRaises(sqlite3.OperationalError) as caught:
            cursor.fetchall()
        self.assertIn("needs an open store", str(caught.exception))

    def test_reopen_after_close(self):
        self.conn.execute("SELECT persist_close()")
        report = json.loads(self.conn.execute("SELECT persist_init('test')").fetchone()[0])
        self.assertFalse(report["created"])
        self.assertEqual(self.conn.execute("SELECT count(*) FROM notes").fetchone(), (100,))


class KeyfileTest(PersistTestCase):
    def mode(self, path):
        return stat.S_IMODE(os.stat(path).st_mode)

    def check_modes(self, umask):
        previous = os.umask(umask)
        try:
            _, report = self.open_store()
        finally:
            os.umask(previous)
        keyfile = os.path.join(self.key_dir, "test.key")
        self.assertEqual(report["key_location"], f"keyfile {keyfile}")
        self.assertTrue(report["device_key_created"])
        self.assertEqual(self.mode(self.key_dir), 0o700)
        self.assertEqual(self.mode(keyfile), 0o600)
        with open(keyfile, "rb") as file:
            text = file.read()
        self.assertEqual(len(text), 96)
        self.assertRegex(text, rb"^persist-device-key-v1 [0-9a-f]{64} [0-9a-f]{8}\n$")

    def test_modes_with_default_umask(self):
        self.check_modes(0o022)

    def test_modes_with_open_umask(self):
        self.check_modes(0o000)

    def test_explicit_keyfile_in_new_directories(self):
        keyfile = self.path("a/b/store.key")
        self.open_store(keyfile=keyfile)
        self.assertEqual(self.mode(self.path("a")), 0o700)
        self.assertEqual(self.mode(self.path("a/b")), 0o700)
        self.assertEqual(self.mode(keyfile), 0o600)
        self.assertFalse(os.path.exists(self.key_dir))

    def test_readable_keyfile_rejected(self):
        conn, _ = self.open_store()
        conn.close()
        keyfile = os.path.join(self.key_dir, "test.key")
        os.chmod(keyfile, 0o640)
        conn = self.connect()
        with self.assertRaises(sqlite3.OperationalError) as caught:
            conn.execute("SELECT persist_init('test')")
        self.assertIn("other users can access it (mode 0640)", str(caught.exception))

    def test_existing_keyfile_not_replaced(self):
        conn, _ = self.open_store()
        conn.close()
        keyfile = os.path.join(self.key_dir, "test.key")
        with open(keyfile, "rb") as file:
            before = file.read()
        _, report = self.open_store("second.db")
        with open(keyfile, "rb") as file:
            after = file.read()
        self.assertFalse(report["device_key_created"])
        self.assertEqual(before, after)


class SchemaTest(PersistTestCase):
    def setUp(self):
        super().setUp()
        self.conn, _ = self.open_store()
        self.conn.execute("CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT)")
        self.conn.execute("INSERT INTO notes VALUES (1, 'one'), (2, 'two')")

    def test_rename_keeps_rows(self):
        self.conn.execute("ALTER TABLE notes RENAME TO memos")
        tables = self.conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE 'memos%' ORDER BY name"
        ).fetchall()
        self.assertEqual(tables, [("memos",), ("memos_config",), ("memos_rows",)])
        self.assertEqual(self.conn.execute("SELECT body FROM memos WHERE id = 2").fetchall(), [("two",)])
        # The rows stay bound to the name "notes", so a new table may not
        # take it; another name works.
        with self.assertRaises(sqlite3.OperationalError) as caught:
            self.conn.execute("CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT)")
        self.assertIn("table memos was created under that name", str(caught.exception))
        self.conn.execute("CREATE VIRTUAL TABLE jottings USING persist(id INTEGER PRIMARY KEY, body TEXT)")
        self.conn.execute("INSERT INTO jottings VALUES (1, 'new')")
        self.assertEqual(self.conn.execute("SELECT body FROM jottings").fetchall(), [("new",)])
        self.assertEqual(self.conn.execute("SELECT count(*) FROM memos").fetchone(), (2,))

    def test_drop_removes_shadow_tables(self):
        self.conn.execute("DROP TABLE notes")
        (count,) = self.conn.execute(
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'notes%'"
        ).fetchone()
        self.assertEqual(count, 0)

    def test_longest_column_name(self):
        name = "c" * 1024
        self.conn.execute(f"CREATE VIRTUAL TABLE wide USING persist(id INTEGER PRIMARY KEY, {name})")
        self.conn.execute("INSERT INTO wide VALUES (1, 'v')")
        self.assertEqual(self.conn.execute(f"SELECT {name} FROM wide").fetchall(), [("v",)])

    def test_overlong_column_name_rejected(self):
        # The row encoding rejects column names over 1024 bytes, so a table
        # with one must fail when it is created, not on every insert.
        name = "c" * 1025
        with self.assertRaises(sqlite3.OperationalError) as caught:
            self.conn.execute(f"CREATE VIRTUAL TABLE wide USING persist(id INTEGER PRIMARY KEY, {name})")
        self.assertIn("1024", str(caught.exception))
        (count,) = self.conn.execute(
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE 'wide%'"
        ).fetchone()
        self.assertEqual(count, 0)

    def test_integer_key_after_deleting_largest(self):
        # An INTEGER PRIMARY KEY left NULL gets one more than the largest key
        # in the table at the time of the insert, as in a plain table.
        self.conn.execute("CREATE TABLE plain(id INTEGER PRIMARY KEY, body TEXT)")
        for table in ("notes", "plain"):
            with self.subTest(table=table):
                self.conn.execute(f"DELETE FROM {table}")
                self.conn.execute(f"INSERT INTO {table}(body) VALUES ('a'), ('b'), ('c')")
                self.conn.execute(f"DELETE FROM {table} WHERE id = 3")
                self.conn.execute(f"INSERT INTO {table}(body) VALUES ('d')")
                self.conn.execute("BEGIN")
                self.conn.execute(f"INSERT INTO {table}(body) VALUES ('rolled back')")
                self.conn.execute("ROLLBACK")
                self.conn.execute(f"INSERT INTO {table}(body) VALUES ('e')")
                rows = self.conn.execute(f"SELECT id, body FROM {table} ORDER BY id").fetchall()
                self.assertEqual(rows, [(1, "a"), (2, "b"), (3, "d"), (4, "e")])


class TamperTest(PersistTestCase):
    def setUp(self):
        super().setUp()
        self.conn, _ = self.open_store()
        self.conn.execute("CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT)")
        self.conn.execute("INSERT INTO notes VALUES (1, 'one'), (2, 'two'), (3, 'three')")
        # Shadow rowids are slots derived from the record ids: map each key
        # to its row.
        self.shadow = dict(self.conn.execute("SELECT id, rowid FROM notes").fetchall())

    def test_flipped_byte(self):
        row = self.shadow[1]
        (env,) = self.conn.execute("SELECT env FROM notes_rows WHERE id = ?", (row,)).fetchone()
        flipped = env[:20] + bytes([env[20] ^ 0x01]) + env[21:]
        self.conn.execute("UPDATE notes_rows SET env = ? WHERE id = ?", (flipped, row))
        for sql in ("SELECT body FROM notes WHERE id = 1", "SELECT body FROM notes"):
            with self.subTest(sql=sql):
                with self.assertRaises(sqlite3.OperationalError) as caught:
                    self.conn.execute(sql).fetchall()
                self.assertRegex(
                    str(caught.exception),
                    rf"^encrypted table notes, row {row}: the stored envelope cannot be "
                    r"decrypted: authentication failed for envelope",
                )

    def test_tombstone_marked_live(self):
        # A deleted row's tombstone contains only the key. Marked live again
        # with defensive mode off, it must be reported, not read back as a
        # row whose other columns are NULL.
        row = self.shadow[3]
        self.conn.execute("DELETE FROM notes WHERE id = 3")
        self.conn.execute("UPDATE notes_rows SET deleted = 0 WHERE id = ?", (row,))
        for sql in ("SELECT id, body FROM notes WHERE id = 3", "SELECT id, body FROM notes"):
            with self.subTest(sql=sql):
                with self.assertRaises(sqlite3.OperationalError) as caught:
                    self.conn.execute(sql).fetchall()
                self.assertRegex(str(caught.exception), rf"^encrypted table notes, row {row}: ")

    def test_malformed_device_id_named(self):
        row = self.shadow[2]
        self.conn.execute("UPDATE notes_rows SET device = x'00' WHERE id = ?", (row,))
        with self.assertRaises(sqlite3.OperationalError) as caught:
            self.conn.execute("UPDATE notes SET body = 'x' WHERE id = 2")
        self.assertRegex(str(caught.exception), rf"^encrypted table notes, row {row}: ")

    def test_row_moved_out_of_its_slot(self):
        row = self.shadow[1]
        self.conn.execute("UPDATE notes_rows SET id = 7 WHERE id = ?", (row,))
        with self.assertRaises(sqlite3.OperationalError) as caught:
            self.conn.execute("SELECT body FROM notes").fetchall()
        self.assertRegex(str(caught.exception), r"^encrypted table notes, row 7: .* not in its record's slot")


# Runs in a fresh process: opens the store, scans the whole table one row at
# a time without keeping rows, and prints the peak RSS (VmHWM) afterwards.
SCAN_SCRIPT = textwrap.dedent(
    """
    import json, sqlite3, sys

    def peak_kib():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])

    extension, database = sys.argv[1], sys.argv[2]
    conn = sqlite3.connect(database, isolation_level=None)
    conn.enable_load_extension(True)
    conn.load_extension(extension)
    conn.execute("PRAGMA mmap_size = 0")
    conn.execute("SELECT persist_init('memory')")
    before = peak_kib()
    rows = 0
    text_bytes = 0
    for (key, body) in conn.execute("SELECT id, body FROM t"):
        rows += 1
        text_bytes += len(body)
    status = json.loads(conn.execute("SELECT persist_status()").fetchone()[0])
    print(json.dumps({
        "peak_before_kib": before,
        "peak_after_kib": peak_kib(),
        "rows": rows,
        "text_bytes": text_bytes,
        "opened": status["counters"]["envelopes_opened"],
    }))
    """
)


class PairingTest(PersistTestCase):
    """The offline pairing flow through the Python driver, with bound codes."""

    def pair(self):
        """Pair b.db to the store of test.db and return both connections."""
        a, report = self.open_store()
        b = self.connect("b.db")
        b_options = json.dumps({"keyfile": self.path("b.key")})
        invite = a.execute("SELECT persist_invite('{\"lifetime\": 300}')").fetchone()[0]
        response = b.execute("SELECT persist_accept('test', ?, ?)", (invite, b_options)).fetchone()[0]
        message = a.execute("SELECT persist_admit(?)", (response,)).fetchone()[0]
        joined = b.execute("SELECT persist_join('test', ?, ?)", (message, b_options)).fetchone()[0]
        return a, b, report, json.loads(joined), response

    def test_offline_flow_shares_the_store(self):
        a, b, report, joined, _ = self.pair()
        self.assertEqual(joined["store_id"], report["store_id"])
        self.assertTrue(joined["created"])
        self.assertNotEqual(joined["device_id"], report["device_id"])
        envelope = b.execute("SELECT persist_encrypt('from b', 'ctx')").fetchone()[0]
        opened = a.execute("SELECT persist_decrypt(?, 'ctx')", (envelope,)).fetchone()[0]
        self.assertEqual(opened, "from b")

    def test_reused_response_is_rejected(self):
        a, _, _, _, response = self.pair()
        with self.assertRaises(sqlite3.OperationalError) as caught:
            a.execute("SELECT persist_admit(?)", (response,)).fetchone()
        self.assertIn("was already used", str(caught.exception))

    def accepted(self):
        """Invite b.db from test.db, accept it and return A's connection and B's response."""
        a, _ = self.open_store()
        b = self.connect("b.db")
        b_options = json.dumps({"keyfile": self.path("b.key")})
        invite = a.execute("SELECT persist_invite()").fetchone()[0]
        response = b.execute("SELECT persist_accept('test', ?, ?)", (invite, b_options)).fetchone()[0]
        return a, response

    def test_second_connection_cannot_admit_again(self):
        a, response = self.accepted()
        other, _ = self.open_store()
        message = a.execute("SELECT persist_admit(?)", (response,)).fetchone()[0]
        self.assertTrue(message.startswith("PERSIST-KEYRING-1"))
        with self.assertRaises(sqlite3.OperationalError) as caught:
            other.execute("SELECT persist_admit(?)", (response,)).fetchone()
        self.assertIn("was already used", str(caught.exception))

    def test_admit_inside_transaction_is_rejected(self):
        a, response = self.accepted()
        a.execute("BEGIN")
        with self.assertRaises(sqlite3.OperationalError) as caught:
            a.execute("SELECT persist_admit(?)", (response,)).fetchone()
        self.assertIn("admitting inside a transaction is not allowed", str(caught.exception))
        a.execute("ROLLBACK")
        (used,) = a.execute("SELECT count(*) FROM persist_pairing WHERE used IS NOT NULL").fetchone()
        self.assertEqual(used, 0)

    def test_failed_admit_keeps_the_invite(self):
        a, response = self.accepted()
        # A damaged sealed state makes the admit fail after it claimed the
        # invite, so the claim must roll back.
        (sealed,) = a.execute("SELECT sealed FROM persist_pairing").fetchone()
        damaged = sealed[:-1] + bytes([sealed[-1] ^ 1])
        a.execute("UPDATE persist_pairing SET sealed = ?", (damaged,))
        with self.assertRaises(sqlite3.OperationalError) as caught:
            a.execute("SELECT persist_admit(?)", (response,)).fetchone()
        self.assertIn("cannot be opened with the device key", str(caught.exception))
        row = a.execute("SELECT sealed, used FROM persist_pairing").fetchone()
        self.assertEqual(row, (damaged, None))

        a.execute("UPDATE persist_pairing SET sealed = ?", (sealed,))
        message = a.execute("SELECT persist_admit(?)", (response,)).fetchone()[0]
        self.assertTrue(message.startswith("PERSIST-KEYRING-1"))

    def test_wrong_code_kind_names_the_prefix(self):
        a, _ = self.open_store()
        invite = a.execute("SELECT persist_invite()").fetchone()[0]
        with self.assertRaises(sqlite3.OperationalError) as caught:
            a.execute("SELECT persist_admit(?)", (invite,)).fetchone()
        self.assertEqual(
            str(caught.exception),
            "persist_admit: argument 1 (response): malformed pairing response: it does not "
            "start with PERSIST-RESPONSE-1; paste the whole string",
        )


class StreamingMemoryTest(unittest.TestCase):
    """Scanning an encrypted table streams rows: peak RSS does not grow with the table.

    Two tables of 20,000 and 200,000 rows, each row a key and 200 bytes of
    text, are scanned in fresh processes that do the same work apart from
    the row count. The larger table has 36 MB more text than the smaller
    one, so a scan that kept a fifth of its rows' text (7.2 MB) would raise
    the peak by more than BOUND_KIB (4 MiB). SQLite's page cache cannot
    explain a difference that size, because the default cache_size of -2000
    caps it at 2000 KiB in both processes, and memory-mapped I/O is off.
    Fetching all 200,000 rows with fetchall() instead raises the peak by
    about 70 MiB (measured once on x86-64 Linux with Debian's Python 3.11).
    """

    BOUND_KIB = 4096
    SIZES = (20_000, 200_000)

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="persist-python-memory-")
        cls.env = dict(os.environ, PERSIST_KEY_DIR=os.path.join(cls.dir, "keys"))
        cls.env.pop("DBUS_SESSION_BUS_ADDRESS", None)
        cls.env.pop("XDG_RUNTIME_DIR", None)
        previous = os.environ.get("PERSIST_KEY_DIR")
        os.environ["PERSIST_KEY_DIR"] = cls.env["PERSIST_KEY_DIR"]
        try:
            for size in cls.SIZES:
                conn = load(os.path.join(cls.dir, f"{size}.db"))
                conn.execute("SELECT persist_init('memory')")
                conn.execute("CREATE VIRTUAL TABLE t USING persist(id INTEGER PRIMARY KEY, body TEXT)")
                conn.execute("BEGIN")
                conn.execute(
                    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                    "INSERT INTO t SELECT i, hex(randomblob(100)) FROM n",
                    (size,),
                )
                conn.execute("COMMIT")
                conn.close()
        finally:
            if previous is None:
                os.environ.pop("PERSIST_KEY_DIR", None)
            else:
                os.environ["PERSIST_KEY_DIR"] = previous

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def scan(self, size):
        result = subprocess.run(
            [sys.executable, "-c", SCAN_SCRIPT, EXTENSION, os.path.join(self.dir, f"{size}.db")],
            env=self.env, capture_output=True, text=True, timeout=600, check=False,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        measured = json.loads(result.stdout)
        self.assertEqual(measured["rows"], size)
        self.assertEqual(measured["text_bytes"], size * 200)
        self.assertEqual(measured["opened"], size)
        return measured

    def test_peak_rss_does_not_grow_with_rows(self):
        small, large = (self.scan(size) for size in self.SIZES)
        growth = large["peak_after_kib"] - small["peak_after_kib"]
        self.assertLess(
            growth, self.BOUND_KIB,
            f"peak RSS {small['peak_after_kib']} KiB for {self.SIZES[0]} rows, "
            f"{large['peak_after_kib']} KiB for {self.SIZES[1]} rows",
        )

    def test_scan_adds_little_to_peak(self):
        large = self.scan(self.SIZES[1])
        growth = large["peak_after_kib"] - large["peak_before_kib"]
        self.assertLess(
            growth, self.BOUND_KIB,
            f"peak RSS {large['peak_before_kib']} KiB before and "
            f"{large['peak_after_kib']} KiB after scanning {self.SIZES[1]} rows",
        )


if __name__ == "__main__":
    unittest.main()
