// concurrency-bench report.html / compare.html: sorting, the variant filter (kept in the
// URL's hash), tie highlighting and the charts (inline SVG drawn from the embedded JSON).
// Written for this page; no library, nothing fetched.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("data").textContent);
  const VARIANTS = DATA.variants || {};
  // the SVG namespace, read from an element the parser made (no URL written in the page)
  const SVG = (() => {
    const d = document.createElement("div");
    d.innerHTML = "<svg></svg>";
    return d.firstChild.namespaceURI;
  })();
  const state = { groups: null, ref: true, hide: new Set(), sort: {}, modes: {}, sig: false };

  // -- the URL: #g=event loop,threads&ref=0&hide=a,b&sort=0~4~p99_us~1&m.connections=threads
  // (sort: table~column~key~direction; several tables joined by ";")
  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    state.groups = p.has("g") ? new Set(p.get("g").split(",").filter(Boolean)) : null;
    state.ref = p.get("ref") !== "0";
    state.hide = new Set((p.get("hide") || "").split(",").filter(Boolean));
    state.sig = p.get("sig") === "1";
    state.sort = {};
    for (const s of (p.get("sort") || "").split(";").filter(Boolean)) {
      const [t, col, key, dir] = s.split("~");
      state.sort[t] = { col: Number(col), key: key, dir: Number(dir) || 1 };
    }
    state.modes = {};
    for (const [k, v] of p) if (k.startsWith("m.")) state.modes[k.slice(2)] = v;
  }

  function writeHash() {
    const p = new URLSearchParams();
    if (state.groups) p.set("g", [...state.groups].join(","));
    if (!state.ref) p.set("ref", "0");
    if (state.hide.size) p.set("hide", [...state.hide].join(","));
    if (state.sig) p.set("sig", "1");
    const sorts = Object.entries(state.sort).map(([t, s]) => `${t}~${s.col}~${s.key}~${s.dir}`);
    if (sorts.length) p.set("sort", sorts.join(";"));
    for (const [k, v] of Object.entries(state.modes)) if (v) p.set("m." + k, v);
    const hash = p.toString();
    const url = location.href.split("#")[0] + (hash ? "#" + hash : "");
    if (url === location.href) return;
    try {
      history.replaceState(null, "", url); // no new history entry per click
    } catch (err) { // a browser that keeps file: pages from it: the hash itself
      location.replace("#" + hash);
    }
  }

  function info(name) {
    return VARIANTS[name] || { family: "?", scheduling: "other", colour: "#999999" };
  }

  // a variant is shown when its scheduling group is, it is not hidden, and (the reference)
  // the reference is
  function visible(name) {
    return !state.hide.has(name) && inGroup(name);
  }

  // shown by the group filter (a legend lists these, hidden or not)
  function inGroup(name) {
    const v = info(name);
    if (v.family === "reference") return state.ref;
    return !state.groups || state.groups.has(v.scheduling);
  }

  // -- number formats (as loadgen.report.units writes them)
  function fmtRate(x) {
    return x >= 10000 ? (x / 1000).toFixed(1) + "k" : Math.round(x).toLocaleString("en");
  }
  function fmtUs(x) {
    if (x >= 10000) return Math.round(x / 1000).toLocaleString("en") + " ms";
    if (x >= 1000) return (x / 1000).toFixed(1) + " ms";
    return x.toFixed(0) + " µs";
  }
  function fmtBytes(x) {
    for (const [u, s] of [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]])
      if (Math.abs(x) >= s) return (x / s).toFixed(1) + " " + u;
    return x.toFixed(0) + " B";
  }
  function fmt(fig, x) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    if (fig.endsWith("_bytes")) return fmtBytes(x);
    if (fig.endsWith("throughput_rps") || fig === "rate" || fig === "neighbour_rps")
      return fmtRate(x);
    if (fig === "ratio_to_reference") return x.toFixed(2);
    if (fig.startsWith("cpu_")) return x.toFixed(2) + " µs";
    if (fig.endsWith("per_request")) return Math.abs(x) < 10 ? x.toFixed(2) : x.toFixed(1);
    if (fig.endsWith("_us")) return fmtUs(x);
    if (fig.startsWith("pct_")) return x.toFixed(1) + "%";
    if (fig.endsWith("_util")) return x.toFixed(2);
    return Number(x.toPrecision(4)).toLocaleString("en");
  }
  const NAMES = {
    throughput_rps: "req/s", p50_us: "p50", p99_us: "p99", p999_us: "p99.9",
    server_cpu_util: "server cores", memory_per_connection_uss_bytes: "memory/conn USS",
    memory_per_connection_bytes: "memory/conn PSS",
  };

  // "412 µs (95% CI 371 µs – 453 µs, n = 6)": a figure and its interval
  function statText(fig, st) {
    const [mean, , n, lo, hi] = st;
    if (n < 2) return `${fmt(fig, mean)} (n = 1: no spread known)`;
    return `${fmt(fig, mean)} (95% CI ${fmt(fig, lo)} – ${fmt(fig, hi)}, n = ${n})`;
  }

  // -- the filter bar -------------------------------------------------------------------
  function filterBar() {
    const nav = document.getElementById("filter");
    nav.textContent = "";
    const present = new Set(Object.values(VARIANTS).filter((v) => v.family !== "reference")
      .map((v) => v.scheduling));
    const groups = (DATA.scheduling || []).filter((g) => present.has(g));
    for (const g of present) if (!groups.includes(g)) groups.push(g);
    nav.append(el("b", {}, "Variants shown: "));
    for (const g of groups) {
      const box = el("input", { type: "checkbox" });
      box.checked = !state.groups || state.groups.has(g);
      box.addEventListener("change", () => {
        const now = state.groups ? new Set(state.groups) : new Set(groups);
        if (box.checked) now.add(g); else now.delete(g);
        state.groups = now.size === groups.length ? null : now;
        update();
      });
      const only = el("a", { href: "#", class: "only", title: `show ${g} only` }, "only");
      only.addEventListener("click", (e) => {
        e.preventDefault();
        state.groups = new Set([g]);
        update();
      });
      nav.append(el("label", { class: "chip" }, box, " " + g, " ", only));
    }
    if (Object.values(VARIANTS).some((v) => v.family === "reference")) {
      const box = el("input", { type: "checkbox" });
      box.checked = state.ref;
      box.addEventListener("change", () => { state.ref = box.checked; update(); });
      nav.append(el("label", { class: "chip" }, box, " reference"));
    }
    const all = el("button", { type: "button" }, "show all");
    all.addEventListener("click", () => {
      state.groups = null; state.ref = true; state.hide.clear(); update();
    });
    nav.append(all);
    if (state.hide.size) {
      nav.append(el("span", { class: "hidden-list" }, " hidden: "));
      for (const name of state.hide) {
        const b = el("button", { type: "button", class: "unhide", title: "show it again" },
          name + " ✕");
        b.addEventListener("click", () => { state.hide.delete(name); update(); });
        nav.append(b);
      }
    }
    const shown = Object.keys(VARIANTS).filter(visible).length;
    nav.append(el("span", { class: "count" },
      ` ${shown} of ${Object.keys(VARIANTS).length} variants; the URL keeps this view`));
    // the tables' sticky headers sit under the bar, however many lines it wraps to
    document.documentElement.style.setProperty("--nav", nav.offsetHeight + "px");
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const c of children) e.append(c);
    return e;
  }

  function svgEl(tag, attrs, text) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  // -- tables: filter, sort, ties ---------------------------------------------------------
  function filterRows() {
    for (const tr of document.querySelectorAll("[data-variant]")) {
      let show = visible(tr.dataset.variant);
      if (state.sig && tr.closest("table.compare")) show = show && tr.matches(".better,.worse");
      tr.hidden = !show;
    }
    for (const table of document.querySelectorAll("table")) {
      const rows = table.tBodies[0] ? [...table.tBodies[0].rows] : [];
      const hidden = rows.filter((r) => r.hidden).length;
      let note = table.nextElementSibling;
      if (!note || !note.classList.contains("filtered")) {
        note = el("p", { class: "filtered" });
        table.after(note);
      }
      note.textContent = hidden ? `${hidden} row(s) hidden by the filter above.` : "";
    }
  }

  function sortValue(table, tr, key, col) {
    if (key === "text") return tr.cells[col].textContent.trim().toLowerCase();
    if (key === "@v") {
      const v = tr.cells[col].dataset.v;
      return v === undefined ? null : Number(v);
    }
    const c = DATA.cases && DATA.cases[table.dataset.case];
    const row = c && c.rows[tr.dataset.variant];
    if (!row) return null;
    if (key in row.k) return row.k[key];
    return row.s[key] ? row.s[key][0] : null;
  }

  function sortTable(index, col, key, dir) {
    const table = sortables()[index];
    if (!table) return;
    const th = table.tHead && table.tHead.rows[0].cells[col];
    const span = th && [...th.querySelectorAll(".sk")].find((s) => s.dataset.key === key);
    if (!span) return;
    const body = table.tBodies[0];
    const rows = [...body.rows].map((tr, i) => [sortValue(table, tr, key, col), i, tr]);
    rows.sort((a, b) => {
      if (a[0] === null && b[0] === null) return a[1] - b[1];
      if (a[0] === null) return 1; // unknown last, whichever the direction
      if (b[0] === null) return -1;
      if (a[0] < b[0]) return -dir;
      if (a[0] > b[0]) return dir;
      return a[1] - b[1];
    });
    for (const [, , tr] of rows) body.append(tr);
    for (const s of table.querySelectorAll("th .sk")) s.removeAttribute("data-dir");
    span.dataset.dir = dir > 0 ? "asc" : "desc";
  }

  function sortables() {
    return [...document.querySelectorAll("table")].filter((t) => t.querySelector("th .sk"));
  }

  function initSorting() {
    sortables().forEach((table, index) => {
      for (const span of table.querySelectorAll("th .sk")) {
        span.tabIndex = 0;
        span.title = "sort by " + span.textContent + " (again: reverse)";
        const go = () => {
          const now = state.sort[index];
          const col = span.closest("th").cellIndex;
          const same = now && now.key === span.dataset.key && now.col === col;
          const dir = same ? -now.dir : 1;
          state.sort[index] = { col: col, key: span.dataset.key, dir: dir };
          sortTable(index, col, span.dataset.key, dir);
          writeHash();
        };
        span.addEventListener("click", go);
        span.addEventListener("keydown", (e) => { if (e.key === "Enter") go(); });
      }
    });
    for (const [index, s] of Object.entries(state.sort)) sortTable(Number(index), s.col, s.key, s.dir);
  }

  // hovering a row's letters marks the rows that share one (not separated by the test)
  function initTies() {
    for (const td of document.querySelectorAll("td.rank")) {
      const mine = td.dataset.letters || "";
      if (!mine) continue;
      td.addEventListener("mouseenter", () => {
        for (const other of td.closest("tbody").querySelectorAll("td.rank")) {
          const theirs = other.dataset.letters || "";
          const tie = [...mine].some((l) => theirs.includes(l));
          other.parentElement.classList.toggle("tie", tie);
        }
      });
      td.addEventListener("mouseleave", () => {
        for (const tr of td.closest("tbody").rows) tr.classList.remove("tie");
      });
    }
  }

  // -- the tooltip ----------------------------------------------------------------------
  const tip = document.getElementById("tip");
  document.addEventListener("mouseover", (e) => {
    const t = e.target.closest && e.target.closest("[data-tip]");
    if (!t) { tip.hidden = true; return; }
    tip.textContent = t.getAttribute("data-tip");
    tip.hidden = false;
  });
  document.addEventListener("mousemove", (e) => {
    if (tip.hidden) return;
    tip.style.left = Math.min(e.pageX + 12, window.scrollX + innerWidth - tip.offsetWidth - 8) + "px";
    tip.style.top = e.pageY + 14 + "px";
  });

  // -- charts ---------------------------------------------------------------------------
  function scale(lo, hi, a, b, log) {
    if (log) {
      const l0 = Math.log10(lo), l1 = Math.log10(hi);
      return (v) => a + ((Math.log10(Math.max(v, lo)) - l0) / (l1 - l0 || 1)) * (b - a);
    }
    return (v) => a + ((v - lo) / (hi - lo || 1)) * (b - a);
  }

  function ticks(lo, hi, log) {
    if (log) {
      const out = [];
      for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++)
        for (const m of [1, 2, 5]) {
          const v = m * 10 ** e;
          if (v >= lo && v <= hi) out.push(v);
        }
      return out.length > 12 ? out.filter((v) => String(v).startsWith("1")) : out;
    }
    const step0 = (hi - lo) / 5;
    const mag = 10 ** Math.floor(Math.log10(step0 || 1));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) || step0;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(v);
    return out;
  }

  function axis(svg, x, lo, hi, log, fig, y0, y1) {
    for (const t of ticks(lo, hi, log)) {
      const px = x(t);
      svg.append(svgEl("line", { x1: px, x2: px, y1: y0, y2: y1, class: "grid" }));
      svg.append(svgEl("text", { x: px, y: y1 + 12, class: "tick", "text-anchor": "middle" },
        fmt(fig, t)));
    }
  }

  function legend(fig, names, spec) {
    const box = el("div", { class: "legend" });
    for (const name of names.filter(inGroup)) {
      const item = el("button", { type: "button", class: "item", title: "click: hide or show " +
        name + " on the whole page" }, el("i", { class: "sw", style: "background:" +
        info(name).colour }), name);
      if (!visible(name)) item.classList.add("off");
      item.addEventListener("click", () => {
        if (state.hide.has(name)) state.hide.delete(name);
        else state.hide.add(name);
        update();
      });
      box.append(item);
    }
    fig.append(box);
    if (spec && spec.note) fig.append(el("p", { class: "note" }, spec.note));
  }

  function rowLabel(name, row) {
    let label = name;
    if (row.rank) label += ` [${row.rank}]`;
    else if (row.reference) label += " (ref)";
    else if (row.status !== "ok") label += " (FAILED)";
    return label;
  }

  function rowTip(name, row, fig) {
    let t = `${name}: ${NAMES[fig] || fig} ${statText(fig, row.s[fig])}`;
    if (row.rank) t += `; tie letters ${row.rank}`;
    if (row.floor) t += "; a floor: the generator was the limit";
    if (row.status !== "ok") t += `; ${row.status.toUpperCase()} at this level`;
    return t;
  }

  // one figure per variant: bar (linear) or dot (log) with its 95% interval
  function drawBars(fig, spec) {
    const c = DATA.cases[spec.case];
    const all = c.order.filter((n) => c.rows[n].s[spec.figure] &&
      !(spec.skip_failed && c.rows[n].status !== "ok"));
    const names = all.filter(visible);
    const W = 820, left = 230, right = 80, rowH = 18, top = 8;
    const H = top + rowH * Math.max(names.length, 1) + 24;
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "plot" });
    const stats = names.map((n) => c.rows[n].s[spec.figure]);
    const los = stats.map((s) => s[3]), his = stats.map((s) => s[4]);
    const log = !!spec.log;
    let lo = log ? Math.min(...los.filter((v) => v > 0)) / 1.5 : Math.min(0, ...los);
    let hi = Math.max(...his) * (log ? 1.5 : 1.08);
    if (!names.length || !Number.isFinite(lo) || !Number.isFinite(hi) || hi <= lo) {
      lo = log ? 1 : 0; hi = log ? 10 : 1;
    }
    const x = scale(lo, hi, left, W - right, log);
    axis(svg, x, lo, hi, log, spec.figure, top, H - 22);
    names.forEach((name, i) => {
      const row = c.rows[name], st = row.s[spec.figure], y = top + i * rowH + rowH / 2;
      const g = svgEl("g", { "data-tip": rowTip(name, row, spec.figure), class: "mark" });
      const colour = info(name).colour;
      if (!log) {
        const x0 = x(Math.max(lo, 0));
        g.append(svgEl("rect", { x: Math.min(x0, x(st[0])), y: y - 6,
          width: Math.abs(x(st[0]) - x0), height: 12, fill: colour,
          class: row.status !== "ok" ? "failed-bar" : "" }));
      } else {
        g.append(svgEl("circle", { cx: x(st[0]), cy: y, r: 4, fill: colour }));
      }
      if (st[2] > 1) {
        g.append(svgEl("line", { x1: x(st[3]), x2: x(st[4]), y1: y, y2: y, class: "whisker" }));
        for (const v of [st[3], st[4]]) // no cap on an end beyond the axis (a log axis
          if (v >= lo) // cannot show an interval reaching zero or below): it goes on
            g.append(svgEl("line", { x1: x(v), x2: x(v), y1: y - 4, y2: y + 4, class: "whisker" }));
      }
      g.append(svgEl("text", { x: left - 6, y: y + 4, "text-anchor": "end",
        class: row.status !== "ok" ? "label bad" : "label" }, rowLabel(name, row)));
      g.append(svgEl("text", { x: x(Math.max(st[4], st[0])) + 4, y: y + 4, class: "value" },
        (row.floor ? "≥ " : "") + fmt(spec.figure, st[0])));
      svg.append(g);
    });
    fig.append(svg);
    const left_out = spec.skip_failed ? c.order.filter((n) => c.rows[n].s[spec.figure] &&
      c.rows[n].status !== "ok") : [];
    legend(fig, all, left_out.length ? { note: "not drawn, failed at this level (see the " +
      "table): " + left_out.join(", ") } : null);
  }

  const SHAPES = { p50_us: "circle", p99_us: "square", p999_us: "diamond" };

  function marker(shape, cx, cy, colour) {
    if (shape === "circle") return svgEl("circle", { cx: cx, cy: cy, r: 3.5, fill: colour });
    if (shape === "square")
      return svgEl("rect", { x: cx - 3.5, y: cy - 3.5, width: 7, height: 7, fill: colour });
    return svgEl("path", { d: `M${cx} ${cy - 5}L${cx + 5} ${cy}L${cx} ${cy + 5}L${cx - 5} ${cy}Z`,
      fill: colour });
  }

  // p50, p99, p99.9 per variant on one log axis, each with its interval
  function drawPercentiles(fig, spec) {
    const c = DATA.cases[spec.case];
    const all = c.order.filter((n) => spec.figures.some((f) => c.rows[n].s[f]));
    const names = all.filter(visible);
    const W = 820, left = 230, right = 20, rowH = 18, top = 8;
    const H = top + rowH * Math.max(names.length, 1) + 24;
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "plot" });
    const vals = [];
    for (const n of names) for (const f of spec.figures) {
      const st = c.rows[n].s[f];
      if (st) vals.push(st[3], st[4], st[0]);
    }
    const pos = vals.filter((v) => v > 0);
    const lo = pos.length ? Math.min(...pos) / 1.5 : 1, hi = pos.length ? Math.max(...pos) * 1.5 : 10;
    const x = scale(lo, hi, left, W - right, true);
    axis(svg, x, lo, hi, true, "p50_us", top, H - 22);
    names.forEach((name, i) => {
      const row = c.rows[name], y = top + i * rowH + rowH / 2, colour = info(name).colour;
      const figs = spec.figures.filter((f) => row.s[f]);
      const tipText = `${name}: ` + figs.map((f) => `${NAMES[f]} ${statText(f, row.s[f])}`)
        .join("; ") + (row.status !== "ok" ? "; FAILED at this level" : "");
      const g = svgEl("g", { "data-tip": tipText, class: "mark" });
      const xs = figs.map((f) => x(row.s[f][0]));
      g.append(svgEl("line", { x1: Math.min(...xs), x2: Math.max(...xs), y1: y, y2: y,
        stroke: colour, class: "span" }));
      for (const f of figs) {
        const st = row.s[f];
        if (st[2] > 1) g.append(svgEl("line", { x1: x(st[3]), x2: x(st[4]), y1: y + 5,
          y2: y + 5, class: "whisker" }));
        g.append(marker(SHAPES[f], x(st[0]), y, colour));
      }
      g.append(svgEl("text", { x: left - 6, y: y + 4, "text-anchor": "end",
        class: row.status !== "ok" ? "label bad" : "label" }, rowLabel(name, row)));
      svg.append(g);
    });
    fig.append(svg);
    fig.append(el("p", { class: "note" }, "● p50  ■ p99  ◆ p99.9 (mean of the repeats; the " +
      "line under each marker: its 95% interval); log scale, µs"));
    legend(fig, all);
  }

  // a figure against a level (connections, CPUs): a line per variant, the model filter
  function drawLines(fig, spec) {
    const cases = spec.cases.map((k) => DATA.cases[k]);
    const allNames = [...new Set(cases.flatMap((c) => c.order))]
      .filter((n) => cases.some((c) => c.rows[n] && c.rows[n].s.throughput_rps));
    const groups = [...new Set(allNames.filter((n) => info(n).family !== "reference")
      .map((n) => info(n).scheduling))];
    const mode = state.modes[spec.id] || "";
    const bar = el("div", { class: "modes" }, "model: ");
    for (const g of ["", ...groups]) {
      const b = el("button", { type: "button", class: g === mode ? "on" : "" }, g || "all");
      b.addEventListener("click", () => { state.modes[spec.id] = g; update(); });
      bar.append(b);
    }
    fig.append(bar);
    const inMode = (n) => !mode || info(n).family === "reference" || info(n).scheduling === mode;
    const names = allNames.filter((n) => visible(n) && inMode(n));
    for (const f of spec.figures) fig.append(linePanel(spec, cases, names, f));
    legend(fig, allNames.filter(inMode));
  }

  function linePanel(spec, cases, names, f) {
    const W = 820, H = 300, left = 70, right = 20, top = 10, bottom = 34;
    const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "plot" });
    const xsAll = cases.map((c) => c.x);
    const x = scale(Math.min(...xsAll) / 1.3, Math.max(...xsAll) * 1.3, left, W - right, true);
    const vals = [];
    for (const c of cases) for (const n of names) {
      const st = c.rows[n] && c.rows[n].s[f];
      if (st) vals.push(st[3], st[4]);
    }
    if (f === "throughput_rps" && spec.ideal) for (const [, v] of spec.ideal) vals.push(v);
    const log = f !== "throughput_rps" || !!spec.log_y;
    const pos = vals.filter((v) => v > 0);
    let lo = log ? (pos.length ? Math.min(...pos) / 1.5 : 1) : 0;
    let hi = pos.length ? Math.max(...pos) * (log ? 1.5 : 1.08) : 10;
    if (hi <= lo) hi = lo * 10 || 1;
    const y = scale(lo, hi, H - bottom, top, log);
    for (const t of ticks(lo, hi, log)) {
      svg.append(svgEl("line", { x1: left, x2: W - right, y1: y(t), y2: y(t), class: "grid" }));
      svg.append(svgEl("text", { x: left - 4, y: y(t) + 4, "text-anchor": "end", class: "tick" },
        fmt(f, t)));
    }
    for (const c of cases) {
      svg.append(svgEl("text", { x: x(c.x), y: H - bottom + 14, "text-anchor": "middle",
        class: "tick" }, String(c.x)));
    }
    svg.append(svgEl("text", { x: (left + W) / 2, y: H - 4, "text-anchor": "middle",
      class: "tick" }, `${spec.xlabel} (log); ${NAMES[f] || f}` + (log ? " (log)" : "")));
    if (f === "throughput_rps" && spec.ideal && spec.ideal.length) {
      const d = spec.ideal.map(([lx, v], i) => `${i ? "L" : "M"}${x(lx)} ${y(v)}`).join("");
      svg.append(svgEl("path", { d: d, class: "ideal", "data-tip": "ideal: connections ÷ the " +
        "wait, capped at the generator's ceiling" }));
    }
    for (const n of names) {
      const pts = cases.filter((c) => c.rows[n] && c.rows[n].s[f]).map((c) => [c, c.rows[n]]);
      if (!pts.length) continue;
      const colour = info(n).colour, ref = info(n).family === "reference";
      const d = pts.map(([c, r], i) => `${i ? "L" : "M"}${x(c.x)} ${y(r.s[f][0])}`).join("");
      svg.append(svgEl("path", { d: d, stroke: colour, class: ref ? "series ref" : "series",
        "data-tip": n }));
      for (const [c, r] of pts) {
        const st = r.s[f], px = x(c.x);
        const g = svgEl("g", { class: "mark", "data-tip": `${n} at ${c.x}: ` +
          `${NAMES[f] || f} ${statText(f, st)}` + (r.status !== "ok" ? "; FAILED at this level" :
          "") + (r.rank ? `; tie letters ${r.rank}` : "") });
        if (st[2] > 1) g.append(svgEl("line", { x1: px, x2: px, y1: y(st[3]), y2: y(st[4]),
          stroke: colour, class: "whisker-v" }));
        if (r.status !== "ok") {
          g.append(svgEl("path", { d: `M${px - 5} ${y(st[0]) - 5}l10 10m0 -10l-10 10`,
            class: "cross" }));
        } else {
          g.append(svgEl("circle", { cx: px, cy: y(st[0]), r: 3, fill: colour }));
        }
        svg.append(g);
      }
    }
    return svg;
  }

  const DRAW = { bars: drawBars, percentiles: drawPercentiles, lines: drawLines };

  function drawCharts() {
    for (const spec of DATA.charts || []) {
      const fig = [...document.querySelectorAll("figure[data-chart]")]
        .find((f) => f.dataset.chart === spec.id);
      if (!fig) continue;
      for (const child of [...fig.children]) if (child.tagName !== "FIGCAPTION") child.remove();
      try {
        DRAW[spec.type](fig, spec);
      } catch (err) { // a chart that cannot be drawn says so; the rest of the page stays
        fig.append(el("p", { class: "bad" }, "chart not drawn: " + err.message));
      }
    }
  }

  function update() {
    writeHash();
    filterBar();
    filterRows();
    drawCharts();
  }

  // the contents' links scroll to their section without touching the hash (it holds the view)
  function initContents() {
    const links = 'a[href^="#case-"], a[href="#costs"], a[href="#hosts"]';
    for (const a of document.querySelectorAll(links)) {
      a.addEventListener("click", (e) => {
        const target = document.getElementById(a.getAttribute("href").slice(1));
        if (!target) return;
        e.preventDefault();
        target.scrollIntoView();
      });
    }
  }

  function init() {
    readHash();
    initContents();
    const sig = document.getElementById("only-significant");
    if (sig) {
      sig.checked = state.sig;
      sig.addEventListener("change", () => { state.sig = sig.checked; update(); });
    }
    initSorting();
    initTies();
    update();
    window.addEventListener("hashchange", () => {
      readHash();
      for (const [index, s] of Object.entries(state.sort)) sortTable(Number(index), s.col, s.key, s.dir);
      if (sig) sig.checked = state.sig;
      filterBar(); filterRows(); drawCharts();
    });
  }

  init();
})();
