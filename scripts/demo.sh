#!/usr/bin/env bash
# Builds Pullback and runs `pullback demo`; extra arguments go to the demo
# (for example --once, or --mail ../shared/data/mail).
set -euo pipefail
source "$(dirname "$0")/env.sh"
need_packages clang libclang-dev
cd "$root"
cargo build -p pullback
exec "$CARGO_TARGET_DIR/debug/pullback" demo "$@"
