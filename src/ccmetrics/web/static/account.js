// In the page's top bar: a link to the admin page for admins; who is signed in and a sign-out button, when the
// server checks readers.
"use strict";

(() => {
  async function show() {
    const response = await fetch("/api/me", { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const me = await response.json();
    const bar = document.querySelector(".topbar");
    if (me.role === "admin" && location.pathname !== "/admin") {
      bar.append(ccm.el("a", { href: "/admin", id: "admin-link", class: "who" }, "Admin"));
    }
    if (!me.auth) return;
    const who = ccm.el("span", { id: "who", class: "who", title: me.email || me.name },
      ccm.client(me.name), ` · ${me.role}`);
    bar.append(who);
    if (me.via !== "session") return;  // the sign-on proxy, or a token: nothing to sign out of here
    const button = ccm.el("button", { type: "button", id: "signout" }, "Sign out");
    button.addEventListener("click", async () => {
      button.disabled = true;
      await fetch("/api/signout", { method: "POST", headers: { "X-CSRF-Token": me.csrf_token } });
      location.assign("/signin");
    });
    bar.append(button);
  }

  document.addEventListener("DOMContentLoaded", () => { show().catch(() => {}); });
})();
