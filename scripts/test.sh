#!/usr/bin/env bash
# Installs what the tests need (a C toolchain for RocksDB, Dovecot, Chromium for the UI test)
# and runs the whole suite.
set -euo pipefail
source "$(dirname "$0")/env.sh"
need_packages clang libclang-dev dovecot-imapd dovecot-lmtpd python3 chromium chromium-driver openssh-server slapd ldap-utils openssl
if [ -z "${PULLBACK_SHARED_DATA:-}" ]; then
    echo "the shared test data is missing: set PULLBACK_SHARED_DATA to the shared/data folder" >&2
    exit 1
fi
cd "$root"
# The rolling-upgrade test runs the next release's stand-in beside this build.
"$root/scripts/build-rehearsal.sh"
cargo test --workspace "$@"
