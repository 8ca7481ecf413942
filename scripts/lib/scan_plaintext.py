#!/usr/bin/env python3
"""Search database files byte by byte for plaintext that must not be there.

Usage:
  scan_plaintext.py --source PLAIN.db --files FILE [FILE ...] [--shadow-db ENC.db]

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


def scan_files(files: list[Path], needles: list[str]) -> dict[str, list[str]]:
    found = {}
    for path in files:
        data = path.read_bytes()
        hits = [needle for needle in needles if needle.encode("utf-8") in data]
        found[str(path)] = hits
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
    parser.add_argument("--source", required=True, type=Path, help="plaintext Chinook database")
    parser.add_argument("--files", required=True, nargs="+", type=Path, help="files to scan")
    parser.add_argument("--shadow-db", type=Path, help="encrypted database whose shadow tables to check")
    parser.add_argument("--expect-found", action="store_true", help="succeed only if every value is found (a self-check of the scanner)")
    args = parser.parse_args()

    missing = [path for path in [args.source, *args.files] if not path.is_file()]
    if missing:
        print(f"scan_plaintext: file not found: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2

    needles, largest_key = collect_needles(args.source)
    found = scan_files(args.files, needles)
    total = sum(len(hits) for hits in found.values())
    if args.expect_found:
        every = all(len(hits) == len(needles) for hits in found.values())
        return 0 if every else 1

    suspicious = check_shadow_integers(args.shadow_db, largest_key) if args.shadow_db else 0
    for path, hits in found.items():
        for needle in hits[:10]:
            print(f"  FOUND in {Path(path).name}: {needle!r}")
    return 1 if total or suspicious else 0


if __name__ == "__main__":
    sys.exit(main())
