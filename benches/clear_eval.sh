#!/usr/bin/env bash
# CLEAR analysis against SpamAssassin on the same labelled mail, side by side.
#
#   benches/clear_eval.sh [MALICIOUS_DIR] [CLEAN_DIR]
#
# Defaults: ../shared/data/mail/phish (malicious, except phish/sample-5478.eml, a legitimate
# list post counted as clean) and ../shared/data/mail/ham (clean). Installs Debian's
# spamassassin when missing and runs it with local tests only (-L: no network lookups).
# Pullback's figures come from `pullback clear eval` (release build), its speed from
# `--repeat` on one pinned core. Malicious or suspicious counts as positive for Pullback;
# "spam" for SpamAssassin.
set -euo pipefail
source "$(dirname "$0")/../scripts/env.sh"
cd "$root"
shared="${PULLBACK_SHARED_DATA:-$root/../shared/data}"
malicious="${1:-$shared/mail/phish}"
clean="${2:-$shared/mail/ham}"
exception="$malicious/sample-5478.eml"

need_packages spamassassin
cargo build --release --workspace
pullback="$CARGO_TARGET_DIR/release/pullback"

echo "== Pullback (clear eval)"
"$pullback" clear eval --malicious "$malicious" --clean "$clean" \
    --treat-as-clean "$exception" --repeat 50 | sed 's/^/  /'
echo "== Pullback, one core (taskset -c 0)"
taskset -c 0 "$pullback" clear eval --malicious "$malicious" --clean "$clean" \
    --treat-as-clean "$exception" --repeat 50 | grep "analysis alone" | sed 's/^/  /'

echo "== SpamAssassin $(spamassassin --version | head -1 | awk '{print $3}') (-L, local tests only)"
tp=0 fn=0 fp=0 tn=0
started=$(date +%s.%N)
count=0
for file in "$malicious"/* "$clean"/*; do
    [ -f "$file" ] || continue
    truth=clean
    case "$file" in "$malicious"/*) [ "$file" = "$exception" ] || truth=malicious ;; esac
    if spamassassin -L -e <"$file" >/dev/null 2>&1; then said=ham; else said=spam; fi
    count=$((count + 1))
    case "$truth/$said" in
        malicious/spam) tp=$((tp + 1)) ;;
        malicious/ham) fn=$((fn + 1)) ;;
        clean/spam) fp=$((fp + 1)) ;;
        clean/ham) tn=$((tn + 1)) ;;
    esac
done
elapsed=$(echo "$(date +%s.%N) - $started" | bc -l)
python3 - "$tp" "$fn" "$fp" "$tn" "$count" "$elapsed" <<'EOF' | sed 's/^/  /'
import sys
tp, fn, fp, tn, count = map(int, sys.argv[1:6])
elapsed = float(sys.argv[6])
precision = tp / (tp + fp) if tp + fp else 0.0
recall = tp / (tp + fn) if tp + fn else 0.0
f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
fpr = fp / (fp + tn) if fp + tn else 0.0
print(f"messages: {count} ({tp + fn} malicious, {fp + tn} clean)")
print(f"                 predicted positive  predicted negative")
print(f"truly malicious  {tp:>18}  {fn:>18}")
print(f"truly clean      {fp:>18}  {tn:>18}")
print(f"precision {precision:.3f}  recall {recall:.3f}  F1 {f1:.3f}  false-positive rate {fpr:.3f}")
print(f"time: {elapsed:.1f} s for {count} messages, one spamassassin process each")
EOF
