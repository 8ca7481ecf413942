# shellcheck shell=bash
# Throwaway PostgreSQL clusters for scripts and end-to-end tests.
#
# Source this file, then:
#
#   pg_cluster_start DIR   # initdb, start, export PGHOST, PGPORT, PGUSER
#   trap 'pg_cluster_stop DIR' EXIT
#   psql -X -d postgres -c 'SELECT 1'
#
# Layout under DIR: data/ (PGDATA), sock/ (Unix socket), log/ (initdb and
# server logs) and port (the chosen port number). The server listens on the
# Unix socket only (listen_addresses = ''). The bootstrap superuser is
# `postgres` with trust authentication, so anyone who can open DIR/sock can
# connect as superuser: DIR is mode 700.
#
# Postgres refuses to run as root. When the caller is root, initdb and pg_ctl
# run as the `postgres` system user through runuser, and DIR is chowned to
# that user. Any other caller runs them directly and must own DIR.
#
# PG_CONFIG selects the installation (default /usr/bin/pg_config).

# Runs a command in directory $1 as the user that owns the cluster:
# `postgres` for root callers, the caller itself otherwise. It changes
# directory because runuser keeps the caller's working directory, which
# postgres may not be allowed to enter (such as /root).
_pg_cluster_run_as_owner() {
    local workdir=$1
    shift
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- env -C "$workdir" "$@"
    else
        env -C "$workdir" "$@"
    fi
}

# Prints the directory that contains initdb and pg_ctl.
_pg_cluster_bindir() {
    "${PG_CONFIG:-/usr/bin/pg_config}" --bindir
}

# Returns success when TCP port $1 has a listener on this machine. It reads
# /proc/net/tcp and /proc/net/tcp6, so it opens no connection.
_pg_cluster_tcp_port_listening() {
    local hex_port
    hex_port=$(printf '%04X' "$1")
    # Column 2 is local_address as HEXIP:HEXPORT and column 4 is the state,
    # where 0A is LISTEN.
    awk -v port="$hex_port" '
        FNR > 1 { split($2, local, ":"); if (local[2] == port && $4 == "0A") found = 1 }
        END { exit !found }
    ' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Prints a port number in 55432-55531 that no TCP listener and no socket in
# the usual socket directories (/var/run/postgresql, /tmp) uses. The socket
# directory is private to the cluster, so a number in use elsewhere would
# still work. A free one keeps logs unambiguous and lets someone turn on TCP.
_pg_cluster_pick_port() {
    local port
    for ((port = 55432; port < 55532; port++)); do
        if [[ -e /var/run/postgresql/.s.PGSQL.$port || -e /tmp/.s.PGSQL.$port ]]; then
            continue
        fi
        if _pg_cluster_tcp_port_listening "$port"; then
            continue
        fi
        echo "$port"
        return 0
    done
    echo "pg-cluster: no free port in 55432-55531" >&2
    return 1
}

# Creates (first call only) and starts the cluster under DIR unless it is
# already running, then exports PGHOST, PGPORT and PGUSER for psql.
pg_cluster_start() {
    if [[ $# -ne 1 || -z $1 ]]; then
        echo "usage: pg_cluster_start DIR" >&2
        return 2
    fi

    local dir bindir port
    mkdir -p "$1" || return 1
    dir=$(cd "$1" && pwd) || return 1
    bindir=$(_pg_cluster_bindir) || return 1

    # Postgres rejects Unix socket paths longer than 107 bytes (sun_path).
    local socket_suffix="/sock/.s.PGSQL.55432"
    if ((${#dir} + ${#socket_suffix} > 107)); then
        echo "pg-cluster: socket path under $dir is too long; use a shorter DIR" >&2
        return 1
    fi

    chmod 700 "$dir" || return 1
    if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$dir" || return 1
        if ! runuser -u postgres -- test -w "$dir"; then
            echo "pg-cluster: user postgres cannot write $dir; check the permissions of its parent directories" >&2
            return 1
        fi
    fi

    if [[ -f $dir/port ]]; then
        port=$(<"$dir/port")
    else
        port=$(_pg_cluster_pick_port) || return 1
    fi

    _pg_cluster_run_as_owner "$dir" mkdir -p data sock log || return 1
    _pg_cluster_run_as_owner "$dir" chmod 700 data sock || return 1
    echo "$port" | _pg_cluster_run_as_owner "$dir" tee port >/dev/null || return 1

    if [[ ! -f $dir/data/PG_VERSION ]]; then
        echo "pg-cluster: initdb in $dir/data"
        if ! _pg_cluster_run_as_owner "$dir" "$bindir/initdb" --pgdata="$dir/data" \
            --username=postgres --auth=trust --encoding=UTF8 --locale=C \
            --no-sync >"$dir/log/initdb.log" 2>&1; then
            echo "pg-cluster: initdb failed; its output follows" >&2
            cat "$dir/log/initdb.log" >&2
            return 1
        fi

        # fsync = off because the cluster is thrown away, so crash safety is
        # not needed and tests run faster.
        _pg_cluster_run_as_owner "$dir" tee -a data/postgresql.conf >/dev/null <<EOF || return 1
listen_addresses = ''
unix_socket_directories = '$dir/sock'
port = $port
fsync = off
EOF
    fi

    if _pg_cluster_run_as_owner "$dir" "$bindir/pg_ctl" --pgdata="$dir/data" status >/dev/null; then
        echo "pg-cluster: the server in $dir is already running (port $port)"
    else
        echo "pg-cluster: starting the server in $dir (Unix socket in $dir/sock, port $port)"
        if ! _pg_cluster_run_as_owner "$dir" "$bindir/pg_ctl" --pgdata="$dir/data" \
            --log="$dir/log/postgres.log" --wait --timeout=60 start >/dev/null; then
            echo "pg-cluster: pg_ctl start failed; the end of $dir/log/postgres.log follows" >&2
            tail -n 30 "$dir/log/postgres.log" >&2
            return 1
        fi
    fi

    export PGHOST="$dir/sock" PGPORT="$port" PGUSER=postgres
}

# Stops the cluster under DIR if it is running. Returns success when nothing
# runs there, so it is safe in an EXIT trap after a failed start.
pg_cluster_stop() {
    if [[ $# -ne 1 || -z $1 ]]; then
        echo "usage: pg_cluster_stop DIR" >&2
        return 2
    fi

    local dir bindir
    if [[ ! -f $1/data/postmaster.pid ]]; then
        return 0
    fi
    dir=$(cd "$1" && pwd) || return 1
    bindir=$(_pg_cluster_bindir) || return 1

    echo "pg-cluster: stopping the server in $dir"
    if ! _pg_cluster_run_as_owner "$dir" "$bindir/pg_ctl" --pgdata="$dir/data" \
        --mode=fast --wait --timeout=60 stop >/dev/null; then
        echo "pg-cluster: pg_ctl stop failed for $dir/data; see $dir/log/postgres.log" >&2
        return 1
    fi
}
