// The side-by-side page: polls its comparison until both continuations are written.

const section = document.getElementById("comparison");
const state = document.getElementById("compare-state");

async function refresh() {
  let data;
  try {
    const response = await fetch(section.dataset.url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    data = await response.json();
  } catch (error) {
    state.textContent = `Could not load the result: ${error.message}. Trying again.`;
    setTimeout(refresh, 5000);
    return;
  }
  const words = { queued: "Waiting for the training worker...", running: "Writing with both models...", failed: `Failed: ${data.error}`, finished: "Done." };
  state.textContent = words[data.status];
  document.getElementById("first-text").textContent = data.first;
  document.getElementById("second-text").textContent = data.second;
  section.dataset.status = data.status;
  if (data.status === "queued" || data.status === "running") setTimeout(refresh, 1000);
}

refresh();
