// Lote dashboard. Plain JavaScript, no build step: views are drawn from the
// REST API (read through /ui/v1/ with the session cookie) and kept current by
// the event stream (/ui/v1/events, Server-Sent Events). Everything that comes
// from the server is put into the page as text, never as HTML.
"use strict";
(() => {
  const main = document.getElementById("main");
  const liveEl = document.getElementById("live");

  // ---- small helpers ----------------------------------------------------

  // el builds an element: attrs are attributes (on* are listeners, "class"
  // and "text" are shorthands); children are nodes or strings (as text).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    append(e, children);
    return e;
  }
  function append(e, children) {
    for (const c of children.flat(Infinity)) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }
  // fill replaces an element's children, skipping empty ones (DOM's own
  // replaceChildren would show null as text).
  function fill(e, ...children) {
    e.replaceChildren();
    return append(e, children);
  }
  const svgNS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs) {
    const e = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }
  const enc = encodeURIComponent;
  const fmtInt = (n) => (n ?? 0).toLocaleString("en-US");

  function fmtTime(s) {
    if (!s) return "–";
    const d = new Date(s);
    const today = new Date();
    const t = d.toLocaleTimeString("en-GB", { hour12: false });
    return d.toDateString() === today.toDateString() ? t : d.toISOString().slice(0, 10) + " " + t;
  }
  function fmtDur(ms) {
    if (ms === null || ms === undefined || isNaN(ms)) return "–";
    if (ms < 0) ms = 0;
    if (ms < 1000) return Math.round(ms) + " ms";
    let s = ms / 1000;
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s = Math.floor(s % 60);
    return h ? `${h}h ${m}m` : `${m}m ${s}s`;
  }
  function duration(a) {
    if (!a.started_at) return null;
    const end = a.ended_at ? Date.parse(a.ended_at) : Date.now();
    return end - Date.parse(a.started_at);
  }
  function fmtBytes(n) {
    if (!n) return "–";
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + u[i];
  }
  function exitText(t) {
    if (t.signal) return "signal " + t.signal;
    if (t.exit_code !== undefined && t.exit_code !== null) return String(t.exit_code);
    return "–";
  }
  function badge(state, label) {
    return el("span", { class: "badge b-" + state, text: label || state.replaceAll("_", " ") });
  }
  function taskOutcome(t) {
    if (t.state !== "completed") return badge(t.state);
    return t.result === "success" ? badge("success", "succeeded") :
      badge("failure", "failed" + (t.failure_category ? " · " + t.failure_category : ""));
  }

  // fmtNum writes a measured quantity (node-seconds, cost) with three
  // significant digits below 100 and whole numbers above.
  function fmtNum(n) {
    n = n || 0;
    if (Math.abs(n) >= 100) return Math.round(n).toLocaleString("en-US");
    return n.toLocaleString("en-US", { maximumSignificantDigits: 3 });
  }

  // stepChart draws series of samples as step lines (a value holds until
  // the next sample) from t0 to t1 in a hand-drawn SVG. A series is
  // {name, points: [{t, v}], area, right, cls}: area fills under it, right
  // puts it on a second scale at the right (nodes beside tasks). marks are
  // times drawn as short red ticks on the time axis (failed evaluations).
  function stepChart({ width, t0, t1, endLabel, series, marks, label }) {
    const right = series.some((se) => se.right);
    const W = Math.max(width || 600, 300), H = 140, L = 44, B = 22, T = 10, R = right ? 40 : 8;
    const s = svg("svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label });
    const top = (side) => Math.max(1, ...series.filter((se) => !!se.right === side).flatMap((se) => se.points.map((p) => p.v)));
    const maxL = top(false), maxR = top(true);
    const x = (t) => L + ((t - t0) / Math.max(t1 - t0, 1)) * (W - L - R);
    const y = (n, side) => T + (1 - n / (side ? maxR : maxL)) * (H - T - B);
    const lbl = (tx, ty, text, anchor) => { const e = svg("text", { x: tx, y: ty, "text-anchor": anchor || "start" }); e.textContent = text; return e; };
    s.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }),
      svg("line", { class: "grid", x1: L, y1: y(maxL), x2: W - R, y2: y(maxL) }),
      lbl(L - 6, y(maxL) + 4, fmtInt(maxL), "end"), lbl(L - 6, H - B + 4, "0", "end"),
      lbl(L, H - 5, fmtTime(new Date(t0).toISOString())), lbl(W - R, H - 5, endLabel || fmtTime(new Date(t1).toISOString()), "end"));
    if (right) s.append(lbl(W - R + 6, y(maxR, true) + 4, fmtInt(maxR)), lbl(W - R + 6, H - B + 4, "0"));
    for (const se of series) {
      const pts = se.points;
      if (!pts.length) continue;
      let d = "";
      pts.forEach((p, i) => {
        const px = x(p.t).toFixed(1), py = y(p.v, se.right).toFixed(1);
        d += i ? ` H${px} V${py}` : `M${px} ${py}`;
      });
      d += ` H${x(t1).toFixed(1)}`;
      if (se.area) s.append(svg("path", { class: "area", d: d + ` V${H - B} H${x(pts[0].t).toFixed(1)} Z` }));
      s.append(svg("path", { class: "line" + (se.cls ? " " + se.cls : ""), d, "data-series": se.name }));
    }
    for (const t of marks || []) s.append(svg("line", { class: "mark", x1: x(t), y1: H - B - 6, x2: x(t), y2: H - B + 3 }));
    return s;
  }

  function link(href, text) { return el("a", { href, text }); }
  const poolHref = (p) => "#/pools/" + enc(p);
  const jobHref = (j) => "#/jobs/" + enc(j);
  const taskHref = (j, t) => "#/jobs/" + enc(j) + "/tasks/" + enc(t);
  const nodeHref = (n) => "#/nodes/" + enc(n);

  // ---- server access ----------------------------------------------------

  class SignedOut extends Error {}

  async function get(path, signal) {
    const r = await fetch("/ui/v1" + path, { headers: { Accept: "application/json" }, signal });
    return check(r);
  }
  async function check(r) {
    if (r.status === 401) {
      location.assign("/ui/signin");
      throw new SignedOut("signed out");
    }
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { const b = await r.json(); if (b.error) msg = b.error.message; } catch (_) { /* not JSON */ }
      throw new Error(msg);
    }
    return r;
  }
  const getJSON = async (path, signal) => (await get(path, signal)).json();

  // live follows the event stream for one view; onEvent gets every message
  // (parsed only when parse is set), onGap runs when events were missed.
  function live(params, onEvent, onGap, parse) {
    const es = new EventSource("/ui/v1/events?" + new URLSearchParams(params));
    es.onopen = () => setLive("on", "Live");
    es.onmessage = (m) => onEvent(parse ? JSON.parse(m.data) : null);
    es.addEventListener("gap", () => onGap());
    es.onerror = async () => {
      setLive("off", "Reconnecting…");
      if (es.readyState === EventSource.CLOSED) {
        // The server refused the stream: check the session, then retry.
        try { await get("/pools"); } catch (_) { return; }
        setTimeout(() => { if (!es.stopped) { es.stopped = true; es.close(); current && current.restartLive && current.restartLive(); } }, 2000);
      }
    };
    return { close() { es.stopped = true; es.close(); } };
  }
  function setLive(cls, text) {
    liveEl.className = "live " + cls;
    liveEl.textContent = text;
  }

  // refresher runs fn at most once per interval, and again after a run if
  // asked meanwhile, so a burst of events makes one fetch, not thousands.
  function refresher(fn, interval) {
    let timer = null, running = false, again = false, stopped = false;
    async function run() {
      timer = null;
      if (stopped) return;
      if (running) { again = true; return; }
      running = true;
      try { await fn(); } catch (e) { if (!(e instanceof SignedOut) && e.name !== "AbortError") showError(e); }
      running = false;
      if (again && !stopped) { again = false; schedule(); }
    }
    function schedule() { if (!timer && !stopped) timer = setTimeout(run, interval); }
    return { schedule, now: run, stop() { stopped = true; clearTimeout(timer); } };
  }

  function showError(e) {
    let box = document.getElementById("view-error");
    if (!box) {
      box = el("p", { id: "view-error", class: "notice", role: "alert" });
      main.prepend(box);
    }
    box.textContent = "Could not load: " + e.message;
  }
  function clearError() { document.getElementById("view-error")?.remove(); }

  // ---- routing ----------------------------------------------------------

  let current = null;

  function parseHash() {
    const raw = location.hash.replace(/^#/, "") || "/pools";
    const [path, query] = raw.split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    return { parts, query: new URLSearchParams(query || "") };
  }

  function route() {
    if (current) current.stop();
    const { parts, query } = parseHash();
    let view;
    if (parts[0] === "jobs" && parts.length === 1) view = jobsView(query);
    else if (parts[0] === "jobs" && parts.length === 2) view = jobView(parts[1], query);
    else if (parts[0] === "jobs" && parts[2] === "tasks" && parts.length === 4) view = taskView(parts[1], parts[3]);
    else if (parts[0] === "nodes" && parts.length === 2) view = nodeView(parts[1]);
    else if (parts[0] === "pools" && parts.length === 2) view = poolView(parts[1]);
    else view = poolsView();
    for (const a of document.querySelectorAll("[data-nav]")) {
      if (a.dataset.nav === (parts[0] === "nodes" ? "pools" : parts[0] || "pools")) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    current = view;
    main.replaceChildren();
    view.start();
  }

  // setQuery changes the view's query string without a reload of the view.
  function setQuery(params) {
    const { parts } = parseHash();
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
    const h = "#/" + parts.map(enc).join("/") + (q.toString() ? "?" + q : "");
    history.replaceState(null, "", h);
  }

  // view wires the common life cycle: a refresh function driven by the
  // event stream (throttled), an optional periodic tick, and cleanup.
  function view({ render, refresh, liveParams, interval = 500, tick, onGap, onEvent }) {
    const abort = new AbortController();
    const r = refresher(() => refresh(abort.signal), interval);
    let stream = null, ticker = null;
    const v = {
      start() {
        render();
        r.now();
        if (liveParams) v.restartLive();
        else setLive("", "");
        if (tick) ticker = setInterval(tick, 1000);
      },
      restartLive() {
        if (stream) stream.close();
        stream = live(liveParams, (ev) => { if (onEvent) onEvent(ev); r.schedule(); },
          () => { if (onGap) onGap(); r.schedule(); }, !!onEvent);
      },
      stop() {
        abort.abort();
        r.stop();
        if (stream) stream.close();
        clearInterval(ticker);
      },
      refresh: r,
    };
    return v;
  }

  // ---- pools: node heatmap ----------------------------------------------

  const nodeStates = ["idle", "running", "starting", "waiting_for_start_task", "start_task_failed",
    "offline", "unreachable", "preempted", "leaving"];

  function poolsView() {
    const box = el("div");
    const v = view({
      liveParams: { kind: "node,task,pool" },
      // Evaluations and cost change without an event: look again each second.
      tick: () => v.refresh.schedule(),
      render() {
        main.append(el("div", { class: "view-head" }, el("h1", { text: "Pools" }),
          el("p", { class: "sub", id: "pools-sub" })), box);
        document.title = "Pools · Lote";
      },
      async refresh(signal) {
        const { pools } = await getJSON("/pools", signal);
        const nodes = await Promise.all(pools.map((p) => getJSON("/pools/" + enc(p.id) + "/nodes", signal)));
        clearError();
        let total = 0;
        const cards = pools.map((p, i) => { total += nodes[i].nodes.length; return poolCard(p, nodes[i].nodes); });
        if (!pools.length) cards.push(el("p", { class: "empty", text: "No pools yet. Create one with `lote pool create` or start with `lote up`." }));
        document.getElementById("pools-sub").textContent =
          `${pools.length} pool${pools.length === 1 ? "" : "s"} · ${fmtInt(total)} node${total === 1 ? "" : "s"}`;
        fill(box, ...cards);
      },
    });
    return v;
  }

  // slotUse sums the slots of a pool's reachable nodes and their tasks.
  function slotUse(nodes) {
    const live = nodes.filter((n) => n.state !== "unreachable");
    const running = live.reduce((s, n) => s + n.running_tasks, 0);
    const queued = live.reduce((s, n) => s + n.assigned_tasks, 0);
    const slots = live.reduce((s, n) => s + n.slots, 0);
    return `${fmtInt(running)} of ${fmtInt(slots)} slots running` + (queued ? ` · ${fmtInt(queued)} queued on nodes` : "");
  }

  // heatmap draws a pool's nodes as tiles coloured by state, spot nodes with
  // a corner mark, and returns them after a legend of counts by state.
  function heatmap(p, nodes) {
    const counts = {};
    let spot = 0;
    for (const n of nodes) {
      counts[n.state] = (counts[n.state] || 0) + 1;
      if (n.spot) spot++;
    }
    const legend = el("ul", { class: "state-counts", "aria-label": "Nodes by state" },
      nodeStates.filter((s) => counts[s]).map((s) =>
        el("li", { "data-state": s }, el("span", { class: "swatch sw-" + s, "aria-hidden": "true" }),
          s.replaceAll("_", " ") + " ", el("b", { text: counts[s] }))),
      spot ? el("li", { "data-state": "spot" }, el("span", { class: "swatch sw-spot", "aria-hidden": "true" }),
        "spot nodes ", el("b", { text: spot })) : null);
    if (!nodes.length) legend.append(el("li", { text: "no nodes yet" }));
    // Few nodes get big tiles that say their slot use; many get small ones.
    const big = nodes.length <= 64;
    const tiles = el("ul", { class: "heatmap" + (big ? " big" : ""), "aria-label": `Nodes of pool ${p.id}` },
      nodes.map((n) => {
        const use = n.slots ? Math.min(n.running_tasks / n.slots, 1) : 0;
        const label = `${n.id}: ${n.spot ? "spot, " : ""}${n.state.replaceAll("_", " ")}` +
          (n.state === "running" ? `, ${n.running_tasks} of ${n.slots} slots running` : "") +
          (n.assigned_tasks ? `, ${n.assigned_tasks} queued` : "") + (n.drained ? ", drained" : "");
        const a = el("a", { class: "tile s-" + n.state + (use > 0.5 ? " dark" : "") + (n.spot ? " spot" : ""), href: nodeHref(n.id),
          "aria-label": label, title: label, "data-node": n.id, "data-state": n.state, "data-use": use.toFixed(2), "data-spot": String(!!n.spot) },
        big ? el("span", { class: "tile-text", "aria-hidden": "true", text: n.state === "running" ? `${n.running_tasks}/${n.slots}` : "" }) : null);
        a.style.setProperty("--use", use.toFixed(3));
        return el("li", {}, a);
      }));
    return [legend, tiles];
  }

  const heatmapHint = (p) => el("p", { class: "meta hint" }, el("span", { class: "swatch sw-running-low", "aria-hidden": "true" }), " → ",
    el("span", { class: "swatch sw-running", "aria-hidden": "true" }), " a running node darkens as its slots fill",
    hasSpot(p) ? ["; ", el("span", { class: "swatch sw-spot", "aria-hidden": "true" }), " marks a spot node"] : null,
    ". Select a node for its tasks and events.");

  const priced = (p) => p.price > 0 || p.spot_price > 0;
  // sized says a pool's target means something: a provider or a formula
  // sets it, or someone resized the pool.
  const sized = (p) => p.provider !== "static" || !!p.autoscale || p.target_nodes > 0;
  const hasSpot = (p) => p.target_spot_nodes > 0 || p.current_spot_nodes > 0 || p.spot_price > 0;

  // poolSizes says a pool's current and target size (dedicated and spot),
  // its formula and, when it has a price, its cost so far.
  function poolSizes(p) {
    const a = p.autoscale;
    const u = p.usage || {};
    return el("ul", { class: "sizes", "aria-label": `Size of pool ${p.id}` },
      el("li", { "data-size": "nodes" }, "nodes ", el("b", { text: fmtInt(p.current_nodes) }),
        sized(p) ? [" of target ", el("b", { text: fmtInt(p.target_nodes) })] : null),
      hasSpot(p) ? el("li", { "data-size": "spot" }, "spot nodes ", el("b", { text: fmtInt(p.current_spot_nodes) }),
        " of target ", el("b", { text: fmtInt(p.target_spot_nodes) })) : null,
      a ? el("li", { "data-size": "autoscale" }, "autoscale ", autoscaleBadge(a), " ", el("code", { class: "formula", text: a.formula })) : null,
      priced(p) ? el("li", { "data-size": "cost" }, "cost so far ", el("b", { text: fmtNum(u.cost) }),
        ` (${fmtNum(u.node_seconds / 3600)} node-hours)`) : null);
  }
  const autoscaleBadge = (a) => el("span", { class: "badge " + (a.enabled ? "b-on" : "b-off"), text: a.enabled ? "on" : "off" });

  function poolCard(p, nodes) {
    return el("section", { class: "card pool", "aria-labelledby": "pool-" + p.id, "data-pool": p.id },
      el("div", { class: "card-head" },
        el("h2", { id: "pool-" + p.id }, link(poolHref(p.id), p.id)),
        el("span", { class: "meta", text:
          `${p.provider} · ${p.slots_per_node ? p.slots_per_node + " slots per node" : "slots = cores"} · ${p.fill_policy}` }),
        el("span", { class: "meta slot-use", text: slotUse(nodes) })),
      poolSizes(p), heatmap(p, nodes), heatmapHint(p));
  }

  // ---- one pool: settings, nodes, autoscale history ----------------------

  function poolView(poolID) {
    const head = el("div"), facts = el("dl", { class: "facts", id: "pool-facts" }), nodesBox = el("div");
    const historySub = el("span", { class: "meta" });
    const chartBox = el("div", { class: "chart-box", id: "autoscale-chart" });
    const runsBody = el("tbody"), errorsBody = el("tbody");
    let pool = null;

    function drawFacts(p) {
      const a = p.autoscale, u = p.usage || {};
      const bounds = p.min_nodes || p.max_nodes ? `min ${p.min_nodes || 0}` + (p.max_nodes ? `, max ${p.max_nodes}` : ", no max") : "none";
      fill(facts, ...[
        ["Provider", p.provider],
        ["Slots per node", p.slots_per_node || "= cores"],
        ["Nodes", fmtInt(p.current_nodes) + (sized(p) ? ` of target ${fmtInt(p.target_nodes)}` : "")],
        hasSpot(p) ? ["Spot nodes", `${fmtInt(p.current_spot_nodes)} of target ${fmtInt(p.target_spot_nodes)}`] : null,
        ["Autoscale", a ? [autoscaleBadge(a), a.interval ? ` every ${a.interval}` : "", el("br"),
          el("code", { class: "formula", id: "pool-formula", text: a.formula })] : "none: the size is set by pool resize"],
        ["Bounds", bounds],
        ["Deallocation", p.deallocation || "requeue"],
        priced(p) ? ["Price", `${fmtNum(p.price)} per node-hour` + (p.spot_price ? `, spot ${fmtNum(p.spot_price)}` : "")] : null,
        ["Node time", `${fmtNum(u.node_seconds / 3600)} node-hours` + (u.spot_node_seconds ? ` (${fmtNum(u.spot_node_seconds / 3600)} spot)` : "")],
        priced(p) ? ["Cost so far", el("b", { id: "pool-cost", text: fmtNum(u.cost) })] : null,
        ["Created", fmtTime(p.created_at)],
      ].filter(Boolean).flatMap(([k, val]) => [el("dt", { text: k }), el("dd", {}, val)]));
    }

    // drawHistory charts the applied evaluations (pending tasks on the
    // left scale, target and current nodes, dedicated and spot together,
    // on the right) and lists every kept one, newest first.
    function drawHistory() {
      const p = pool;
      if (!p) return;
      const runs = p.autoscale_runs || [];
      const applied = runs.filter((r) => !r.dry_run).map((r) => ({ ...r, t: Date.parse(r.time) }));
      const withVars = applied.filter((r) => r.vars);
      historySub.textContent = runs.length ? `last ${runs.length} evaluation${runs.length === 1 ? "" : "s"}` : "";
      if (!applied.length) {
        fill(chartBox, el("p", { class: "empty", text: p.autoscale ? "No evaluations yet." :
          "This pool has no autoscale formula (lote pool autoscale enable)." }));
      } else {
        // Each evaluation's values hold until the next: the last one for
        // the mean time between evaluations (or a second).
        const t0 = applied[0].t, tn = applied[applied.length - 1].t;
        const t1 = tn + (applied.length > 1 ? (tn - t0) / (applied.length - 1) : 1000);
        const pending = withVars.map((r) => ({ t: r.t, v: r.vars.pending_tasks || 0 }));
        const target = applied.filter((r) => !r.error).map((r) => ({ t: r.t, v: r.target_nodes + r.target_spot_nodes }));
        const current = withVars.map((r) => ({ t: r.t, v: (r.vars.current_nodes || 0) + (r.vars.current_spot_nodes || 0) }));
        const failed = applied.filter((r) => r.error).map((r) => r.t);
        const last = (pts) => (pts.length ? pts[pts.length - 1].v : "–");
        const series = [
          { name: "pending_tasks", area: true, points: pending },
          { name: "target_nodes", right: true, cls: "l-target", points: target },
          { name: "current_nodes", right: true, cls: "l-nodes", points: current },
        ];
        fill(chartBox, el("h3", { text: "Pending tasks and nodes" }),
          stepChart({ width: chartBox.clientWidth, t0, t1, endLabel: "last " + fmtTime(new Date(tn).toISOString()), series, marks: failed,
            label: `Autoscale evaluations from ${fmtTime(new Date(t0).toISOString())} to ${fmtTime(new Date(tn).toISOString())}: ` +
              `last pending tasks ${last(pending)}, target nodes ${last(target)}, nodes ${last(current)}` +
              (failed.length ? `; ${failed.length} failed` : "") }),
          el("ul", { class: "chart-legend", "aria-hidden": "true" },
            el("li", {}, el("span", { class: "key k-pending" }), "pending tasks (left scale)"),
            el("li", {}, el("span", { class: "key k-target" }), "target nodes (right)"),
            el("li", {}, el("span", { class: "key k-nodes" }), "nodes (right)"),
            failed.length ? el("li", {}, el("span", { class: "key k-mark" }), "failed evaluation") : null));
      }
      const both = (d, s) => (s ? `${fmtInt(d)} + ${fmtInt(s)} spot` : fmtInt(d));
      fill(runsBody, ...[...runs].reverse().map((r) => el("tr", { "data-target": r.error ? "" : r.target_nodes,
        "data-spot-target": r.error ? "" : r.target_spot_nodes, "data-error": r.error ? "true" : "false" },
      el("td", { text: fmtTime(r.time) }),
      el("td", { class: "num", text: r.vars ? fmtInt(r.vars.pending_tasks) : "–" }),
      el("td", { class: "num", text: r.error ? "–" : both(r.target_nodes, r.target_spot_nodes) }),
      el("td", { class: "num", text: r.vars ? both(r.vars.current_nodes, r.vars.current_spot_nodes) : "–" }),
      el("td", { class: "wrap" }, r.error ? el("span", { class: "error", text: r.error }) :
        (r.dry_run ? "dry run, not applied" : "ok") + (r.deallocation ? ` · deallocation ${r.deallocation}` : "")))));
      if (!runs.length) runsBody.append(el("tr", {}, el("td", { colspan: 5, class: "empty", text: "No evaluations kept." })));
      const errs = p.resize_errors || [];
      fill(errorsBody, ...[...errs].reverse().map((e) => el("tr", {},
        el("td", { text: fmtTime(e.time) }), el("td", { class: "wrap", text: e.message }))));
      if (!errs.length) errorsBody.append(el("tr", {}, el("td", { colspan: 2, class: "empty", text: "No resize errors." })));
    }

    const table = (id, label, cols, body) => el("div", { class: "table-wrap" }, el("table", { id, "aria-label": label },
      el("thead", {}, el("tr", {}, cols.map(([h, cls]) => el("th", { scope: "col", class: cls, text: h })))), body));
    const v = view({
      liveParams: { pool: poolID, kind: "node,pool" },
      // Evaluations come without an event: look again each second.
      tick: () => v.refresh.schedule(),
      render() {
        main.append(head,
          el("div", { class: "grid2" },
            el("section", { class: "card", "aria-labelledby": "pf-h" }, el("h2", { id: "pf-h", class: "card-head", text: "Details" }), facts),
            el("section", { class: "card", "aria-labelledby": "pn-h" }, el("h2", { id: "pn-h", class: "card-head", text: "Nodes" }), nodesBox)),
          el("section", { class: "card", "aria-labelledby": "ph-h" },
            el("div", { class: "card-head" }, el("h2", { id: "ph-h", text: "Autoscale history" }), historySub),
            chartBox,
            table("autoscale-runs", "Autoscale evaluations", [["Time"], ["Pending tasks", "num"], ["Target", "num"], ["Nodes", "num"], ["Result"]], runsBody)),
          el("section", { class: "card", "aria-labelledby": "pe-h" }, el("h2", { id: "pe-h", class: "card-head", text: "Resize errors" }),
            table("resize-errors", "Resize errors", [["Time"], ["Message"]], errorsBody)));
      },
      async refresh(signal) {
        const [p, list] = await Promise.all([
          getJSON("/pools/" + enc(poolID), signal),
          getJSON("/pools/" + enc(poolID) + "/nodes", signal),
        ]);
        clearError();
        pool = p;
        document.title = `Pool ${p.id} · Lote`;
        fill(head,
          el("div", { class: "crumbs" }, link("#/pools", "Pools"), " / ", p.id),
          el("div", { class: "view-head" }, el("h1", { text: "Pool " + p.id }),
            el("p", { class: "sub", text: `${p.provider} · ${p.fill_policy} · ${slotUse(list.nodes)}` })));
        drawFacts(p);
        fill(nodesBox, heatmap(p, list.nodes), heatmapHint(p));
        drawHistory();
      },
    });
    return v;
  }

  // ---- jobs -------------------------------------------------------------

  function progressBar(c, big) {
    const total = c.active + c.assigned + c.preparing + c.running + c.completed;
    const pct = (n) => (total ? (100 * n) / total : 0) + "%";
    const bar = el("div", { class: "progress" + (big ? " big" : ""), role: "img",
      "aria-label": `${fmtInt(c.completed)} of ${fmtInt(total)} completed: ${fmtInt(c.succeeded)} succeeded, ${fmtInt(c.failed)} failed, ${fmtInt(c.running)} running` });
    for (const [cls, n] of [["p-ok", c.succeeded], ["p-bad", c.failed], ["p-run", c.running], ["p-asg", c.assigned + c.preparing]]) {
      const s = el("span", { class: cls });
      s.style.width = pct(n);
      bar.append(s);
    }
    return bar;
  }
  const totalOf = (c) => c.active + c.assigned + c.preparing + c.running + c.completed;

  function jobsView(query) {
    let state = query.get("state") || "";
    let tags = query.get("tag") || "";
    const body = el("tbody");
    const summary = el("p", { class: "sub" });
    const form = el("form", { class: "filters", role: "search", "aria-label": "Filter jobs",
      onsubmit(e) {
        e.preventDefault();
        state = form.elements.state.value;
        tags = form.elements.tag.value.trim();
        setQuery({ state, tag: tags });
        v.refresh.now();
      } },
    el("div", { class: "field" }, el("label", { for: "f-state", text: "State" }),
      el("select", { id: "f-state", name: "state", onchange: () => form.requestSubmit() },
        ["", "active", "terminating", "completed"].map((s) => el("option", { value: s, selected: s === state, text: s || "any" })))),
    el("div", { class: "field" }, el("label", { for: "f-tag", text: "Tags (key=value, comma-separated)" }),
      el("input", { id: "f-tag", name: "tag", type: "search", value: tags, placeholder: "run=nightly" })),
    el("button", { type: "submit", text: "Apply" }));
    const v = view({
      liveParams: { kind: "job,task" },
      interval: 1000,
      render() {
        document.title = "Jobs · Lote";
        main.append(el("div", { class: "view-head" }, el("h1", { text: "Jobs" }), summary),
          el("div", { class: "card" }, form,
            el("div", { class: "table-wrap" }, el("table", { "aria-label": "Jobs" },
              el("thead", {}, el("tr", {}, ["Job", "Pool", "State", "Priority", "Progress", "Active", "Running", "Succeeded", "Failed", "Created"]
                .map((h, i) => el("th", { scope: "col", class: i >= 5 && i <= 8 ? "num" : null, text: h })))),
              body))));
      },
      async refresh(signal) {
        const q = new URLSearchParams();
        if (state) q.set("state", state);
        for (const t of tags.split(",").map((s) => s.trim()).filter(Boolean)) q.append("tag", t);
        const { jobs } = await getJSON("/jobs?" + q, signal);
        clearError();
        jobs.sort((a, b) => (b.created_at > a.created_at ? 1 : b.created_at < a.created_at ? -1 : 0));
        summary.textContent = `${jobs.length} job${jobs.length === 1 ? "" : "s"}`;
        fill(body, ...jobs.map((j) => {
          const c = j.task_counts;
          return el("tr", { "data-job": j.id },
            el("td", {}, link(jobHref(j.id), j.id)),
            el("td", {}, link(poolHref(j.pool_id), j.pool_id)),
            el("td", {}, badge(j.state)),
            el("td", { class: "num", text: j.priority }),
            el("td", {}, el("div", { class: "cell-progress" }, progressBar(c),
              el("span", { class: "meta", text: `${fmtInt(c.completed)} / ${fmtInt(totalOf(c))}` }))),
            el("td", { class: "num", text: fmtInt(c.active + c.assigned + c.preparing) }),
            el("td", { class: "num", text: fmtInt(c.running) }),
            el("td", { class: "num", text: fmtInt(c.succeeded) }),
            el("td", { class: "num", text: fmtInt(c.failed) }),
            el("td", { text: fmtTime(j.created_at) }));
        }));
        if (!jobs.length) body.append(el("tr", {}, el("td", { colspan: 10, class: "empty", text: "No jobs match." })));
      },
    });
    return v;
  }

  // ---- one job: counts, running-tasks chart, paged task table ------------

  const taskFilters = {
    "": { label: "all" },
    active: { label: "waiting (active)", state: "active" },
    assigned: { label: "assigned", state: "assigned" },
    running: { label: "running", state: "running" },
    completed: { label: "completed", state: "completed" },
    succeeded: { label: "succeeded", state: "completed", result: "success" },
    failed: { label: "failed", state: "completed", result: "failure" },
  };
  const sortKeys = {
    id: (t) => t.index ?? t.id,
    state: (t) => t.state + (t.result || ""),
    exit: (t) => (t.exit_code ?? (t.signal ? 1000 + t.signal : -1)),
    node: (t) => t.node_id || "",
    attempts: (t) => t.attempt,
    duration: (t) => duration(t) ?? -1,
  };

  function jobView(jobID, query) {
    let filter = taskFilters[query.get("filter") || ""] ? query.get("filter") || "" : "";
    let size = [50, 100, 500].includes(+query.get("size")) ? +query.get("size") : 100;
    let cursors = [""], page = 0, next = "";
    let sort = { key: null, dir: 1 };
    let tasks = [];
    const samples = []; // {t, running} for the chart
    let backfilled = false;
    const head = el("div"), countsBox = el("div"), chartBox = el("div", { class: "chart-box" }), tbody = el("tbody");
    const pageInfo = el("span", { role: "status" });
    const prev = el("button", { type: "button", class: "quiet", text: "← Previous", onclick: () => go(page - 1) });
    const nextBtn = el("button", { type: "button", class: "quiet", text: "Next →", onclick: () => go(page + 1) });
    const columns = [["id", "Task"], ["state", "State"], ["exit", "Exit"], ["node", "Node"], ["attempts", "Attempts"], ["duration", "Duration"], [null, "Waiting because"]];
    const headRow = el("tr");

    function go(p) {
      if (p < 0 || p >= cursors.length) return;
      page = p;
      v.refresh.now();
    }
    function drawHead() {
      fill(headRow, ...columns.map(([key, label]) => {
        if (!key) return el("th", { scope: "col", text: label });
        const th = el("th", { scope: "col", class: key === "attempts" ? "num" : null,
          "aria-sort": sort.key === key ? (sort.dir > 0 ? "ascending" : "descending") : "none" },
        el("button", { type: "button", class: "sort", text: label, title: "Sort this page by " + label.toLowerCase(),
          onclick: () => { sort = { key, dir: sort.key === key ? -sort.dir : 1 }; drawHead(); drawRows(); } }));
        return th;
      }));
    }
    function drawRows() {
      let rows = tasks;
      if (sort.key) {
        const f = sortKeys[sort.key];
        rows = [...tasks].sort((a, b) => { const x = f(a), y = f(b); return (x < y ? -1 : x > y ? 1 : 0) * sort.dir; });
      }
      const frag = document.createDocumentFragment();
      for (const t of rows) {
        frag.append(el("tr", { "data-task": t.id, "data-state": t.state, "data-result": t.result || "" },
          el("td", {}, link(taskHref(jobID, t.id), t.id)),
          el("td", {}, taskOutcome(t)),
          el("td", { class: "mono", text: exitText(t) }),
          el("td", {}, t.node_id ? link(nodeHref(t.node_id), t.node_id) : "–"),
          el("td", { class: "num", text: t.attempt }),
          el("td", { text: fmtDur(duration(t)) }),
          el("td", { class: "meta", text: (t.pending_reason || "").replaceAll("_", " ") || "–" })));
      }
      fill(tbody, frag);
      if (!rows.length) tbody.append(el("tr", {}, el("td", { colspan: 7, class: "empty", text: "No tasks match this filter." })));
    }
    const form = el("form", { class: "filters", "aria-label": "Filter tasks", onsubmit: (e) => e.preventDefault() },
      el("div", { class: "field" }, el("label", { for: "t-filter", text: "Show" }),
        el("select", { id: "t-filter", name: "filter", onchange: (e) => {
          filter = e.target.value; cursors = [""]; page = 0; setQuery({ filter, size: size === 100 ? "" : size }); v.refresh.now();
        } }, Object.entries(taskFilters).map(([k, f]) => el("option", { value: k, selected: k === filter, text: f.label })))),
      el("div", { class: "field" }, el("label", { for: "t-size", text: "Per page" }),
        el("select", { id: "t-size", name: "size", onchange: (e) => {
          size = +e.target.value; cursors = [""]; page = 0; setQuery({ filter, size: size === 100 ? "" : size }); v.refresh.now();
        } }, [50, 100, 500].map((n) => el("option", { value: n, selected: n === size, text: n })))),
      el("p", { class: "meta", text: "Pages come from the server in submission order; sorting orders the page shown." }));

    async function refresh(signal) {
      const f = taskFilters[filter];
      const q = new URLSearchParams({ limit: size });
      if (f.state) q.set("state", f.state);
      if (f.result) q.set("result", f.result);
      if (cursors[page]) q.set("next", cursors[page]);
      const t0 = performance.now();
      const [job, list] = await Promise.all([
        getJSON("/jobs/" + enc(jobID), signal),
        getJSON("/jobs/" + enc(jobID) + "/tasks?" + q, signal),
      ]);
      clearError();
      drawJob(job);
      tasks = list.tasks;
      next = list.next || "";
      if (next && cursors.length === page + 1) cursors.push(next);
      else if (next) cursors[page + 1] = next;
      else cursors.length = page + 1;
      drawRows();
      const first = page * size;
      pageInfo.textContent = tasks.length ? `Page ${page + 1} · tasks ${fmtInt(first + 1)}–${fmtInt(first + tasks.length)}${next ? "" : " (last page)"}` : `Page ${page + 1}`;
      prev.disabled = page === 0;
      nextBtn.disabled = !next;
      main.dataset.loadedMs = Math.round(performance.now() - t0);
      main.dataset.loaded = filter + ":" + page + ":" + tasks.length;
      if (!backfilled) {
        backfilled = true;
        backfill(signal).catch(() => { /* the chart starts now instead */ });
      }
    }

    function drawJob(j) {
      document.title = `Job ${j.id} · Lote`;
      const c = j.task_counts;
      sample(c.running);
      fill(head,
        el("div", { class: "crumbs" }, link("#/jobs", "Jobs"), " / ", j.id),
        el("div", { class: "view-head" }, el("h1", { text: "Job " + j.id }), badge(j.state),
          el("p", { class: "sub" }, "pool ", link(poolHref(j.pool_id), j.pool_id),
            j.burst_pool_ids?.length ? [" · bursts to ", j.burst_pool_ids.map((id, i) => [i ? ", " : "", el("a", { href: poolHref(id), class: "burst-pool", text: id })])] : null,
            ` · priority ${j.priority} · created ${fmtTime(j.created_at)}` +
            (j.completed_at ? ` · completed ${fmtTime(j.completed_at)}` : "") +
            (j.tags ? " · " + Object.entries(j.tags).map(([k, v]) => `${k}=${v}`).join(", ") : ""))));
      fill(countsBox, progressBar(c, true),
        el("ul", { class: "counts", "aria-label": "Tasks by state" },
          [["total", totalOf(c)], ["waiting", c.active], ["assigned", c.assigned + c.preparing], ["running", c.running],
            ["succeeded", c.succeeded], ["failed", c.failed]].map(([k, n]) => el("li", { "data-count": k }, k + " ", el("b", { text: fmtInt(n) })))),
        j.node_seconds || j.cost ? el("ul", { class: "counts", "aria-label": "Usage of ended attempts" },
          [["slot-seconds", j.slot_seconds], ["node-seconds", j.node_seconds], j.cost ? ["cost", j.cost] : null].filter(Boolean)
            .map(([k, n]) => el("li", { "data-usage": k }, k + " ", el("b", { text: fmtNum(n) })))) : null,
        j.pending_reason ? el("p", { class: "meta", text: "Waiting tasks wait because: " + j.pending_reason.replaceAll("_", " ") }) : null);
    }

    function sample(running) {
      const now = Date.now();
      const last = samples[samples.length - 1];
      if (last && now - last.t < 250) last.running = running;
      else samples.push({ t: now, running });
      while (samples.length > 2000 || (samples.length && now - samples[0].t > 30 * 60e3)) samples.shift();
      drawChart();
    }

    function drawChart() {
      const now = Date.now();
      // From the first sample (the job's start, when the events reach back
      // that far), at least ten seconds wide.
      const t0 = Math.min(samples.length ? samples[0].t : now, now - 10e3);
      const maxY = Math.max(1, ...samples.map((p) => p.running));
      const lastN = samples.length ? samples[samples.length - 1].running : 0;
      fill(chartBox, el("h3", { text: "Running tasks" }), stepChart({
        width: chartBox.clientWidth, t0, t1: now, endLabel: "now",
        series: [{ name: "running", area: true, points: samples.map((p) => ({ t: p.t, v: p.running })) }],
        label: `Running tasks over the last ${fmtDur(now - t0)}: now ${lastN}, at most ${maxY}`,
      }));
    }

    // backfill rebuilds the recent past of the chart from the job's last
    // task events, walking back from the running count at page load: each
    // event moves one task from its previous state to the event's.
    async function backfill(signal) {
      const r = await get("/events?" + new URLSearchParams({ job: jobID, kind: "task", tail: 5000, follow: "false" }), signal);
      const evs = (await r.text()).split("\n\n").map((m) => {
        if (!/^id: /m.test(m) || /^event: /m.test(m)) return null;
        const line = m.split("\n").find((l) => l.startsWith("data: "));
        return line ? JSON.parse(line.slice(6)) : null;
      }).filter(Boolean);
      if (!evs.length || !samples.length) return;
      const prev = new Array(evs.length), seen = new Map();
      evs.forEach((ev, i) => { prev[i] = seen.get(ev.task_id); seen.set(ev.task_id, i); });
      let n = samples[0].running;
      const past = [];
      for (let i = evs.length - 1; i >= 0; i--) {
        const ev = evs[i], t = Date.parse(ev.time);
        if (t >= samples[0].t) continue;
        past.push({ t, running: n });
        // Events carry the state a batch left a task in, so a quick task
        // can go from assigned to completed with no running event; a task
        // first seen in the window is taken as not running before it.
        const before = prev[i] !== undefined ? evs[prev[i]].state : "";
        n += (before === "running" ? 1 : 0) - (ev.state === "running" ? 1 : 0);
        n = Math.max(n, 0);
      }
      past.push({ t: Date.parse(evs[0].time) - 1, running: n });
      samples.unshift(...past.reverse().filter((p, i, a) => i === a.length - 1 || p.t !== a[i + 1].t));
      drawChart();
    }

    drawHead();
    const v = view({
      liveParams: { job: jobID, kind: "task,job" },
      interval: 500,
      tick: drawChart,
      render() {
        main.append(head,
          el("div", { class: "card" }, countsBox, chartBox),
          el("section", { class: "card", "aria-labelledby": "tasks-h" },
            el("div", { class: "card-head" }, el("h2", { id: "tasks-h", text: "Tasks" })),
            form,
            el("div", { class: "table-wrap" }, el("table", { "aria-label": "Tasks", id: "tasks" }, el("thead", {}, headRow), tbody)),
            el("div", { class: "pager" }, pageInfo, prev, nextBtn)));
      },
      refresh,
    });
    return v;
  }

  // ---- one task: attempts, timings, live log -----------------------------

  function taskView(jobID, taskID) {
    const head = el("div"), facts = el("div"), attemptsBox = el("div");
    const pre = el("pre", { class: "log", tabindex: 0, "aria-label": "Task output", id: "log" });
    const logStatus = el("span", { class: "log-status", role: "status" });
    const dl = el("span");
    let stream = "stdout", attempt = 0, offset = 0, final = false, text = "", latest = 0, logBusy = false;
    const maxText = 512 << 10;

    const tabs = ["stdout", "stderr"].map((s) => el("button", { type: "button", role: "tab", id: "tab-" + s,
      "aria-selected": String(s === stream), "aria-controls": "log", text: s,
      onclick: () => { stream = s; tabs.forEach((b) => b.setAttribute("aria-selected", String(b.textContent === s))); resetLog(); pollLog(); } }));
    const attemptSel = el("select", { id: "log-attempt", "aria-label": "Attempt", onchange: (e) => { attempt = +e.target.value; resetLog(); pollLog(); } });

    function resetLog() { offset = 0; final = false; text = ""; pre.textContent = ""; }

    async function pollLog() {
      if (logBusy || final) return;
      logBusy = true;
      try {
        const a = attempt || latest;
        if (!a) { logStatus.textContent = "Waiting for the task to start."; return; }
        const q = new URLSearchParams({ offset, attempt: a });
        const r = await get(`/jobs/${enc(jobID)}/tasks/${enc(taskID)}/files/${stream}.txt?` + q);
        const chunk = await r.text();
        final = r.headers.get("Lote-Log-Final") === "true";
        if (chunk.length) {
          const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          offset += new TextEncoder().encode(chunk).length;
          text += chunk;
          if (text.length > maxText) text = "… (earlier output not shown)\n" + text.slice(text.length - maxText);
          pre.textContent = text;
          if (atBottom) pre.scrollTop = pre.scrollHeight;
        }
        logStatus.textContent = `attempt ${a} · ${fmtBytes(offset) === "–" ? "0 B" : fmtBytes(offset)}` + (final ? " · complete" : " · following");
        pre.dataset.bytes = offset;
        fill(dl, el("a", { href: `/ui/v1/jobs/${enc(jobID)}/tasks/${enc(taskID)}/files/${stream}.txt?attempt=${a}`, download: `${taskID}-${a}-${stream}.txt`, text: "Download " + stream }));
      } catch (e) {
        if (!(e instanceof SignedOut)) logStatus.textContent = "Log unavailable: " + e.message;
      } finally { logBusy = false; }
    }

    function drawTask(t) {
      document.title = `Task ${t.id} · Lote`;
      const atts = t.attempts || [];
      const last = atts[atts.length - 1];
      if (t.attempt !== latest) {
        const follow = !attempt || attempt === latest;
        latest = t.attempt;
        if (follow && attempt) { attempt = 0; }
        if (follow) { resetLog(); }
      }
      fill(attemptSel, el("option", { value: 0, selected: attempt === 0, text: "latest" + (latest ? ` (#${latest})` : "") }),
        ...atts.map((a) => el("option", { value: a.number, selected: attempt === a.number, text: "#" + a.number })));
      fill(head,
        el("div", { class: "crumbs" }, link("#/jobs", "Jobs"), " / ", link(jobHref(jobID), jobID), " / ", t.id),
        el("div", { class: "view-head" }, el("h1", { text: "Task " + t.id }), taskOutcome(t),
          el("p", { class: "sub", text: `job ${jobID}` + (t.index !== undefined ? ` · index ${t.index}` : "") })));
      const why = last && last.result === "failure" ? last.message || last.failure_category : "";
      fill(facts,
        why && t.state === "completed" ? el("p", { class: "failure", role: "note" }, el("b", { text: "Failed: " }), why) : null,
        el("dl", { class: "facts" },
          el("dt", { text: "State" }), el("dd", {}, badge(t.state), t.pending_reason ? ` waiting: ${t.pending_reason.replaceAll("_", " ")}` : ""),
          el("dt", { text: "Command" }), el("dd", { class: "mono", text: (t.shell ? "sh -c " : "") + t.command.map((a) => (/[\s"'\\]/.test(a) ? JSON.stringify(a) : a)).join(" ") }),
          el("dt", { text: "Node" }), el("dd", {}, t.node_id ? link(nodeHref(t.node_id), t.node_id) : "–"),
          el("dt", { text: "Exit code" }), el("dd", { class: "mono", text: exitText(t) }),
          el("dt", { text: "Attempts" }), el("dd", { text: `${t.attempt} (retries used ${t.retries}, requeues ${t.requeues})` }),
          el("dt", { text: "Started" }), el("dd", { text: fmtTime(t.started_at) }),
          el("dt", { text: "Ended" }), el("dd", { text: fmtTime(t.ended_at) }),
          el("dt", { text: "Duration" }), el("dd", { text: fmtDur(duration(t)) })));
      fill(attemptsBox, el("div", { class: "table-wrap" }, el("table", { "aria-label": "Attempts" },
        el("thead", {}, el("tr", {}, ["#", "Node", "Assigned", "Started", "Ended", "Run time", "Result", "Exit", "CPU", "Max RSS", "Reason"]
          .map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, atts.length ? atts.map((a) => el("tr", {},
          el("td", { text: a.number }),
          el("td", {}, a.node_id ? link(nodeHref(a.node_id), a.node_id) : "–"),
          el("td", { text: fmtTime(a.assigned_at) }),
          el("td", { text: fmtTime(a.started_at) }),
          el("td", { text: fmtTime(a.ended_at) }),
          el("td", { text: fmtDur(duration(a)) }),
          el("td", {}, a.result ? badge(a.result, a.result + (a.failure_category ? " · " + a.failure_category : "")) : badge("running", "in progress")),
          el("td", { class: "mono", text: exitText(a) }),
          el("td", { text: a.ended_at ? a.user_cpu + " user, " + a.sys_cpu + " sys" : "–" }),
          el("td", { text: fmtBytes(a.max_rss_bytes) }),
          el("td", { class: "wrap", text: a.message || "–" }))) :
          el("tr", {}, el("td", { colspan: 11, class: "empty", text: "Not dispatched yet." }))))));
    }

    const v = view({
      liveParams: { job: jobID, kind: "task" },
      interval: 300,
      tick: () => pollLog(),
      render() {
        main.append(head,
          el("div", { class: "grid2" },
            el("section", { class: "card", "aria-labelledby": "facts-h" }, el("h2", { id: "facts-h", class: "card-head", text: "Details" }), facts),
            el("section", { class: "card", "aria-labelledby": "log-h" },
              el("div", { class: "card-head" }, el("h2", { id: "log-h", text: "Output" })),
              el("div", { class: "log-tabs", role: "tablist", "aria-label": "Output stream" }, tabs,
                el("span", { class: "spacer" }), el("label", { for: "log-attempt", class: "meta", text: "Attempt " }), attemptSel),
              pre, el("p", { class: "meta" }, logStatus, " · ", dl))),
          el("section", { class: "card", "aria-labelledby": "att-h" }, el("h2", { id: "att-h", class: "card-head", text: "Attempts" }), attemptsBox));
      },
      async refresh(signal) {
        const t = await getJSON(`/jobs/${enc(jobID)}/tasks/${enc(taskID)}`, signal);
        clearError();
        drawTask(t);
        if (!final) pollLog();
      },
    });
    return v;
  }

  // ---- one node: facts, tasks, recent events -----------------------------

  function nodeView(nodeID) {
    const head = el("div"), facts = el("dl", { class: "facts" }), tasksBody = el("tbody");
    const events = el("ol", { class: "events", "aria-label": "Recent events", id: "node-events" });

    function addEvent(ev) {
      const what = ev.kind === "node" ? `node is ${ev.state}` :
        `${ev.job_id}/${ev.task_id} ${ev.state}${ev.attempt ? " (attempt " + ev.attempt + ")" : ""}` +
        (ev.result ? ` — ${ev.result}${ev.failure_category ? " · " + ev.failure_category : ""}${ev.exit_code !== undefined ? ", exit " + ev.exit_code : ""}` : "");
      const li = el("li", {}, el("time", { datetime: ev.time, text: fmtTime(ev.time) }),
        ev.kind === "task" ? el("span", {}, link(taskHref(ev.job_id, ev.task_id), `${ev.job_id}/${ev.task_id}`), what.slice(`${ev.job_id}/${ev.task_id}`.length)) : el("span", { text: what }));
      events.prepend(li);
      while (events.children.length > 100) events.lastChild.remove();
    }

    // The stream starts with the node's last 50 events, then follows.
    return view({
      liveParams: { node: nodeID, kind: "node,task", tail: 50 },
      onEvent: addEvent,
      interval: 500,
      render() {
        main.append(head,
          el("div", { class: "grid2" },
            el("section", { class: "card", "aria-labelledby": "nf-h" }, el("h2", { id: "nf-h", class: "card-head", text: "Details" }), facts),
            el("section", { class: "card", "aria-labelledby": "ne-h" }, el("h2", { id: "ne-h", class: "card-head", text: "Recent events" }), events)),
          el("section", { class: "card", "aria-labelledby": "nt-h" }, el("h2", { id: "nt-h", class: "card-head", text: "Tasks on this node" }),
            el("div", { class: "table-wrap" }, el("table", { "aria-label": "Tasks on this node" },
              el("thead", {}, el("tr", {}, ["Task", "Job", "State", "Attempt", "Running for"].map((h) => el("th", { scope: "col", text: h })))),
              tasksBody))));
      },
      async refresh(signal) {
        const [n, list] = await Promise.all([
          getJSON("/nodes/" + enc(nodeID), signal),
          fetch("/ui/data/nodes/" + enc(nodeID) + "/tasks", { signal }).then(check).then((r) => r.json()),
        ]);
        clearError();
        document.title = `Node ${n.id} · Lote`;
        fill(head,
          el("div", { class: "crumbs" }, link("#/pools", "Pools"), " / ", link(poolHref(n.pool_id), n.pool_id), " / ", n.id),
          el("div", { class: "view-head" }, el("h1", { text: "Node " + n.id }), badge(n.state),
            n.spot ? el("span", { class: "badge b-spot", text: "spot" }) : null,
            el("p", { class: "sub", text: `pool ${n.pool_id}` + (n.hostname ? ` · ${n.hostname}` : "") })));
        fill(facts, ...[
          ["State", n.state.replaceAll("_", " ") + (n.drained ? " (drained)" : "")],
          ["Connected", n.connected ? "yes" : "no"],
          ["Slots", `${n.running_tasks} of ${n.slots} running` + (n.assigned_tasks ? `, ${n.assigned_tasks} more queued on the node` : "")],
          ["Cores", n.cores], ["Memory", fmtBytes(n.memory_bytes)],
          ["Labels", n.labels ? Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(", ") : "–"],
          ["Joined", fmtTime(n.joined_at)], ["Last heard from", fmtTime(n.last_seen_at)],
        ].flatMap(([k, val]) => [el("dt", { text: k }), el("dd", { text: val })]));
        fill(tasksBody, ...list.tasks.map((t) => el("tr", {},
          el("td", {}, link(taskHref(t.job_id, t.id), t.id)), el("td", {}, link(jobHref(t.job_id), t.job_id)),
          el("td", {}, badge(t.state)), el("td", { text: t.attempt }), el("td", { text: fmtDur(duration(t)) }))));
        if (!list.tasks.length) tasksBody.append(el("tr", {}, el("td", { colspan: 5, class: "empty", text: "No tasks on this node now." })));
      },
    });
  }

  window.addEventListener("hashchange", route);
  route();
})();
