// The story's text box: Quill 2 (static/vendor/quill-2.0.3, loaded as window.Quill) holding
// plain text, with one format of our own: text the model wrote, shown in its own colour
// until the writer edits it. Typing, generations, retries and restores share Quill's one
// undo history; a generation is one step of it.

const Quill = window.Quill;
const Inline = Quill.import("blots/inline");

class ModelText extends Inline {
  static blotName = "model";
  static tagName = "SPAN";
  static className = "model-text";

  // Parchment reads a plain SPAN as no format at all; ours is known by its class.
  static formats(node) {
    return node.classList.contains(ModelText.className) || undefined;
  }
}
Quill.register(ModelText, true);

// Quill replays an undo or redo as a "user" change, which would make every word it brings
// back the writer's own. Replays are marked, so that they keep the colour they had.
const History = Quill.import("modules/history");

class StoryHistory extends History {
  replaying = false;

  undo() {
    this.replay(() => super.undo());
  }

  redo() {
    this.replay(() => super.redo());
  }

  replay(step) {
    const steps = this.stack.undo.length;
    this.replaying = true;
    try {
      step();
    } finally {
      this.replaying = false;
    }
    // An undo with nothing left to undo changed nothing.
    if (this.stack.undo.length !== steps) for (const listener of this.replayListeners || []) listener();
  }
}
Quill.register("modules/history", StoryHistory, true);

// Typing within this long is one undo step.
const HISTORY_DELAY_MS = 1000;
// While a continuation streams, every change joins the step it started. Not Infinity:
// Quill merges a change into the step before when its last one began `delay` ago, and a
// cutoff sets that to 0, so a finite delay still starts a new step after it.
const GROUP_DELAY_MS = 24 * 60 * 60 * 1000;

export function createStoryEditor(container, text) {
  const quill = new Quill(container, {
    // Only our format: pasted bold, links or headings come in as plain text.
    formats: ["model"],
    placeholder: "Once upon a time...",
    modules: { toolbar: false, history: { delay: HISTORY_DELAY_MS, maxStack: 1000, userOnly: false } },
  });
  const root = quill.root;
  root.setAttribute("role", "textbox");
  root.setAttribute("aria-multiline", "true");
  root.setAttribute("aria-label", "Story");
  root.spellcheck = true;

  // Quill's document always ends with a line break of its own; the story's text is what
  // comes before it, trailing line breaks included.
  const setText = (value, source = "api") => quill.setText(`${value}\n`, source);
  // A browser may type a no-break space at the end of a line; the story gets a plain one.
  const getText = () => quill.getText().slice(0, -1).replaceAll("\u00a0", " ");
  setText(text, "silent");
  quill.history.clear();

  let lastRange = null;
  let grouped = false;
  const selectionListeners = [];
  quill.on("selection-change", (range) => {
    if (range) lastRange = range;
    if (range) for (const listener of selectionListeners) listener(range);
  });

  const isModel = (index) => index >= 0 && index < quill.getLength() && Boolean(quill.getFormat(index, 1).model);

  // The whole run of model text around index, or null.
  function modelRunAt(index) {
    let at = 0;
    for (const op of quill.getContents().ops) {
      const length = typeof op.insert === "string" ? op.insert.length : 1;
      if (op.attributes && op.attributes.model && at <= index && index < at + length) return [at, length];
      at += length;
    }
    return null;
  }

  const userEditListeners = [];
  quill.history.replayListeners = [];
  quill.on("text-change", (delta, _old, source) => {
    if (source !== "user" || quill.history.replaying) return;
    // Where the edit starts, where it ends in the old text, and how much it moved what follows.
    let index = 0;
    let oldIndex = 0;
    let from = null;
    let to = 0;
    let shift = 0;
    const touched = [];
    for (const op of delta.ops) {
      if (op.retain !== undefined) {
        index += op.retain;
        oldIndex += op.retain;
      } else if (op.insert !== undefined) {
        const length = typeof op.insert === "string" ? op.insert.length : 1;
        from ??= index;
        touched.push([index, length]);
        index += length;
        to = oldIndex;
        shift += length;
      } else if (op.delete) {
        from ??= index;
        touched.push([index, 0]);
        oldIndex += op.delete;
        to = oldIndex;
        shift -= op.delete;
      }
    }
    for (const [at, length] of touched) {
      // What the writer types is theirs, even next to model text; an edit inside model
      // text makes the whole passage theirs.
      if (length) quill.formatText(at, length, "model", false, "api");
      if ((isModel(at - 1) && isModel(at + length)) || (length === 0 && (isModel(at - 1) || isModel(at)))) {
        for (const run of [modelRunAt(at - 1), modelRunAt(at + length)]) {
          if (run) quill.formatText(run[0], run[1], "model", false, "api");
        }
      }
    }
    if (from !== null) for (const listener of userEditListeners) listener(from, to, shift);
  });

  // The model's passages as [[start, end], ...], what the server keeps between visits.
  function modelSpans() {
    const spans = [];
    let at = 0;
    for (const op of quill.getContents().ops) {
      const length = typeof op.insert === "string" ? op.insert.length : 1;
      if (op.attributes && op.attributes.model) spans.push([at, at + length]);
      at += length;
    }
    return spans;
  }

  // The model's passages as a writer sees them: its spans joined over the line breaks
  // between and around them (a line break is nobody's, so a continuation that went on over
  // one comes as several spans).
  function modelPassages() {
    const text = getText();
    const joined = [];
    for (let [start, end] of modelSpans()) {
      while (start > 0 && text[start - 1] === "\n") start -= 1;
      while (end < text.length && text[end] === "\n") end += 1;
      const previous = joined[joined.length - 1];
      if (previous && start <= previous[1]) previous[1] = Math.max(previous[1], end);
      else joined.push([start, end]);
    }
    return joined;
  }

  function setModelSpans(spans, source = "api") {
    quill.formatText(0, quill.getLength(), "model", false, source);
    for (const [start, end] of spans || []) quill.formatText(start, end - start, "model", true, source);
  }

  return {
    text: getText,
    setText: (value) => setText(value),
    modelSpans,
    modelPassages,
    // Whether the character at `index` is the model's (a line break is nobody's: Quill
    // keeps inline formats off it).
    isModelAt: isModel,
    // Whether [start, end) is all the model's, line breaks aside.
    isModelRun(start, end) {
      const text = getText();
      for (let at = start; at < end; at++) if (text[at] !== "\n" && !isModel(at)) return false;
      return true;
    },
    setModelSpans: (spans, { silent = false } = {}) => setModelSpans(spans, silent ? "silent" : "api"),
    // Where Generate continues from: the end of the selection, or of the text when the
    // writer has not placed the cursor yet.
    cursor() {
      const range = quill.getSelection() || lastRange;
      return range ? Math.min(range.index + range.length, getText().length) : getText().length;
    },
    // The index of the character under a point of the screen, or null.
    indexAtPoint(x, y) {
      const caret = document.caretRangeFromPoint ? document.caretRangeFromPoint(x, y) : null;
      if (!caret || !quill.root.contains(caret.startContainer)) return null;
      const blot = Quill.find(caret.startContainer, true);
      return blot && blot.offset ? blot.offset(quill.scroll) + caret.startOffset : null;
    },
    // A DOM Range over the characters [start, end), for marking them without a format
    // (which would be a change of the text, and a step of its history); null off the text.
    domRange(start, end) {
      const [first, firstOffset] = quill.getLeaf(start + 1);
      const [last, lastOffset] = quill.getLeaf(end);
      if (!first || !last || !first.domNode || !last.domNode) return null;
      const range = document.createRange();
      try {
        range.setStart(first.domNode, Math.max(0, firstOffset - 1));
        range.setEnd(last.domNode, lastOffset);
      } catch {
        return null; // a boundary on an empty line's <br>
      }
      return range;
    },
    // The selected passage's place, {index, length} (the last selection, when the editor
    // lost focus to a panel or a button), or null.
    selectionRange() {
      const range = quill.getSelection() || lastRange;
      return range && range.length ? { index: range.index, length: range.length } : null;
    },
    // After the writer selects, or moves the cursor (not when the editor loses focus).
    onSelection: (listener) => selectionListeners.push(listener),
    // The selected passage (the last selection, when the editor lost focus to a panel).
    selection() {
      const range = quill.getSelection() || lastRange;
      return range && range.length ? getText().slice(range.index, range.index + range.length) : "";
    },
    insertModelText(at, value) {
      quill.insertText(at, value, { model: true }, "api");
    },
    // Whether the character at `index` is on screen (the page scrolls, not the editor).
    isOnScreen(index) {
      const top = quill.root.getBoundingClientRect().top + quill.getBounds(index).top;
      return top >= 0 && top < window.innerHeight;
    },
    // Scrolls the page just enough to show the line of the character at `index`, above
    // `covered` pixels at the bottom of the window (the toolbar that stays there).
    reveal(index, covered = 0) {
      const bounds = quill.getBounds(index);
      const bottom = quill.root.getBoundingClientRect().top + bounds.bottom;
      const margin = 2 * bounds.height + covered;
      if (bottom + margin > window.innerHeight) window.scrollBy(0, bottom + margin - window.innerHeight);
      else if (bottom - bounds.height < 0) window.scrollBy(0, bottom - bounds.height - margin);
    },
    replaceModelText(at, length, value) {
      if (length) quill.deleteText(at, length, "api");
      if (value) quill.insertText(at, value, { model: true }, "api");
    },
    lock(locked) {
      quill.enable(!locked);
    },
    historyCut: () => quill.history.cutoff(),
    historyClear: () => quill.history.clear(),
    // Every change from here to the next call is one undo step, however long it takes (a
    // continuation streams for many seconds; the page is locked meanwhile).
    historyGroup(grouping) {
      if (grouping === grouped) return;
      grouped = grouping;
      quill.history.cutoff();
      quill.history.options.delay = grouping ? GROUP_DELAY_MS : HISTORY_DELAY_MS;
    },
    undo: () => quill.history.undo(),
    redo: () => quill.history.redo(),
    focusEnd() {
      quill.focus();
      quill.setSelection(quill.getLength() - 1, 0, "api");
    },
    canUndo: () => quill.history.stack.undo.length > 0,
    canRedo: () => quill.history.stack.redo.length > 0,
    onChange: (listener) => quill.on("text-change", () => listener()),
    onBlur: (listener) => root.addEventListener("blur", listener),
    onUserEdit: (listener) => userEditListeners.push(listener),
    // After an undo or redo, by button or keyboard.
    onHistory: (listener) => quill.history.replayListeners.push(listener),
  };
}
