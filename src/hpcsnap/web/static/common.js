/* hpcsnap web interface: helpers shared by every page (no library, no build step). */
"use strict";

const hpc = (() => {
  const csrf = () => document.body.dataset.csrf || "";

  /** fetch() with the session's CSRF token; resolves to {ok, status, data}. */
  async function call(url, options = {}) {
    const headers = { Accept: "application/json", "X-CSRF-Token": csrf() };
    let body = options.body;
    if (options.json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    let response;
    try {
      response = await fetch(url, {
        method: options.method || (body ? "POST" : "GET"),
        headers,
        body,
        credentials: "same-origin",
        signal: options.signal,
      });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      return { ok: false, status: 0, data: { message: "The server cannot be reached; retrying." } };
    }
    let data = {};
    let readable = true;
    try {
      data = await response.json();
    } catch (err) {
      // aborted while the body was arriving (a newer call superseded this one): the caller's
      // abort, as when it comes before the answer
      if (err && err.name === "AbortError") throw err;
      readable = false;
      data = { message: `Unexpected answer from the server (HTTP ${response.status}).` };
    }
    if (response.status === 401) {
      window.location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    }
    return { ok: response.ok && readable, status: response.status, data };
  }

  /** Call fn every `ms` while the page is visible; fn returns false to stop. */
  function poll(fn, ms) {
    let timer = null;
    let stopped = false;
    let busy = false;
    async function tick() {
      timer = null;
      if (stopped) return;
      if (document.hidden) return;
      busy = true;
      let again = true;
      try {
        again = (await fn()) !== false;
      } finally {
        busy = false;
      }
      if (again && !stopped) timer = setTimeout(tick, ms);
      else stopped = true;
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && !stopped && !timer && !busy) tick();
    });
    timer = setTimeout(tick, ms);
    return { stop() { stopped = true; if (timer) clearTimeout(timer); } };
  }

  /** Replace el's content with server-rendered (escaped) HTML, keeping keyboard focus. */
  function swap(el, html) {
    const active = document.activeElement;
    let selector = null;
    if (active && el.contains(active)) {
      const row = active.closest("[data-id],[data-uuid]");
      const href = active.getAttribute("href");
      if (row && href) {
        const key = row.dataset.id ? `[data-id="${row.dataset.id}"]` : `[data-uuid="${row.dataset.uuid}"]`;
        selector = `${key} [href="${CSS.escape(href)}"]`;
      }
    }
    el.innerHTML = html;
    if (selector) {
      const again = el.querySelector(selector);
      if (again) again.focus();
    }
  }

  function humanSize(bytes) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let value = bytes;
    let i = 0;
    while (value >= 1024 && i < units.length - 1) { value /= 1024; i += 1; }
    return i === 0 ? `${value} B` : `${value.toPrecision(3)} ${units[i]}`;
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll(".js-only").forEach((el) => { el.hidden = false; });
    document.querySelectorAll(".js-hide").forEach((el) => { el.hidden = true; });
  });

  return { call, poll, swap, humanSize, csrf };
})();
