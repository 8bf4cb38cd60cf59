// The sign-in page: posts the name and password as JSON, then goes where the person was headed (a path on
// this server only). Whatever the server answers is put on the page as text.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);

  // Only a path on this server: never //elsewhere, /\elsewhere or a URL with a scheme.
  function localPath(target) {
    if (!target || !target.startsWith("/") || target.startsWith("//") || /[\\\r\n\t]/.test(target)) return "/";
    return target;
  }

  const next = localPath(params.get("next"));
  $("next").value = next;

  function showError(text) {
    const node = $("signin-error");
    node.textContent = text;
    node.hidden = false;
  }

  if (params.get("error")) showError("Wrong name or password.");

  $("signin").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("submit").disabled = true;
    try {
      const response = await fetch("/api/signin", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ name: $("name").value, password: $("password").value, next }),
        credentials: "same-origin",
      });
      const body = await response.json().catch(() => ({}));
      if (response.ok) {
        location.assign(localPath(body.next || next));
        return;
      }
      if (response.status === 401) showError("Wrong name or password.");
      else showError(body.error || `${response.status} ${response.statusText}`);
      $("password").value = "";
    } catch (error) {
      showError(`Cannot reach the server: ${error.message}`);
    } finally {
      $("submit").disabled = false;
    }
  });
})();
