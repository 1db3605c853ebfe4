// The staff dashboard: four Chart.js line charts fed by /staff/dashboard/data.

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
  now.textContent = `Now: active configuration ${data.now.model}; ${workers.length} worker${workers.length === 1 ? "" : "s"} alive${each.length ? ` (${each.join("; ")})` : ""}; ${live} generating; ${queue} waiting in the queue.`;
  section.dataset.loadedWindow = span;
}

document.querySelectorAll("input[name=window]").forEach((input) => input.addEventListener("change", refresh));
refresh();
setInterval(refresh, REFRESH_MS);
