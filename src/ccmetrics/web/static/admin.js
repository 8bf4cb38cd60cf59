// The admin page: tokens, people and aliases. Everything from the server is put on the page as text.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  let csrf = null;

  function showError(text) {
    $("admin-error").textContent = text;
    $("admin-error").hidden = !text;
  }

  const send = (method, url, body) => ccm.send(method, url, body, csrf);

  const when = (ns) => (ns ? ccm.format(ns, "time") : "—");

  function removeButton(label, url, what) {
    const button = ccm.el("button", { type: "button", class: "remove" }, label);
    button.addEventListener("click", async () => {
      if (!confirm(`${label} ${what}?`)) return;
      try { await send("DELETE", url); showError(""); } catch (e) { showError(e.message); }
      await load();
    });
    return button;
  }

  function fill(tableId, rows) {
    $(tableId).tBodies[0].replaceChildren(...rows.map((cells) =>
      ccm.el("tr", {}, cells.map((cell) => ccm.el("td", {}, cell instanceof Node ? cell : ccm.client(cell))))));
  }

  async function load() {
    const data = await ccm.getJSON("/api/admin");
    const path = encodeURIComponent;
    fill("tokens", data.tokens.map((t) => [t.name, t.role, t.user || "—", t.team || "—", when(t.created_ns),
      when(t.expires_ns), when(t.last_used_ns), removeButton("Revoke", `/api/admin/tokens/${path(t.name)}`, t.name)]));
    fill("people", data.people.map((p) => [p.name, p.role, p.email || "—", p.has_password ? "password" : "proxy",
      when(p.created_ns), p.name === data.you ? "you" : removeButton("Remove", `/api/admin/people/${path(p.name)}`, p.name)]));
    fill("aliases", data.aliases.map((a) => [a.user_id, a.name,
      removeButton("Remove", `/api/admin/aliases/${path(a.user_id)}`, a.name)]));
  }

  function onSubmit(formId, submit) {
    const form = $(formId);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const fields = Object.fromEntries(new FormData(form));
      try {
        await submit(fields);
        form.reset();
        showError("");
      } catch (e) { showError(e.message); }
      await load().catch((e) => showError(e.message));
    });
  }

  document.addEventListener("DOMContentLoaded", async () => {
    ccm.initTheme(null);
    try {
      csrf = (await ccm.getJSON("/api/me")).csrf_token;
      await load();
    } catch (e) { showError(e.message); return; }  // not an admin: the error, and no tables or forms
    for (const section of document.querySelectorAll("main.admin > section")) section.hidden = false;
    onSubmit("token-form", async (fields) => {
      const made = await send("POST", "/api/admin/tokens", fields);
      $("new-token-name").textContent = made.name;
      $("new-token-secret").textContent = made.token;
      $("new-token").hidden = false;
    });
    onSubmit("person-form", (fields) => send("POST", "/api/admin/people", fields));
    onSubmit("alias-form", (fields) =>
      send("PUT", `/api/admin/aliases/${encodeURIComponent(fields.user_id)}`, { name: fields.name }));
  });
})();
