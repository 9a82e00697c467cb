#!/usr/bin/env bash
# Builds the stand-in for the next release that the rolling-upgrade tests run beside this one:
# `pullback` with the feature rehearse-next-level (one command level ahead, with one command
# this build does not know), kept as $CARGO_TARGET_DIR/rehearsal/pullback.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$root"
cargo build -p pullback --features rehearse-next-level
mkdir -p "$CARGO_TARGET_DIR/rehearsal"
cp "$CARGO_TARGET_DIR/debug/pullback" "$CARGO_TARGET_DIR/rehearsal/pullback.new"
mv "$CARGO_TARGET_DIR/rehearsal/pullback.new" "$CARGO_TARGET_DIR/rehearsal/pullback"
