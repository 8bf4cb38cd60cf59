// A banner under the top bar of every page while an alert fires, linking to the alerts page. It asks again
// as often as the server evaluates the rules (at least every second, at most every 15), so it comes and goes
// within about one evaluation of the alert.
"use strict";

(() => {
  const LEAST_MS = 1000;
  const MOST_MS = 15000;

  async function refresh() {
    const response = await fetch("/api/alerts", { headers: { Accept: "application/json" } });
    if (!response.ok) return MOST_MS;
    const data = await response.json();
    let banner = document.getElementById("alert-banner");
    if (!data.enabled || !data.firing.length) {
      if (banner) banner.remove();
    } else {
      const names = [...new Set(data.firing.map((a) => a.rule))];
      const text = `${data.firing.length} alert${data.firing.length === 1 ? "" : "s"} firing: ${names.join(", ")}`;
      if (!banner) {
        banner = ccm.el("a", { id: "alert-banner", class: "alert-banner", href: "/alerts", role: "alert" });
        document.querySelector(".topbar").after(banner);
      }
      banner.textContent = text;
    }
    return data.enabled ? Math.min(MOST_MS, Math.max(LEAST_MS, 1000 * data.evaluation_interval_s)) : MOST_MS;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const tick = () => refresh().catch(() => MOST_MS).then((ms) => setTimeout(tick, ms));
    tick();
  });
})();
