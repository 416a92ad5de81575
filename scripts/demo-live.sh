#!/usr/bin/env bash
# Helios in LIVE mode against the VALR exchange double, all on loopback, on this machine.
#   scripts/demo-live.sh            run until Ctrl-C (dashboard URL printed)
#   scripts/demo-live.sh --check    start, verify LIVE + healthy + audit passed; a position protected on the
#                                   exchange through a SIGKILL of Helios (the double's price falls through the stop
#                                   while Helios is dead, the exchange-held order sells, Helios reconciles it on
#                                   start); emergency-stop; exit
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

$PY -m helios_double --port "$DOUBLE_PORT" --price BTCZAR=1200000 --balance ZAR=1000 \
  --spread-pct 0.02 > "$work/double.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -fs "127.0.0.1:$DOUBLE_PORT/_double/health" >/dev/null 2>&1 && break; sleep 0.1; done

secret=$($PY -c 'from helios_double import DEFAULT_SECRET; print(DEFAULT_SECRET)')
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
HELIOS_TICK_SECONDS=0.2
ALERT_URLS=file://$work/alerts.jsonl
ENV

echo "== sign-offs (a demo: in production each is a human check, see the README runbook)"
for item in code-review api-key-permissions balance-check emergency-contacts rollback-plan kill-switch-test; do
  .venv/bin/helios attest "$item" --by demo --note "demo against the exchange double" --env-file "$work/helios.env"
done
echo "== pre-live audit against the double"
.venv/bin/helios audit --env-file "$work/helios.env" || true
start_helios() {
  (set -a; . "$work/helios.env"; exec .venv/bin/helios run) >> "$work/helios.log" 2>&1 &
  helios_pid=$!
  pids+=("$helios_pid")
  for _ in $(seq 100); do curl -fs "127.0.0.1:$API_PORT/api/health" >/dev/null 2>&1 && break; sleep 0.1; done
}
# Drives the double's price and reads Helios' API (demo steps below); prints what it saw.
drive() { DOUBLE="http://127.0.0.1:$DOUBLE_PORT" API="http://127.0.0.1:$API_PORT" $PY - "$@" <<'PY'
import json, os, sys, time, urllib.request
from decimal import Decimal
D, A = os.environ["DOUBLE"], os.environ["API"]
def get(url): return json.load(urllib.request.urlopen(url, timeout=5))
def price(p): urllib.request.urlopen(urllib.request.Request(D + "/_double/price", method="POST",
    data=json.dumps({"pair": "BTCZAR", "price": str(p)}).encode(), headers={"Content-Type": "application/json"}), timeout=5)
def wait(pred, what, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = pred()
        if found: return found
        time.sleep(0.1)
    sys.exit(f"demo: timed out waiting for {what}")
def orders(): return get(A + "/api/orders")["orders"]
step = sys.argv[1]
if step == "enter":  # a dip then a rise: the default SMA strategy enters; the double fills its limit BUY
    p = Decimal(1200000)
    for _ in range(30):
        p -= 600; price(p); time.sleep(0.25)
    entry = None
    for _ in range(60):
        p += 1500; price(p); time.sleep(0.25)
        entry = next((o for o in orders() if o["purpose"] == "ENTRY"), None)
        if entry: break
    if entry is None: sys.exit("demo: the strategy did not enter")
    price(Decimal(entry["price"]) * Decimal("0.998"))  # the market comes to the limit: it fills
    pos = wait(lambda: get(A + "/api/positions")["positions"], "the position")[0]
    stop = wait(lambda: [o for o in orders() if o["customer_order_id"].startswith("hp-") and o["status"] == "OPEN"],
                "the protective stop-loss on the exchange")[0]
    print(f"position {pos['quantity']} BTC at {pos['avg_entry_price']}; stop-loss {pos['stop_loss']} held ON THE "
          f"EXCHANGE: {stop['customer_order_id']} SELL {stop['quantity']} (stop-limit, limit {stop['price']})")
    open(os.environ["STOPFILE"], "w").write(pos["stop_loss"])
elif step == "crash":  # Helios is down: the price falls through the stop; the exchange-held order sells
    stop = Decimal(open(os.environ["STOPFILE"]).read())
    price((stop * Decimal("0.995")).quantize(Decimal(1)))
    state = get(D + "/_double/state")
    print(f"Helios is down; price {state['prices']['BTCZAR']['last']} is through the stop {stop}: the "
          "exchange-held order sold the position")
elif step == "reconciled":
    wait(lambda: not get(A + "/api/positions")["positions"], "the position to be closed after the restart")
    trade = get(A + "/api/trades")["trades"][0]
    print(f"after the restart Helios reconciled it: position closed, exit {trade['exit_reason']} at "
          f"{trade['exit_price']}, realised R{trade['realised_pnl_zar']}")
PY
}
echo "== starting Helios LIVE (exchange double at http://127.0.0.1:$DOUBLE_PORT)"
start_helios
echo "mode:   $(curl -fs 127.0.0.1:$API_PORT/api/mode/current)"
echo "health: $(curl -s 127.0.0.1:$API_PORT/api/health)"
echo "dashboard: http://127.0.0.1:$API_PORT/dashboard.html   (API token: in $work/helios.env)"
if [[ ${1:-} == --check ]]; then
  curl -fs "127.0.0.1:$API_PORT/api/mode/current" | grep -q '"mode":"LIVE"'
  curl -fs "127.0.0.1:$API_PORT/api/health" | grep -q '"status":"ok"'
  curl -fs "127.0.0.1:$API_PORT/api/health" | grep -q '"reconciliation":{"ok":true'
  echo "== a position stays protected while Helios is stopped"
  export STOPFILE="$work/stop"
  drive enter
  kill -KILL "$helios_pid"; wait "$helios_pid" 2>/dev/null || true
  echo "Helios killed (SIGKILL: no shutdown code ran); the protective stop-loss stays on the exchange"
  drive crash
  start_helios
  drive reconciled
  .venv/bin/helios emergency-stop --env-file "$work/helios.env" --reason "demo check"
  echo "demo-live check passed"
  exit 0
fi
echo "Ctrl-C stops Helios and the double."
wait
