#!/usr/bin/env bash
# Runs the keychain tests inside a private D-Bus session (started by
# `dbus-run-session -- bash scripts/lib/keychain-session.sh`): starts
# gnome-keyring-daemon's Secret Service with a throwaway login keyring, runs
# the core's keychain test, then checks that the SQLite extension keeps a new
# store's device key in the keychain and opens the store with it again.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/persist-keychain.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The keyrings live in a throwaway home, never in the user's own; the Rust
# toolchain keeps its own folders.
export RUSTUP_HOME="${RUSTUP_HOME:-$HOME/.rustup}" CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
export HOME="$work/home" XDG_DATA_HOME="$work/home/.local/share"
mkdir -p "$HOME"
printf 'throwaway-test-password' | gnome-keyring-daemon --unlock --components=secrets >/dev/null

cd "$root"
cargo test -p persist-core --features keychain --lib -- --ignored keychain

cargo build --quiet -p persist-sqlite
extension="$root/target/debug/libpersist"
store="keychain-test-$$"
export PERSIST_KEY_DIR="$work/keys"
first=$(sqlite3 "$work/k.db" ".load $extension" \
    "SELECT json_extract(persist_init('$store'), '\$.key_location')")
[ "$first" = "OS keychain" ] || { echo "expected the key in the OS keychain, got: $first" >&2; exit 1; }
[ ! -e "$work/keys" ] || { echo "a keyfile was written although the keychain is reachable" >&2; exit 1; }
sqlite3 "$work/k.db" ".load $extension" "SELECT persist_init('$store') IS NOT NULL" \
    "CREATE VIRTUAL TABLE notes USING persist(id INTEGER PRIMARY KEY, body TEXT)" \
    "INSERT INTO notes VALUES (1, 'kept by the keychain')" >/dev/null
body=$(sqlite3 "$work/k.db" ".load $extension" "SELECT persist_init('$store') IS NOT NULL" \
    "SELECT body FROM notes WHERE id = 1" | tail -n 1)
[ "$body" = "kept by the keychain" ] || { echo "reopening with the keychain key failed: $body" >&2; exit 1; }
echo "SQLite extension: device key created in and reloaded from the OS keychain"
