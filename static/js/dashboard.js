// The staff dashboard: four Chart.js line charts and each worker's KV cache, fed by
// /staff/dashboard/data.

const section = document.querySelector(".dashboard");
const now = document.getElementById("now");
const REFRESH_MS = 10_000;

function lineChart(id, datasets) {
  return new Chart(document.getElementById(id), {
    type: "line",
    data: { labels: [], datasets: datasets.map(([label, color]) => ({ label, data: [], borderColor: color, backgroundColor: color, pointRadius: 2, tension: 0.2, spanGaps: true })) },
    options: { animation: false, responsive: true, scales: { y: { beginAtZero: true } }, plugins: { legend: { display: datasets.length > 1 } } },
  });
}

const charts = {
  generations: [lineChart("chart-generations", [["finished", "#2563eb"], ["ended in an error", "#dc2626"]]), ["generations_per_min", "errors_per_min"]],
  tokens: [lineChart("chart-tokens", [["tokens/s", "#16a34a"]]), ["tokens_per_s"]],
  ttft: [lineChart("chart-ttft", [["p50", "#9333ea"], ["p95", "#db2777"]]), ["ttft_p50_ms", "ttft_p95_ms"]],
  queue: [lineChart("chart-queue", [["waiting", "#ea580c"], ["running", "#0891b2"]]), ["queued", "running"]],
};

const count = new Intl.NumberFormat("en");

function share(part, whole) {
  return `${Math.round((100 * part) / whole)}%`;
}

// One row per live worker that serves a model: the prefix cache's use against its budget,
// the positions running generations hold, and how much of the prompts read was found cached.
function showKvCache(workers) {
  const table = document.getElementById("kv-cache");
  const rows = workers.filter((w) => w.kv_cache).map((w) => {
    const c = w.kv_cache;
    const kept = c.budget_tokens ? `${count.format(c.cached_tokens)} of ${count.format(c.budget_tokens)} positions (${share(c.cached_tokens, c.budget_tokens)})` : "off";
    const found = c.hit_rate === null ? "—" : `${share(c.hit_rate, 1)} (${count.format(c.found_tokens)} of ${count.format(c.prompt_tokens)})`;
    const row = document.createElement("tr");
    for (const text of [w.name, kept, `${count.format(c.held_tokens)} positions`, found]) {
      row.append(Object.assign(document.createElement("td"), { textContent: text }));
    }
    return row;
  });
  table.tBodies[0].replaceChildren(...rows);
  table.hidden = rows.length === 0;
}

function label(iso) {
  return new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function selectedWindow() {
  return document.querySelector("input[name=window]:checked").value;
}

async function refresh() {
  const span = selectedWindow();
  let data;
  try {
    const response = await fetch(`${section.dataset.url}?window=${span}`, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    data = await response.json();
  } catch (error) {
    now.textContent = `Could not load the figures: ${error.message}. Trying again in 10 s.`;
    return;
  }
  const labels = data.series.ends.map(label);
  for (const [chart, keys] of Object.values(charts)) {
    chart.data.labels = labels;
    keys.forEach((key, n) => { chart.data.datasets[n].data = data.series[key]; });
    chart.update();
  }
  const workers = data.now.workers;
  const live = workers.reduce((sum, w) => sum + w.live_requests, 0);
  const queue = data.now.celery_queue === null ? "unknown (Redis does not answer)" : data.now.celery_queue;
  const each = workers.map((w) => `${w.name}: ${w.state}, ${w.model_name || "no model"}${w.loading ? `, loading ${w.loading}` : ""}${w.error ? ` (${w.error})` : ""}`);
  showKvCache(workers);
  now.textContent = `Now: active configuration ${data.now.model}; ${workers.length} worker${workers.length === 1 ? "" : "s"} alive${each.length ? ` (${each.join("; ")})` : ""}; ${live} generating; ${queue} waiting in the queue.`;
  section.dataset.loadedWindow = span;
}

document.querySelectorAll("input[name=window]").forEach((input) => input.addEventListener("change", refresh));
refresh();
setInterval(refresh, REFRESH_MS);
