// The dashboard page: plain HTML with a small inline script (no build step)
// that reads /api/overview and /api/deadletters: depth now (cards), totals
// since start (finished work stays visible after its rows are gone), depths
// and dispatch rates per namespace with the age of their count, an SVG rate
// chart drawn at the panel's width whose legend is its lines' newest point,
// an activation lookup by id, and dead letters with replay and discard.
// Refreshes as often as the chart gets a point (1-5 s). Element ids are what
// test/dashboard.test.ts reads; keep them stable.

const style = `
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:baseline}
header h1{font-size:18px;margin:0}header small{opacity:.7}
main{padding:16px 20px;display:grid;gap:16px;grid-template-columns:minmax(0,1fr) minmax(0,1fr)}
@media (max-width:900px){main{grid-template-columns:minmax(0,1fr)}}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:12px 14px;min-width:0;overflow-x:auto}
#chart{width:100%;height:180px;display:block}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 8px}h2 small{font-weight:normal;color:#777;font-size:12px;margin-left:6px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f3;vertical-align:top}
th{font-weight:600;color:#555;font-size:12px;text-transform:uppercase}th.n,td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:10px;flex-wrap:wrap}.card{border:1px solid #dde1e7;border-radius:6px;padding:6px 12px;min-width:90px}
.card b{display:block;font-size:20px;font-variant-numeric:tabular-nums}.card span{font-size:12px;color:#666}
code{font-size:12px;background:#f1f3f6;padding:1px 4px;border-radius:3px;word-break:break-all}
button{font:inherit;padding:2px 10px;border-radius:4px;border:1px solid #99a;background:#fff;cursor:pointer}
button.replay{border-color:#2a7;color:#175}button.discard{border-color:#c55;color:#a33}
#status{font-size:12px;margin-left:auto}.legend span{margin-right:14px;font-size:12px;white-space:nowrap}
.legend i{display:inline-block;width:10px;height:3px;vertical-align:middle;margin-right:4px}
#lookup-form{display:flex;gap:8px;margin-bottom:8px}#lookup-form input{flex:1;font:inherit;padding:2px 6px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}dt{color:#666}dd{margin:0}
`;

const script = `
const $ = (id) => document.getElementById(id);
const STATES = ["pending","delay","processing","claimed","retry","failure","complete"];
const SINCE = [["ingested","ingested"],["completed","completed"],["retried","retried"],["failed","failed"],["deadlettered","dead-lettered"],["expired","expired"]];
const SERIES = [["ingested","#3366cc"],["dispatched","#109618"],["completed","#ff9900"],["retried","#990099"],["failed","#b82e2e"],["deadlettered","#dc3912"],["expired","#0099c6"],["killed","#555"]];
let last = null;
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}
async function api(path, init) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin", headers: { accept: "application/json" } }, init || {}));
  if (r.status === 401) { location.href = "/login"; throw new Error("unauthorized"); }
  if (!r.ok) throw new Error(path + ": " + r.status + " " + (await r.text()));
  return r.json();
}
function fmtAge(s) {
  if (s < 1) return "0 s"; if (s < 120) return Math.round(s) + " s";
  if (s < 7200) return Math.round(s / 60) + " min"; return (s / 3600).toFixed(1) + " h";
}
const fmtRate = (v) => (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + "/s";
const time = (ms) => new Date(ms).toLocaleTimeString();
function renderDepths(o) {
  const cards = $("totals"); cards.replaceChildren();
  for (const s of STATES) cards.append(el("div", { class: "card" }, el("b", { id: "depth-total-" + s }, o.totals[s] || 0), el("span", {}, s)));
  cards.append(el("div", { class: "card" }, el("b", { id: "oldest-pending" }, fmtAge(o.oldestPendingAgeSeconds)), el("span", {}, "oldest pending")));
  $("depths-as-of").textContent = "at " + time(o.depthsAtMs);
  const since = $("since"); since.replaceChildren();
  for (const [k, label] of SINCE) since.append(el("div", { class: "card" }, el("b", { id: "since-" + k }, o.sinceStart[k] || 0), el("span", {}, label)));
  $("since-start").textContent = "since the broker started at " + new Date(o.sinceStart.startedAtMs).toLocaleString() + "; finished rows leave the store, these counters stay";
  const byNs = new Map();
  const row = (ns) => { if (!byNs.has(ns)) byNs.set(ns, {}); return byNs.get(ns); };
  for (const d of o.byNamespace) row(d.namespace)[d.state] = d.count;
  // Namespaces with recent dispatches stay listed after their rows are done.
  for (const [ns, r] of Object.entries(o.rates.byNamespace)) if (r > 0) row(ns);
  const body = $("depths"); body.replaceChildren();
  const sums = {};
  for (const ns of [...byNs.keys()].sort()) {
    const tr = el("tr", { "data-namespace": ns }, el("td", {}, ns));
    for (const s of STATES) { const n = byNs.get(ns)[s] || 0; sums[s] = (sums[s] || 0) + n; tr.append(el("td", { class: "n", "data-state": s }, n)); }
    tr.append(el("td", { class: "n", "data-rate": "dispatched" }, fmtRate(o.rates.byNamespace[ns] || 0)));
    body.append(tr);
  }
  if (byNs.size === 0) body.append(el("tr", {}, el("td", { colspan: 9 }, o.byNamespaceAtMs ? "empty" : "counting…")));
  else {
    const tr = el("tr", { id: "depths-sum" }, el("td", {}, el("b", {}, "all")));
    for (const s of STATES) tr.append(el("td", { class: "n", "data-state": s }, el("b", {}, sums[s] || 0)));
    tr.append(el("td", { class: "n" }, ""));
    body.append(tr);
  }
  // The table comes from a count that started before the cards were read: say by how much.
  const lag = o.byNamespaceAtMs ? Math.max(0, (o.depthsAtMs - o.byNamespaceAtMs) / 1000) : null;
  $("ns-as-of").textContent = lag === null ? "" : "counted at " + time(o.byNamespaceAtMs) + ", " + lag.toFixed(1) + " s before the depth above; dispatch rates over the last " + Math.round(o.rates.lastMinuteSpanMs / 1000) + " s";
  $("ns-as-of").dataset.lagSeconds = lag === null ? "" : lag.toFixed(1);
  $("rates-now").replaceChildren(...SERIES.map(([n, c]) =>
    el("span", { "data-series": n }, el("i", { style: "background:" + c }), n + " " + fmtRate(o.rates.latest[n] || 0))));
  $("rates-note").textContent = "per second over each " + o.rates.sampleMs / 1000 + " s sample; the legend is the newest sample, the right end of each line";
  renderChart(o.rates.series);
}
function renderChart(series) {
  const svg = $("chart");
  // Drawn in the panel's own pixels: the chart fills the panel at any width.
  const W = Math.max(200, Math.round(svg.getBoundingClientRect().width)), H = 180, P = 40, B = 18;
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.replaceChildren();
  const max = Math.max(1, ...series.flatMap((p) => SERIES.map(([n]) => p.perSec[n] || 0)));
  const t0 = series.length ? series[0].atMs : 0, t1 = series.length ? series[series.length - 1].atMs : 1;
  const x = (t) => P + (W - P - 6) * (t1 === t0 ? 1 : (t - t0) / (t1 - t0));
  const y = (v) => H - B - (H - B - 8) * (v / max);
  const ns = "http://www.w3.org/2000/svg";
  const mk = (tag, attrs) => { const e = document.createElementNS(ns, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); return e; };
  for (const f of [0, 0.5, 1]) {
    svg.append(mk("line", { x1: P, y1: y(max * f), x2: W - 6, y2: y(max * f), stroke: f === 0 ? "#bbb" : "#eee" }));
    const t = mk("text", { x: P - 4, y: y(max * f) + 3, "font-size": 10, fill: "#666", "text-anchor": "end" }); t.textContent = fmtRate(max * f); svg.append(t);
  }
  const span = mk("text", { x: P, y: H - 4, "font-size": 10, fill: "#666" });
  const secs = Math.round((t1 - t0) / 1000);
  span.textContent = series.length ? "last " + (secs < 120 ? secs + " s" : Math.round(secs / 60) + " min") + ", until " + time(t1) : "collecting samples";
  svg.append(span);
  for (const [n, c] of SERIES) {
    if (!series.length) break;
    const pts = series.map((p) => x(p.atMs).toFixed(1) + "," + y(p.perSec[n] || 0).toFixed(1)).join(" ");
    const lastV = series[series.length - 1].perSec[n] || 0;
    svg.append(mk("polyline", { points: pts, fill: "none", stroke: c, "stroke-width": 1.5, "data-series": n, "data-last": fmtRate(lastV) }));
  }
}
function paramsText(d) {
  if (!d.parameters) return "undecodable: " + (d.parametersError || "?");
  return JSON.stringify(d.parameters);
}
function renderDeadLetters(r) {
  $("dl-total").textContent = r.total;
  const body = $("deadletters"); body.replaceChildren();
  for (const d of r.items) {
    const replay = el("button", { class: "replay", "data-id": d.id }, "Replay");
    const discard = el("button", { class: "discard", "data-id": d.id }, "Discard");
    replay.onclick = () => act(d.id, "replay");
    discard.onclick = () => act(d.id, "discard");
    body.append(el("tr", { "data-id": d.id },
      el("td", {}, el("code", {}, d.id)), el("td", { class: "taskname" }, d.taskname), el("td", { class: "namespace" }, d.namespace),
      el("td", { class: "n attempts" }, d.attempts), el("td", { class: "params" }, el("code", {}, paramsText(d))),
      el("td", {}, new Date(d.deadLetteredAtMs).toISOString().replace("T", " ").slice(0, 19)),
      el("td", {}, replay, " ", discard)));
  }
  if (r.items.length === 0) body.append(el("tr", {}, el("td", { colspan: 7 }, "no dead letters")));
}
async function act(id, action) {
  if (action === "discard" && !confirm("Discard dead letter " + id + "?")) return;
  try {
    const r = await api("/api/deadletters/" + encodeURIComponent(id) + "/" + action, { method: "POST" });
    $("status").textContent = action === "replay" ? "replayed " + id + " as " + r.newId : "discarded " + id;
  } catch (e) { $("status").textContent = String(e.message || e); }
  await refresh();
}
async function lookup(ev) {
  ev.preventDefault();
  const id = $("lookup-id").value.trim();
  const out = $("lookup-result");
  if (!id) return;
  out.dataset.state = "";
  const r = await fetch("/api/activations/" + encodeURIComponent(id), { credentials: "same-origin", headers: { accept: "application/json" } });
  if (r.status === 404) {
    out.dataset.state = "absent";
    out.replaceChildren(el("p", {}, "No activation " + id + " in the store: never received, or finished (completed rows are deleted; dead letters are listed below)."));
    return;
  }
  if (!r.ok) { out.dataset.state = "error"; out.replaceChildren(el("p", {}, "lookup failed: " + r.status)); return; }
  const a = await r.json();
  out.dataset.state = a.state;
  const rows = [["id", a.id], ["state", a.state], ["application", a.application], ["namespace", a.namespace], ["task", a.taskname],
    ["attempts", a.attempts + " of " + a.maxAttempts], ["received", a.receivedAtMs ? new Date(a.receivedAtMs).toLocaleString() : "-"],
    ["headers", JSON.stringify(a.headers)], ["parameters", paramsText(a)], ["size", a.sizeBytes + " bytes"]];
  out.replaceChildren(el("dl", {}, ...rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k }, v)])));
}
async function refresh() {
  try {
    const [o, dl] = await Promise.all([api("/api/overview"), api("/api/deadletters?limit=50")]);
    last = o;
    renderDepths(o); renderDeadLetters(dl);
    $("updated").textContent = "updated " + time(o.generatedAtMs);
    document.body.dataset.loaded = "true";
    return o.rates.sampleMs;
  } catch (e) { $("status").textContent = String(e.message || e); return 5000; }
}
$("lookup-form").onsubmit = lookup;
window.onresize = () => { if (last) renderChart(last.rates.series); };
// Refresh as often as the chart gets a new point, between 1 and 5 s.
(async function loop() { const ms = await refresh(); setTimeout(loop, Math.min(5000, Math.max(1000, ms))); })();
`;

export const dashboardHtml = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>taskplatform broker</title><style>${style}</style></head>
<body>
<header><h1>taskplatform broker</h1><small id="updated">loading…</small><span id="status"></span></header>
<main>
<section class="wide"><h2>Depth <small id="depths-as-of"></small></h2><div class="cards" id="totals"></div></section>
<section class="wide"><h2>Since start <small id="since-start"></small></h2><div class="cards" id="since"></div></section>
<section class="wide"><h2>By namespace <small id="ns-as-of"></small></h2><table><thead><tr><th>namespace</th>
<th class="n">pending</th><th class="n">delay</th><th class="n">processing</th><th class="n">claimed</th><th class="n">retry</th><th class="n">failure</th><th class="n">complete</th><th class="n">dispatched/s</th></tr></thead>
<tbody id="depths"></tbody></table></section>
<section class="wide"><h2>Rates <small id="rates-note"></small></h2><div class="legend" id="rates-now"></div>
<svg id="chart" role="img" aria-label="rates over the last minutes"></svg></section>
<section class="wide"><h2>Look up an activation</h2>
<form id="lookup-form"><input id="lookup-id" placeholder="activation id" autocomplete="off"><button type="submit" id="lookup-go">Look up</button></form>
<div id="lookup-result"></div></section>
<section class="wide"><h2>Dead letters (<span id="dl-total">0</span>)</h2><table><thead><tr>
<th>id</th><th>task</th><th>namespace</th><th class="n">attempts</th><th>parameters</th><th>dead-lettered</th><th></th></tr></thead>
<tbody id="deadletters"></tbody></table></section>
</main>
<script>${script}</script>
</body></html>`;

export const loginHtml = (failed: boolean) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>taskplatform broker: sign in</title><style>${style}</style></head>
<body><header><h1>taskplatform broker</h1></header><main><section>
<h2>Admin token</h2>${failed ? '<p style="color:#a33">Wrong token.</p>' : ""}
<form method="post" action="/login"><input type="password" name="token" autofocus size="40" autocomplete="current-password">
<button type="submit">Sign in</button></form></section></main></body></html>`;
