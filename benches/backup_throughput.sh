#!/usr/bin/env bash
# Times a local backup write and verify of random files against `cp -r` + `sync`.
# Usage: benches/backup_throughput.sh [folder to work in, default /work] [GiB, default 2]
# Needs twice the size free in that folder (three times with SFTP=1, which also times SFTP);
# run it on a quiet machine. ROUNDS sets the number of rounds (5).
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$root"
cargo run --release -p pullback-backup --example throughput -- "$@"
