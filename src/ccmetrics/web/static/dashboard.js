// The dashboard. /api/config first (defaults, range presets, the panel catalogue...); then each refresh is one
// request, /api/dashboard (every panel's data and the filters' choices), made on load, on a change of filter,
// and on each "data" event of the live stream (/api/live).
"use strict";

(() => {
  const { el, format, getJSON, colorOf, css, cut, client, chartText } = ccm;
  const $ = (id) => document.getElementById(id);
  const charts = {};     // panel id -> Chart
  const bodies = {};     // panel id -> element holding the panel's content
  const rowTitles = new Map();  // row -> its title, left out with the row's last panel
  let config = null;     // /api/config: everything the server decides, defaults included
  let panels = [];
  let lastData = null;
  let shownVersion = null;  // the store version of the data shown (null: to be fetched)
  let heardVersion = null;  // the latest the live stream announced
  let shownChoices = "";    // the filters' choices in the selects (as JSON): rebuilt only when they change
  let inFlight = null;
  let queued = false;

  // --- state <-> URL: every filter lives in the URL, so a link reproduces the view ---------------------
  function readState() {
    const p = new URLSearchParams(location.search), defaults = config.defaults;
    const state = { range: p.get("range") || (p.get("since") ? "custom" : defaults.range), since: p.get("since") || "",
                    until: p.get("until") || "", groupKey: p.get("group_by") || defaults.group_by, filters: {},
                    compare: p.get("compare") || "previous" };
    for (const f of p.getAll("filter")) {
      const i = f.indexOf("=");
      if (i > 0) state.filters[f.slice(0, i)] = f.slice(i + 1);
    }
    return state;
  }

  function pageParams(state) {
    const p = new URLSearchParams();
    p.set("range", state.range);
    if (state.range === "custom") {
      if (state.since) p.set("since", state.since);
      if (state.until) p.set("until", state.until);
    }
    if (state.groupKey !== config.defaults.group_by) p.set("group_by", state.groupKey);
    if (state.compare !== "previous") p.set("compare", state.compare);
    for (const [k, v] of Object.entries(state.filters)) if (v) p.append("filter", `${k}=${v}`);
    return p;
  }

  function apiParams(state) {
    const p = new URLSearchParams();
    if (state.range === "custom") {
      if (state.since) p.set("since", state.since);
      if (state.until) p.set("until", state.until);
    } else if (state.range !== "all") {
      p.set("since", state.range);
    }
    p.set("group_by", state.groupKey);
    for (const [k, v] of Object.entries(state.filters)) if (v) p.append("filter", `${k}=${v}`);
    return p;
  }

  // The dashboard's own request also asks for the previous period, for the headline stats (downloads do not).
  function dashboardParams(state) {
    const p = apiParams(state);
    if (state.compare === "previous" && state.range !== "all") p.set("compare", "previous");
    return p;
  }

  let state = null;

  function setState(change) {
    state = { ...state, ...change };
    history.replaceState(null, "", "?" + pageParams(state).toString());
    syncControls();
    refresh();
  }

  // --- controls ----------------------------------------------------------------------------------------
  function option(value, label) {
    return el("option", { value }, label);
  }

  // A choice that came from a client: isolated, cut in the list, whole in its title.
  function clientOption(value, label) {
    const text = String(label ?? value);
    return el("option", { value, class: "client", title: text }, cut(text, 60));
  }

  // A select shows its choice's whole text in its own title, as it may be cut in the box.
  function titleSelect(select) {
    const chosen = select.selectedOptions[0];
    select.title = chosen && chosen.classList.contains("client") ? chosen.title : "";
  }

  // The server lists the most common choices only (see /api/filters): when it cut a list, a search box beside
  // the select finds the rest as you type (/api/filters?q=...), and what you pick there is the select's choice.
  const searches = {};  // select id -> its search box
  function searchable(select, cut, find) {
    let box = searches[select.id];
    if (!box) {
      const list = el("datalist", { id: select.id + "-found" });
      box = searches[select.id] = el("input", { type: "search", list: list.id, class: "choice-search",
        placeholder: "search…", size: "10", "aria-label": "Search all choices" });
      let found = [], timer = null;
      box.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(async () => {
          found = box.value ? await find(box.value).catch(() => []) : [];
          list.replaceChildren(...found.map(([value, label]) => clientOption(value, label)));
        }, 200);
      });
      box.addEventListener("change", () => {
        const typed = box.value.trim();
        if (!typed) return;
        // What was picked from the list, or the one choice found for what was typed, or what was typed.
        const hit = found.find(([v]) => v === typed) || (found.length === 1 ? found[0] : null);
        const value = hit ? hit[0] : typed;
        if (![...select.options].some((o) => o.value === value)) select.append(clientOption(value, hit && hit[1]));
        select.value = value;
        box.value = "";
        select.dispatchEvent(new Event("change"));
      });
      select.after(box, list);
    }
    box.hidden = !cut;
  }

  const search = (params) => getJSON("/api/filters?" + new URLSearchParams(params).toString());

  // The choices come with each /api/dashboard answer (as /api/filters and /api/filters?key=<group_by> give
  // them); the selects are rebuilt only when they changed, so an open one stays open through live updates.
  function showChoices(choices) {
    const json = JSON.stringify(choices);
    if (json === shownChoices) return;
    shownChoices = json;
    const options = choices.filters, group = choices.group;
    const user = $("user"), model = $("model"), groupKey = $("group-key");
    user.replaceChildren(option("", "All users"), ...options.users.map((u) => clientOption(u.id, u.name || u.email || u.id)));
    model.replaceChildren(option("", "All models"), ...options.models.map((m) => clientOption(m)));
    const keys = new Set([config.defaults.group_by, ...options.keys]);
    groupKey.replaceChildren(...[...keys].map((k) => clientOption(k)));
    searchable(user, options.users_truncated, async (q) => (await search({ q })).users.map((u) => [u.id, u.name || u.email || u.id]));
    searchable(model, options.models_truncated, async (q) => (await search({ q })).models.map((m) => [m, m]));
    searchable(groupKey, options.keys_truncated, async (q) => (await search({ q })).keys.map((k) => [k, k]));
    if (group.key === state.groupKey) {
      // user.id's values come with their names (the filter still takes the id)
      const named = (answer) => (v) => [v, (answer.names && Object.hasOwn(answer.names, v) && answer.names[v]) || v];
      $("group-value").replaceChildren(option("", "All"), ...group.values.map(named(group)).map(([v, n]) => clientOption(v, n)));
      searchable($("group-value"), group.truncated,
        async (q) => { const found = await search({ key: state.groupKey, q }); return found.values.map(named(found)); });
    }
    syncControls();
  }

  function ensureOption(select, value) {
    if (value && ![...select.options].some((o) => o.value === value)) select.append(clientOption(value));
    select.value = value || "";
    titleSelect(select);
  }

  function syncControls() {
    ensureOption($("range"), state.range);  // a range the presets lack, from a link
    $("compare").value = state.compare;
    $("compare").disabled = state.range === "all";
    document.querySelectorAll(".custom-range").forEach((n) => { n.hidden = state.range !== "custom"; });
    $("since").value = state.since.slice(0, 16);
    $("until").value = state.until.slice(0, 16);
    ensureOption($("user"), state.filters["user.id"]);
    ensureOption($("model"), state.filters["model"]);
    ensureOption($("group-key"), state.groupKey);
    ensureOption($("group-value"), state.filters[state.groupKey]);
    $("session").value = state.filters["session.id"] || "";
    $("session").title = $("session").value;
    const key = $("group-value-key");
    key.textContent = key.title = state.groupKey;
  }

  function bindControls() {
    const filter = (key, value) => setState({ filters: { ...state.filters, [key]: value } });
    $("range").addEventListener("change", (e) => setState({ range: e.target.value }));
    $("compare").addEventListener("change", (e) => setState({ compare: e.target.value }));
    $("since").addEventListener("change", (e) => setState({ since: e.target.value }));
    $("until").addEventListener("change", (e) => setState({ until: e.target.value }));
    $("user").addEventListener("change", (e) => filter("user.id", e.target.value));
    $("model").addEventListener("change", (e) => filter("model", e.target.value));
    $("session").addEventListener("change", (e) => filter("session.id", e.target.value.trim()));
    $("group-value").addEventListener("change", (e) => filter(state.groupKey, e.target.value));
    $("group-key").addEventListener("change", (e) => {
      const filters = { ...state.filters };
      delete filters[state.groupKey];
      $("group-value").replaceChildren(option("", "All"));  // the new key's values come with the refresh
      shownChoices = "";
      setState({ groupKey: e.target.value, filters });
    });
    $("clear").addEventListener("click", () => setState({ range: config.defaults.range, since: "", until: "", filters: {} }));
  }

  // --- panels ------------------------------------------------------------------------------------------
  function buildGrid() {
    const grid = $("grid");
    let row = null;
    for (const panel of panels) {
      if (panel.row !== row) {
        row = panel.row;
        rowTitles.set(row, grid.appendChild(el("h2", { class: "row-title" }, row)));
      }
      const csv = el("a", { class: "download", title: "Download CSV" }, "CSV");
      const json = el("a", { class: "download", title: "Download JSON" }, "JSON");
      const body = el("div", { class: `panel-body kind-${panel.kind}` });
      const card = el("section", { class: `panel panel-${panel.kind}`, id: `panel-${panel.id}`, "data-panel": panel.id },
        el("header", {}, el("h3", { title: panel.description }, panel.title), el("span", { class: "links" }, csv, json)),
        body);
      card.style.gridColumn = `span ${panel.width}`;
      card.style.gridRow = `span ${panel.height}`;
      bodies[panel.id] = body;
      body.dataset.csv = "";
      card.querySelector(".links").dataset.panel = panel.id;
      grid.append(card);
    }
  }

  function updateDownloadLinks() {
    const params = apiParams(state);
    for (const panel of panels) {
      const links = document.querySelectorAll(`#panel-${CSS.escape(panel.id)} a.download`);
      const base = `/api/panels/${encodeURIComponent(panel.id)}?`;
      const csvParams = new URLSearchParams(params);
      csvParams.set("format", "csv");
      links[0].href = base + csvParams.toString();
      links[1].href = base + params.toString();
    }
  }

  // Short labels, on two lines under a day (time, then date), so that the axis fits more of them.
  function timeLabel(ns, bucketNs) {
    const d = new Date(ns / 1e6), date = d.toLocaleDateString(undefined, { month: "short", day: "numeric" });
    if (bucketNs >= 86400e9) return date;
    return [d.toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }), date];
  }

  const WHOLE = new Set(["count", "tokens", "lines", "chars"]);  // units counted in whole numbers

  // Legend items as Chart.js makes them for this type of chart, with their text cut and isolated.
  function legendLabels(type) {
    const own = Chart.overrides[type] && Chart.overrides[type].plugins && Chart.overrides[type].plugins.legend;
    const make = (own && own.labels && own.labels.generateLabels) || Chart.defaults.plugins.legend.labels.generateLabels;
    return function (chart) {
      return make.call(this, chart).map((item) => ({ ...item, text: chartText(item.text) }));
    };
  }

  // Labels are client strings (models, tools, attribute values): every text the chart draws from them is cut
  // and isolated (chartText); the data keep the whole labels, and so do the CSV and JSON downloads.
  function chartOptions(panel, extra) {
    const text = css("--text"), grid = css("--grid");
    return {
      responsive: true, maintainAspectRatio: false, animation: false,
      plugins: {
        legend: { labels: { color: text, boxWidth: 12, generateLabels: legendLabels(extra.type) } },
        tooltip: { callbacks: {
          title: (items) => (items.length ? chartText([].concat(items[0].label).reverse().join(" "), 40) : ""),
          label: (c) => `${chartText(c.dataset.label || c.label, 40)}: ${format(c.parsed.y ?? c.parsed.x ?? c.parsed, panel.unit)}`,
        } },
      },
      scales: extra.noScales ? {} : {
        x: { stacked: !!extra.stacked, ticks: { color: text, maxRotation: 0, autoSkip: true, autoSkipPadding: 16 }, grid: { color: grid } },
        y: { stacked: !!extra.stacked, beginAtZero: true,
             ticks: { color: text, precision: WHOLE.has(panel.unit) ? 0 : undefined, callback: (v) => format(v, panel.unit) }, grid: { color: grid } },
      },
      ...(extra.indexAxis ? { indexAxis: extra.indexAxis } : {}),
    };
  }

  // A bar chart stays readable with a dozen bars: the rest are added up as "others" (downloads keep them all),
  // counting what the server's own "others" item holds.
  function topItems(data, n) {
    if (data.items.length <= n) return data;
    const rest = data.items.slice(n - 1);
    const value = rest.reduce((sum, i) => sum + i.value, 0), count = rest.reduce((sum, i) => sum + (i.others || 1), 0);
    return { items: [...data.items.slice(0, n - 1), { label: `others (${count})`, value, others: count }] };
  }

  function chartConfig(panel, data) {
    if (panel.kind === "pie") {
      return { type: "doughnut",
        data: { labels: data.items.map((i) => i.label), datasets: [{ data: data.items.map((i) => i.value), backgroundColor: data.items.map((i) => colorOf(i.label)), borderColor: css("--panel") }] },
        options: (() => {
          const opts = chartOptions(panel, { noScales: true, type: "doughnut" });
          opts.plugins.tooltip.callbacks.label = (c) => `${chartText(c.label, 40)}: ${format(c.parsed, panel.unit)}`;
          return opts;
        })() };
    }
    if (panel.kind === "bar") {
      data = topItems(data, 12);
      const opts = chartOptions(panel, { indexAxis: "y", type: "bar" });
      opts.plugins.legend.display = false;
      opts.plugins.tooltip.callbacks.label = (c) => `${chartText(c.label, 40)}: ${format(c.parsed.x, panel.unit)}`;
      opts.scales.x.ticks.callback = (v) => format(v, panel.unit);
      opts.scales.x.ticks.precision = opts.scales.y.ticks.precision;
      delete opts.scales.y.ticks.precision;
      opts.scales.y.ticks.callback = function (v) { return chartText(this.getLabelForValue(v), 28); };
      return { type: "bar",
        data: { labels: data.items.map((i) => i.label), datasets: [{ label: panel.title, data: data.items.map((i) => i.value), backgroundColor: data.items.map((i) => colorOf(i.label)) }] },
        options: opts };
    }
    const stacked = panel.kind === "stacked_bars" || !!panel.options.stacked;
    return {
      type: panel.kind === "stacked_bars" ? "bar" : "line",
      data: {
        labels: data.times.map((t) => timeLabel(t, data.bucket_ns)),
        datasets: data.series.map((s, i) => ({ label: s.label, data: s.values, borderColor: colorOf(s.label),
          backgroundColor: colorOf(s.label) + (panel.kind === "stacked_bars" ? "" : "55"),
          fill: stacked ? (i === 0 ? "origin" : "-1") : false, tension: 0.2,
          pointRadius: s.values.filter((v) => v).length <= 3 ? 3 : 0 })),  // a lone value is seen
      },
      options: chartOptions(panel, { stacked, type: panel.kind === "stacked_bars" ? "bar" : "line" }),
    };
  }

  function renderChart(panel, data) {
    const config = chartConfig(panel, data);
    const existing = charts[panel.id];
    if (existing && existing.config.type === config.type) {
      // Update in place: no flicker, legend toggles survive.
      existing.data.labels = config.data.labels;
      const hidden = new Map(existing.data.datasets.map((d, i) => [d.label, !existing.isDatasetVisible(i)]));
      existing.data.datasets = config.data.datasets;
      existing.data.datasets.forEach((d, i) => { if (hidden.get(d.label)) existing.setDatasetVisibility(i, false); });
      existing.update("none");
      return;
    }
    if (existing) existing.destroy();
    const body = bodies[panel.id];
    const canvas = el("canvas", { "aria-label": panel.title, role: "img" });
    body.replaceChildren(el("div", { class: "chart-box" }, canvas));
    charts[panel.id] = new Chart(canvas, config);
  }

  // A stat: its value; what it was in the previous period of the same length, as a change; a sparkline of
  // it over the range; and a note on what it counts when the filters change its meaning.
  function renderStat(panel, data) {
    const body = bodies[panel.id];
    let value = body.querySelector(".stat-value");
    if (!value) {
      value = el("div", { class: "stat-value" });
      body.replaceChildren(value, el("div", { class: "delta" }), el("div", { class: "spark" }), el("div", { class: "note" }));
    }
    value.textContent = format(data.value, panel.unit);
    value.dataset.value = data.value === null ? "" : String(data.value);
    const delta = body.querySelector(".delta");
    delta.replaceChildren(...change(panel, data.value, data.previous));
    delta.hidden = data.previous === undefined;
    body.querySelector(".spark").replaceChildren(...(data.spark ? [sparkline(data.spark)] : []));
    body.querySelector(".note").textContent = data.note || "";
  }

  function change(panel, now, before) {
    if (before === undefined) return [];
    const was = `was ${format(before, panel.unit)}`;
    if (now === null || before === null) return [el("span", { class: "was" }, was)];
    const diff = now - before;
    const pct = before ? `${diff >= 0 ? "+" : "−"}${Math.abs((diff / Math.abs(before)) * 100).toFixed(0)}%` : diff ? "new" : "±0%";
    return [el("span", { class: diff > 0 ? "up" : diff < 0 ? "down" : "same" }, `${diff > 0 ? "▲" : diff < 0 ? "▼" : "="} ${pct}`),
      " ", el("span", { class: "was", title: "The previous period of the same length" }, was)];
  }

  // A line of the values over the range, drawn as SVG (no chart for it); its peak reaches the top. A bucket
  // without a value (an average with nothing to average) is passed over.
  function sparkline(values) {
    const ns = "http://www.w3.org/2000/svg", w = 100, h = 24;
    const max = Math.max(...values.map(v => Math.abs(v || 0)), 1e-12), n = Math.max(values.length - 1, 1);
    const svg = document.createElementNS(ns, "svg"), line = document.createElementNS(ns, "polyline");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("preserveAspectRatio", "none");
    line.setAttribute("points", values.map((v, i) => v === null ? "" : `${((i / n) * w).toFixed(1)},${(h - 1 - (Math.max(v, 0) / max) * (h - 2)).toFixed(1)}`).filter(Boolean).join(" "));
    svg.append(line);
    return svg;
  }

  function renderGauge(panel, data) {
    const max = panel.options.max || 1;
    const v = data.value === null ? 0 : Math.min(Math.max(data.value, 0), max);
    const body = bodies[panel.id];
    let box = body.querySelector(".gauge");
    if (!box) {
      const canvas = el("canvas", { "aria-label": panel.title, role: "img" });
      box = el("div", { class: "gauge" }, el("div", { class: "chart-box" }, canvas), el("div", { class: "stat-value gauge-value" }));
      body.replaceChildren(box);
      charts[panel.id] = new Chart(canvas, { type: "doughnut",
        data: { datasets: [{ data: [v, max - v], backgroundColor: [ccm.palette[0], css("--grid")], borderWidth: 0 }] },
        options: { responsive: true, maintainAspectRatio: false, animation: false, rotation: -90, circumference: 180,
                   cutout: "70%", plugins: { legend: { display: false }, tooltip: { enabled: false } } } });
    } else {
      charts[panel.id].data.datasets[0].data = [v, max - v];
      charts[panel.id].update("none");
    }
    const text = box.querySelector(".gauge-value");
    text.textContent = format(data.value, panel.unit);
    text.dataset.value = data.value === null ? "" : String(data.value);
  }

  function renderTable(panel, data) {
    // Text columns hold client strings (and a text column's label can be an attribute key, "Group by").
    const unsplit = new Set(data.unsplit_columns || []);
    const head = el("tr", {}, data.columns.map((c) =>
      c.unit === "text" ? el("th", {}, client(c.label))
        : el("th", unsplit.has(c.key) ? { class: "num", title: "Not split by the filters: Claude Code sends it without them" } : { class: "num" },
          c.label, unsplit.has(c.key) ? "*" : "")));
    const rows = data.rows.map((row) => el("tr", row.others ? { class: "others" } : {}, data.columns.map((c, i) => {
      const text = c.unit === "text" ? client(row[c.key] ?? "") : format(row[c.key], c.unit);
      if (i === 0 && row.link) {
        return el("td", {}, el("a", { href: "/session/" + encodeURIComponent(row.link) }, text));
      }
      return el("td", { class: c.unit === "text" ? "" : "num" }, text);
    })));
    const table = el("table", {}, el("thead", {}, head), el("tbody", {}, rows.length ? rows :
      [el("tr", {}, el("td", { colspan: String(data.columns.length), class: "none" }, "Nothing in this range"))]));
    const note = data.sampled ? el("div", { class: "note" }, "Percentiles from an even sample of the events in range") : null;
    const split = unsplit.size ? el("div", { class: "note" }, "* not split by the filters: Claude Code sends it without them") : null;
    const box = el("div", { class: "table-box" }, table), hint = el("div", { class: "note scroll-hint" }, "Scroll sideways for more columns →");
    const old = bodies[panel.id].querySelector(".table-box");
    if (old) tableBoxes.unobserve(old);
    bodies[panel.id].replaceChildren(...[box, hint, note, split].filter(Boolean));
    scrolls(box);
    tableBoxes.observe(box);
  }

  // A table wider than its panel says so: a shadow on the edge it scrolls to, and a line under it.
  function scrolls(box) {
    const more = box.scrollWidth > box.clientWidth + 1;
    box.classList.toggle("scroll-x", more);
    if (box.nextElementSibling) box.nextElementSibling.hidden = !more;  // none once the table was replaced
  }
  const tableBoxes = new ResizeObserver((entries) => entries.forEach((e) => scrolls(e.target)));

  function isEmpty(panel, data) {
    if (data.items) return !data.items.some((i) => i.value);
    if (data.series) return !data.series.some((s) => s.values.some((v) => v));
    if (data.rows) return !data.rows.length;
    return false;
  }

  // Instead of the panel's content: why there is none ("No API errors in this range"), or that the filters
  // cannot split its numbers (Claude Code sends commits without a model).
  function renderMessage(panel, data) {
    if (charts[panel.id]) { charts[panel.id].destroy(); delete charts[panel.id]; }
    const text = data.unsplit
      ? [el("b", {}, "Not split by "), ...data.unsplit.flatMap((k, i) => [i ? ", " : "", client(k)]),
        el("br"), "Claude Code sends these numbers without it."]
      : [panel.empty];
    bodies[panel.id].replaceChildren(el("div", { class: data.unsplit ? "message unsplit" : "message" }, ...text));
  }

  // A panel is as tall as what it shows needs, up to its height in the catalogue: an empty one is short, and
  // so is a table of three rows or a chart of two bars (a grid row is 38 px and a 10 px gap).
  function rowsFor(panel, data, message) {
    const px = message ? 100 : panel.kind === "table" ? 96 + 25 * data.rows.length + (data.sampled || data.unsplit_columns ? 18 : 0)
      : panel.kind === "bar" ? 90 + 30 * Math.min(data.items.length, 12) : null;
    return px === null ? panel.height : Math.max(3, Math.min(panel.height, Math.ceil((px + 10) / 48)));
  }

  function render(panel, data) {
    const card = bodies[panel.id].closest(".panel");
    const empty = isEmpty(panel, data), message = !!data.unsplit || empty;
    card.hidden = (empty && panel.hide_empty) || !!data.hidden;
    card.classList.toggle("panel-empty", message);
    card.style.gridRow = `span ${rowsFor(panel, data, message)}`;
    try {
      if (message) renderMessage(panel, data);
      else if (panel.kind === "stat") renderStat(panel, data);
      else if (panel.kind === "gauge") renderGauge(panel, data);
      else if (panel.kind === "table") renderTable(panel, data);
      else renderChart(panel, data);
      bodies[panel.id].closest(".panel").classList.remove("panel-error");
    } catch (error) {
      bodies[panel.id].closest(".panel").classList.add("panel-error");
      bodies[panel.id].replaceChildren(el("div", { class: "error" }, el("bdi", {}, String(error))));
    }
  }

  // --- data --------------------------------------------------------------------------------------------
  // Whether the live stream announced data newer than what is shown (versions only grow while a stream lasts).
  const behind = () => heardVersion !== null && (shownVersion === null || heardVersion > shownVersion);

  // One request for everything; a change of view while it is under way makes one more after it, and so does
  // data announced meanwhile that it may not hold.
  async function refresh() {
    if (inFlight) { queued = true; return; }
    updateDownloadLinks();
    let ok = false;
    inFlight = getJSON("/api/dashboard?" + dashboardParams(state).toString());
    try {
      const data = await inFlight;
      lastData = data;
      shownVersion = data.version;
      $("error").hidden = true;
      showEmptyState(!data.has_data);
      ccm.colorOrder(data.models);
      showPruned(data);
      showChoices(data.choices);
      for (const panel of panels) render(panel, data.panels[panel.id]);
      for (const [row, title] of rowTitles) title.hidden = panels.every((p) => p.row !== row || bodies[p.id].closest(".panel").hidden);
      document.body.dataset.version = String(data.version);
      ok = true;
    } catch (error) {
      $("error").replaceChildren("Could not load the dashboard: ", el("bdi", {}, error.message));
      $("error").hidden = false;
    } finally {
      inFlight = null;
      if (queued || (ok && behind())) { queued = false; refresh(); }
    }
  }

  // A view that starts before the raw data kept (--retention): its totals still come from the hourly, daily
  // and weekly sums, but percentiles, sessions and the partial hours at its ends only see what is left.
  function showPruned(data) {
    const since = data.raw_since_ns;
    const reaches = since && (data.start_ns === null || data.start_ns < since);
    $("pruned").hidden = !reaches;
    if (reaches) {
      $("pruned").textContent = "Raw data is kept from " + new Date(since / 1e6).toLocaleString() +
        " on (--retention): totals before it come from the hourly and daily sums, but sessions, " +
        "percentiles and session filters only cover what is kept.";
    }
  }

  // With no data yet: the settings that send Claude Code's data here (the same as `ccmetrics setup` writes),
  // over gRPC, then what differs over HTTP.
  function showEmptyState(empty) {
    $("empty").hidden = !empty;
    $("grid").hidden = empty;
    if (!empty || $("empty-env").textContent) return;
    const { grpc, http } = config.setup;
    const quoted = (v) => (/^[\w.:\/=,%-]*$/.test(v) ? v : `'${v}'`);
    const lines = (env) => Object.entries(env).map(([k, v]) => `export ${k}=${quoted(v)}`).join("\n");
    const token = grpc.OTEL_EXPORTER_OTLP_HEADERS ? " --token '<ingest-token>'" : "";
    const protocol = grpc.OTEL_EXPORTER_OTLP_PROTOCOL === "grpc" ? "" : ` --protocol ${grpc.OTEL_EXPORTER_OTLP_PROTOCOL}`;
    $("empty-setup").textContent = `ccmetrics setup --endpoint ${quoted(grpc.OTEL_EXPORTER_OTLP_ENDPOINT)}${protocol}${token}\nccmetrics doctor`;
    $("empty-env").textContent = lines(grpc);
    $("empty-token").hidden = !grpc.OTEL_EXPORTER_OTLP_HEADERS;
    $("empty-env-http").textContent = lines(Object.fromEntries(Object.entries(http).filter(([k, v]) => grpc[k] !== v)));
  }

  // The server sends "data" when a commit lands (at most every config.live.min_interval_s), "hello" on
  // connecting and "ping" every config.live.heartbeat_s, each with the store's version. A version newer than
  // the one shown is fetched: one request per update (a failed one is tried again at the next ping). Silence
  // for two heartbeats means a connection that died without a word (a laptop that slept): it is opened again.
  function live() {
    let source = null, watchdog = null, reconnect = false;
    const alive = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(connect, 2 * config.live.heartbeat_s * 1000 + 5000);
    };
    const news = (event) => {
      alive();
      heardVersion = JSON.parse(event.data).version;
      if (!inFlight && behind()) refresh();  // under way: refresh() looks again when it is done
    };
    function connect() {
      if (source) source.close();
      source = new EventSource("/api/live");
      alive();
      source.addEventListener("hello", (event) => {
        if (!reconnect) { reconnect = true; news(event); return; }
        // Connected again (the browser does so by itself after an error; the server may have restarted, and
        // counts versions from 0 again): what came meanwhile is fetched.
        alive();
        heardVersion = JSON.parse(event.data).version;
        refresh();
      });
      source.addEventListener("data", news);
      source.addEventListener("ping", news);
      source.addEventListener("open", () => $("live").classList.add("on"));
      source.addEventListener("error", () => $("live").classList.remove("on"));
    }
    connect();
  }

  async function main() {
    ccm.initTheme($("theme"));
    try {
      config = await getJSON("/api/config");
    } catch (error) {
      $("error").replaceChildren("Could not load the dashboard: ", el("bdi", {}, error.message));
      $("error").hidden = false;
      return;
    }
    panels = config.panels;
    state = readState();
    document.addEventListener("themechange", () => {
      for (const id of Object.keys(charts)) { charts[id].destroy(); delete charts[id]; }
      for (const panel of panels) bodies[panel.id].replaceChildren();
      if (lastData) for (const panel of panels) render(panel, lastData.panels[panel.id]);
    });
    $("range").replaceChildren(...config.ranges.map((r) => option(r.value, r.label)), option("custom", "Custom…"));
    buildGrid();
    bindControls();
    syncControls();
    await refresh();
    live();
  }

  main();
})();
