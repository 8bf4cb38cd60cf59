// A banner under the top bar of every page while an alert fires, linking to the alerts page.
"use strict";

(() => {
  const EVERY_MS = 15000;

  async function refresh() {
    const response = await fetch("/api/alerts", { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const data = await response.json();
    let banner = document.getElementById("alert-banner");
    if (!data.enabled || !data.firing.length) {
      if (banner) banner.remove();
      return;
    }
    const names = [...new Set(data.firing.map((a) => a.rule))];
    const text = `${data.firing.length} alert${data.firing.length === 1 ? "" : "s"} firing: ${names.join(", ")}`;
    if (!banner) {
      banner = ccm.el("a", { id: "alert-banner", class: "alert-banner", href: "/alerts", role: "alert" });
      document.querySelector(".topbar").after(banner);
    }
    banner.textContent = text;
  }

  document.addEventListener("DOMContentLoaded", () => {
    const tick = () => refresh().catch(() => {});
    tick();
    setInterval(tick, EVERY_MS);
  });
})();
