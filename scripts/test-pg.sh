#!/usr/bin/env bash
# Builds and tests the PostgreSQL extension in pg-ext/ against the system
# PostgreSQL $PG_MAJOR (Debian packages):
#
#   1. scripts/lib/setup-postgres.sh installs missing build requirements.
#   2. `cargo pgrx test` runs the #[pg_test] functions inside a server that
#      pgrx starts as user postgres, with its data under $PGRX_TEST_PGDATA.
#   3. `cargo pgrx install` installs persist.so, persist.control and the
#      extension SQL into the system PostgreSQL directories. It installs the
#      dev-profile build, which reuses the dependencies `cargo pgrx test` has
#      just compiled; a release build of pgrx would add minutes to CI. Set
#      PERSIST_PG_RELEASE=1 to install the release build instead.
#   4. A throwaway cluster (scripts/lib/pg-cluster.sh) runs each
#      sql/regress/pg/NAME.sql, in name order and in one database, and the
#      script compares the output with sql/regress/pg/expected/NAME.out using
#      diff -u. Any difference fails the run. The actual output stays in
#      $CARGO_TARGET_DIR/pg-regress/NAME.out so that an intended change can be
#      copied over the expected file.
#   5. tests/cross_db.sh, against the same cluster, seals values in SQLite
#      and opens them in Postgres, and the other way round.
#   6. scripts/demo-postgres --installed, in a cluster of its own, loads
#      Chinook into encrypted tables and plaintext copies, checks that the
#      queries of sql/chinook/queries.sql return identical results, and scans
#      the data directory for plaintext once the copies are dropped. Any
#      difference or finding fails the run.
#
# The regression scripts of encrypted tables need the contrib extension
# dblink (06, for concurrent sessions), and pg_dump, pg_restore and psql on
# PATH (07); Debian's postgresql-$PG_MAJOR package has all of them.
# Before the regression scripts run, the cluster gets what the key tests
# need: persist.keyfile = '<cluster dir>/keys/regress.key' (ALTER SYSTEM,
# outside the data directory, created by the first persist.init), and
# <cluster dir>/fixtures/world-readable.key with mode 0644, owned by the
# server's user.
#
# psql runs each file the way pg_regress does:
#
#   psql -X -a -q -v ON_ERROR_STOP=0 -v tmpdir=<cluster dir> -d persist_regress \
#       < NAME.sql > NAME.out 2>&1
#
# and then replaces the cluster directory's path, which mktemp picks at
# random, with <tmpdir> in NAME.out.
#
# -X skips ~/.psqlrc. -a echoes every input line, comments and blank lines
# included, before its result. -q hides command tags such as CREATE
# EXTENSION. Errors and notices go to the same file, and because the input
# comes from stdin they carry no file:line prefix. ON_ERROR_STOP=0 lets a file
# continue after an error, so an expected error is part of the expected
# output. The cluster has the C locale, UTF8 encoding and PGTZ=UTC, and
# every session connects as the superuser `postgres` unless a script
# reconnects with \c. RUST_BACKTRACE and RUST_LIB_BACKTRACE are unset for the
# cluster, because with them pgrx adds a backtrace to the DETAIL of every
# error the extension raises.
#
# Postgres refuses to run as root, so a root caller (such as CI) runs the pgrx
# test server through `sudo -u postgres` (pgrx --runas) and the throwaway
# cluster through runuser. Both servers are stopped when the script exits,
# also after a failure.
#
# Environment: PG_MAJOR (default 15), PG_CONFIG (default /usr/bin/pg_config),
# PERSIST_PG_RELEASE (1 installs the release build),
# PGRX_TEST_PGDATA (default /tmp/persist-pgrx; pgrx also puts the test
# server's Unix socket there, so keep the path short), CARGO_TARGET_DIR
# (default target/). cargo-pgrx builds in its pgrx/ subdirectory.

set -euo pipefail

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/setup-postgres.sh
source "$repo_root/scripts/lib/setup-postgres.sh"
# shellcheck source=scripts/lib/pg-cluster.sh
source "$repo_root/scripts/lib/pg-cluster.sh"

pg_major=${PG_MAJOR:-15}
pg_config=${PG_CONFIG:-/usr/bin/pg_config}
pgrx_test_pgdata=${PGRX_TEST_PGDATA:-/tmp/persist-pgrx}
target_dir=${CARGO_TARGET_DIR:-$repo_root/target}
# pg-ext's library is named persist, like the SQLite extension's, so both
# builds write <target>/<profile>/libpersist.so and cargo would take one for
# the other. cargo-pgrx therefore builds in a target directory of its own.
pgrx_target_dir=$target_dir/pgrx
regress_dir=$repo_root/sql/regress/pg
results_dir=$target_dir/pg-regress

install_flags=()
if [[ $(id -u) -ne 0 ]]; then
    # Only root can write the system PostgreSQL directories.
    # NOTE: only the root path (CI) has been run; this one is untested.
    install_flags+=(--sudo)
fi

cluster_dir=
cleanup() {
    local status=$?
    if [[ -n $cluster_dir ]]; then
        pg_cluster_stop "$cluster_dir" || status=1
        rm -rf "$cluster_dir"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "==> setup"
setup_postgres

echo "==> cargo pgrx test pg$pg_major"
# pgrx creates PGDATA as $pgrx_test_pgdata/$pg_major-<pid> through
# `sudo -u postgres mkdir`, so the parent must be writable by postgres.
mkdir -p "$pgrx_test_pgdata"
if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$pgrx_test_pgdata"
fi
(
    cd "$repo_root/pg-ext"
    CARGO_TARGET_DIR=$pgrx_target_dir \
        cargo pgrx test "pg$pg_major" --runas postgres --pgdata "$pgrx_test_pgdata"
)

if [[ ${PERSIST_PG_RELEASE:-0} == 1 ]]; then
    install_flags+=(--release)
fi
echo "==> cargo pgrx install ${install_flags[*]}"
(
    cd "$repo_root/pg-ext"
    CARGO_TARGET_DIR=$pgrx_target_dir \
        cargo pgrx install --pg-config "$pg_config" "${install_flags[@]}"
)

echo "==> SQL regression tests in $regress_dir"
cluster_dir=$(mktemp -d /tmp/persist-pg-regress.XXXXXX)
unset RUST_BACKTRACE RUST_LIB_BACKTRACE
pg_cluster_start "$cluster_dir"
export PGTZ=UTC PGDATESTYLE='ISO, MDY'
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE DATABASE persist_regress'

# ALTER SYSTEM accepts persist.keyfile only once the library has defined it,
# hence the LOAD in the same session.
keyfile=$cluster_dir/keys/regress.key
psql -X -q -v ON_ERROR_STOP=1 -v keyfile="$keyfile" -d postgres >/dev/null <<'SQL'
LOAD 'persist';
ALTER SYSTEM SET persist.keyfile = :'keyfile';
SELECT pg_reload_conf();
SQL
# The postmaster rereads its configuration asynchronously; wait until new
# sessions see the setting.
for ((attempt = 1; ; attempt++)); do
    shown=$(psql -X -A -t -q -d postgres -c 'SHOW persist.keyfile' 2>/dev/null || true)
    [[ $shown == "$keyfile" ]] && break
    if ((attempt == 50)); then
        echo "test-pg: new sessions do not see persist.keyfile = '$keyfile' after 5 s" >&2
        exit 1
    fi
    sleep 0.1
done

fixtures=$cluster_dir/fixtures
mkdir -p "$fixtures"
echo "not a keyfile: only its mode matters" >"$fixtures/world-readable.key"
chmod 755 "$fixtures"
chmod 644 "$fixtures/world-readable.key"
if [[ $(id -u) -eq 0 ]]; then
    chown -R postgres: "$fixtures"
fi

mkdir -p "$results_dir"
passed=0
failed=0
shopt -s nullglob
sql_files=("$regress_dir"/*.sql)
if [[ ${#sql_files[@]} -eq 0 ]]; then
    echo "test-pg: no SQL files found in $regress_dir" >&2
    exit 1
fi

for sql_file in "${sql_files[@]}"; do
    name=$(basename "$sql_file" .sql)
    expected=$regress_dir/expected/$name.out
    actual=$results_dir/$name.out

    psql_status=0
    psql -X -a -q -v ON_ERROR_STOP=0 -v tmpdir="$cluster_dir" -d persist_regress \
        <"$sql_file" >"$actual.raw" 2>&1 || psql_status=$?
    sed "s|$cluster_dir|<tmpdir>|g" "$actual.raw" >"$actual"
    rm -f "$actual.raw"

    if [[ $psql_status -ne 0 ]]; then
        echo "FAIL $name: psql exited with status $psql_status; output in $actual"
        failed=$((failed + 1))
    elif [[ ! -f $expected ]]; then
        echo "FAIL $name: expected output $expected is missing; actual output is in $actual"
        failed=$((failed + 1))
    elif diff -u "$expected" "$actual"; then
        echo "ok   $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name: output differs from $expected (diff above)"
        failed=$((failed + 1))
    fi
done

echo "regress: $passed passed, $failed failed"

echo "==> tests/cross_db.sh"
cross_status=0
"$repo_root/tests/cross_db.sh" || cross_status=$?
if [[ $cross_status -ne 0 ]]; then
    echo "FAIL tests/cross_db.sh exited with status $cross_status"
fi

echo "==> scripts/demo-postgres"
demo_status=0
"$repo_root/scripts/demo-postgres" --installed || demo_status=$?
if [[ $demo_status -ne 0 ]]; then
    echo "FAIL scripts/demo-postgres exited with status $demo_status"
fi

if [[ $failed -ne 0 || $cross_status -ne 0 || $demo_status -ne 0 ]]; then
    exit 1
fi
