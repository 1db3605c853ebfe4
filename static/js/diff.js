// Word by word, what changed between two versions of a story: the Tree's and History's
// "Compare with current".

// Past this many cells the table of common runs would take too long and too much memory
// (a story's changed middle of 2,000 words against 2,000): the middle is then shown as
// removed and added whole.
const MAX_CELLS = 4_000_000;
// An unchanged run longer than this shows only its two ends around the changes.
const CONTEXT_CHARS = 240;

// A word with the spaces after it: a lone space in common never splits a change in two.
const tokens = (text) => text.match(/^\s+|\S+\s*/g) || [];

// [{kind: "same" | "removed" | "added", text}], in order: `before` is the removed and kept
// words, `after` the kept and added ones.
export function diffWords(before, after) {
  const a = tokens(before);
  const b = tokens(after);
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const ours = a.slice(head, a.length - tail);
  const theirs = b.slice(head, b.length - tail);
  const parts = [];
  const push = (kind, text) => {
    if (!text) return;
    const previous = parts[parts.length - 1];
    if (previous && previous.kind === kind) previous.text += text;
    else parts.push({ kind, text });
  };
  push("same", a.slice(0, head).join(""));
  if (ours.length * theirs.length > MAX_CELLS) {
    push("removed", ours.join(""));
    push("added", theirs.join(""));
  } else {
    // shared[i * width + j]: the longest common run of ours from i and theirs from j.
    const width = theirs.length + 1;
    const shared = new Uint32Array((ours.length + 1) * width);
    for (let i = ours.length - 1; i >= 0; i--) {
      for (let j = theirs.length - 1; j >= 0; j--) {
        shared[i * width + j] =
          ours[i] === theirs[j] ? shared[(i + 1) * width + j + 1] + 1 : Math.max(shared[(i + 1) * width + j], shared[i * width + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < ours.length || j < theirs.length) {
      if (i < ours.length && j < theirs.length && ours[i] === theirs[j]) {
        push("same", ours[i]);
        i++;
        j++;
      } else if (j >= theirs.length || (i < ours.length && shared[(i + 1) * width + j] >= shared[i * width + j + 1])) {
        push("removed", ours[i++]);
      } else {
        push("added", theirs[j++]);
      }
    }
  }
  push("same", a.slice(a.length - tail).join(""));
  return parts;
}

// "Compare with current" (the Tree's and History's): into `box`, which holds a `.diff` and
// a `.meta`, the text now against `other`, which is `whose` ("this try's").
export function showComparison(box, now, other, whose) {
  const changes = showDiff(box.querySelector(".diff"), now, other);
  box.querySelector(".meta").textContent =
    changes === 0 ? "" : `From the text now to ${whose}: struck-through words would go, marked words would come.`;
}

// An open comparison follows the text (Make current, Restore, Undo, typing): `redraw` runs
// this long after the text's last change (and, as the panel is closed meanwhile, when it
// is opened again).
const REDRAW_MS = 300;

export function redrawOnChange(onChange, redraw) {
  let timer = null;
  onChange(() => {
    clearTimeout(timer);
    timer = setTimeout(redraw, REDRAW_MS);
  });
}

// The differences into `container`: removed words struck through (<del>), added ones marked
// (<ins>), long unchanged runs cut to their ends. Returns how many changes there are.
export function showDiff(container, before, after) {
  const parts = diffWords(before, after);
  const changes = parts.filter((part) => part.kind !== "same").length;
  if (changes === 0) {
    container.textContent = "The two are the same.";
    return 0;
  }
  container.replaceChildren();
  parts.forEach((part, index) => {
    if (part.kind !== "same") {
      container.append(Object.assign(document.createElement(part.kind === "removed" ? "del" : "ins"), { textContent: part.text }));
      return;
    }
    // The text before the first change keeps its end, after the last its start, between two both.
    const keepHead = index > 0;
    const keepTail = index < parts.length - 1;
    const room = (keepHead ? CONTEXT_CHARS : 0) + (keepTail ? CONTEXT_CHARS : 0);
    if (part.text.length <= room) {
      container.append(part.text);
      return;
    }
    const head = keepHead ? `${part.text.slice(0, CONTEXT_CHARS)} ` : "";
    const tail = keepTail ? ` ${part.text.slice(-CONTEXT_CHARS)}` : "";
    container.append(`${head}[…]${tail}`);
  });
  return changes;
}
