// One session: its totals, then everything that happened in order.
"use strict";

(() => {
  const { el, format, getJSON, client } = ccm;
  const $ = (id) => document.getElementById(id);
  const sessionId = decodeURIComponent(location.pathname.replace(/^\/session\//, ""));

  const LABELS = {
    user_prompt: "Prompt", api_request: "API request", api_error: "API error", tool_decision: "Tool decision",
    tool_result: "Tool result", assistant_response: "Response", api_refusal: "API refusal",
    api_retries_exhausted: "API retries exhausted", compaction: "Compaction", subagent_completed: "Subagent done",
    skill_activated: "Skill", mcp_server_connection: "MCP server", plugin_loaded: "Plugin loaded",
  };
  // Events that say something went wrong.
  const BAD = new Set(["api_error", "api_refusal", "api_retries_exhausted"]);
  const UNITS = { cost_usd: "usd", duration_ms: "ms", ttft_ms: "ms", pre_tokens: "tokens", post_tokens: "tokens" };

  function clock(ns) {
    const d = new Date(ns / 1e6), two = (n) => String(n).padStart(2, "0");
    return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
  }

  // unit "client": a value that came from a client, shown isolated and ellipsised (ccm.client). A card's title
  // has its whole value, as a narrow card cuts it.
  function card(label, value, unit, title) {
    const shown = unit === "client" && value !== null && value !== undefined ? client(value) : format(value, unit);
    title = title || `${label}: ${typeof shown === "string" ? shown : shown.textContent}`;
    return el("div", { class: unit === "client" ? "card wide" : "card", title }, el("div", { class: "label" }, label),
      el("div", { class: "stat-value", "data-value": value === null ? "" : String(value) }, shown));
  }

  // Every field's value is the client's: isolated, ellipsised, whole in its title; numbers with a unit formatted.
  function describe(fields) {
    return Object.entries(fields).filter(([k]) => k !== "prompt.id").map(([k, v]) =>
      el("span", { class: "field" }, el("b", {}, k.replace(/_(ms|usd)$/, "").replace(/_/g, " ")),
        UNITS[k] ? el("span", {}, format(Number(v), UNITS[k])) : client(v)));
  }

  // Events of one kind in a row that carry nothing to tell apart but a name or two (six plugins loaded as
  // a session starts) make one line: how many, and their distinct values.
  const CROWD = new Set(["plugin_loaded", "mcp_server_connection", "skill_activated", "hook_execution_start",
    "hook_execution_complete", "managed_settings_resolved"]);
  function runs(timeline) {
    const out = [];
    for (const e of timeline) {
      const last = out[out.length - 1];
      if (last && CROWD.has(e.name) && last[0].name === e.name) last.push(e);
      else out.push([e]);
    }
    return out;
  }

  function together(run) {
    const values = new Map();
    for (const e of run) for (const [k, v] of Object.entries(e.fields)) {
      if (!values.has(k)) values.set(k, new Set());
      values.get(k).add(String(v));
    }
    return [...values].map(([k, vs]) => el("span", { class: "field" }, el("b", {}, k.replace(/_/g, " ")), client([...vs].join(", "), { class: "list" })));
  }

  // Each trace (a prompt's) as a waterfall: a row per span, under its parent, its bar on the trace's time axis.
  const SPANS = { interaction: "Prompt", llm_request: "LLM request", tool: "Tool", "tool.blocked_on_user": "Permission",
    "tool.execution": "Run", hook: "Hook", "subagent.spawn": "Subagent", "mcp.rpc": "MCP call", compaction: "Compaction" };
  const took = (ns) => ns < 1e10 ? format(ns / 1e6, "ms") : format(ns / 1e9, "seconds");
  const kindOf = (s) => s.name.replace(/^claude_code\./, "");
  const nameOf = (s) => SPANS[kindOf(s)] || client(kindOf(s));

  function waterfall(trace) {
    const t0 = trace.start_ns, total = Math.max(trace.end_ns - t0, 1), root = trace.spans[0];
    const rows = trace.spans.map((s) => {
      const f = s.fields, width = Math.max((s.end_ns - s.start_ns) / total * 100, 1);
      const bar = el("span", { class: "bar" }), name = el("span", { class: "span-name" }, nameOf(s),
        client(f.tool_name || f.model || f.decision || ""));
      bar.style.left = Math.min((s.start_ns - t0) / total * 100, 100 - width) + "%";
      bar.style.width = width + "%";
      name.style.paddingLeft = Math.min(s.depth, 8) * 12 + "px";
      const title = [s.name, ...Object.entries(f).map(([k, v]) => `${k}: ${v}`)].join("\n");
      return el("details", { class: "span k-" + kindOf(s).replace(/\W/g, "_") + (s.error ? " bad" : ""),
        "data-span": s.name, "data-depth": String(s.depth) },
        el("summary", { title }, name, el("span", { class: "track" }, bar), el("span", { class: "took" }, took(s.end_ns - s.start_ns))),
        el("div", { class: "fields" }, describe(f)));
    });
    const seq = root.fields["interaction.sequence"];
    return el("section", { class: "trace", "data-trace": trace.trace_id },
      el("h3", {}, nameOf(root), seq ? ` ${seq}` : "", " · ", clock(t0), " · ", took(trace.end_ns - t0),
        ` · ${trace.spans.length} span${trace.spans.length > 1 ? "s" : ""}`), rows);
  }

  async function main() {
    ccm.initTheme($("theme"));
    $("session-id").textContent = $("session-id").title = sessionId;
    let data;
    try {
      data = await getJSON("/api/sessions/" + encodeURIComponent(sessionId));
    } catch (error) {
      $("error").replaceChildren("Could not load the session: ", el("bdi", {}, error.message));
      $("error").hidden = false;
      return;
    }
    const s = data.summary, info = data.session;
    $("facts").replaceChildren(
      card("User", info ? info.user_name || info.user_email || info.user_id : null, "client", info && info.user_id),
      card(info ? info.group_key || "Team" : "Team", info && info.group_values && info.group_values.length ? info.group_values.join(", ") : null, "client"),
      card("Started", info ? info.start_ns : null, "time"),
      card("Duration", info ? info.duration_s : null, "seconds"),
      card("Active time", s.active_time_seconds ? Object.values(s.active_time_seconds).reduce((a, b) => a + b, 0) : null, "seconds"),
      card("Cost", s.cost_usd, "usd"),
      card("Tokens", s.tokens.input + s.tokens.output + s.tokens.cache_read + s.tokens.cache_creation, "tokens"),
      card("Prompts", s.prompts, "count"),
      card("API requests", s.api_requests, "count"),
      card("API errors", s.api_errors, "count"),
      card("Lines +/−", `+${s.lines_of_code.added} / −${s.lines_of_code.removed}`, "text"),
      card("Commits", s.commits, "count"),
    );
    const items = runs(data.timeline).map((run) => {
      const e = run[0];
      const what = LABELS[e.name] || client(e.name.replace(/_/g, " "));
      return el("li", { class: "ev-" + e.name + (BAD.has(e.name) ? " bad" : ""), "data-event": e.name, "data-count": String(run.length) },
        el("span", { class: "when", title: new Date(e.time_ns / 1e6).toString() }, clock(e.time_ns)),
        el("span", { class: "what" }, what, run.length > 1 ? ` ×${run.length}` : ""),
        el("span", { class: "fields" }, run.length > 1 ? together(run) : describe(e.fields)));
    });
    $("traces").replaceChildren(...(data.traces.length ? data.traces.map(waterfall) : [el("p", { class: "note" },
      "No traces for this session: set ", el("code", {}, "CLAUDE_CODE_ENHANCED_TELEMETRY_BETA=1"), " and ",
      el("code", {}, "OTEL_TRACES_EXPORTER=otlp"), " to record them.")]),
      data.traces_truncated ? el("p", { class: "note" }, "Only the session's first spans are shown.") : "");
    $("timeline").replaceChildren(...(items.length ? items : [el("li", {}, "No events recorded for this session.")]));
    if (data.pruned) {  // its older points and events are past --retention: the timeline starts later
      $("pruned").textContent = "Only this session's data from " + new Date(data.raw_since_ns / 1e6).toLocaleString() +
        " on is kept: what happened before is no longer stored (--retention).";
      $("pruned").hidden = false;
    }
  }

  main();
})();
