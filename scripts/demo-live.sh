#!/usr/bin/env bash
# Helios in LIVE mode against the VALR exchange double, all on loopback, on this machine.
#   scripts/demo-live.sh            run until Ctrl-C (dashboard URL printed)
#   scripts/demo-live.sh --check    start, verify LIVE + healthy + audit passed, emergency-stop, exit
# Nothing here can reach VALR: VALR_BASE_URL points at the double on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[[ -x $PY ]] || scripts/bootstrap.sh --no-apt
DOUBLE_PORT=${DOUBLE_PORT:-8290}
API_PORT=${API_PORT:-8190}
work=$(mktemp -d /tmp/helios-live-demo.XXXXXX)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

$PY -m helios.exchange.double --port "$DOUBLE_PORT" --price BTCZAR=1200000 --balance ZAR=1000 \
  --spread-pct 0.02 > "$work/double.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -fs "127.0.0.1:$DOUBLE_PORT/_double/health" >/dev/null 2>&1 && break; sleep 0.1; done

secret=$($PY -c 'from helios.exchange.double import DEFAULT_SECRET; print(DEFAULT_SECRET)')
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
umask 077
cat > "$work/helios.env" <<ENV
TRADING_MODE=LIVE
ENABLE_PAPER_TRADING=false
VALR_BASE_URL=http://127.0.0.1:$DOUBLE_PORT
VALR_API_KEY=helios-double-key
VALR_API_SECRET=$secret
HELIOS_API_TOKEN=$token
HELIOS_API_PORT=$API_PORT
HELIOS_STATE_DIR=$work/state
MAX_POSITION_SIZE_ZAR=300
ALERT_URLS=file://$work/alerts.jsonl
ENV

echo "== sign-offs (a demo: in production each is a human check, see the README runbook)"
for item in code-review api-key-permissions balance-check emergency-contacts rollback-plan kill-switch-test; do
  .venv/bin/helios attest "$item" --by demo --note "demo against the exchange double" --env-file "$work/helios.env"
done
echo "== pre-live audit against the double"
.venv/bin/helios audit --env-file "$work/helios.env" || true
echo "== starting Helios LIVE (exchange double at http://127.0.0.1:$DOUBLE_PORT)"
(set -a; . "$work/helios.env"; exec .venv/bin/helios run) > "$work/helios.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs "127.0.0.1:$API_PORT/api/health" >/dev/null 2>&1 && break; sleep 0.1; done
echo "mode:   $(curl -fs 127.0.0.1:$API_PORT/api/mode/current)"
echo "health: $(curl -s 127.0.0.1:$API_PORT/api/health)"
echo "dashboard: http://127.0.0.1:$API_PORT/dashboard.html   (API token: in $work/helios.env)"
if [[ ${1:-} == --check ]]; then
  curl -fs "127.0.0.1:$API_PORT/api/mode/current" | grep -q '"mode":"LIVE"'
  curl -fs "127.0.0.1:$API_PORT/api/health" | grep -q '"status":"ok"'
  curl -fs "127.0.0.1:$API_PORT/api/health" | grep -q '"reconciliation":{"ok":true'
  .venv/bin/helios emergency-stop --env-file "$work/helios.env" --reason "demo check"
  echo "demo-live check passed"
  exit 0
fi
echo "Ctrl-C stops Helios and the double."
wait
