// The story's tree (docs/protocol.md, "The story's tree"): every try the writer made, saved
// on the server, and the Tree panel that shows it. A run of tries that went on one from
// another is one column; a try with several tries after it branches.

import { UNAVAILABLE, api, errorMessage } from "./api.js";
import { redrawOnChange, showComparison } from "./diff.js";
import { fingerprint } from "./fingerprint.js";
import { element } from "./panels.js";

const KIND_NAMES = { generation: "Generated", retry: "Retry", candidate: "Candidate", tool: "Tool", restore: "Restored" };
// How much of a try's words its row shows, and how much of the story around them its preview.
const ROW_CHARS = 80;
const AROUND_CHARS = 600;
// How many texts the tree remembers the current try of (for Undo and Redo).
const REMEMBERED = 200;
// How long a change the server did not take waits before it is sent again (as a save does).
const RETRY_MS = 3000;

// A random name for a try (crypto.randomUUID is for secure pages only).
const newKey = () => Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");

const clip = (text, length) => (text.length > length ? `${text.slice(0, length - 1)}…` : text);

export function initTree({ story, editor, busy, makeCurrent, isOpen }) {
  const base = `/api/stories/${story.id}/tree`;
  const list = document.getElementById("tree-list");
  const empty = document.getElementById("tree-empty");
  const preview = document.getElementById("tree-preview");
  const previewTitle = document.getElementById("tree-preview-title");
  const previewText = document.getElementById("tree-preview-text");
  const diff = document.getElementById("tree-diff");
  const compareButton = document.getElementById("tree-compare");
  const currentButton = document.getElementById("tree-make-current");
  const deleteButton = document.getElementById("tree-delete");
  const state = document.getElementById("tree-state");

  const nodes = new Map();
  let current = null;
  let opened = null;
  let deleteArmed = false;
  // How many times the current try was chosen here (Make current, the arrows, Undo...).
  let picks = 0;
  // The last change sent to the tree, which the next one waits for.
  let queue = Promise.resolve();
  // [the text's fingerprint, the try current for it], each time a try became current, the
  // newest last: an undo or redo that brings such a text back brings its try back too.
  const currentFor = [];

  function remember(id, text = editor.text()) {
    if (id === null) return;
    currentFor.push([fingerprint(text), id]);
    if (currentFor.length > REMEMBERED) currentFor.shift();
  }

  // Changes to the tree go one at a time, in the order they were made: a try finds the one
  // it went on from, and a Make current or an Undo lands after the tries saved before it.
  // Each is sent again while the server cannot be reached, or answers as a proxy does
  // while the site restarts, for as long as the page is open (a try's words never leave
  // the editor; this keeps its place in the tree). Resolves to the server's answer.
  function send(method, url, body) {
    const sent = queue.then(() => untilTaken(method, url, body));
    queue = sent;
    return sent;
  }

  async function untilTaken(method, url, body) {
    for (;;) {
      const result = await api(method, url, body).catch(() => null);
      if (result && !UNAVAILABLE.includes(result.status)) return result;
      await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
    }
  }

  // A try no longer in the tree is passed over.
  async function setCurrent(id) {
    if (current === id || !nodes.has(id)) return;
    picks += 1;
    current = id;
    remember(id);
    render();
    await send("PUT", `${base}/current`, { node: id });
  }

  function take(data) {
    nodes.clear();
    for (const node of data.nodes) nodes.set(node.id, node);
    current = data.current;
  }

  async function load() {
    const result = await api("GET", `${base}/`).catch(() => null);
    if (!result || !result.ok) {
      state.textContent = result ? errorMessage(result) : "Offline: the tree will show when the connection is back.";
      return false;
    }
    take(result.data);
    state.textContent = "";
    render();
    drawDiff();
    return true;
  }

  const childrenOf = (id) => [...nodes.values()].filter((node) => node.parent === id);

  function path() {
    const ids = new Set();
    for (let id = current; id !== null && nodes.has(id); id = nodes.get(id).parent) ids.add(id);
    return ids;
  }

  const label = (node) => (node.kind === "tool" || node.kind === "restore") && node.label ? node.label : KIND_NAMES[node.kind];

  function row(node, onPath) {
    const item = element("li");
    item.classList.toggle("on-path", onPath);
    item.classList.toggle("opened", node.id === opened);
    // The kind stays out of the button's name, which is the try's words: a row is never
    // taken for the toolbar's Generate or Retry.
    const words = node.words.trim() ? `“${clip(node.words.trim().replace(/\s+/g, " "), ROW_CHARS)}”` : "(no new words)";
    const button = element("button", { type: "button", class: "link", "data-node": String(node.id) }, words);
    button.addEventListener("click", () => open(node.id));
    item.append(element("span", { class: "tree-kind" }, label(node)), " ", button);
    if (node.id === current) {
      button.setAttribute("aria-current", "true");
      item.append(element("span", { class: "meta" }, " (current)"));
    }
    return item;
  }

  // A column of tries from `first` on, while each has exactly one try after it.
  function column(first, onPath) {
    const group = element("ul");
    let node = first;
    while (node) {
      group.append(row(node, onPath.has(node.id)));
      const next = childrenOf(node.id);
      if (next.length === 1) {
        node = next[0];
        continue;
      }
      if (next.length > 1) {
        const branches = element("li", { class: "branches" });
        for (const child of next) branches.append(column(child, onPath));
        group.append(branches);
      }
      node = null;
    }
    return group;
  }

  function render() {
    if (!isOpen()) return;
    const onPath = path();
    list.replaceChildren();
    const starts = childrenOf(null);
    empty.hidden = starts.length > 0;
    for (const first of starts) list.append(column(first, onPath));
    // The current try's row, with its "(current)" after the button, is brought into view.
    const shown = list.querySelector("[aria-current=true]");
    if (shown && !opened) shown.closest("li").scrollIntoView({ block: "nearest" });
  }

  async function open(id) {
    const result = await api("GET", `${base}/${id}/`);
    if (!result.ok) {
      state.textContent = errorMessage(result);
      return;
    }
    const node = result.data;
    opened = id;
    preview.dataset.node = String(id);
    previewTitle.textContent = `${label(node)}, ${new Date(node.created_at).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" })}`;
    const before = node.text.slice(0, node.start);
    const after = node.text.slice(node.end);
    previewText.replaceChildren(
      before.length > AROUND_CHARS ? `[…] ${before.slice(-AROUND_CHARS)}` : before,
      element("mark", {}, node.words),
      after.length > AROUND_CHARS ? `${after.slice(0, AROUND_CHARS)} […]` : after,
    );
    preview.hidden = false;
    diff.hidden = true;
    compareButton.setAttribute("aria-expanded", "false");
    disarmDelete();
    preview.node = node;
    render();
    previewText.querySelector("mark").scrollIntoView({ block: "nearest" });
  }

  function drawDiff() {
    if (!diff.hidden && !preview.hidden) showComparison(diff, editor.text(), preview.node.text, "this try's");
  }

  compareButton.addEventListener("click", () => {
    const showing = diff.hidden;
    diff.hidden = !showing;
    compareButton.setAttribute("aria-expanded", String(showing));
    if (showing) {
      drawDiff();
      // It opens below the try's words, often past the bottom of the panel: brought into view.
      diff.scrollIntoView({ block: "nearest" });
    }
  });
  redrawOnChange(editor.onChange, () => {
    if (isOpen()) drawDiff();
  });

  currentButton.addEventListener("click", async () => {
    if (busy()) {
      state.textContent = "Wait for the model to finish first.";
      return;
    }
    makeCurrent(preview.node);
    state.textContent = "This try is the story's text now; Undo takes it back.";
  });

  function disarmDelete() {
    deleteArmed = false;
    deleteButton.textContent = "Delete this try";
  }

  deleteButton.addEventListener("click", async () => {
    const id = opened;
    let count = 0;
    for (const stack = [id]; stack.length; count++) stack.push(...childrenOf(stack.pop()).map((n) => n.id));
    if (!deleteArmed) {
      deleteArmed = true;
      deleteButton.textContent = count > 1 ? `Delete it and the ${count - 1} after it? Press again` : "Delete it? Press again";
      return;
    }
    disarmDelete();
    const result = await api("DELETE", `${base}/${id}/`);
    if (!result.ok) {
      state.textContent = errorMessage(result);
      return;
    }
    opened = null;
    preview.hidden = true;
    state.textContent = result.data.deleted === 1 ? "1 try deleted." : `${result.data.deleted} tries deleted.`;
    await load();
  });

  return {
    load,
    render,
    current: () => (current === null ? null : nodes.get(current) || null),
    // The tries that are alternatives of `id` (itself included), oldest first.
    alternatives(id) {
      const node = nodes.get(id);
      return node ? [...nodes.values()].filter((other) => other.group === node.group) : [];
    },
    get: (id) => api("GET", `${base}/${id}/`),
    // Saves a try made on the editor's text as it is now (or on `text`, with `modelSpans`);
    // its words are at [start, end). It becomes the current try unless `current` is false.
    // Resolves to the node once the server has it (see send()), or null when it refused
    // it (the try stays in the editor; only its place in the tree is lost).
    async add({ kind, start, end, label = "", generationId = null, text = null, modelSpans = null, current: making = true }) {
      const body = {
        kind,
        text: text ?? editor.text(),
        start,
        end,
        model_spans: modelSpans ?? editor.modelSpans(),
        label,
        generation_id: generationId,
        current: making,
        // Its name, so that sending it again saves it once.
        key: newKey(),
      };
      const picked = picks;
      const result = await send("POST", `${base}/`, body);
      if (!result.ok) return null;
      const { text: _text, model_spans: _spans, pruned, ...summary } = result.data;
      nodes.set(summary.id, summary);
      // The old tries the server let go to make room go from here too (and from the tries
      // alternatives() offers).
      for (const id of pruned || []) nodes.delete(id);
      if (making && picks === picked) {
        current = summary.id;
        remember(current, body.text);
      } else if (making && current !== null) {
        // The writer chose another try while this one was on its way: the server is told again.
        send("PUT", `${base}/current`, { node: current });
      }
      if (isOpen()) render();
      return summary;
    },
    // The current try is the one for the text now.
    remember: () => remember(current),
    // After an undo or redo: the try last current for the text now, made current again (and
    // returned), or null when there was none.
    follow() {
      const key = fingerprint(editor.text());
      const found = currentFor.findLast(([print, id]) => print === key && nodes.has(id));
      if (!found) return null;
      setCurrent(found[1]);
      return nodes.get(found[1]);
    },
    setCurrent,
  };
}
