# Sourced by the scripts: where the build goes and where the shared test data is.
#
# The target directory lives outside the checkout so that every clone on this machine shares
# one build (RocksDB alone takes about ten minutes to compile).
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
    if [ -d /work ] && [ -w /work ]; then
        CARGO_TARGET_DIR=/work/target
    else
        CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/pullback/target"
    fi
fi
export CARGO_TARGET_DIR
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PULLBACK_SHARED_DATA:-}" ] && [ -d "$root/../shared/data" ]; then
    PULLBACK_SHARED_DATA="$(cd "$root/../shared/data" && pwd)"
    export PULLBACK_SHARED_DATA
fi

# Installs the Debian packages named, if any is missing.
need_packages() {
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "installing ${missing[*]}" >&2
        local sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}
