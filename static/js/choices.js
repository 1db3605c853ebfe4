// The model's choices: in a story that records them, hovering a word the model wrote shows
// the candidates it weighed for it, with their chances; clicking one rewrites that
// continuation from there, starting with that candidate.
//
// The candidates live on the story's generations (GET .../generations/?choices=1). Each
// generation's text is found again in the story, inside a passage still marked as the
// model's (so the writer has not changed it), the latest first; its tokens' texts join to
// that text, which places every token. Found again after every change, so continuations
// written in an earlier visit keep their candidates and edited ones lose theirs.

const percent = (p) => `${(p * 100).toFixed(1)}%`;
// Line breaks made visible; a candidate's leading space shows as a space.
const visible = (text) => text.replaceAll("\n", "\u21b5");
// How many places of one generation's text are tried before giving up on it.
const MAX_TRIES = 200;
const PLACE_DELAY_MS = 250;

// Where `generation`'s tokens stand in `text`: [{start, end, id, text, top, until}] (`until`: the
// end of its continuation), or null when its text is not found in one model passage.
function place(generation, text, runs, taken) {
  const output = generation.text || "";
  const pieces = generation.choices.map((choice) => choice.text);
  if (!output || !pieces.join("").startsWith(output)) return null;
  const fits = (at) =>
    runs.some(([start, end]) => start <= at && at + output.length <= end) &&
    !taken.some(([start, end]) => at < end && start < at + output.length);
  let at = text.lastIndexOf(output);
  for (let tries = 0; at >= 0 && !fits(at); tries += 1) {
    at = tries < MAX_TRIES && at > 0 ? text.lastIndexOf(output, at - 1) : -1;
  }
  if (at < 0) return null;
  const until = at + output.length;
  taken.push([at, until]);
  const tokens = [];
  let position = at;
  for (const choice of generation.choices) {
    const end = Math.min(position + choice.text.length, until);
    // A token that left a character unfinished added nothing; the next one holds it.
    if (end > position) tokens.push({ start: position, end, id: choice.id, text: choice.text, top: choice.top, until });
    position += choice.text.length;
    if (position >= until) break;
  }
  return tokens;
}

export function initChoices({ root, editor, onRewrite }) {
  let generations = []; // newest first: {generation_id, text, choices}
  let tokens = [];
  let stale = false;
  let paused = false;
  let timer = null;
  let shown = null;
  // The window's scroll and size when the pop-up was placed.
  let placedFor = "";
  const view = () => `${window.scrollX},${window.scrollY},${window.innerWidth},${window.innerHeight}`;
  const popup = document.createElement("div");
  popup.className = "choices-popup";
  popup.setAttribute("role", "menu");
  popup.setAttribute("aria-label", "The model's choices");
  popup.hidden = true;
  document.body.append(popup);

  function hide() {
    popup.hidden = true;
    shown = null;
  }

  // The passages whose words have candidates are marked (dotted underline), with the CSS
  // Custom Highlight API: it draws over the text without changing it.
  const marks = typeof Highlight === "function" && window.CSS && CSS.highlights ? new Highlight() : null;
  if (marks) CSS.highlights.set("choices", marks);

  function mark(passages) {
    if (!marks) return;
    marks.clear();
    if (paused) return;
    for (const [start, end] of passages) {
      const range = editor.domRange(start, end);
      if (range) marks.add(range);
    }
  }

  function placeAll() {
    clearTimeout(timer);
    stale = false;
    const text = editor.text();
    const runs = editor.modelPassages();
    const taken = [];
    tokens = generations.flatMap((generation) => place(generation, text, runs, taken) || []);
    root.dataset.choices = tokens.length && !paused ? "ready" : "";
    root.dataset.marked = String(taken.length);
    mark(taken);
  }

  function show(token, x, y) {
    if (shown === token) return;
    shown = token;
    popup.replaceChildren();
    const title = document.createElement("p");
    title.className = "meta";
    title.textContent = "The model weighed:";
    popup.append(title);
    // A word sampled from outside the five most likely is said too, last, without its chance.
    const weighed = token.top.some(([id]) => id === token.id);
    const rows = weighed ? token.top : [...token.top, [token.id, token.text, null]];
    for (const [id, text, probability] of rows) {
      const button = document.createElement("button");
      button.type = "button";
      button.setAttribute("role", "menuitem");
      button.dataset.token = String(id);
      button.textContent = probability === null ? `${visible(text)}  (written)` : `${visible(text)}  ${percent(probability)}`;
      if (id === token.id) button.classList.add("written");
      button.title = id === token.id ? "What it wrote" : "Rewrite from here, starting with this";
      button.addEventListener("click", () => {
        hide();
        onRewrite({ at: token.start, end: token.until, firstToken: id });
      });
      popup.append(button);
    }
    // Below the word, unless it would cover the toolbar docked at the bottom of the window:
    // then above, or on whichever side has more room, scrolling within it where it is too
    // tall for either; never past the window's right edge.
    popup.style.maxHeight = "";
    popup.hidden = false;
    const dock = document.querySelector(".dock");
    const floor = dock ? dock.getBoundingClientRect().top : window.innerHeight;
    const { width, height } = popup.getBoundingClientRect();
    const below = y + 14;
    const roomBelow = floor - below - 4;
    // Nor under the title bar that stays at the top of the window.
    const header = document.querySelector(".editor-top");
    const ceiling = header ? Math.max(0, header.getBoundingClientRect().bottom) : 0;
    const roomAbove = y - 10 - ceiling;
    let top = below;
    if (height > roomBelow) {
      const above = height <= roomAbove || roomAbove > roomBelow;
      const room = above ? roomAbove : roomBelow;
      if (height > room) popup.style.maxHeight = `${Math.max(room, 40)}px`;
      top = above ? y - 10 - Math.min(height, room) : below;
    }
    const left = Math.max(0, Math.min(x + 8, document.documentElement.clientWidth - width - 4));
    popup.style.left = `${left + window.scrollX}px`;
    popup.style.top = `${top + window.scrollY}px`;
    placedFor = view();
  }

  root.addEventListener("mousemove", (event) => {
    if (paused || !generations.length) return;
    if (stale) placeAll();
    const index = editor.indexAtPoint(event.clientX, event.clientY);
    const token = index === null ? null : tokens.find((t) => t.start <= index && index < t.end);
    if (token) show(token, event.clientX, event.clientY);
  });
  root.addEventListener("mouseleave", (event) => {
    if (!popup.contains(event.relatedTarget)) hide();
  });
  popup.addEventListener("mouseleave", (event) => {
    if (!root.contains(event.relatedTarget)) hide();
  });
  // The pop-up is placed for the word where it was: a scroll or a new window size moves
  // the word (and may carry the pop-up under the bars that stay in place), so it closes.
  // (Only when it moved since the pop-up was placed: the event of a scroll comes a frame
  // after it.)
  function moved() {
    if (shown && view() !== placedFor) hide();
  }
  window.addEventListener("scroll", moved, { passive: true });
  window.addEventListener("resize", moved);
  // Any change of the text (typing, undo, a retry) may move or undo a continuation.
  editor.onChange(() => {
    if (!generations.length) return;
    stale = true;
    hide();
    clearTimeout(timer);
    timer = setTimeout(placeAll, PLACE_DELAY_MS);
  });

  return {
    // Generations of the story (those that recorded no choices are left out); the
    // newest is found first.
    add(...list) {
      const known = new Map(generations.map((g) => [g.generation_id, g]));
      for (const generation of list) {
        if (generation.choices && generation.choices.length) known.set(generation.generation_id, generation);
      }
      generations = [...known.values()].sort((a, b) => b.generation_id - a.generation_id);
      placeAll();
    },
    // While the model writes, no candidates are offered.
    pause(on) {
      paused = on;
      hide();
      placeAll();
    },
  };
}
