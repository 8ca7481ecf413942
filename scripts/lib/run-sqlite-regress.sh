#!/usr/bin/env bash
# Runs the SQLite regression scripts against a built extension:
#
#   scripts/lib/run-sqlite-regress.sh EXTENSION_PATH [--update]
#
# EXTENSION_PATH is the loadable library, such as target/release/libpersist.so
# (the .so suffix may be left out, as with the CLI's .load). For each
# sql/regress/sqlite/NAME.sql, in name order, the script:
#
#   1. creates a fresh temporary directory, runs there and removes it at the
#      end, also after a failure or an interrupt;
#   2. runs the file through the sqlite3 CLI, roughly as
#
#        cd TMP && PERSIST_KEY_DIR=TMP/keys stdbuf -o0 -e0 \
#            sqlite3 -batch -echo -init /dev/null -cmd ".load 'EXTENSION_PATH'" \
#            test.db < NAME.sql > NAME.out 2>&1
#
#      with DBUS_SESSION_BUS_ADDRESS and XDG_RUNTIME_DIR unset, so the device
#      key always goes to a keyfile under TMP/keys and the OS keychain is
#      never used. -echo prints every input line (comments included) before
#      its output, as pg_regress does. stdbuf turns off stdio buffering, so an
#      error on stderr appears right after the statement that caused it.
#      -init /dev/null skips ~/.sqliterc;
#   3. rewrites the output so that it does not depend on the run: the
#      temporary directory's path becomes <tmpdir>, and every run of exactly
#      32 lowercase hex digits (store and device ids, which are random)
#      becomes <hex id>, and a shadow rowid in a message ("row" and 7 or more
#      digits; rowids are slots derived from random record ids) becomes
#      row <rowid>, and a random key id after "key" or "key id" becomes
#      <key id>, and a time in "at 1733356800 (Unix seconds)" (an invite's
#      expiry) becomes <time>;
#   4. compares it with sql/regress/sqlite/expected/NAME.out using diff -u.
#
# TMP also contains a symbolic link libpersist.so to the extension, so a script
# that opens another database with .open can load the extension again with
# `.load ./libpersist`.
#
# The actual outputs stay in $CARGO_TARGET_DIR/sqlite-regress/NAME.out (by
# default target/sqlite-regress/). With --update, the outputs are written to
# the expected files instead; review every changed line before committing.
#
# The CLI exits with status 1 after any SQL error, which the scripts cause on
# purpose, so status 0 and 1 are both normal. Any other status (a crash, or
# 124 when the script runs longer than SQLITE_REGRESS_TIMEOUT seconds,
# default 600) is added to the output, which then differs from the expected
# file.
#
# Environment: SQLITE3 (default /usr/bin/sqlite3; the expected files were
# made with Debian's sqlite3 3.40.1, and other versions word some errors and
# query plans differently), SQLITE_REGRESS_TIMEOUT, CARGO_TARGET_DIR.

set -euo pipefail

usage() {
    echo "usage: $0 EXTENSION_PATH [--update]" >&2
    exit 2
}

extension=
update=0
for arg in "$@"; do
    case $arg in
        --update) update=1 ;;
        -h | --help) usage ;;
        -*)
            echo "error: unknown option $arg" >&2
            usage
            ;;
        *)
            [[ -z $extension ]] || usage
            extension=$arg
            ;;
    esac
done
[[ -n $extension ]] || usage

if [[ ! -f $extension && -f $extension.so ]]; then
    extension=$extension.so
fi
if [[ ! -f $extension ]]; then
    echo "error: extension $extension not found; build it with cargo build --release -p persist-sqlite" >&2
    exit 2
fi
extension=$(cd "$(dirname "$extension")" && pwd -P)/$(basename "$extension")

sqlite3=${SQLITE3:-/usr/bin/sqlite3}
if [[ ! -x $sqlite3 ]]; then
    echo "error: sqlite3 CLI $sqlite3 not found; install Debian's sqlite3 package or set SQLITE3" >&2
    exit 2
fi
if ! command -v stdbuf >/dev/null; then
    echo "error: stdbuf (GNU coreutils) not found" >&2
    exit 2
fi
timeout_seconds=${SQLITE_REGRESS_TIMEOUT:-600}

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
regress_dir=$repo_root/sql/regress/sqlite
expected_dir=$regress_dir/expected
results_dir=${CARGO_TARGET_DIR:-$repo_root/target}/sqlite-regress

shopt -s nullglob
scripts=("$regress_dir"/*.sql)
shopt -u nullglob
if [[ ${#scripts[@]} -eq 0 ]]; then
    echo "error: no scripts in $regress_dir" >&2
    exit 2
fi
mkdir -p "$results_dir"
if [[ $update == 1 ]]; then
    mkdir -p "$expected_dir"
fi

work_dir=
cleanup() {
    if [[ -n $work_dir ]]; then
        rm -rf "$work_dir"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Escapes a string for use as a literal in an extended (sed -E) regular
# expression.
sed_literal() {
    printf '%s' "$1" | sed 's/[][\.*^$/+?(){}|]/\\&/g'
}

# Runs one script in a fresh directory and writes its normalized output.
run_script() {
    local script=$1 output=$2
    work_dir=$(mktemp -d "${TMPDIR:-/tmp}/persist-sqlite-regress.XXXXXX")
    work_dir=$(cd "$work_dir" && pwd -P)
    ln -s "$extension" "$work_dir/libpersist.so"

    local status=0
    (
        cd "$work_dir"
        unset DBUS_SESSION_BUS_ADDRESS XDG_RUNTIME_DIR
        export PERSIST_KEY_DIR=$work_dir/keys
        exec timeout --foreground --kill-after=10 "$timeout_seconds" \
            stdbuf -o0 -e0 "$sqlite3" -batch -echo -init /dev/null \
            -cmd ".load '$extension'" test.db
    ) <"$script" >"$output.raw" 2>&1 || status=$?
    if [[ $status -gt 1 ]]; then
        echo "** sqlite3 exited with status $status **" >>"$output.raw"
    fi

    sed -E \
        -e "s/$(sed_literal "$work_dir")/<tmpdir>/g" \
        -e 's/(^|[^0-9a-f])[0-9a-f]{32}([^0-9a-f]|$)/\1<hex id>\2/g' \
        -e 's/row [0-9]{7,}/row <rowid>/g' \
        -e 's/([Kk]ey( id\)?)?) [0-9]{6,}/\1 <key id>/g' \
        -e 's/at [0-9]+ \(Unix seconds\)/at <time> (Unix seconds)/g' \
        "$output.raw" >"$output"
    rm -f "$output.raw"
    rm -rf "$work_dir"
    work_dir=
}

echo "sqlite3 $("$sqlite3" -version | cut -d' ' -f1), extension $extension"
passed=()
failed=()
for script in "${scripts[@]}"; do
    name=$(basename "$script" .sql)
    actual=$results_dir/$name.out
    expected=$expected_dir/$name.out
    run_script "$script" "$actual"

    if [[ $update == 1 ]]; then
        if [[ -f $expected ]] && cmp -s "$actual" "$expected"; then
            echo "unchanged  $name"
        else
            cp "$actual" "$expected"
            echo "written    $name"
        fi
        continue
    fi

    if [[ ! -f $expected ]]; then
        echo "FAILED     $name: no expected file $expected (run with --update and review it)"
        failed+=("$name")
    elif diff -u --label "expected/$name.out" --label "actual/$name.out" "$expected" "$actual"; then
        echo "ok         $name"
        passed+=("$name")
    else
        echo "FAILED     $name (actual output: $actual)"
        failed+=("$name")
    fi
done

if [[ $update == 1 ]]; then
    echo "expected files written to $expected_dir; review every change"
    exit 0
fi
echo "${#passed[@]} passed, ${#failed[@]} failed${failed[*]:+: ${failed[*]}}"
[[ ${#failed[@]} -eq 0 ]]
