#!/usr/bin/env python3
"""Search database files byte by byte for plaintext that must not be there.

Usage:
  scan_plaintext.py --source PLAIN.db --files FILE [FILE ...] [--shadow-db ENC.db]
  scan_plaintext.py --needles VALUES.txt --pg-datadir PGDATA [--files FILE ...]

The values to look for are read from the plaintext copy of the Chinook data
(PLAIN.db): every customer and employee name, e-mail address, street address,
company and phone number, and every invoice billing address, at least 4 bytes
long (shorter strings occur by chance in any megabytes of ciphertext). Each is
searched for as UTF-8 in every FILE, which should be the encrypted database
and its -wal and -journal files where they exist.

Primary key values are integers, which SQLite stores in binary; a byte search
cannot tell them from chance. With --shadow-db, the script instead opens the
encrypted database without the extension and checks that no integer column
of any shadow table (rowids, clock values, flags) holds a value in the range of
the Chinook primary keys, other than the 0 and 1 of the flag columns.

For PostgreSQL, --needles names a UTF-8 file with one value per line, which
scripts/demo-postgres exports from the plaintext copy of the Chinook data
(values shorter than 4 bytes are skipped as above), and --pg-datadir names a
data directory whose every regular file is scanned: tables, indexes, WAL,
the commit log and the catalogs. Some short values, such as the first names
Mark and Helena, occur in the text of PostgreSQL's own catalogs (function
descriptions, time zone names). --baseline DIR names files that never held
the data, such as the template database base/1; values found there are
reported and left out of the search.

Exit status 0 when nothing is found, 1 when a value is found, 2 on bad usage.
"""

import argparse
import sqlite3
import sys
from pathlib import Path

NEEDLE_QUERIES = [
    "SELECT first_name, last_name, company, address, email, phone, fax FROM customer",
    "SELECT first_name, last_name, address, email, phone, fax FROM employee",
    "SELECT billing_address FROM invoice",
]
MIN_NEEDLE_LEN = 4
KEY_QUERIES = {
    "customer": "SELECT max(customer_id) FROM customer",
    "invoice": "SELECT max(invoice_id) FROM invoice",
    "invoice_line": "SELECT max(invoice_line_id) FROM invoice_line",
    "track": "SELECT max(track_id) FROM track",
    "playlist_track": "SELECT max(track_id) FROM playlist_track",
}


def collect_needles(source: Path) -> list[str]:
    needles = set()
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as db:
        for query in NEEDLE_QUERIES:
            for row in db.execute(query):
                for value in row:
                    if isinstance(value, str) and len(value.encode("utf-8")) >= MIN_NEEDLE_LEN:
                        needles.add(value)
        largest_key = max(db.execute(query).fetchone()[0] for query in KEY_QUERIES.values())
    return sorted(needles), largest_key


def read_needles(path: Path) -> list[str]:
    values = path.read_text(encoding="utf-8").split("\n")
    return sorted({value for value in values if len(value.encode("utf-8")) >= MIN_NEEDLE_LEN})


def data_directory_files(datadir: Path) -> list[Path]:
    """Return every regular file under a PostgreSQL data directory, without following links."""
    return sorted(path for path in datadir.rglob("*") if path.is_file() and not path.is_symlink())


def scan_files(files: list[Path], needles: list[str], report: str = "all") -> dict[str, list[str]]:
    """Search each file for each needle; print a line per file ("all"), per file with a hit ("hits") or none."""
    found = {}
    encoded = [(needle, needle.encode("utf-8")) for needle in needles]
    for path in files:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            # The server removes temporary and old WAL files while it runs.
            continue
        hits = [needle for needle, raw in encoded if raw in data]
        found[str(path)] = hits
        if report == "all" or (report == "hits" and hits):
            print(f"  {path.name}: {len(data):,} bytes, {len(hits)} of {len(needles)} values found")
    return found


def check_shadow_integers(database: Path, largest_key: int) -> int:
    """Count shadow-table integers that fall in the primary-key range."""
    suspicious = 0
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE '%\\_rows' ESCAPE '\\'")]
        for table in tables:
            for column in ("id", "clock"):
                count = db.execute(
                    f'SELECT count(*) FROM "{table}" WHERE "{column}" BETWEEN 2 AND ?', (largest_key,)
                ).fetchone()[0]
                suspicious += count
                if count:
                    print(f"  {table}.{column}: {count} values in the key range 2..{largest_key}")
        print(f"  {len(tables)} shadow tables checked: rowids and clock values lie outside 2..{largest_key}")
    return suspicious


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sources = parser.add_mutually_exclusive_group(required=True)
    sources.add_argument("--source", type=Path, help="plaintext Chinook database (SQLite)")
    sources.add_argument("--needles", type=Path, help="file of values to look for, one per line")
    parser.add_argument("--files", nargs="+", type=Path, default=[], help="files to scan")
    parser.add_argument("--pg-datadir", type=Path, help="PostgreSQL data directory to scan, every file in it")
    parser.add_argument("--baseline", type=Path, help="directory of files that never held the data; values found there are left out")
    parser.add_argument("--shadow-db", type=Path, help="encrypted database whose shadow tables to check")
    parser.add_argument("--expect-found", action="store_true", help="succeed only if every value is found (a self-check of the scanner)")
    args = parser.parse_args()

    source = args.source or args.needles
    missing = [path for path in [source, *args.files] if not path.is_file()]
    if missing:
        print(f"scan_plaintext: file not found: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    if args.pg_datadir is not None and not (args.pg_datadir / "PG_VERSION").is_file():
        print(f"scan_plaintext: {args.pg_datadir} is not a PostgreSQL data directory (no PG_VERSION)", file=sys.stderr)
        return 2
    if not args.files and args.pg_datadir is None:
        print("scan_plaintext: give --files, --pg-datadir or both", file=sys.stderr)
        return 2

    if args.source is not None:
        needles, largest_key = collect_needles(args.source)
    else:
        needles, largest_key = read_needles(args.needles), 0
    if args.baseline is not None:
        baseline_files = [path for path in args.baseline.rglob("*") if path.is_file()]
        common = {needle for hits in scan_files(baseline_files, needles, report="none").values() for needle in hits}
        if common:
            print(f"  left out, because {args.baseline} contains them too: {', '.join(map(repr, sorted(common)))}")
        needles = [needle for needle in needles if needle not in common]
        if len(sorted(common)) > len(needles):
            print("scan_plaintext: the baseline contains most values; it cannot be a database without the data", file=sys.stderr)
            return 2
    found = scan_files(args.files, needles)
    if args.pg_datadir is not None:
        files = data_directory_files(args.pg_datadir)
        datadir_found = scan_files(files, needles, report="hits")
        size = sum(path.stat().st_size for path in files if path.exists())
        hits = sum(len(hits) for hits in datadir_found.values())
        print(f"  {args.pg_datadir}: {len(files):,} files, {size:,} bytes, {hits} values found")
        found.update(datadir_found)
    total = sum(len(hits) for hits in found.values())
    if args.expect_found:
        seen = {needle for hits in found.values() for needle in hits}
        return 0 if len(seen) == len(needles) else 1

    suspicious = check_shadow_integers(args.shadow_db, largest_key) if args.shadow_db else 0
    for path, hits in found.items():
        for needle in hits[:10]:
            print(f"  FOUND in {Path(path).name}: {needle!r}")
    return 1 if total or suspicious else 0


if __name__ == "__main__":
    sys.exit(main())
