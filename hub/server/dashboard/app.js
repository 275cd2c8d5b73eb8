// Sextant's dashboard: reads the hub's query API (/api/v1/...) every two seconds and draws it.
"use strict";

const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const pct = (x) => (x == null ? "–" : (x * 100).toFixed(x < 0.01 && x > 0 ? 2 : 1) + " %");
const ms = (x) => (x == null ? "–" : x < 10 ? x.toFixed(1) + " ms" : Math.round(x) + " ms");
const rate = (x) => (x == null ? "–" : x < 10 ? x.toFixed(2) : x.toFixed(1));
const health = (s) => (s.error_rate >= 0.05 ? "bad" : s.error_rate >= 0.01 ? "warn" : "ok");
const COLORS = {ok: "#3fb950", warn: "#d29922", bad: "#f85149", idle: "#6e7681"};

// `?jaeger=URL` (sextant dev --jaeger-url): traces link to Jaeger's UI.
const JAEGER = new URLSearchParams(location.search).get("jaeger");
let selectedService = null;
// `#trace=first` opens the newest trace's waterfall (for links and headless browsers).
let selectedTrace = location.hash === "#trace=first" ? "first" : null;

async function api(path) {
  const r = await fetch(path, {cache: "no-store"});
  if (!r.ok) throw new Error(path + " answered " + r.status + ": " + (await r.text()));
  return r.json();
}

function table(id, rows, empty) {
  const body = $(id).querySelector("tbody");
  const cols = $(id).querySelectorAll("th").length;
  body.innerHTML = rows.length ? rows.join("") : `<tr><td colspan="${cols}" class="empty">${esc(empty)}</td></tr>`;
}

function drawGraph(g) {
  const box = $("graph");
  if (!g.nodes.length) {
    box.innerHTML = '<p class="empty">Waiting for traffic: nothing has been reported in this window yet.</p>';
    return;
  }
  // Columns by longest distance from a node nobody calls.
  const incoming = new Map(g.nodes.map((n) => [n.id, []]));
  for (const e of g.edges) incoming.get(e.destination)?.push(e.source);
  const depth = new Map();
  const visit = (id, seen) => {
    if (depth.has(id)) return depth.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const d = Math.max(0, ...(incoming.get(id) || []).map((s) => visit(s, seen) + 1));
    depth.set(id, d);
    return d;
  };
  g.nodes.forEach((n) => visit(n.id, new Set()));
  const columns = [];
  for (const n of g.nodes) (columns[depth.get(n.id)] ||= []).push(n);
  const W = 190, H = 46, GX = 270, GY = 66;
  const pos = new Map();
  columns.forEach((col, c) => col.forEach((n, r) => pos.set(n.id, {x: 20 + c * GX, y: 20 + r * GY})));
  const width = 40 + (columns.length - 1) * GX + W;
  const height = 40 + (Math.max(...columns.map((c) => c.length)) - 1) * GY + H;
  let svg = `<svg viewBox="0 0 ${width} ${height}" xmlns="http://www.w3.org/2000/svg">`;
  svg += '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#7d8a99"/></marker></defs>';
  // A label sits by its arrowhead. Where several edges end at one node (reviews v2 and v3 calling ratings) their
  // labels would fall on one spot: an edge that is its source's only one is labelled by its start instead, and
  // any others are stacked.
  const count = (key) => g.edges.reduce((m, e) => m.set(e[key], (m.get(e[key]) || 0) + 1), new Map());
  const into = count("destination"), outOf = count("source"), stacked = new Map();
  for (const e of g.edges) {
    const a = pos.get(e.source), b = pos.get(e.destination);
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
    const color = COLORS[health(e.stats)];
    const label = `${rate(e.stats.rps)}/s${e.stats.error_rate > 0 ? " · " + pct(e.stats.error_rate) + " err" : ""}`;
    svg += `<g class="edge" data-source="${esc(e.source)}" data-destination="${esc(e.destination)}" data-service="${esc(e.service)}"><path d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2 - 2},${y2}" stroke="${color}" marker-end="url(#arrow)"><title>${esc(e.source)} → ${esc(e.destination)} (${esc(e.service)}): ${label}, p99 ${ms(e.stats.p99_ms)}</title></path>`;
    let at;
    if (into.get(e.destination) > 1 && outOf.get(e.source) === 1) {
      at = `x="${x1 + 8}" y="${y1 - 7}" text-anchor="start"`;
    } else {
      const k = stacked.get(e.destination) || 0;
      stacked.set(e.destination, k + 1);
      at = `x="${x2 - 8}" y="${y2 - 7 - 13 * k}" text-anchor="end"`;
    }
    svg += `<text ${at}>${esc(label)}</text></g>`;
  }
  for (const n of g.nodes) {
    const p = pos.get(n.id);
    const outside = n.workload === "unknown";
    const color = outside ? COLORS.idle : COLORS[health(n.stats)];
    const name = outside ? "outside the mesh" : n.workload;
    // A caller whose version its servers cannot tell (it runs in several): all its versions at once.
    const version = n.version === "unknown" ? "all versions" : n.version;
    const sub = outside ? "unknown caller" : `${version} · ${n.namespace}${n.stats.requests ? " · " + rate(n.stats.rps) + "/s" : ""}`;
    svg += `<g class="node" data-id="${esc(n.id)}"><rect x="${p.x}" y="${p.y}" width="${W}" height="${H}" rx="8" stroke="${color}"/>`;
    svg += `<text x="${p.x + 12}" y="${p.y + 19}">${esc(name)}</text><text class="sub" x="${p.x + 12}" y="${p.y + 35}">${esc(sub)}</text></g>`;
  }
  box.innerHTML = svg + "</svg>";
}

function drawServices(s) {
  table("services", s.services.map((v) => {
    const id = `${v.namespace}/${v.name}`;
    return `<tr class="click${id === selectedService ? " selected" : ""}" data-service="${esc(id)}"><td><span class="dot ${health(v.stats)}"></span>${esc(v.name)} <span class="muted">${esc(v.namespace)}</span></td>` +
      `<td>${v.versions.map((x) => esc(x.version)).join(", ")}</td><td class="num">${rate(v.stats.rps)}</td><td class="num">${pct(v.stats.error_rate)}</td>` +
      `<td class="num">${ms(v.stats.p50_ms)}</td><td class="num">${ms(v.stats.p90_ms)}</td><td class="num">${ms(v.stats.p99_ms)}</td><td class="num">${pct(v.stats.mtls_share)}</td></tr>`;
  }), "No service has been called in this window.");
  if (!selectedService && s.services.length) selectedService = `${s.services[0].namespace}/${s.services[0].name}`;
}

function chart(title, points, series, unit) {
  const W = 300, H = 90;
  const max = Math.max(1e-9, ...points.flatMap((p) => series.map((s) => s.value(p) ?? 0)));
  const x = (i) => (points.length < 2 ? 0 : (i / (points.length - 1)) * W);
  const y = (v) => H - 4 - (v / max) * (H - 10);
  let svg = `<svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none">`;
  for (const s of series) {
    const d = points.map((p, i) => `${i ? "L" : "M"}${x(i).toFixed(1)},${y(s.value(p) ?? 0).toFixed(1)}`).join(" ");
    svg += `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5" vector-effect="non-scaling-stroke"/>`;
  }
  // The current step is still filling: "now" is the latest step with traffic.
  const latest = [...points].reverse().find((p) => p.requests > 0);
  const last = latest ? series.map((s) => `<span style="color:${s.color}">${s.name} ${unit(s.value(latest))}</span>`).join(" ") : "no traffic";
  return `<div class="chart"><div class="title">${esc(title)} · now ${last}</div>${svg}</svg></div>`;
}

async function drawRed(win) {
  if (!selectedService) { $("red").innerHTML = ""; return; }
  const [ns, name] = selectedService.split("/");
  const r = await api(`/api/v1/services/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/red?window=${win}`);
  const p = r.points;
  $("red").innerHTML =
    chart(`${name}: requests/s`, p, [{name: "rps", color: "#58a6ff", value: (q) => q.rps}], rate) +
    chart(`${name}: errors`, p, [{name: "5xx", color: "#f85149", value: (q) => q.error_rate}, {name: "403", color: "#d29922", value: (q) => q.denied_rate}], pct) +
    chart(`${name}: duration`, p, [{name: "p50", color: "#3fb950", value: (q) => q.p50_ms}, {name: "p90", color: "#d29922", value: (q) => q.p90_ms}, {name: "p99", color: "#f85149", value: (q) => q.p99_ms}], ms);
}

function drawDecisions(d) {
  table("decisions", d.counts.slice(0, 12).map((c) =>
    `<tr data-result="${esc(c.result)}" data-policy="${esc(c.policy)}" data-rule="${esc(c.rule)}"><td><span class="pill ${c.result}">${esc(c.result)}</span></td><td>${esc(c.policy || "(no policy applied)")}</td><td>${esc(c.rule || (c.action === "RATE_LIMIT" ? "rate limit" : "–"))}</td><td class="num">${c.count}</td></tr>`),
    "The hub has decided nothing yet.");
  // Refusals first: the newest of each kind (so a rare denial is not pushed out by a burst of rate limiting),
  // then the newest others, up to 8; then a few allowed.
  const refused = d.recent.filter((r) => r.result !== "allow");
  const kind = (r) => `${r.result}|${r.policy}|${r.rule}`;
  const newestOfKind = refused.filter((r, i) => refused.findIndex((q) => kind(q) === kind(r)) === i);
  const shown = newestOfKind.concat(refused.filter((r) => !newestOfKind.includes(r))).slice(0, 8).sort((a, b) => b.time - a.time);
  table("recent", shown.concat(d.recent.filter((r) => r.result === "allow").slice(0, 4)).map((r) =>
    `<tr title="${esc(r.message)}" data-result="${esc(r.result)}" data-policy="${esc(r.policy)}" data-rule="${esc(r.rule)}"><td>${new Date(r.time * 1000).toLocaleTimeString()}</td><td><span class="pill ${r.result}">${esc(r.result)}</span></td><td title="${esc(r.service)} ${esc(r.path)}">${esc(r.service)} <span class="muted">${esc(r.path)}</span></td><td title="${esc(r.source)}">${esc(r.source.split("/sa/").pop())}</td><td title="${esc(r.policy)}">${esc(r.rule || r.policy || "–")}</td><td>${r.http_status}</td></tr>`),
    "No recent decision.");
}

function drawLimits(l) {
  table("limits", l.rate_limits.map((r) => `<tr><td>${esc(r.ratelimit)}</td><td class="num">${r.refused}</td><td class="num">${rate(r.per_second)}</td></tr>`),
    "No request was refused by a rate limit in this window.");
}

function drawTraces(t) {
  table("traces", t.traces.slice(0, 10).map((x) =>
    `<tr class="click${x.trace_id === selectedTrace ? " selected" : ""}" data-trace="${esc(x.trace_id)}"><td>${esc(x.root)}</td><td class="num">${x.spans.length}</td><td class="num">${ms(x.duration_ms)}</td><td class="muted">${JAEGER ? `<a href="${esc(JAEGER)}/trace/${esc(x.trace_id)}" target="_blank" rel="noopener">${esc(x.trace_id.slice(0, 12))}… in Jaeger</a>` : esc(x.trace_id.slice(0, 12)) + "…"}</td></tr>`),
    "No traced request yet.");
  if (selectedTrace === "first" && t.traces.length) selectedTrace = t.traces[0].trace_id;
  const trace = t.traces.find((x) => x.trace_id === selectedTrace);
  if (!trace) { $("waterfall").innerHTML = ""; delete $("waterfall").dataset.trace; return; }
  $("waterfall").dataset.trace = trace.trace_id;
  const start = trace.start, total = Math.max(trace.duration_ms, 0.001);
  $("waterfall").innerHTML = `<h3>Trace ${esc(trace.trace_id)}</h3>` + trace.spans.map((s) => {
    const left = (((s.start - start) * 1000) / total) * 100, width = Math.max(0.5, (s.duration_ms / total) * 100);
    // A refusal (403, 429) is no server error, but it is what the trace is often opened for: say it.
    const code = s.code >= 400 ? " · " + s.code : "";
    return `<div class="row" data-workload="${esc(s.workload.name)}" data-code="${esc(s.code)}"><div title="${esc(s.workload.name)} ${esc(s.workload.version)}">${esc(s.name)} <span class="muted">${esc(s.workload.name)}${code}</span></div>` +
      `<div class="track"><div class="bar${s.code >= 500 ? " err" : ""}" style="margin-left:${left.toFixed(2)}%;width:${width.toFixed(2)}%"></div></div><div class="num">${ms(s.duration_ms)}</div></div>`;
  }).join("");
}

function drawAdapters(a) {
  table("adapters", a.adapters.map((x) => {
    const state = !x.running ? ["bad", "not running"] : x.dropped > 0 || x.restarts > 0 ? ["warn", "dropping or restarting"] : ["ok", "healthy"];
    const reasons = x.dropped_by_reason ? Object.entries(x.dropped_by_reason).filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(", ") : "";
    return `<tr><td>${esc(x.adapter)}</td><td class="num">${x.queued ?? "–"}</td><td class="num">${x.delivered ?? "–"}</td><td class="num" title="${esc(reasons)}">${x.dropped ?? "–"}</td>` +
      `<td class="num">${x.retried ?? "–"}</td><td class="num">${x.restarts ?? "–"}</td><td><span class="dot ${state[0]}"></span>${state[1]}</td>` +
      `<td class="muted" title="${esc(x.last_error?.message ?? "")}">${x.last_error ? new Date(x.last_error.time * 1000).toLocaleTimeString() + " " + esc(x.last_error.message) : "–"}</td></tr>`;
  }), "No adapter is configured.");
}

function drawWindow(w) {
  const ev = Object.entries(w.evictions).map(([k, v]) => `${k} ${v}`).join(", ");
  $("window-status").innerHTML = `<span><b>edges</b>${w.edges} / ${w.max_edges}</span><span><b>decisions</b>${w.decisions} / ${w.max_decisions}</span>` +
    `<span><b>traces</b>${w.traces} / ${w.max_traces}</span><span><b>span</b>${w.span_seconds} s in ${w.step_seconds} s steps</span><span><b>evicted</b>${esc(ev)}</span>`;
}

async function refresh() {
  const win = $("window").value;
  try {
    const [g, s, d, l, t, w, a] = await Promise.all([
      api(`/api/v1/graph?window=${win}`), api(`/api/v1/services?window=${win}`), api("/api/v1/decisions?limit=200"),
      api(`/api/v1/ratelimits?window=${win}`), api("/api/v1/traces?limit=50"), api("/api/v1/window"), api("/api/v1/adapters"),
    ]);
    drawGraph(g); drawServices(s); drawDecisions(d); drawLimits(l); drawTraces(t); drawWindow(w); drawAdapters(a);
    await drawRed(win);
    $("status").textContent = "updated " + new Date().toLocaleTimeString();
    $("status").classList.remove("error");
  } catch (e) {
    $("status").textContent = "cannot reach the hub: " + e.message;
    $("status").classList.add("error");
  }
}

document.addEventListener("click", (ev) => {
  const row = ev.target.closest("tr.click");
  if (!row) return;
  if (row.dataset.service) selectedService = row.dataset.service;
  if (row.dataset.trace) selectedTrace = row.dataset.trace;
  refresh();
});
$("window").addEventListener("change", refresh);
refresh();
setInterval(refresh, 2000);
