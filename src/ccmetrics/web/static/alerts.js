// The alerts page: what fires, budgets, silences (admins add and end them), notifications and history.
// Everything from the server is put on the page as text. It asks again as often as the server evaluates the
// rules (at least every second, at most every 10).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const LEAST_MS = 1000;
  const MOST_MS = 10000;
  let csrf = null;
  let everyMs = MOST_MS;

  function showError(text) {
    $("alerts-error").textContent = text;
    $("alerts-error").hidden = !text;
  }

  const send = (method, url, body) => ccm.send(method, url, body, csrf);

  const when = (ns) => (ns ? ccm.format(ns, "time") : "—");
  const labels = (object) => Object.entries(object).map(([k, v]) => `${k}=${v}`).join(", ") || "—";
  const usd = (n) => (n === null || n === undefined ? "—" : `$${Number(n).toFixed(2)}`);

  function fill(tableId, rows) {
    $(tableId).tBodies[0].replaceChildren(...rows.map((cells) =>
      ccm.el("tr", {}, cells.map((cell) => ccm.el("td", {}, cell instanceof Node ? cell : ccm.client(cell))))));
  }

  function endButton(silence) {
    const button = ccm.el("button", { type: "button", class: "remove" }, "End");
    button.addEventListener("click", async () => {
      try { await send("DELETE", `/api/alerts/silences/${silence.id}`); showError(""); } catch (e) { showError(e.message); }
      await load();
    });
    return button;
  }

  async function load() {
    const data = await ccm.getJSON("/api/alerts");
    everyMs = data.enabled ? Math.min(MOST_MS, Math.max(LEAST_MS, 1000 * data.evaluation_interval_s)) : MOST_MS;
    $("alerts-off").hidden = data.enabled;
    $("silence-form").hidden = !data.can_silence;
    const value = (a) => a.annotations.value || String(a.value);
    fill("firing", data.firing.map((a) => [a.rule, labels(a.labels), value(a), when(a.fired_ns), when(a.notified_ns)]));
    fill("pending", data.pending.map((a) => [a.rule, labels(a.labels), value(a), when(a.active_since_ns)]));
    fill("budgets", data.budgets.map((b) => [b.rule, b.group ?? "everyone", b.period, usd(b.spend_usd),
      usd(b.budget_usd), `${b.percent.toFixed(0)}%`, usd(b.projected_usd)]));
    fill("silences", data.silences.map((s) => [labels(s.matchers), s.comment || "—", s.created_by,
      s.active ? when(s.expires_ns) : `ended ${when(s.expires_ns)}`, s.active && data.can_silence ? endButton(s) : ""]));
    fill("notifications", data.notifications.map((n) => [when(n.created_ns), n.target, n.title, n.state,
      String(n.attempts), n.error || "—"]));
    fill("history", data.history.map((h) => [when(h.at_ns), h.rule, labels(h.labels), h.state]));
  }

  document.addEventListener("DOMContentLoaded", async () => {
    ccm.initTheme(null);
    try {
      csrf = (await ccm.getJSON("/api/me")).csrf_token;
      await load();
    } catch (e) { showError(e.message); return; }
    const form = $("silence-form");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const fields = Object.fromEntries(new FormData(form));
      const matchers = Object.fromEntries(fields.matchers.split(",").map((pair) => pair.trim()).filter(Boolean)
        .map((pair) => [pair.slice(0, pair.indexOf("=")).trim(), pair.slice(pair.indexOf("=") + 1).trim()]));
      try {
        await send("POST", "/api/alerts/silences", { matchers, duration: fields.duration, comment: fields.comment });
        form.reset();
        showError("");
      } catch (e) { showError(e.message); }
      await load().catch((e) => showError(e.message));
    });
    const tick = () => load().catch((e) => showError(e.message)).then(() => setTimeout(tick, everyMs));
    setTimeout(tick, everyMs);
  });
})();
