import { api, errorMessage } from "./api.js";

// A training job's admin page: step, time, perplexity and the loss curve, polled from
// /staff/training/<id>/data every second while the job runs.

const section = document.getElementById("training");
const state = document.getElementById("training-state");
const REFRESH_MS = 1000;

const chart = new Chart(document.getElementById("chart-loss"), {
  type: "line",
  data: {
    datasets: [
      { label: "training loss", data: [], borderColor: "#2563eb", backgroundColor: "#2563eb", pointRadius: 0, borderWidth: 1.5 },
      { label: "held-out loss", data: [], borderColor: "#db2777", backgroundColor: "#db2777", pointRadius: 3, showLine: true },
    ],
  },
  options: {
    animation: false,
    responsive: true,
    parsing: false,
    scales: { x: { type: "linear", title: { display: true, text: "step" }, min: 0 }, y: { title: { display: true, text: "loss (nats per token)" } } },
  },
});

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "-";
  const s = Math.round(seconds);
  return s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min` : s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

// From the pace of the steps so far; there is none before the first step.
function remaining(data) {
  if (data.status !== "running") return "-";
  if (data.remaining_s === null) return "estimating...";
  return data.remaining_until === "time limit" ? `${duration(data.remaining_s)} (time limit)` : duration(data.remaining_s);
}

const text = (id, value) => { document.getElementById(id).textContent = value; };

// The admin's read-only fields below the box (status, result...), kept as live as it.
function showFields(data) {
  for (const [name, value] of Object.entries(data.fields)) {
    const field = document.querySelector(`.field-${name} .readonly`);
    if (field) field.textContent = value || "-";
  }
  const result = document.querySelector(".field-result .readonly");
  if (result && data.result) {
    const link = document.createElement("a");
    link.href = data.result.url;
    link.textContent = data.result.name;
    result.replaceChildren(link);
  } else if (result) {
    result.textContent = "-";
  }
}

function describe(data) {
  const stopped = { steps: "all its steps done", "time limit": "stopped at its time limit", cancelled: "cancelled; what it learned is kept" };
  switch (data.status) {
    case "queued": return "Waiting for the training worker.";
    case "running": return data.step === 0 ? "Loading the model and measuring perplexity before training..." : data.cancel_requested ? "Cancelling after this step..." : "Training.";
    case "failed": return `Failed: ${data.error}`;
    default: return `Finished (${stopped[data.stop_reason] || data.status}).${data.result ? ` The trained model is the configuration "${data.result.name}".` : " Nothing was trained."}`;
  }
}

async function refresh() {
  const result = await api("GET", section.dataset.url).catch(() => ({ ok: false, status: 0, data: null }));
  if (!result.ok) {
    state.textContent = `Could not load the progress: ${errorMessage(result)} Trying again.`;
    setTimeout(refresh, REFRESH_MS * 5);
    return;
  }
  const data = result.data;
  state.textContent = describe(data);
  showFields(data);
  text("training-step", `${data.step} / ${data.steps}`);
  text("training-elapsed", duration(data.elapsed_s));
  text("training-remaining", remaining(data));
  text("perplexity-before", data.perplexity_before === null ? "-" : data.perplexity_before.toFixed(2));
  text("perplexity-after", data.perplexity_after === null ? "-" : data.perplexity_after.toFixed(2));
  chart.data.datasets[0].data = data.losses.map(([x, y]) => ({ x, y }));
  chart.data.datasets[1].data = data.evaluations.map((e) => ({ x: e.step, y: e.loss }));
  chart.options.scales.x.max = data.steps;
  document.getElementById("evaluations").replaceChildren(
    ...data.evaluations.map((e) => {
      const item = document.createElement("li");
      item.textContent = `step ${e.step}: ${e.perplexity.toFixed(2)}`;
      return item;
    }),
  );
  chart.update();
  const active = data.status === "queued" || data.status === "running";
  // A button is missing for a staff account without its right.
  const show = (id, shown) => {
    const button = document.getElementById(id);
    if (button) button.hidden = !shown;
  };
  show("training-cancel-form", active);
  show("training-activate-form", data.result);
  show("training-compare", data.result);
  section.dataset.status = data.status;
  if (active) setTimeout(refresh, REFRESH_MS);
}

refresh();
