/* Task list: filter by state and keep the list fresh without reloading. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const table = document.querySelector(".tasks-table");
  const rows = document.getElementById("task-rows");
  const select = document.getElementById("state-filter");
  const status = document.getElementById("list-status");
  if (!table || !rows || !select) return;
  let version = table.dataset.version;
  let state = table.dataset.state || "";

  async function refresh() {
    const result = await hpc.call(`/ui/api/tasks?state=${encodeURIComponent(state)}`);
    if (!result.ok) {
      status.textContent = result.data.message || "Cannot refresh the list.";
      return true;
    }
    status.textContent = "";
    if (result.data.version !== version) {
      version = result.data.version;
      hpc.swap(rows, result.data.rows);
    }
    return true;
  }

  select.addEventListener("change", async () => {
    state = select.value;
    const url = state ? `/?state=${encodeURIComponent(state)}` : "/";
    history.replaceState(null, "", url);
    version = "";
    await refresh();
    status.textContent = `${rows.querySelectorAll("tr[data-uuid]").length} task(s) shown`;
  });
  document.getElementById("task-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    select.dispatchEvent(new Event("change"));
  });

  hpc.poll(refresh, 2000);
});
