/* Submission form: steps, selected files, live checks by the server, preview, example, submit. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("task-form");
  if (!form) return;
  const steps = Array.from(form.querySelectorAll("fieldset.step"));
  const navButtons = Array.from(document.querySelectorAll("#steps button[data-goto]"));
  const filesInput = document.getElementById("f-files");
  const folderInput = document.getElementById("f-folder");
  const formError = document.getElementById("form-error");
  const submitButton = document.getElementById("submit-task");
  const enabled = document.getElementById("f-snapshot_enabled");
  const REGEX_FIELDS = ["snapshot_whitelist", "snapshot_blacklist", "results_whitelist", "results_blacklist"];
  const LIVE_FIELDS = [...REGEX_FIELDS, "snapshot_interval"];
  const UNIT = { s: 1, min: 60, h: 3600 };
  const SIZE = { MiB: 1024 ** 2, GiB: 1024 ** 3 };
  const PREVIEW_ROWS = 200;
  let current = 0;
  let summaryField = null; // the field the server's last refusal was about
  form.noValidate = true; // checked step by step below, then by the server

  // ------------------------------------------------------------------ steps
  function stepOf(el) {
    const step = el.closest("fieldset.step");
    return step ? steps.indexOf(step) : 0;
  }

  function show(index, focus) {
    current = Math.max(0, Math.min(index, steps.length - 1));
    steps.forEach((step, k) => { step.hidden = k !== current; });
    navButtons.forEach((button, k) => {
      if (k === current) button.setAttribute("aria-current", "step");
      else button.removeAttribute("aria-current");
    });
    if (focus) {
      const first = steps[current].querySelector("input:not([type=hidden]):not(:disabled), textarea, select");
      if (first) first.focus();
    }
  }

  function stepValid(index) {
    for (const el of steps[index].querySelectorAll("input, textarea, select")) {
      if (!el.disabled && !el.checkValidity()) {
        show(index, false);
        el.reportValidity();
        return false;
      }
    }
    return true;
  }

  function markSteps() {
    navButtons.forEach((button, k) => {
      button.classList.toggle("has-error", Boolean(steps[k].querySelector('[aria-invalid="true"]')));
    });
  }

  navButtons.forEach((button) => {
    button.addEventListener("click", () => show(Number(button.dataset.goto), true));
  });
  form.querySelectorAll("[data-next]").forEach((button) => {
    button.addEventListener("click", () => { if (stepValid(current)) show(current + 1, true); });
  });
  form.querySelectorAll("[data-prev]").forEach((button) => {
    button.addEventListener("click", () => show(current - 1, true));
  });
  form.addEventListener("keydown", (event) => {
    const target = event.target;
    if (event.key !== "Enter" || current === steps.length - 1) return;
    if (target.tagName !== "INPUT" || ["checkbox", "file", "submit", "button"].includes(target.type)) return;
    event.preventDefault();
    if (stepValid(current)) show(current + 1, true);
  });

  // ------------------------------------------------------------------ field errors
  function setFieldError(name, message) {
    const input = document.getElementById(`f-${name}`);
    const slot = document.getElementById(`err-${name}`);
    if (slot) {
      slot.textContent = message || "";
      slot.hidden = !message;
    }
    if (input) {
      if (message) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
    markSteps();
  }

  // ------------------------------------------------------------------ files
  function selectedFiles() {
    const out = [];
    for (const file of filesInput.files) out.push({ field: "files", key: file.name, file });
    for (const file of folderInput.files) {
      const rel = file.webkitRelativePath || file.name;
      const key = rel.includes("/") ? rel.slice(rel.indexOf("/") + 1) : rel;
      out.push({ field: "folder", key, file, rel });
    }
    return out;
  }

  function renderFiles() {
    const files = selectedFiles();
    const box = document.getElementById("file-summary");
    const list = document.getElementById("file-list");
    box.hidden = files.length === 0;
    const total = files.reduce((sum, f) => sum + f.file.size, 0);
    document.getElementById("file-count").textContent = `${files.length} file${files.length === 1 ? "" : "s"}`;
    document.getElementById("file-total").textContent = files.length ? `(${hpc.humanSize(total)}) to upload into /job` : "";
    list.replaceChildren();
    for (const f of files.slice(0, PREVIEW_ROWS)) {
      const li = document.createElement("li");
      li.textContent = `${f.key} — ${hpc.humanSize(f.file.size)}`;
      list.append(li);
    }
    if (files.length > PREVIEW_ROWS) {
      const li = document.createElement("li");
      li.textContent = `… and ${files.length - PREVIEW_ROWS} more`;
      list.append(li);
    }
  }

  filesInput.addEventListener("change", () => { renderFiles(); scheduleCheck(); });
  folderInput.addEventListener("change", () => { renderFiles(); scheduleCheck(); });
  document.getElementById("clear-files").addEventListener("click", () => {
    filesInput.value = "";
    folderInput.value = "";
    renderFiles();
    scheduleCheck();
    filesInput.focus();
  });

  // ------------------------------------------------------------------ live checks
  function intervalSeconds() {
    if (!enabled.checked) return null;
    const raw = document.getElementById("f-snapshot_interval").value.trim();
    if (raw === "") return null;
    const value = Number(raw) * UNIT[document.getElementById("f-snapshot_unit").value];
    return Number.isFinite(value) ? Math.round(value) : null;
  }

  function expectedBytes() {
    const raw = document.getElementById("f-expected_size").value.trim();
    const value = Number(raw) * SIZE[document.getElementById("f-expected_unit").value];
    return raw !== "" && Number.isFinite(value) && value >= 0 ? Math.round(value) : null;
  }

  function samplePaths() {
    return document.getElementById("f-sample_paths").value.split("\n").map((p) => p.trim()).filter(Boolean);
  }

  const VERDICTS = {
    kept: ["kept", "✓ kept"],
    whitelist: ["out", "left out by the whitelist"],
    blacklist: ["out", "left out by the blacklist"],
    error: ["error", "regex error"],
  };

  function verdictCell(verdict) {
    const td = document.createElement("td");
    const span = document.createElement("span");
    const [cls, text] = VERDICTS[verdict] || ["out", verdict];
    span.className = `verdict ${cls}`;
    span.textContent = text;
    td.append(span);
    return td;
  }

  function renderPreview(preview) {
    const body = document.getElementById("preview-rows");
    body.replaceChildren();
    if (!preview.length) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      const td = document.createElement("td");
      td.colSpan = 3;
      td.textContent = "Upload files or type paths to see what each filter keeps.";
      tr.append(td);
      body.append(tr);
      return;
    }
    for (const row of preview.slice(0, PREVIEW_ROWS)) {
      const tr = document.createElement("tr");
      const path = document.createElement("td");
      path.textContent = row.path;
      tr.append(path, verdictCell(row.snapshot), verdictCell(row.results));
      body.append(tr);
    }
  }

  function renderWarnings(warnings) {
    const box = document.getElementById("snapshot-warnings");
    box.replaceChildren();
    for (const w of warnings) {
      const p = document.createElement("p");
      p.className = "warning";
      p.textContent = w.message;
      box.append(p);
    }
  }

  let checkTimer = null;
  let inflight = null;
  function scheduleCheck() {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(runCheck, 250);
  }

  async function runCheck() {
    if (inflight) inflight.abort();
    inflight = new AbortController();
    const regexes = {};
    for (const name of REGEX_FIELDS) regexes[name] = document.getElementById(`f-${name}`).value;
    const paths = [...new Set([...selectedFiles().map((f) => f.key), ...samplePaths()])];
    let result;
    try {
      result = await hpc.call("/ui/api/check", {
        json: { regexes, interval: intervalSeconds(), expected: expectedBytes(), paths },
        signal: inflight.signal,
      });
    } catch (err) {
      return; // superseded by a newer check
    }
    if (!result.ok) return;
    for (const name of LIVE_FIELDS) setFieldError(name, result.data.errors[name] || "");
    if (summaryField && LIVE_FIELDS.includes(summaryField) && !result.data.errors[summaryField]) {
      formError.hidden = true; // the server's refusal was about this field, now fixed
      summaryField = null;
    }
    renderWarnings(result.data.warnings);
    renderPreview(result.data.preview);
  }

  for (const name of [...REGEX_FIELDS, "snapshot_interval", "expected_size", "sample_paths"]) {
    document.getElementById(`f-${name}`).addEventListener("input", scheduleCheck);
  }
  for (const id of ["f-snapshot_unit", "f-expected_unit", "f-snapshot_enabled"]) {
    document.getElementById(id).addEventListener("change", scheduleCheck);
  }

  function syncEnabled() {
    for (const id of ["f-snapshot_interval", "f-snapshot_unit"]) {
      document.getElementById(id).disabled = !enabled.checked;
    }
  }
  enabled.addEventListener("change", syncEnabled);

  // ------------------------------------------------------------------ example
  const exampleButton = document.getElementById("load-example");
  const exampleNote = document.getElementById("example-note");
  exampleButton.addEventListener("click", async () => {
    exampleButton.disabled = true;
    const result = await hpc.call("/ui/api/example");
    exampleButton.disabled = false;
    if (!result.ok) {
      exampleNote.textContent = result.data.message || "The example could not be loaded.";
      exampleNote.hidden = false;
      return;
    }
    for (const [name, value] of Object.entries(result.data.fields)) {
      const el = form.elements.namedItem(name);
      if (!el) continue;
      if (el.type === "checkbox") el.checked = Boolean(value);
      else el.value = value;
    }
    const transfer = new DataTransfer();
    for (const f of result.data.files) {
      const response = await fetch(f.url, { credentials: "same-origin" });
      if (!response.ok) continue;
      transfer.items.add(new File([await response.blob()], f.name, { type: "text/x-python" }));
    }
    filesInput.files = transfer.files;
    folderInput.value = "";
    syncEnabled();
    renderFiles();
    await runCheck();
    exampleNote.textContent = "Loaded the example simulation (examples/heat): heat.py will be uploaded to a new bucket. Review the steps, then submit.";
    exampleNote.hidden = false;
  });

  // ------------------------------------------------------------------ submit
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (current < steps.length - 1 && steps[steps.length - 1].hidden) {
      if (stepValid(current)) show(current + 1, true);
      return;
    }
    for (let k = 0; k < steps.length; k += 1) if (!stepValid(k)) return;
    const body = new FormData(form);
    body.delete("files");
    body.delete("folder");
    for (const f of selectedFiles()) body.append(f.field, f.file, f.field === "folder" ? f.rel : f.file.name);
    submitButton.disabled = true;
    submitButton.textContent = "Submitting…";
    formError.hidden = true;
    const result = await hpc.call(form.getAttribute("action"), { body });
    if (result.ok) {
      window.location.assign(result.data.url);
      return;
    }
    submitButton.disabled = false;
    submitButton.textContent = "Submit task";
    const text = result.data.message || "The task was not accepted.";
    formError.textContent = `Not submitted: ${text}`;
    formError.hidden = false;
    const field = result.data.field;
    summaryField = field || null;
    const input = field ? document.getElementById(`f-${field}`) : null;
    const anchor = input || (field ? document.getElementById(`err-${field}`) : null);
    if (anchor) {
      setFieldError(field, result.data.fieldMessage || text);
      show(stepOf(anchor), false);
    }
    (input || formError).focus();
  });

  // ------------------------------------------------------------------ start
  syncEnabled();
  renderFiles();
  const firstError = form.querySelector('[aria-invalid="true"]');
  show(firstError ? stepOf(firstError) : 0, false);
  markSteps();
  scheduleCheck();
});
