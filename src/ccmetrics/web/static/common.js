// Shared by the pages: formatting by unit, DOM helpers that only ever set text, theme.
"use strict";

const ccm = (() => {
  // Each unit has one format whatever the value, so that a number keeps its shape through a live update
  // ("11 s" stays "11 s", never "11.22 s"): the number of decimals depends on the magnitude only.
  const nf = (digits) => new Intl.NumberFormat(undefined, { minimumFractionDigits: digits, maximumFractionDigits: digits });
  const int = nf(0), one = nf(1), two = nf(2);

  function compact(n) {
    const a = Math.abs(n);
    if (a >= 1e9) return one.format(n / 1e9) + "B";
    if (a >= 1e6) return one.format(n / 1e6) + "M";
    if (a >= 1e4) return one.format(n / 1e3) + "K";
    return int.format(n);
  }

  function duration(seconds) {
    const s = Math.round(seconds);
    if (Math.abs(seconds) < 10) return one.format(seconds) + " s";
    if (Math.abs(s) < 60) return s + " s";
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    if (h >= 24) return `${Math.floor(h / 24)}d ${h % 24}h`;
    return h ? `${h}h ${m}m` : `${m}m ${r}s`;
  }

  function format(value, unit) {
    if (value === null || value === undefined || Number.isNaN(value)) return "—";
    if (typeof value !== "number") return String(value);
    switch (unit) {
      case "usd": return Math.abs(value) < 10 ? "$" + value.toFixed(4) : Math.abs(value) < 1e4 ? "$" + two.format(value) : "$" + compact(value);
      case "percent": return (value * 100).toFixed(1) + "%";
      case "ratio": return value.toFixed(2) + "×";
      case "seconds": return duration(value);
      case "ms": return int.format(value) + " ms";
      case "time": {  // short enough for a card; the year only when it is not this one
        const d = new Date(value / 1e6), year = d.getFullYear() === new Date().getFullYear() ? {} : { year: "numeric" };
        return d.toLocaleString(undefined, { ...year, month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
      }
      default: return compact(value);
    }
  }

  // A colour per label, the same in every chart and every view: models by the order the server first saw them
  // (ccm.colorOrder), any other label by a hash of it; "others (N)" is grey.
  const palette = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7",
                   "#9c755f", "#17becf", "#8c564b", "#bcbd22", "#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
  const order = new Map();
  function colorOrder(labels) { labels.forEach((label, i) => order.set(label, i)); }
  function colorOf(label) {
    const text = String(label);
    if (order.has(text)) return palette[order.get(text) % palette.length];
    if (/^others \(\d+\)$/.test(text)) return "#9aa0a6";
    let h = 2166136261;
    for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
    return palette[(h >>> 0) % palette.length];
  }

  // Build an element; children are nodes or strings (always text nodes, never parsed as HTML).
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // Cut to at most `max` characters (code points, so never half a surrogate pair), the last one an ellipsis.
  function cut(value, max) {
    const text = String(value ?? "");
    if (text.length <= max) return text;
    const points = Array.from(text);
    return points.length <= max ? text : points.slice(0, max - 1).join("") + "\u2026";
  }

  // A value that came from a client (user id, model, tool name, attribute value...), as text in a <bdi>: a
  // U+202E in it cannot reorder the text around it. CSS keeps it on one line and ellipsises it when it is
  // longer than its box; the whole value is in the title.
  function client(value, attrs) {
    const text = String(value ?? "");
    const extra = attrs && attrs.class ? " " + attrs.class : "";
    return el("bdi", { ...attrs, class: "client" + extra, title: text }, text);
  }

  // The same for a client value drawn on a canvas (Chart.js legends, axes, tooltips), where there is no
  // element to style: cut to `max` characters and wrapped in FIRST STRONG ISOLATE ... POP DIRECTIONAL
  // ISOLATE, so that an override inside ends there and cannot reorder what is drawn after it.
  function chartText(value, max = 32) {
    return "\u2068" + cut(value, max) + "\u2069";
  }

  function theme() {
    return document.documentElement.dataset.theme ||
      (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  }

  function initTheme(button) {
    const saved = localStorage.getItem("ccmetrics-theme");
    if (saved) document.documentElement.dataset.theme = saved;
    if (button) button.addEventListener("click", () => {
      const next = theme() === "dark" ? "light" : "dark";
      document.documentElement.dataset.theme = next;
      localStorage.setItem("ccmetrics-theme", next);
      document.dispatchEvent(new Event("themechange"));
    });
  }

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (response.status === 401) {  // signed out, or the session ended: sign in, then come back here
      location.assign("/signin?" + new URLSearchParams({ next: location.pathname + location.search }));
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
    return body;
  }

  // A change (POST, PUT, DELETE) with a JSON body, repeating the session's CSRF token; an error names why.
  async function send(method, url, body, csrf) {
    const headers = { Accept: "application/json" };
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.error || `${response.status} ${response.statusText}`);
    return answer;
  }

  return {
    format, compact, duration, el, cut, client, chartText, initTheme, theme, css, palette, colorOf, colorOrder,
    getJSON, send,
  };
})();
