#!/usr/bin/env bash
# Installs what building and testing pg-ext needs, skipping each step that is
# already done:
#
#   1. Debian packages postgresql-$PG_MAJOR, postgresql-server-dev-$PG_MAJOR
#      (headers, and clang for bindgen) and sudo (cargo pgrx test --runas).
#      They are installed when missing, or when the server-dev version differs
#      from the server version. Both are then installed in one apt-get call,
#      so they end up at the same candidate version.
#   2. cargo-pgrx $PGRX_VERSION, which must match the pgrx version in
#      pg-ext/Cargo.toml.
#   3. `cargo pgrx init --pg$PG_MAJOR $PG_CONFIG`, which registers the system
#      Postgres in $PGRX_HOME/config.toml (default ~/.pgrx) and downloads
#      nothing.
#
# Run it directly, or source it and call setup_postgres. Root runs apt-get
# directly, other users through sudo.
#
# Environment: PG_MAJOR (default 15), PG_CONFIG (default /usr/bin/pg_config),
# PGRX_VERSION (default 0.18.1), PGRX_HOME (default ~/.pgrx).

set -euo pipefail

# Prints the installed version of Debian package $1, or nothing when it is
# not installed.
_setup_postgres_dpkg_version() {
    # dpkg-query fails for a package it has never seen; that is "not
    # installed", not an error, also under set -e and pipefail.
    { dpkg-query --show --showformat='${db:Status-Abbrev} ${Version}' "$1" 2>/dev/null || true; } |
        awk '$1 == "ii" { print $2 }'
}

# Runs a command as root: directly for root, through sudo otherwise.
_setup_postgres_as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    else
        sudo "$@"
    fi
}

setup_postgres_packages() {
    local major=$1
    local server server_dev sudo_version
    server=$(_setup_postgres_dpkg_version "postgresql-$major")
    server_dev=$(_setup_postgres_dpkg_version "postgresql-server-dev-$major")
    sudo_version=$(_setup_postgres_dpkg_version sudo)

    if [[ -n $server && $server == "$server_dev" && -n $sudo_version ]]; then
        echo "setup-postgres: postgresql-$major and postgresql-server-dev-$major $server and sudo $sudo_version are installed"
        return 0
    fi

    echo "setup-postgres: installed versions: postgresql-$major '${server:-none}'," \
        "postgresql-server-dev-$major '${server_dev:-none}', sudo '${sudo_version:-none}'"
    echo "setup-postgres: running apt-get update"
    _setup_postgres_as_root apt-get update -qq
    echo "setup-postgres: running apt-get install postgresql-$major postgresql-server-dev-$major sudo"
    # Debian's policy-rc.d in containers keeps apt from starting the Debian
    # cluster. On a machine without it, installing the server package may
    # start that cluster on port 5432.
    _setup_postgres_as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends \
        "postgresql-$major" "postgresql-server-dev-$major" sudo

    server=$(_setup_postgres_dpkg_version "postgresql-$major")
    server_dev=$(_setup_postgres_dpkg_version "postgresql-server-dev-$major")
    if [[ -z $server || $server != "$server_dev" ]]; then
        echo "setup-postgres: postgresql-$major is '${server:-none}' but postgresql-server-dev-$major is" \
            "'${server_dev:-none}' after apt-get install; pgrx needs headers of the server's version" >&2
        return 1
    fi
    echo "setup-postgres: postgresql-$major and postgresql-server-dev-$major are now $server"
}

setup_postgres_cargo_pgrx() {
    local version=$1
    local installed
    installed=$(cargo pgrx --version 2>/dev/null || true)
    if [[ $installed == "cargo-pgrx $version" ]]; then
        echo "setup-postgres: $installed is installed"
        return 0
    fi

    echo "setup-postgres: found '${installed:-no cargo-pgrx}', running cargo install cargo-pgrx --version =$version --locked"
    # --force replaces another installed version.
    cargo install cargo-pgrx --version "=$version" --locked --force
}

setup_postgres_pgrx_init() {
    local major=$1 pg_config=$2
    local config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
    if [[ -f $config ]] && grep -Eq "^pg${major}[[:space:]]*=" "$config"; then
        echo "setup-postgres: $config already lists pg$major"
        return 0
    fi

    echo "setup-postgres: running cargo pgrx init --pg$major $pg_config"
    cargo pgrx init "--pg$major" "$pg_config"
}

setup_postgres() {
    local major=${PG_MAJOR:-15}
    local pg_config=${PG_CONFIG:-/usr/bin/pg_config}
    local pgrx_version=${PGRX_VERSION:-0.18.1}

    setup_postgres_packages "$major"
    setup_postgres_cargo_pgrx "$pgrx_version"
    setup_postgres_pgrx_init "$major" "$pg_config"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    setup_postgres
fi
