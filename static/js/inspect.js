// The Inspect panel: the selected passage's tokens, what a word attends to, and words'
// neighbours and map in the embedding space, all answered by a worker over the story's
// socket (docs/protocol.md, "Looking inside the model").

import { element } from "./panels.js";

// Spaces and line breaks made visible on a token chip; a token that holds only part of a
// character (the next one completes it, and carries the whole character) shows "…".
export const visible = (text) => (text ? text.replaceAll(" ", "\u00b7").replaceAll("\n", "\u21b5") : "\u2026");

export function initInspect({ send, selection }) {
  const result = document.getElementById("inspect-result");
  const state = document.getElementById("inspect-state");
  const layerSelect = document.getElementById("inspect-layer");
  const headSelect = document.getElementById("inspect-head");
  const wordsInput = document.getElementById("inspect-words");
  let counter = 0;
  // The passage the attention view reads, and its last answer (another head or layer
  // redraws or asks again about the same passage).
  let attentionText = null;
  let attentionAnswer = null;
  let mapChart = null;

  function ask(message) {
    const requestId = `inspect-${++counter}`;
    if (!send({ type: "inspect", request_id: requestId, ...message })) {
      state.textContent = "Not connected; try again in a moment.";
      return;
    }
    state.textContent = "Looking...";
  }

  function passage() {
    const text = selection();
    if (!text.trim()) state.textContent = "Select a passage in the story first.";
    return text.trim() ? text : null;
  }

  document.getElementById("inspect-tokens").addEventListener("click", () => {
    const text = passage();
    if (text) ask({ view: "tokens", text });
  });
  document.getElementById("inspect-attention").addEventListener("click", () => {
    const text = passage();
    if (!text) return;
    attentionText = text;
    ask({ view: "attention", text, layer: Number(layerSelect.value || 0) });
  });
  layerSelect.addEventListener("change", () => {
    if (attentionText) ask({ view: "attention", text: attentionText, layer: Number(layerSelect.value), position: attentionAnswer?.position });
  });
  headSelect.addEventListener("change", () => attentionAnswer && drawAttention(attentionAnswer));
  document.getElementById("inspect-neighbours").addEventListener("click", () => {
    const word = wordsInput.value.trim().split(/\s+/)[0];
    if (word) ask({ view: "neighbours", word });
    else state.textContent = "Type a word.";
  });
  document.getElementById("inspect-map").addEventListener("click", () => {
    const words = wordsInput.value.trim().split(/\s+/).filter(Boolean);
    if (words.length >= 2) ask({ view: "map", words });
    else state.textContent = "Type two words or more, separated by spaces.";
  });

  function drawTokens(answer) {
    result.replaceChildren(element("p", { class: "meta" }, `${answer.count} tokens for ${answer.model}.`));
    const chips = element("div", { class: "token-chips" });
    for (const token of answer.tokens) {
      const chip = element("span", { class: "token-chip", title: `token ${token.id}` });
      chip.append(element("span", { class: "token-text" }, visible(token.text)), element("span", { class: "token-id" }, String(token.id)));
      chips.append(chip);
    }
    result.append(chips);
  }

  function drawAttention(answer) {
    if (layerSelect.options.length !== answer.layers) {
      layerSelect.replaceChildren(...Array.from({ length: answer.layers }, (_, n) => element("option", { value: String(n) }, `Layer ${n + 1}`)));
      headSelect.replaceChildren(
        element("option", { value: "average" }, "Average of heads"),
        ...answer.heads.map((_, n) => element("option", { value: String(n) }, `Head ${n + 1}`)),
      );
    }
    layerSelect.value = String(answer.layer);
    const weights = headSelect.value === "average" || !headSelect.value ? answer.average : answer.heads[Number(headSelect.value)];
    const strongest = Math.max(...weights.slice(0, answer.position + 1));
    const chosen = answer.tokens[answer.position];
    result.replaceChildren(element("p", { class: "meta" }, `What "${chosen.text.trim()}" attends to, in layer ${answer.layer + 1}: darker is stronger. Click a word to look from it.`));
    const heat = element("div", { class: "token-chips heatmap" });
    answer.tokens.forEach((token, n) => {
      const weight = weights[n];
      const chip = element("button", { type: "button", class: "token-chip", title: `${(weight * 100).toFixed(1)}%`, "data-weight": String(weight) }, visible(token.text));
      if (n === answer.position) chip.classList.add("chosen");
      if (n > answer.position) chip.classList.add("later");
      chip.style.background = `rgba(220, 38, 38, ${strongest > 0 ? (weight / strongest).toFixed(3) : 0})`;
      chip.addEventListener("click", () => ask({ view: "attention", text: attentionText, layer: answer.layer, position: n }));
      heat.append(chip);
    });
    result.append(heat);
  }

  function drawNeighbours(answer) {
    result.replaceChildren(element("p", { class: "meta" }, `Nearest to "${answer.word}" (${answer.pieces.map(visible).join(" + ")}) among the model's tokens:`));
    const list = element("ol", { class: "neighbours" });
    for (const n of answer.neighbours) list.append(element("li", {}, `${visible(n.text)}  ${n.similarity.toFixed(3)}`));
    result.append(list);
  }

  const LABEL_FONT = "12px system-ui, sans-serif";
  const LABEL_GAP = 6;

  const overlap = (a, b) =>
    Math.max(0, Math.min(a.left + a.width, b.left + b.width) - Math.max(a.left, b.left)) *
    Math.max(0, Math.min(a.top + a.height, b.top + b.height) - Math.max(a.top, b.top));

  // Each word's label beside its point, where it covers no label placed before it and no
  // point (tried: right, left, above, below, then the corners, then further out, up to
  // 66 px); where every place is taken, the one covering least. Words close together in the embedding
  // are the interesting ones, so they are also the ones whose labels would collide.
  function placeLabels(ctx, points, area) {
    const placed = [];
    const dots = points.map((p) => ({ left: p.x - 4, top: p.y - 4, width: 8, height: 8 }));
    for (const point of points) {
      const width = ctx.measureText(point.word).width;
      const height = 14;
      const candidates = [];
      for (const reach of [1, 2, 3, 4, 6, 8, 11]) {
        const gap = LABEL_GAP * reach;
        const at = candidates.length;
        candidates.push(
          [point.x + gap, point.y - height / 2],
          [point.x - gap - width, point.y - height / 2],
          [point.x - width / 2, point.y - gap - height],
          [point.x - width / 2, point.y + gap],
          [point.x + gap, point.y - gap - height],
          [point.x + gap, point.y + gap],
          [point.x - gap - width, point.y - gap - height],
          [point.x - gap - width, point.y + gap],
        );
        for (let n = at; n < candidates.length; n++) candidates[n].push(reach);
      }
      let best = null;
      for (const [left, top, reach] of candidates) {
        const box = { left, top, width, height, word: point.word, x: point.x, y: point.y, reach };
        const outside = left < area.left || top < area.top || left + width > area.right || top + height > area.bottom;
        const covered = [...placed, ...dots].reduce((sum, other) => sum + overlap(box, other), 0) + (outside ? 1e6 : 0);
        if (!best || covered < best.covered) best = { box, covered };
        if (covered === 0) break;
      }
      placed.push(best.box);
    }
    return placed;
  }

  function drawMap(answer) {
    result.replaceChildren(element("p", { class: "meta" }, "Words close together here have similar embeddings (two dimensions of many)."));
    const canvas = element("canvas", { id: "inspect-map-chart", "aria-label": "Map of the words", role: "img" });
    result.append(canvas);
    if (mapChart) mapChart.destroy();
    mapChart = new Chart(canvas, {
      type: "scatter",
      data: { datasets: [{ data: answer.points.map((p) => ({ x: p.x, y: p.y, word: p.word })), backgroundColor: "#2563eb", pointRadius: 5 }] },
      options: {
        animation: false,
        layout: { padding: { right: 48, top: 12 } }, // room for the labels beside the points
        plugins: { legend: { display: false }, tooltip: { callbacks: { label: (item) => item.raw.word } } },
      },
      plugins: [{
        id: "labels",
        afterDatasetsDraw(chart) {
          const { ctx } = chart;
          ctx.save();
          ctx.font = LABEL_FONT;
          ctx.fillStyle = getComputedStyle(document.body).color;
          ctx.textBaseline = "middle";
          const points = chart.getDatasetMeta(0).data.map((point, n) => ({ x: point.x, y: point.y, word: answer.points[n].word }));
          const boxes = placeLabels(ctx, points, chart.chartArea);
          ctx.strokeStyle = ctx.fillStyle;
          ctx.lineWidth = 0.5;
          for (const box of boxes) {
            ctx.fillText(box.word, box.left, box.top + box.height / 2);
            // A label pushed away from its point is tied to it by a thin line.
            if (box.reach > 1) {
              ctx.beginPath();
              ctx.moveTo(box.x, box.y);
              ctx.lineTo(Math.min(Math.max(box.x, box.left), box.left + box.width), Math.min(Math.max(box.y, box.top), box.top + box.height));
              ctx.stroke();
            }
          }
          ctx.restore();
          // Where each label went, for whoever checks that none covers another.
          chart.canvas.dataset.labels = JSON.stringify(boxes);
        },
      }],
    });
  }

  // The guide's example for a view, taken from what the writer just looked at.
  function example(view, text) {
    const span = document.querySelector(`.guide-example[data-view="${view}"]`);
    if (span) span.textContent = text;
  }

  function describe(answer) {
    const quote = (text) => `"${visible(text)}"`;
    if (answer.view === "tokens" && answer.tokens.length) {
      const longest = answer.tokens.reduce((a, b) => (b.text.length > a.text.length ? b : a));
      example("tokens", `In your passage: ${answer.count} tokens; ${quote(longest.text)} is number ${longest.id}.`);
    } else if (answer.view === "attention") {
      const weights = answer.average.slice(0, answer.position + 1);
      const top = weights.indexOf(Math.max(...weights));
      example("attention", `In your passage: in layer ${answer.layer + 1}, ${quote(answer.tokens[answer.position].text)} leans most on ${quote(answer.tokens[top].text)} (${(weights[top] * 100).toFixed(0)}%).`);
    } else if (answer.view === "neighbours" && answer.neighbours.length) {
      example("neighbours", `Yours: "${answer.word}" is nearest to ${quote(answer.neighbours[0].text)}.`);
    } else if (answer.view === "map" && answer.points.length > 1) {
      let best = null;
      answer.points.forEach((a, i) => answer.points.slice(i + 1).forEach((b) => {
        const d = (a.x - b.x) ** 2 + (a.y - b.y) ** 2;
        if (!best || d < best.d) best = { a: a.word, b: b.word, d };
      }));
      example("map", `Yours: "${best.a}" and "${best.b}" are the closest pair.`);
    }
  }

  return {
    handle(message) {
      if (message.type === "error") {
        state.textContent = message.message;
        return;
      }
      state.textContent = "";
      describe(message);
      if (message.view === "tokens") drawTokens(message);
      else if (message.view === "attention") {
        attentionAnswer = message;
        drawAttention(message);
      } else if (message.view === "neighbours") drawNeighbours(message);
      else if (message.view === "map") drawMap(message);
    },
  };
}
