#!/usr/bin/env bash
# Runs the fast suite (everything but the real-host tests) N times in a row with `-n 2` while two busy loops keep
# both cores loaded, and stops at the first red run. A test that is green alone but red under load is a defect.
# Usage: scripts/suite-under-load.sh [N=5]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
python3 -c 'while True: pass' & load1=$!
python3 -c 'while True: pass' & load2=$!
trap 'kill "$load1" "$load2" 2>/dev/null || true' EXIT
for i in $(seq 1 "$runs"); do
  started=$(date +%s)
  if ! .venv/bin/pytest -q -n 2 -m "not sandbox" -p no:cacheprovider > ".suite-under-load-$i.log" 2>&1; then
    tail -n 30 ".suite-under-load-$i.log"
    echo "run $i of $runs: RED under load ($(( $(date +%s) - started ))s); log: .suite-under-load-$i.log" >&2
    exit 1
  fi
  echo "run $i of $runs: $(tail -n 1 ".suite-under-load-$i.log") ($(( $(date +%s) - started ))s)"
done
