"use strict";
const $ = (id) => document.getElementById(id);
// Read calls carry the token when one was typed: on a non-loopback bind every endpoint needs it.
const readOptions = () => { const t = sessionStorage.getItem("helios-token"); return t ? {headers: {"Authorization": `Bearer ${t}`}} : {}; };
const esc = (v) => String(v ?? "-").replace(/[&<>"']/g, (c) => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));
const signed = (v) => { const n = Number(v); return `<span class="${n > 0 ? "pos" : n < 0 ? "neg" : ""}">${esc(v)}</span>`; };
function table(el, headers, rows) {
  el.innerHTML = `<tr>${headers.map((h) => `<th>${esc(h)}</th>`).join("")}</tr>` +
    (rows.length ? rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("")
                 : `<tr><td colspan="${headers.length}" class="muted">none</td></tr>`);
}
$("token").value = sessionStorage.getItem("helios-token") || "";
$("token").addEventListener("change", () => sessionStorage.setItem("helios-token", $("token").value));

async function refresh() {
  try {
    const [status, orders, trades] = await Promise.all([
      fetch("/api/status", readOptions()).then((r) => r.json()),
      fetch("/api/orders?open=true", readOptions()).then((r) => r.json()),
      fetch("/api/trades?limit=10", readOptions()).then((r) => r.json()),
    ]);
    $("mode").textContent = status.mode; $("mode").className = `badge ${status.mode}`;
    $("state").textContent = status.trading_state; $("state").className = `badge ${status.trading_state}`;
    $("health").textContent = status.healthy ? "healthy" : `UNHEALTHY: ${status.health.reasons.join("; ")}`;
    $("health").className = status.healthy ? "healthy" : "unhealthy";
    $("release").textContent = `release ${status.release || "-"} · helios ${status.version}`;
    const p = status.pnl;
    table($("pnl"), ["", "ZAR"], [
      ["today (realised + unrealised)", signed(p.today_total_zar)], ["today realised", signed(p.today_realised_zar)],
      ["unrealised", signed(p.unrealised_zar)], ["realised, all time", signed(p.realised_total_zar)],
      ["fees, all time", esc(p.fees_total_zar)], ["daily loss limit", esc(p.daily_loss_limit_zar)],
      ["cash", esc(p.cash_zar)]]);
    table($("positions"), ["pair", "qty", "entry", "mark", "stop", "take", "unrealised"],
      status.positions.map((x) => [esc(x.pair), esc(x.quantity), esc(x.avg_entry_price), esc(x.mark_price),
        esc(x.stop_loss), esc(x.take_profit), signed(x.unrealised_pnl_zar)]));
    table($("orders"), ["pair", "side", "type", "qty", "price", "filled", "status"],
      orders.orders.map((o) => [esc(o.pair), esc(o.side), esc(o.type), esc(o.quantity), esc(o.price),
        esc(o.filled_quantity), esc(o.status)]));
    table($("trades"), ["closed", "pair", "entry", "exit", "P&L", "why"],
      trades.trades.map((t) => [esc(t.closed_at.slice(0, 19)), esc(t.pair), esc(t.entry_price), esc(t.exit_price),
        signed(t.realised_pnl_zar), esc(t.exit_reason)]));
    table($("prices"), ["pair", "bid", "ask", "at"],
      Object.entries(status.prices).map(([k, v]) => [esc(k), esc(v.bid), esc(v.ask), esc(v.at.slice(11, 19))]));
    table($("rejections"), ["gate", "count"],
      Object.entries(status.gate_rejections).map(([k, v]) => [esc(k), esc(v)]));
  } catch (err) {
    $("health").textContent = `service not answering (${err})`; $("health").className = "unhealthy";
  }
}

async function control(path, body) {
  const token = $("token").value;
  sessionStorage.setItem("helios-token", token);
  const response = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json",
    "Authorization": `Bearer ${token}`}, body: JSON.stringify(body)});
  const data = await response.json();
  if (!response.ok) { $("message").textContent = `${path}: HTTP ${response.status}: ${data.detail}`; return; }
  if (path.endsWith("emergency-stop")) {
    $("message").textContent = `EMERGENCY STOP: state ${data.trading_state}, ${data.orders_cancelled} order(s) cancelled, ` +
      `${data.open_orders_remaining} open order(s) remaining` +
      `${data.zero_open_orders_confirmed ? " (zero confirmed by re-query)" : " - NOT CONFIRMED"}, ` +
      `${data.open_positions.length} open position(s)`;
  } else {
    $("message").textContent = `resumed: ${data.previous} -> ${data.trading_state}`;
  }
  refresh();
}
$("stop").addEventListener("click", () => {
  if (window.confirm("EMERGENCY STOP: halt trading and cancel every open order?")) {
    control("/api/emergency-stop", {reason: $("reason").value || "dashboard emergency stop", actor: "dashboard"});
  }
});
$("resume").addEventListener("click", () => {
  const reason = $("reason").value.trim();
  if (!reason) { $("message").textContent = "resume needs a reason"; return; }
  control("/api/resume", {reason, actor: "dashboard"});
});
refresh();
setInterval(refresh, 2000);

// --- rollout: charts (uPlot, served by Helios), stage, red flags, success metrics ---------------------------------
window.heliosCharts = {};
function hours(s) { const m = Math.round(s / 60); return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`; }
function drawChart(key, el, data, series, bars) {
  if (typeof uPlot === "undefined") { el.textContent = "chart library not loaded"; return; }
  const width = Math.max(el.clientWidth, 360);
  const opts = {width, height: 220, series: [{}, ...series],
    axes: [{stroke: "#8b98a5", grid: {stroke: "#2d3640"}}, {stroke: "#8b98a5", grid: {stroke: "#2d3640"}},
           ...(series.length > 1 ? [{side: 1, scale: "dd", stroke: "#8b98a5", grid: {show: false}}] : [])],
    scales: {dd: {auto: true}}};
  if (bars) { opts.series[1].paths = uPlot.paths.bars({size: [0.6, 60]}); }
  if (window.heliosCharts[key]) { window.heliosCharts[key].destroy(); }
  el.innerHTML = "";
  window.heliosCharts[key] = new uPlot(opts, data, el);
}
async function refreshRollout() {
  const response = await fetch(`/api/rollout?window=${$("rollout-window").value}`, readOptions());
  if (!response.ok) { $("rollout-result").textContent = `rollout data unavailable (HTTP ${response.status})`; return; }
  const r = await response.json();
  const c = r.chart;
  $("equity-source").textContent = r.equity_source === "marked" ? "" : `(${r.equity_source})`;
  drawChart("equity", $("equity-chart"), [c.t, c.equity_zar, c.drawdown_pct],
    [{label: "equity ZAR", stroke: "#2ea043", width: 2}, {label: "drawdown %", scale: "dd", stroke: "#f85149",
      fill: "rgba(248,81,73,0.15)"}], false);
  drawChart("pnl", $("pnl-chart"), [c.days, c.daily_pnl_zar],
    [{label: "daily P&L ZAR", stroke: "#1f6feb", fill: "rgba(31,111,235,0.5)"}], true);
  const s = r.stage;
  table($("stage"), ["", ""], s.limit_zar === null ? [["stage", "none recorded (helios ramp --to 1000)"]] : [
    ["current stage", esc(`R${s.limit_zar}`)], ["since", esc(s.entered_at.slice(0, 19))],
    ["next stage", esc(s.next_zar === null ? "none configured" : `R${s.next_zar}`)],
    ["minimum time left", esc(s.time_to_next_s === null ? "-" : hours(s.time_to_next_s))]]);
  const failing = r.checks.filter((x) => x.outcome !== "pass").map((x) => x.name);
  $("stage-next").textContent = s.next_zar === null ? "" : (failing.length || s.time_to_next_s > 0 || r.red_flags.length
    ? `to reach R${s.next_zar}: ${[s.time_to_next_s > 0 ? `wait ${hours(s.time_to_next_s)}` : null,
        ...failing.map((n) => `${n} must pass`), r.red_flags.length ? "no red flag" : null]
        .filter(Boolean).join(", ")}, then a weekly-review sign-off and helios ramp`
    : `metrics pass: sign off (helios attest weekly-review) and run helios ramp --to ${s.next_zar}`);
  $("redflags").innerHTML = r.red_flags.length
    ? r.red_flags.map((f) => `<li class="flag" data-flag="${esc(f.name)}">${esc(f.name)}: ${esc(f.reason)} → ${esc(f.action)}</li>`).join("")
    : `<li class="muted">none</li>`;
  $("phase").textContent = r.phase;
  table($("metrics"), ["check", "result", "detail"], r.checks.map((x) => [esc(x.name),
    `<span class="${x.outcome.replace(" ", "")}">${esc(x.outcome)}</span>`, esc(x.detail)]));
  $("rollout-result").textContent = `${r.window} window: ${r.passed ? "pass" : "FAIL"} · ${r.trades} trade(s), ` +
    `win rate ${r.win_rate_pct ?? "-"}%, max drawdown ${r.max_drawdown_pct ?? "-"}%`;
}
$("rollout-window").addEventListener("change", () => refreshRollout());
refreshRollout().catch((err) => { $("rollout-result").textContent = `rollout data unavailable (${err})`; });
setInterval(() => refreshRollout().catch(() => {}), 10000);
