import { api, errorMessage } from "./api.js";

// The side-by-side page: polls its comparison until both continuations are written.

const section = document.getElementById("comparison");
const state = document.getElementById("compare-state");

async function refresh() {
  const result = await api("GET", section.dataset.url).catch(() => ({ ok: false, status: 0, data: null }));
  if (!result.ok) {
    state.textContent = `Could not load the result: ${errorMessage(result)} Trying again.`;
    setTimeout(refresh, 5000);
    return;
  }
  const data = result.data;
  const words = { queued: "Waiting for the training worker...", running: "Writing with both models...", failed: `Failed: ${data.error}`, finished: "Done." };
  state.textContent = words[data.status];
  document.getElementById("first-text").textContent = data.first;
  document.getElementById("second-text").textContent = data.second;
  section.dataset.status = data.status;
  if (data.status === "queued" || data.status === "running") setTimeout(refresh, 1000);
}

refresh();
