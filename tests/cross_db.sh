#!/usr/bin/env bash
# Checks that the SQLite and PostgreSQL extensions seal and open the same
# envelopes with the same keyring:
#
#   1. sqlite3 creates store "cross", with its device key in a keyfile in a
#      temporary directory. It seals TEXT (ASCII, empty, quoted, non-ASCII),
#      INTEGER (0, extremes), REAL (pi, -0.0, the smallest subnormal, the
#      largest finite value, infinity) and BLOB (bytes, empty) values, each
#      without a context and with a non-ASCII one. It exports the keyring raw
#      and under a passphrase.
#   2. psql imports the raw export for one session (persist.keyfile = ''),
#      opens every SQLite envelope with the decrypt function of its type and
#      compares the exact value: the UTF-8 bytes of TEXT, the decimal INTEGER,
#      the IEEE 754 bits of REAL and the bytes of BLOB. A wrong context must
#      fail with SQLSTATE XX001.
#   3. psql imports the passphrase export into the server's keyfile, and a
#      new session opens the store without any key argument.
#   4. psql seals the same values, and sqlite3 opens them and compares them
#      the same way.
#
# scripts/test-pg.sh runs it against its throwaway cluster after the
# regression scripts. It needs PGHOST, PGPORT and PGUSER naming a superuser
# session of a server that has the extension installed and persist.keyfile
# set, and the sqlite3 CLI (Debian's 3.40.1 has the ieee754_to_blob function
# used here). It builds the SQLite extension with
# `cargo build --release -p persist-sqlite`, into $CARGO_TARGET_DIR (default
# target/), and works in the database persist_cross, which it drops at the
# end, also after a failure.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/common.sh
source "$root/scripts/lib/common.sh"

for variable in PGHOST PGPORT PGUSER; do
    [[ -n ${!variable:-} ]] || fail "cross_db: $variable is not set; run scripts/test-pg.sh"
done
ensure_packages sqlite3

target_dir=${CARGO_TARGET_DIR:-$root/target}
work=$(mktemp -d "${TMPDIR:-/tmp}/persist-cross.XXXXXX")
database=persist_cross
cleanup() {
    psql -X -q -d postgres -c "DROP DATABASE IF EXISTS $database" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# pg-ext's library has the same name, libpersist.so. A pg-ext build in this
# target directory replaces the SQLite extension's file without making cargo
# rebuild it, so the library is checked and rebuilt when it is the wrong one.
extension=$target_dir/release/libpersist
is_sqlite_extension() {
    sqlite3 -batch -init /dev/null :memory: ".load $extension" "SELECT persist_version()" >/dev/null 2>&1
}
echo "cross_db: cargo build --release -p persist-sqlite"
cargo build --quiet --release -p persist-sqlite --manifest-path "$root/Cargo.toml"
if ! is_sqlite_extension; then
    echo "cross_db: $extension.so is not the SQLite extension; cleaning and rebuilding persist-sqlite"
    cargo clean --quiet --release -p persist-sqlite --manifest-path "$root/Cargo.toml"
    cargo build --quiet --release -p persist-sqlite --manifest-path "$root/Cargo.toml"
    is_sqlite_extension || fail "cross_db: sqlite3 cannot load $extension"
fi

# The OS keychain is never used: the store gets an explicit keyfile, and no
# D-Bus session is reachable.
unset DBUS_SESSION_BUS_ADDRESS XDG_RUNTIME_DIR
sqlite_db=$work/cross.db
sqlite_init="SELECT persist_init('cross', '{\"keyfile\": \"$work/sqlite-keys/cross.key\"}') IS NOT NULL;"

# Runs SQL from stdin in the SQLite database and prints the rows that start
# with "row|".
run_sqlite() {
    {
        echo "$sqlite_init"
        cat
    } | sqlite3 -batch -bail -init /dev/null -cmd ".load $extension" "$sqlite_db" |
        grep '^row|' || true
}

# Runs SQL from stdin in the Postgres database and prints the rows that start
# with "row|".
run_psql() {
    psql -X -A -t -q -v ON_ERROR_STOP=1 -d "$database" | grep '^row|' || true
}

# name | kind | SQLite expression | Postgres expression
cases=$(
    cat <<'CASES'
text_ascii|text|'milk, eggs'|'milk, eggs'::text
text_empty|text|''|''::text
text_quote|text|'it''s'|'it''s'::text
text_unicode|text|'Zoë 東京 🎵 ﷽ 𝄞'|'Zoë 東京 🎵 ﷽ 𝄞'::text
integer_zero|integer|0|0::bigint
integer_max|integer|9223372036854775807|9223372036854775807::bigint
integer_min|integer|(-9223372036854775807 - 1)|(-9223372036854775808)::bigint
integer_negative|integer|-42|-42
real_pi|real|3.141592653589793|3.141592653589793::float8
real_negative_zero|real|-0.0|'-0'::float8
real_subnormal|real|5e-324|'5e-324'::float8
real_max|real|1.7976931348623157e308|'1.7976931348623157e308'::float8
real_infinity|real|1e999|'Infinity'::float8
blob_bytes|blob|x'00FF10'|'\x00ff10'::bytea
blob_empty|blob|x''|''::bytea
CASES
)
# Prints the SQL context of a case: NULL "without", a non-ASCII text "with".
context_of() {
    if [[ $1 == with ]]; then
        echo "'Kontext ü:' || '$2'"
    else
        echo NULL
    fi
}

# The exact form of a value of each kind, written the same way on both sides:
# the UTF-8 bytes of TEXT, the decimal INTEGER, the IEEE 754 bits of REAL and
# the bytes of BLOB, in uppercase hexadecimal.
sqlite_exact=$(
    cat <<'SQL'
CASE typeof(v)
    WHEN 'text' THEN 'text:' || hex(v)
    WHEN 'integer' THEN 'integer:' || v
    WHEN 'real' THEN 'real:' || hex(ieee754_to_blob(v))
    WHEN 'blob' THEN 'blob:' || hex(v)
    ELSE 'null'
END
SQL
)
pg_exact() {
    case $1 in
    text) echo "'text:' || upper(encode(convert_to(v, 'UTF8'), 'hex'))" ;;
    integer) echo "'integer:' || v" ;;
    real) echo "'real:' || upper(encode(float8send(v), 'hex'))" ;;
    blob) echo "'blob:' || upper(encode(v, 'hex'))" ;;
    esac
}
pg_decrypt_function() {
    case $1 in
    text) echo persist.decrypt ;;
    integer) echo persist.decrypt_bigint ;;
    real) echo persist.decrypt_float8 ;;
    blob) echo persist.decrypt_bytea ;;
    esac
}

echo "cross_db: SQLite seals every value"
{
    while IFS='|' read -r name kind sqlite_expr _; do
        for mode in without with; do
            context=$(context_of "$mode" "$name")
            echo "SELECT 'row|$name|$mode|' || (SELECT $sqlite_exact FROM (SELECT $sqlite_expr AS v))
                  || '|' || hex(persist_encrypt($sqlite_expr, $context));"
        done
    done <<<"$cases"
} | run_sqlite >"$work/sqlite-sealed.txt"
cut -d'|' -f2-4 "$work/sqlite-sealed.txt" >"$work/expected.txt"
[[ $(wc -l <"$work/expected.txt") -eq $((2 * $(wc -l <<<"$cases"))) ]] ||
    fail "cross_db: sqlite3 sealed $(wc -l <"$work/expected.txt") values; see $work/sqlite-sealed.txt"

raw_export=$(echo "SELECT 'row|' || persist_export();" | run_sqlite | cut -d'|' -f2)
protected_export=$(echo "SELECT 'row|' || persist_export('cross passphrase');" | run_sqlite | cut -d'|' -f2)
[[ $raw_export == PERSIST-KEY-1* && $protected_export == PERSIST-KEY-1* ]] ||
    fail "cross_db: persist_export did not return export strings"

psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $database"
psql -X -q -v ON_ERROR_STOP=1 -d "$database" -c 'CREATE EXTENSION persist'

# Lines of SQL that open the store in Postgres with an exported key; the
# export travels as a psql variable, not in the script text.
pg_init_with_key() {
    echo "SELECT persist.init('cross', json_build_object('key', :'export'$1)::text) IS NOT NULL;"
}

echo "cross_db: Postgres opens the SQLite envelopes with the imported key (session only)"
{
    echo "SET persist.keyfile = '';"
    pg_init_with_key ""
    echo "SELECT 'row|session_only|' || (persist.status()::jsonb ->> 'session_only');"
    while IFS='|' read -r _ name mode _ envelope; do
        kind=$(grep "^$name|" <<<"$cases" | cut -d'|' -f2)
        context=$(context_of "$mode" "$name")
        echo "SELECT 'row|$name|$mode|' || ($(pg_exact "$kind"))
              FROM (SELECT $(pg_decrypt_function "$kind")(decode('$envelope', 'hex'), $context) AS v) AS opened;"
    done <"$work/sqlite-sealed.txt"
} | psql -X -A -t -q -v ON_ERROR_STOP=1 -v export="$raw_export" -d "$database" |
    grep '^row|' >"$work/pg-opened.txt" || true
grep -q '^row|session_only|true$' "$work/pg-opened.txt" ||
    fail "cross_db: the raw import was not session-only: $(head -n 1 "$work/pg-opened.txt")"
grep -v '^row|session_only|' "$work/pg-opened.txt" | cut -d'|' -f2-4 >"$work/pg-opened-values.txt"
if ! diff -u "$work/expected.txt" "$work/pg-opened-values.txt"; then
    fail "cross_db: Postgres opened SQLite's envelopes to different values (diff above)"
fi
echo "cross_db: $(wc -l <"$work/expected.txt") SQLite envelopes open in Postgres to identical values"

# The context is bound the same way: another context fails authentication.
envelope=$(grep '^row|text_ascii|with|' "$work/sqlite-sealed.txt" | cut -d'|' -f5)
wrong_context=$(
    {
        echo "SET persist.keyfile = '';"
        pg_init_with_key ""
        echo "SELECT persist.decrypt(decode('$envelope', 'hex'), 'another context');"
        printf '%s\n' '\echo row|:SQLSTATE'
    } | psql -X -A -t -q -v ON_ERROR_STOP=0 -v export="$raw_export" -d "$database" 2>/dev/null |
        grep '^row|' || true
)
[[ $wrong_context == "row|XX001" ]] ||
    fail "cross_db: a SQLite envelope opened in Postgres with another context gave '$wrong_context', expected row|XX001"

echo "cross_db: Postgres imports the passphrase export into the server's keyfile"
{
    pg_init_with_key ", 'passphrase', 'cross passphrase'"
    echo "SELECT 'row|' || (persist.status()::jsonb ->> 'session_only');"
} | psql -X -A -t -q -v ON_ERROR_STOP=1 -v export="$protected_export" -d "$database" |
    grep -qx 'row|false' || fail "cross_db: the passphrase import was not saved under the keyfile"
reopened=$(
    cat <<SQL | run_psql
SELECT persist.init('cross') IS NOT NULL;
SELECT 'row|' || persist.decrypt(decode('$envelope', 'hex'), 'Kontext ü:text_ascii');
SQL
)
[[ $reopened == "row|milk, eggs" ]] ||
    fail "cross_db: a new session did not open the store from the server's keyfile: '$reopened'"

echo "cross_db: Postgres seals every value"
{
    echo "SELECT persist.init('cross') IS NOT NULL;"
    while IFS='|' read -r name kind _ pg_expr; do
        for mode in without with; do
            context=$(context_of "$mode" "$name")
            echo "SELECT 'row|$name|$mode|' || ($(pg_exact "$kind")) || '|'
                  || upper(encode(persist.encrypt(v, $context), 'hex'))
                  FROM (SELECT $pg_expr AS v) AS original;"
        done
    done <<<"$cases"
} | run_psql >"$work/pg-sealed.txt"
cut -d'|' -f2-4 "$work/pg-sealed.txt" >"$work/pg-expected.txt"
if ! diff -u "$work/expected.txt" "$work/pg-expected.txt"; then
    fail "cross_db: the Postgres literals differ from the SQLite ones (diff above)"
fi

echo "cross_db: SQLite opens the Postgres envelopes"
while IFS='|' read -r _ name mode _ envelope; do
    context=$(context_of "$mode" "$name")
    echo "SELECT 'row|$name|$mode|' || (SELECT $sqlite_exact FROM
          (SELECT persist_decrypt(x'$envelope', $context) AS v));"
done <"$work/pg-sealed.txt" | run_sqlite >"$work/sqlite-opened.txt"
cut -d'|' -f2-4 "$work/sqlite-opened.txt" >"$work/sqlite-opened-values.txt"
if ! diff -u "$work/expected.txt" "$work/sqlite-opened-values.txt"; then
    fail "cross_db: SQLite opened Postgres's envelopes to different values (diff above)"
fi
echo "cross_db: $(wc -l <"$work/expected.txt") Postgres envelopes open in SQLite to identical values"
