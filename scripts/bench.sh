#!/usr/bin/env bash
# `make bench`: every benchmark that needs no test host, one after the other (about 5 minutes on 2 cores). Each
# script prints its own numbers (see its docstring for what it measures and its target). The long and the host
# benchmarks are listed at the end, with the command that runs each.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
run() {
  echo "== python bench/$*"
  "$py" "bench/$@" 2>&1 | grep -v 'disconnected: ConnectionRefusedError'
}
run bench_gates_router.py
run bench_emergency_stop.py
run bench_emergency_stop.py --live
run bench_emergency_stop.py --live --journal-locked
run bench_emergency_stop.py --hanging
run bench_protection.py
run bench_protection.py --latency-ms 50
run bench_service.py startup
run bench_red_flags.py
run bench_valr_roundtrip.py
run bench_valr_public_calls.py
run bench_valr_fill_seen.py
cat <<'MORE'

Not run here (long, or need a test host):
  .venv/bin/python bench/bench_service.py memory        # resident memory after 10 min of trading at a 0.1 s tick
  .venv/bin/python bench/rest_polling.py                # private REST calls a minute, WebSocket up and down (~30 min)
  sudo .venv/bin/python bench/bench_deploy.py           # deploy, rollback, emergency stop on a sandbox host (~10 min)
MORE
