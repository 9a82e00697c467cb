#!/usr/bin/env bash
# Times a local backup write and verify of random files against `cp -r` + `sync`.
# Usage: benches/backup_throughput.sh [folder to work in, default /work] [GiB, default 2]
# Needs three times the size free in that folder; run it on a quiet machine.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$root"
cargo run --release -p pullback-backup --example throughput -- "$@"
