# Shared helpers for the scripts: logging, failing, and installing Debian
# packages that are missing. Source it; it defines functions only.

# Prints a message to stderr and exits with status 1.
fail() {
    echo "error: $*" >&2
    exit 1
}

# Prints what is being done, runs it, and fails with its name if it fails.
step() {
    local name=$1
    shift
    local started=$SECONDS
    echo "==> $name"
    "$@" || fail "$name failed after $((SECONDS - started)) s"
    echo "<== $name: $((SECONDS - started)) s"
}

# Runs a command as root: directly when already root, else through sudo.
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        fail "need root to run: $* (install sudo or run as root)"
    fi
}

apt_updated=0

# Installs the named Debian packages that are not installed yet.
ensure_packages() {
    local missing=()
    local package
    for package in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$package")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "==> installing Debian packages: ${missing[*]}"
    if [ "$apt_updated" = 0 ]; then
        as_root apt-get update -qq || fail "apt-get update failed"
        apt_updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
        fail "could not install ${missing[*]}"
}
