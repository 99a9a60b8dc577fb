// The dashboard page: plain HTML with a small inline script (no build step)
// that reads /api/overview and /api/deadletters, draws depth tables and an SVG
// rate chart, and replays or discards dead letters. Refreshes every 5 s.
// Element ids are what test/dashboard.test.ts reads; keep them stable.

const style = `
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:baseline}
header h1{font-size:18px;margin:0}header small{opacity:.7}
main{padding:16px 20px;display:grid;gap:16px;grid-template-columns:minmax(0,1fr) minmax(0,1fr)}
@media (max-width:900px){main{grid-template-columns:minmax(0,1fr)}}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:12px 14px;min-width:0;overflow-x:auto}
#chart{width:100%;max-width:760px;height:auto;display:block}
section.wide{grid-column:1/-1}
h2{font-size:15px;margin:0 0 8px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eef0f3;vertical-align:top}
th{font-weight:600;color:#555;font-size:12px;text-transform:uppercase}td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:10px;flex-wrap:wrap}.card{border:1px solid #dde1e7;border-radius:6px;padding:6px 12px;min-width:90px}
.card b{display:block;font-size:20px;font-variant-numeric:tabular-nums}.card span{font-size:12px;color:#666}
code{font-size:12px;background:#f1f3f6;padding:1px 4px;border-radius:3px;word-break:break-all}
button{font:inherit;padding:2px 10px;border-radius:4px;border:1px solid #99a;background:#fff;cursor:pointer}
button.replay{border-color:#2a7;color:#175}button.discard{border-color:#c55;color:#a33}
#status{font-size:12px;margin-left:auto}.legend span{margin-right:12px;font-size:12px}
`;

const script = `
const $ = (id) => document.getElementById(id);
const STATES = ["pending","delay","processing","claimed","retry","failure","complete"];
const SERIES = [["ingested","#3366cc"],["dispatched","#109618"],["completed","#ff9900"],["retried","#990099"],["deadlettered","#dc3912"],["killed","#555"]];
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
function renderDepths(o) {
  const cards = $("totals"); cards.replaceChildren();
  for (const s of STATES) cards.append(el("div", { class: "card" }, el("b", { id: "depth-total-" + s }, o.totals[s] || 0), el("span", {}, s)));
  cards.append(el("div", { class: "card" }, el("b", { id: "oldest-pending" }, fmtAge(o.oldestPendingAgeSeconds)), el("span", {}, "oldest pending")));
  const byNs = new Map();
  for (const d of o.byNamespace) { if (!byNs.has(d.namespace)) byNs.set(d.namespace, {}); byNs.get(d.namespace)[d.state] = d.count; }
  const body = $("depths"); body.replaceChildren();
  for (const ns of [...byNs.keys()].sort()) {
    const row = el("tr", { "data-namespace": ns }, el("td", {}, ns));
    for (const s of STATES) row.append(el("td", { class: "n", "data-state": s }, byNs.get(ns)[s] || 0));
    body.append(row);
  }
  if (byNs.size === 0) body.append(el("tr", {}, el("td", { colspan: 8 }, o.byNamespaceAtMs ? "empty" : "counting…")));
  $("ns-as-of").textContent = o.byNamespaceAtMs ? "as of " + new Date(o.byNamespaceAtMs).toLocaleTimeString() : "";
  $("rates-now").replaceChildren(...SERIES.map(([n, c]) =>
    el("span", { style: "color:" + c }, n + " " + (o.rates.lastMinute[n] || 0).toFixed(1) + "/s")));
  renderChart(o.rates.series);
}
function renderChart(series) {
  const W = 640, H = 160, P = 30;
  const svg = $("chart");
  svg.replaceChildren();
  const max = Math.max(1, ...series.flatMap((p) => SERIES.map(([n]) => p.perSec[n] || 0)));
  const t0 = series.length ? series[0].atMs : 0, t1 = series.length ? series[series.length - 1].atMs : 1;
  const x = (t) => P + (W - P - 4) * (t1 === t0 ? 1 : (t - t0) / (t1 - t0));
  const y = (v) => H - 16 - (H - 24) * (v / max);
  const ns = "http://www.w3.org/2000/svg";
  const mk = (tag, attrs) => { const e = document.createElementNS(ns, tag); for (const k in attrs) e.setAttribute(k, attrs[k]); return e; };
  svg.append(mk("line", { x1: P, y1: y(0), x2: W, y2: y(0), stroke: "#ccc" }));
  const top = mk("text", { x: 2, y: 12, "font-size": 10, fill: "#666" }); top.textContent = max.toFixed(1) + "/s"; svg.append(top);
  const span = mk("text", { x: P, y: H - 2, "font-size": 10, fill: "#666" });
  const secs = Math.round((t1 - t0) / 1000);
  span.textContent = series.length ? "last " + (secs < 120 ? secs + " s" : Math.round(secs / 60) + " min") : "collecting samples (every 5 s)";
  svg.append(span);
  for (const [n, c] of SERIES) {
    if (!series.length) break;
    const pts = series.map((p) => x(p.atMs).toFixed(1) + "," + y(p.perSec[n] || 0).toFixed(1)).join(" ");
    svg.append(mk("polyline", { points: pts, fill: "none", stroke: c, "stroke-width": 1.5, "data-series": n }));
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
async function refresh() {
  try {
    const [o, dl] = await Promise.all([api("/api/overview"), api("/api/deadletters?limit=50")]);
    renderDepths(o); renderDeadLetters(dl);
    $("updated").textContent = "updated " + new Date(o.generatedAtMs).toLocaleTimeString();
    document.body.dataset.loaded = "true";
  } catch (e) { $("status").textContent = String(e.message || e); }
}
refresh();
setInterval(refresh, 5000);
`;

export const dashboardHtml = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>taskplatform broker</title><style>${style}</style></head>
<body>
<header><h1>taskplatform broker</h1><small id="updated">loading…</small><span id="status"></span></header>
<main>
<section class="wide"><h2>Depth</h2><div class="cards" id="totals"></div></section>
<section class="wide"><h2>By namespace <small id="ns-as-of" style="font-weight:normal;color:#888"></small></h2><table><thead><tr><th>namespace</th>
<th>pending</th><th>delay</th><th>processing</th><th>claimed</th><th>retry</th><th>failure</th><th>complete</th></tr></thead>
<tbody id="depths"></tbody></table></section>
<section class="wide"><h2>Rates</h2><div class="legend" id="rates-now"></div>
<svg id="chart" viewBox="0 0 640 160" role="img" aria-label="rates over the last minutes"></svg></section>
<section class="wide"><h2>Dead letters (<span id="dl-total">0</span>)</h2><table><thead><tr>
<th>id</th><th>task</th><th>namespace</th><th>attempts</th><th>parameters</th><th>dead-lettered</th><th></th></tr></thead>
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
