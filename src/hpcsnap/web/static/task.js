/* Task page: live state, snapshots, chart and logs; Snapshot now, periodic settings, abort.
   It follows the task's event stream (EventSource) and falls back to polling without it. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const root = document.getElementById("task-page");
  if (!root) return;
  const uuid = root.dataset.uuid;
  let version = root.dataset.version;
  const offsets = { stdout: Number(root.dataset.stdout), stderr: Number(root.dataset.stderr) };
  let afterEnd = root.dataset.terminal === "true" ? 0 : 3;
  let lastEvent = Number(root.dataset.events || 0);
  let live = null; // the EventSource while the page follows the stream
  const message = document.getElementById("task-message");
  const MAX_LOG = 200000;

  function say(text, kind) {
    message.textContent = text;
    message.className = kind === "error" ? "error-box" : "notice";
    message.setAttribute("role", kind === "error" ? "alert" : "status");
    message.hidden = !text;
  }

  function appendLog(name, text) {
    const pre = document.getElementById(`log-${name}`);
    if (!pre || !text) return;
    const atBottom = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
    let content = pre.textContent + text;
    if (content.length > MAX_LOG) {
      content = `[… earlier output not shown …]\n${content.slice(-Math.floor(MAX_LOG * 0.75))}`;
    }
    pre.textContent = content;
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  /** Show output [start, end) of a log, minus what it shows already; false if some is missing. */
  function appendAt(name, start, text, end, gapOk) {
    if (end <= offsets[name]) return true;
    if (start > offsets[name] && !gapOk) return false;
    appendLog(name, start >= offsets[name] ? text : text.slice(offsets[name] - start));
    offsets[name] = end;
    return true;
  }

  function applyState(data) {
    root.dataset.state = data.state;
    const badge = document.getElementById("state-badge");
    const source = document.querySelector("#task-summary .badge[data-state]");
    if (badge && source) {
      badge.className = source.className;
      badge.textContent = data.state;
    }
    document.querySelectorAll(".needs-running").forEach((el) => { el.disabled = !data.running; });
    document.getElementById("running-hint").hidden = data.running;
    document.getElementById("abort-button").disabled = data.terminal;
    document.querySelectorAll(".needs-live").forEach((el) => { el.disabled = data.terminal; });
  }

  async function refresh() {
    const asked = { ...offsets };
    const query = `stdout=${offsets.stdout}&stderr=${offsets.stderr}&version=${encodeURIComponent(version)}`;
    const result = await hpc.call(`/ui/api/tasks/${uuid}?${query}`);
    if (!result.ok) {
      if (result.status === 404) {
        say(result.data.message || "This task is gone.", "error");
        return false;
      }
      return true; // server busy or restarting: try again
    }
    const data = result.data;
    if (data.summary !== undefined) {
      version = data.version;
      hpc.swap(document.getElementById("task-summary"), data.summary);
      hpc.swap(document.getElementById("snapshot-rows"), data.snapshots);
      document.getElementById("chart").innerHTML = data.chart;
      document.getElementById("snapshot-count").textContent = `(${data.count})`;
    }
    for (const name of ["stdout", "stderr"]) {
      if (data[name]) {
        const { text, offset } = data[name];
        appendAt(name, Math.max(asked[name], offset - text.length), text, offset, true);
      }
    }
    applyState(data);
    if (data.terminal) {
      afterEnd -= 1;
      return afterEnd > 0;
    }
    return true;
  }

  const poller = { current: null };
  function startPolling() {
    if (poller.current) poller.current.stop();
    poller.current = hpc.poll(refresh, 1500);
  }
  for (const name of ["stdout", "stderr"]) {
    const pre = document.getElementById(`log-${name}`);
    pre.scrollTop = pre.scrollHeight;
  }

  let soon = null;
  function refreshSoon() {
    if (soon) return;
    soon = setTimeout(() => { soon = null; refresh(); }, 150);
  }

  /** Follow /ui/api/tasks/{uuid}/events: output as it comes, a refresh on state and snapshot
      events. False if this browser has no EventSource. */
  function follow() {
    if (!window.EventSource) return false;
    const source = new EventSource(`/ui/api/tasks/${uuid}/events?after=${lastEvent}`);
    live = source;
    const seen = (event) => { lastEvent = Math.max(lastEvent, Number(event.lastEventId) || 0); };
    source.addEventListener("open", () => {
      root.dataset.live = "stream";
      if (poller.current) { poller.current.stop(); poller.current = null; }
    });
    for (const type of ["state", "snapshot.triggered", "snapshot.progress", "snapshot.success",
      "snapshot.failure", "snapshot.deleted"]) {
      source.addEventListener(type, (event) => { seen(event); refreshSoon(); });
    }
    source.addEventListener("log", (event) => {
      seen(event);
      const data = JSON.parse(event.data);
      if (!appendAt(data.stream, data.offset, data.text, data.end, false)) refreshSoon();
    });
    source.addEventListener("end", (event) => {
      seen(event);
      source.close();
      live = null;
      root.dataset.live = "ended";
      refreshSoon();
    });
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED) return; // reconnecting by itself
      live = null; // refused (task gone, signed out): poll, which says why
      root.dataset.live = "polling";
      startPolling();
    });
    return true;
  }
  if (afterEnd > 0 && !follow()) startPolling();

  const snapshotForm = document.getElementById("snapshot-form");
  snapshotForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const label = document.getElementById("snapshot-label");
    if (!label.checkValidity()) {
      label.reportValidity();
      return;
    }
    const button = document.getElementById("snapshot-now");
    button.disabled = true;
    const result = await hpc.call(snapshotForm.getAttribute("action"), { body: new FormData(snapshotForm) });
    button.disabled = false;
    if (result.ok) {
      say(label.value ? `Snapshot “${label.value}” requested: it appears in the table below.`
        : "Snapshot requested: it appears in the table below.");
      label.value = "";
      await refresh();
    } else {
      say(result.data.message || "The snapshot was not accepted.", "error");
    }
  });

  const periodicForm = document.getElementById("periodic-form");
  const feedback = document.getElementById("periodic-feedback");
  periodicForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = new FormData(periodicForm);
    const action = event.submitter && event.submitter.value === "stop" ? "stop" : "save";
    body.set("mode", action);
    feedback.className = "form-feedback";
    feedback.textContent = "Saving…";
    const result = await hpc.call(periodicForm.getAttribute("action"), { body });
    if (!result.ok) {
      feedback.className = "form-feedback error";
      feedback.textContent = result.data.message || "Not saved.";
      return;
    }
    const interval = result.data.interval;
    feedback.className = "form-feedback ok";
    feedback.textContent = result.data.message;
    document.getElementById("periodic-state").textContent = interval ? `every ${interval} s` : "off";
    if (!interval) document.getElementById("periodic-interval").value = "";
    version = "";
    await refresh();
  });

  const abortForm = document.getElementById("abort-form");
  abortForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    // eslint-disable-next-line no-alert
    if (!window.confirm("Abort this task? Its command is stopped; snapshots already taken are kept.")) return;
    const result = await hpc.call(abortForm.getAttribute("action"), { body: new FormData(abortForm) });
    if (result.ok) {
      say("Abort requested.");
      if (!live) {
        afterEnd = 3;
        startPolling();
      }
      await refresh();
    } else {
      say(result.data.message || "The task could not be aborted.", "error");
    }
  });
});
