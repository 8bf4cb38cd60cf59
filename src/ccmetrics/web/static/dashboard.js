// The dashboard: panels from the catalogue (/api/panels), data from /api/dashboard, live via /api/live.
"use strict";

(() => {
  const { el, format, getJSON, palette, css, cut, client, chartText } = ccm;
  const $ = (id) => document.getElementById(id);
  const charts = {};     // panel id -> Chart
  const bodies = {};     // panel id -> element holding the panel's content
  let panels = [];
  let lastData = null;
  let inFlight = null;
  let queued = false;

  // --- state <-> URL: every filter lives in the URL, so a link reproduces the view ---------------------
  function readState() {
    const p = new URLSearchParams(location.search);
    const state = { range: p.get("range") || (p.get("since") ? "custom" : "7d"), since: p.get("since") || "",
                    until: p.get("until") || "", groupKey: p.get("group_by") || "team.id", filters: {} };
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
    if (state.groupKey !== "team.id") p.set("group_by", state.groupKey);
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

  let state = readState();

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

  async function loadFilterOptions() {
    const options = await getJSON("/api/filters");
    const user = $("user"), model = $("model"), groupKey = $("group-key");
    user.replaceChildren(option("", "All users"), ...options.users.map((u) => clientOption(u.id, u.email || u.id)));
    model.replaceChildren(option("", "All models"), ...options.models.map((m) => clientOption(m)));
    const keys = new Set(["team.id", ...options.keys]);
    groupKey.replaceChildren(...[...keys].map((k) => clientOption(k)));
    searchable(user, options.users_truncated, async (q) => (await search({ q })).users.map((u) => [u.id, u.email || u.id]));
    searchable(model, options.models_truncated, async (q) => (await search({ q })).models.map((m) => [m, m]));
    searchable(groupKey, options.keys_truncated, async (q) => (await search({ q })).keys.map((k) => [k, k]));
    await loadGroupValues();
    syncControls();
  }

  async function loadGroupValues() {
    const values = await search({ key: state.groupKey });
    $("group-value").replaceChildren(option("", "All"), ...values.values.map((v) => clientOption(v)));
    searchable($("group-value"), values.truncated,
      async (q) => (await search({ key: state.groupKey, q })).values.map((v) => [v, v]));
    const key = $("group-value-key");
    key.textContent = key.title = state.groupKey;
  }

  function ensureOption(select, value) {
    if (value && ![...select.options].some((o) => o.value === value)) select.append(clientOption(value));
    select.value = value || "";
    titleSelect(select);
  }

  function syncControls() {
    $("range").value = state.range;
    document.querySelectorAll(".custom-range").forEach((n) => { n.hidden = state.range !== "custom"; });
    $("since").value = state.since.slice(0, 16);
    $("until").value = state.until.slice(0, 16);
    ensureOption($("user"), state.filters["user.id"]);
    ensureOption($("model"), state.filters["model"]);
    ensureOption($("group-key"), state.groupKey);
    ensureOption($("group-value"), state.filters[state.groupKey]);
    $("session").value = state.filters["session.id"] || "";
    $("session").title = $("session").value;
  }

  function bindControls() {
    const filter = (key, value) => setState({ filters: { ...state.filters, [key]: value } });
    $("range").addEventListener("change", (e) => setState({ range: e.target.value }));
    $("since").addEventListener("change", (e) => setState({ since: e.target.value }));
    $("until").addEventListener("change", (e) => setState({ until: e.target.value }));
    $("user").addEventListener("change", (e) => filter("user.id", e.target.value));
    $("model").addEventListener("change", (e) => filter("model", e.target.value));
    $("session").addEventListener("change", (e) => filter("session.id", e.target.value.trim()));
    $("group-value").addEventListener("change", (e) => filter(state.groupKey, e.target.value));
    $("group-key").addEventListener("change", async (e) => {
      const filters = { ...state.filters };
      delete filters[state.groupKey];
      state = { ...state, groupKey: e.target.value, filters };
      await loadGroupValues();
      setState({});
    });
    $("clear").addEventListener("click", () => setState({ range: "7d", since: "", until: "", filters: {} }));
  }

  // --- panels ------------------------------------------------------------------------------------------
  function buildGrid() {
    const grid = $("grid");
    let row = null;
    for (const panel of panels) {
      if (panel.row !== row) {
        row = panel.row;
        grid.append(el("h2", { class: "row-title" }, row));
      }
      const csv = el("a", { class: "download", title: "Download CSV" }, "CSV");
      const json = el("a", { class: "download", title: "Download JSON" }, "JSON");
      const body = el("div", { class: `panel-body kind-${panel.kind}` });
      const card = el("section", { class: "panel", id: `panel-${panel.id}`, "data-panel": panel.id },
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

  function timeLabel(ns, bucketNs) {
    const d = new Date(ns / 1e6);
    if (bucketNs >= 86400e9) return d.toLocaleDateString();
    return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

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
          title: (items) => (items.length ? chartText(items[0].label, 40) : ""),
          label: (c) => `${chartText(c.dataset.label || c.label, 40)}: ${format(c.parsed.y ?? c.parsed.x ?? c.parsed, panel.unit)}`,
        } },
      },
      scales: extra.noScales ? {} : {
        x: { stacked: !!extra.stacked, ticks: { color: text, maxRotation: 0, autoSkip: true }, grid: { color: grid } },
        y: { stacked: !!extra.stacked, beginAtZero: true, ticks: { color: text, callback: (v) => format(v, panel.unit) }, grid: { color: grid } },
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
        data: { labels: data.items.map((i) => i.label), datasets: [{ data: data.items.map((i) => i.value), backgroundColor: palette }] },
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
      opts.scales.y.ticks.callback = function (v) { return chartText(this.getLabelForValue(v), 28); };
      return { type: "bar",
        data: { labels: data.items.map((i) => i.label), datasets: [{ label: panel.title, data: data.items.map((i) => i.value), backgroundColor: palette }] },
        options: opts };
    }
    const stacked = panel.kind === "stacked_bars" || !!panel.options.stacked;
    return {
      type: panel.kind === "stacked_bars" ? "bar" : "line",
      data: {
        labels: data.times.map((t) => timeLabel(t, data.bucket_ns)),
        datasets: data.series.map((s, i) => ({ label: s.label, data: s.values, borderColor: palette[i % palette.length],
          backgroundColor: palette[i % palette.length] + (panel.kind === "stacked_bars" ? "" : "55"),
          fill: stacked ? (i === 0 ? "origin" : "-1") : false, pointRadius: 0, tension: 0.2 })),
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

  function renderStat(panel, data) {
    const body = bodies[panel.id];
    let value = body.querySelector(".stat-value");
    if (!value) {
      value = el("div", { class: "stat-value" });
      body.replaceChildren(value);
    }
    value.textContent = format(data.value, panel.unit);
    value.dataset.value = data.value === null ? "" : String(data.value);
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
        data: { datasets: [{ data: [v, max - v], backgroundColor: [palette[0], css("--grid")], borderWidth: 0 }] },
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
    const head = el("tr", {}, data.columns.map((c) =>
      c.unit === "text" ? el("th", {}, client(c.label)) : el("th", { class: "num" }, c.label)));
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
    bodies[panel.id].replaceChildren(...[el("div", { class: "table-box" }, table), note].filter(Boolean));
  }

  function render(panel, data) {
    try {
      if (panel.kind === "stat") renderStat(panel, data);
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
  async function refresh() {
    if (inFlight) { queued = true; return; }
    updateDownloadLinks();
    inFlight = getJSON("/api/dashboard?" + apiParams(state).toString());
    try {
      const data = await inFlight;
      lastData = data;
      $("error").hidden = true;
      await showEmptyState(!data.has_data);
      for (const panel of panels) render(panel, data.panels[panel.id]);
      document.body.dataset.version = String(data.version);
    } catch (error) {
      $("error").replaceChildren("Could not load the dashboard: ", el("bdi", {}, error.message));
      $("error").hidden = false;
    } finally {
      inFlight = null;
      if (queued) { queued = false; refresh(); }
    }
  }

  async function showEmptyState(empty) {
    $("empty").hidden = !empty;
    $("grid").hidden = empty;
    if (!empty || $("empty-env").textContent) return;
    const health = await getJSON("/api/health");
    const host = ["0.0.0.0", "::", ""].includes(health.host) ? location.hostname : health.host;
    const common = ["CLAUDE_CODE_ENABLE_TELEMETRY=1", "OTEL_METRICS_EXPORTER=otlp", "OTEL_LOGS_EXPORTER=otlp",
                    "OTEL_METRIC_EXPORT_INTERVAL=10000", "OTEL_LOGS_EXPORT_INTERVAL=5000"];
    $("empty-env").textContent = [...common, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
      `OTEL_EXPORTER_OTLP_ENDPOINT=http://${host}:${health.otlp.grpc_port}`].map((l) => "export " + l).join("\n");
    $("empty-env-http").textContent = ["OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
      `OTEL_EXPORTER_OTLP_ENDPOINT=http://${host}:${health.otlp.http_port}`].map((l) => "export " + l).join("\n");
  }

  function live() {
    const source = new EventSource("/api/live");
    let timer = null;
    source.addEventListener("data", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => { await refresh(); if ($("grid").hidden === false) loadFilterOptions(); }, 150);
    });
    source.addEventListener("open", () => $("live").classList.add("on"));
    source.addEventListener("error", () => $("live").classList.remove("on"));
  }

  async function main() {
    ccm.initTheme($("theme"));
    document.addEventListener("themechange", () => {
      for (const id of Object.keys(charts)) { charts[id].destroy(); delete charts[id]; }
      for (const panel of panels) bodies[panel.id].replaceChildren();
      if (lastData) for (const panel of panels) render(panel, lastData.panels[panel.id]);
    });
    panels = (await getJSON("/api/panels")).panels;
    buildGrid();
    bindControls();
    syncControls();
    await loadFilterOptions().catch(() => {});
    await refresh();
    live();
  }

  main();
})();
