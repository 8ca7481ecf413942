#!/usr/bin/env bash
# Runs the end-to-end sync tests (tests/tests/sync/) against real PostgreSQL
# servers and a real SQLite that loads the release build of the extension.
#
#   scripts/test-sync.sh [FILTER] [-- LIBTEST ARGUMENTS]
#
# The arguments go to cargo test, so `scripts/test-sync.sh -- tls:: restore::`
# runs the tests whose names contain either filter.
#
# 1. Builds the extension: cargo build --release -p persist-sqlite.
# 2. Starts three throwaway clusters (scripts/lib/pg-cluster.sh) in one
#    temporary folder, and stops them when the script exits, also after a
#    failure or Ctrl-C:
#    - the sync server, on a Unix socket only;
#    - two TLS servers on 127.0.0.1 (and their Unix sockets), which accept TCP
#      connections only over TLS. Their certificates come from a test CA made
#      here with openssl: one names localhost and 127.0.0.1, the other names
#      only the IP address 127.0.0.1. A second, unrelated CA is made for the
#      tests that expect a verification failure.
# 3. Creates the database `sync` on each server, and `sync_template` on the
#    first, with the sync schema in each:
#    CREATE EXTENSION persist, which needs the extension installed in the
#    system PostgreSQL (scripts/test-pg.sh installs it). With
#    PERSIST_SYNC_SERVER_SQL=FILE the script instead runs CREATE SCHEMA
#    persist and applies FILE (pg-ext/sql/sync_server.sql) with psql, for
#    when the installed extension is older than the SQL file.
# 4. Runs cargo test -p persist-tests --release --test sync with the
#    environment below, and fails when any test fails.
#
# Environment passed to the tests:
#   PERSIST_EXTENSION            path of libpersist.so
#   PERSIST_SQLITE3              the sqlite3 CLI, for the tests that kill it
#   PERSIST_SYNC_CONNINFO        libpq conninfo of the sync server, as the
#                                superuser postgres on the Unix socket
#   PERSIST_SYNC_TEMPLATE_DB     a database with the sync schema and no
#                                store, which tests copy with CREATE DATABASE
#                                ... TEMPLATE for a server of their own
#   PERSIST_SYNC_TLS_PORT        port on 127.0.0.1 of the TLS server whose
#                                certificate names localhost and 127.0.0.1
#   PERSIST_SYNC_TLS_IP_ONLY_PORT  port on 127.0.0.1 of the TLS server whose
#                                certificate names only 127.0.0.1
#   PERSIST_SYNC_TLS_CA          the CA certificate that signed both
#   PERSIST_SYNC_TLS_OTHER_CA    a CA certificate that signed neither
#
# PERSIST_SYNC_PROPTEST_CASES sets the cases of the property test (default
# 48). Set PERSIST_SYNC_KEEP=1 to keep the temporary folder (server logs,
# certificates).
# The tests use one random store per test, so they run in parallel.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=scripts/lib/common.sh
source "$root/scripts/lib/common.sh"
# shellcheck source=scripts/lib/pg-cluster.sh
source "$root/scripts/lib/pg-cluster.sh"

target_dir=${CARGO_TARGET_DIR:-$root/target}
server_sql=${PERSIST_SYNC_SERVER_SQL:-}
if [[ -n $server_sql && ! -f $server_sql ]]; then
    fail "PERSIST_SYNC_SERVER_SQL=$server_sql is not a file; expected the path of pg-ext/sql/sync_server.sql"
fi

ensure_packages sqlite3 openssl postgresql

# A short path: each cluster's Unix socket path must stay under 107 bytes.
work=$(mktemp -d /tmp/persist-sync.XXXXXX)
# The clusters run as user postgres when the caller is root, and postgres
# must be able to reach its directories under $work.
chmod 711 "$work"
clusters=()
cleanup() {
    local status=$?
    local cluster
    for cluster in "${clusters[@]}"; do
        pg_cluster_stop "$cluster" || status=1
    done
    if [[ ${PERSIST_SYNC_KEEP:-0} == 1 ]]; then
        echo "test-sync: kept $work"
    else
        rm -rf "$work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The tests never use the caller's keychain or default key folder.
unset DBUS_SESSION_BUS_ADDRESS
export PERSIST_KEY_DIR="$work/keys"

step "cargo build --release -p persist-sqlite" cargo build --release -p persist-sqlite
extension=$target_dir/release/libpersist.so
[[ -f $extension ]] || fail "the build did not produce $extension"

# Creates database $1 and the sync schema in it, in the cluster that PGHOST
# and PGPORT point at.
create_sync_database() {
    local database=$1
    psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE $database"
    if [[ -n $server_sql ]]; then
        echo "test-sync: $database: CREATE SCHEMA persist and $server_sql (PERSIST_SYNC_SERVER_SQL)"
        psql -X -q -v ON_ERROR_STOP=1 -d "$database" -c 'CREATE SCHEMA persist' -f "$server_sql"
    else
        echo "test-sync: $database: CREATE EXTENSION persist"
        psql -X -q -v ON_ERROR_STOP=1 -d "$database" -c 'CREATE EXTENSION persist'
    fi
    if ! psql -X -q -At -d "$database" -c 'SELECT persist.sync_server_id()' >/dev/null; then
        fail "the sync schema has no function persist.sync_server_id(); install a current build of the extension (scripts/test-pg.sh) or set PERSIST_SYNC_SERVER_SQL=$root/pg-ext/sql/sync_server.sql"
    fi
}

# Writes a CA certificate and key: make_ca NAME SUBJECT.
make_ca() {
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$certs/$1.key" -out "$certs/$1.crt" -days 2 -subj "$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# Writes a server certificate signed by the test CA: make_server_cert NAME
# SUBJECT SUBJECT_ALT_NAMES.
make_server_cert() {
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$certs/$1.key" -out "$certs/$1.csr" -subj "$2" 2>/dev/null
    printf '%s\n' "subjectAltName=$3" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >"$certs/$1.ext"
    openssl x509 -req -in "$certs/$1.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" \
        -CAcreateserial -days 2 -extfile "$certs/$1.ext" -out "$certs/$1.crt" 2>/dev/null
}

# Starts a cluster in DIR that serves TLS with certificate NAME on
# 127.0.0.1, and rejects TCP connections without TLS: start_tls_cluster DIR NAME.
start_tls_cluster() {
    local dir=$1 name=$2
    clusters+=("$dir")
    pg_cluster_start "$dir" >/dev/null
    pg_cluster_stop "$dir" >/dev/null
    local data=$dir/data
    cp "$certs/$name.crt" "$data/server.crt"
    cp "$certs/$name.key" "$data/server.key"
    chown --reference="$data/PG_VERSION" "$data/server.crt" "$data/server.key"
    chmod 600 "$data/server.key"
    cat >>"$data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
    cat >"$data/pg_hba.conf" <<EOF
local all all trust
hostnossl all all all reject
hostssl all all 127.0.0.1/32 trust
EOF
    pg_cluster_start "$dir" >/dev/null
    create_sync_database sync
}

echo "==> TLS certificates"
certs=$work/certs
mkdir -m 700 "$certs"
make_ca ca "/CN=Persist sync test CA"
make_ca other-ca "/CN=Persist unrelated test CA"
make_server_cert localhost "/CN=localhost" "DNS:localhost,IP:127.0.0.1"
make_server_cert ip-only "/CN=127.0.0.1" "IP:127.0.0.1"

# The TLS clusters start first and one at a time: pg_cluster_start picks a
# port that no TCP listener uses, and each cluster listens on TCP only after
# its restart.
echo "==> TLS servers on 127.0.0.1"
start_tls_cluster "$work/tls" localhost
tls_port=$PGPORT
start_tls_cluster "$work/tls-ip" ip-only
tls_ip_only_port=$PGPORT

echo "==> sync server on a Unix socket"
clusters+=("$work/pg")
pg_cluster_start "$work/pg"
create_sync_database sync
# Tests that need a database of their own (a pg_dump of one store, triggers
# that block a push) copy this template, which no one may connect to.
create_sync_database sync_template
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'ALTER DATABASE sync_template ALLOW_CONNECTIONS false'

export PERSIST_EXTENSION=$extension
export PERSIST_SQLITE3=${PERSIST_SQLITE3:-/usr/bin/sqlite3}
export PERSIST_SYNC_CONNINFO="host=$PGHOST port=$PGPORT user=postgres dbname=sync"
export PERSIST_SYNC_TEMPLATE_DB=sync_template
export PERSIST_SYNC_TLS_PORT=$tls_port
export PERSIST_SYNC_TLS_IP_ONLY_PORT=$tls_ip_only_port
export PERSIST_SYNC_TLS_CA=$certs/ca.crt
export PERSIST_SYNC_TLS_OTHER_CA=$certs/other-ca.crt
echo "test-sync: PERSIST_SYNC_CONNINFO=$PERSIST_SYNC_CONNINFO"
echo "test-sync: TLS servers on 127.0.0.1 ports $tls_port and $tls_ip_only_port"

started=$(date +%s)
status=0
cargo test -p persist-tests --release --test sync "$@" || status=$?
elapsed=$(($(date +%s) - started))
echo "test-sync: cargo test took ${elapsed} s"
if [[ $status -ne 0 ]]; then
    fail "sync tests failed (cargo test exit status $status)"
fi
