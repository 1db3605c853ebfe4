// The selection tools: a selected passage rewritten, expanded, described, shortened or
// changed as the writer says by the instruct model (docs/protocol.md, the `generate`
// message's `tool`), its answer streamed into a box above the toolbar to use in place of
// the passage or discard; and "Summarize into memory", a draft for the Memory panel. The
// editor (editor.js) runs the generation; this module asks for it and shows it.

const LABELS = { rewrite: "Rewrite", expand: "Expand", describe: "Describe", shorten: "Shorten", instruct: "Instruction", summarize: "Summary" };
// How long an answer may be, in tokens, for a passage of n characters (about four to a
// token in English): a rewrite about as long, an expansion three times, a summary a
// paragraph. The writer's own length limit caps it.
const LENGTHS = {
  rewrite: (n) => 1.5 * (n / 4) + 30,
  expand: (n) => 3 * (n / 4) + 60,
  describe: (n) => 2 * (n / 4) + 80,
  shorten: (n) => n / 4 + 20,
  instruct: (n) => 2 * (n / 4) + 60,
  summarize: () => 200,
};

// A small model often opens its answer with a line about it ("Here's the rewritten
// passage:"), which is no part of the passage: a first line that ends with a colon, has
// more after it, presents something ("here is", "below is") and names the answer ("the
// revised version") is left out, unless the writer's own passage holds it.
const PREAMBLE = /^([^\n]{0,300}):[ \t]*\n+(?=\S)/;
const PRESENTS = /\b(here(?:'|\u2019)?s|here (?:is|are)|below (?:is|are))\b/i;
const NAMES_THE_ANSWER = /\b(rewrit\w*|revised|version|passage|text|summary|description|shortened|expanded)\b/i;

export function withoutPreamble(text, original = "") {
  const found = text.match(PREAMBLE);
  if (!found || !PRESENTS.test(found[1]) || !NAMES_THE_ANSWER.test(found[1])) return text;
  return original.includes(found[1]) ? text : text.slice(found[0].length);
}

// A passage that ends a sentence is given back ending one: an answer the length limit cut
// in the middle of a sentence ("...to walk. The lamp") loses the unfinished one, when it
// has a finished one before it. The period of a title or an initial ("Mr. Hale", "J. M.
// Barrie") ends no sentence.
const ENDS_A_SENTENCE = /[.!?…]["'”’)\]]*\s*$/;
const SENTENCE_END = /(?<!\b(?:Mr|Mrs|Ms|Dr|St|Mt|Jr|Sr|Prof|Rev|Capt|Col|Gen|Lt|Sgt|[A-Z]))[.!?…]["'”’)\]]*(?=\s|$)/g;

export function wholeSentences(text, original) {
  if (!ENDS_A_SENTENCE.test(original) || ENDS_A_SENTENCE.test(text)) return text;
  const ends = [...text.matchAll(SENTENCE_END)];
  if (ends.length === 0) return text;
  const last = ends[ends.length - 1];
  return text.slice(0, last.index + last[0].length);
}

export function initTools({ editor, tree, run, busy }) {
  const bar = document.getElementById("selection-tools");
  const instruction = document.getElementById("tool-instruction");
  const result = document.getElementById("tool-result");
  const resultTitle = document.getElementById("tool-result-title");
  const resultState = document.getElementById("tool-result-state");
  const resultText = document.getElementById("tool-result-text");
  const useButton = document.getElementById("tool-use");
  const discardButton = document.getElementById("tool-discard");
  const summaryBox = document.getElementById("summary");
  const summaryState = document.getElementById("summary-state");
  const summaryDraft = document.getElementById("summary-draft");
  const summaryAdd = document.getElementById("summary-add");
  const memory = document.getElementById("memory");
  const maxTokens = () => Number(document.querySelector('[data-setting="max_new_tokens"]').max) || 1024;

  // The passage asked about: {action, at, original}; and its answer once written:
  // {text, node} (node: a promise of the tree's node saved for it, or of null when the
  // server could not take it).
  let asked = null;
  let answer = null;

  function showBar(range) {
    bar.hidden = busy() || !range || range.length === 0 || !editor.text().slice(range.index, range.index + range.length).trim();
  }
  editor.onSelection(showBar);

  const length = (action, chars) => Math.max(16, Math.min(maxTokens(), Math.round(LENGTHS[action](chars))));

  function ask(action) {
    if (busy()) return;
    const summary = action === "summarize";
    const text = editor.text();
    const range = summary ? { index: 0, length: 0 } : editor.selectionRange();
    const original = range ? text.slice(range.index, range.index + range.length) : "";
    if (!summary && !original.trim()) return;
    const typed = instruction.value.trim();
    if (action === "instruct" && !typed) {
      instruction.focus();
      return;
    }
    // The story before the passage is what the model reads with it; all of it for a summary.
    const tool = { action };
    if (!summary) tool.selection = original;
    if (action === "instruct") tool.instruction = typed;
    asked = { action, at: range.index, original };
    answer = null;
    if (!run({ tool, text: summary ? text : text.slice(0, range.index), maxNewTokens: length(action, original.length) })) {
      asked = null;
      return;
    }
    if (summary) {
      summaryBox.hidden = false;
      summaryDraft.value = "";
      summaryState.textContent = "Summarizing the story...";
      summaryAdd.disabled = true;
    } else {
      bar.hidden = true;
      result.hidden = false;
      resultTitle.textContent = LABELS[action];
      resultState.textContent = "writing...";
      resultText.textContent = "";
      useButton.disabled = discardButton.disabled = true;
    }
  }

  for (const button of bar.querySelectorAll("[data-tool]")) button.addEventListener("click", () => ask(button.dataset.tool));
  document.getElementById("tool-instruct").addEventListener("click", () => ask("instruct"));
  instruction.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      ask("instruct");
    }
  });
  document.getElementById("summarize").addEventListener("click", () => ask("summarize"));

  // The text and model spans the story would have with the answer in place of the passage.
  function withAnswer(text) {
    const { at, original } = asked;
    const after = at + original.length;
    const shift = text.length - original.length;
    const spans = [];
    // The model's passages outside the selected one stay, cut at its edges; the answer is one.
    for (const [start, end] of editor.modelSpans()) {
      if (start < at) spans.push([start, Math.min(end, at)]);
      if (end > after) spans.push([Math.max(start, after) + shift, end + shift]);
    }
    const story = editor.text();
    spans.push([at, at + text.length]);
    spans.sort((a, b) => a[0] - b[0]);
    return { text: story.slice(0, at) + text + story.slice(at + original.length), spans };
  }

  // The answer is one of the story's tries whether or not it is used: kept in the tree,
  // where "Make current" brings it back.
  function keep(text) {
    const story = withAnswer(text);
    return tree.add({
      kind: "tool",
      label: LABELS[asked.action],
      start: asked.at,
      end: asked.at + text.length,
      text: story.text,
      modelSpans: story.spans,
      current: false,
    });
  }

  useButton.addEventListener("click", () => {
    if (!answer || busy()) return;
    const { at, original } = asked;
    // The passage is where it was: the editor was locked while the answer was written.
    if (editor.text().slice(at, at + original.length) !== original) {
      resultState.textContent = "The passage has changed since: select it again.";
      return;
    }
    // The text before it, with its try, for an Undo that comes back to it.
    tree.remember();
    editor.historyGroup(true);
    editor.replaceModelText(at, original.length, answer.text);
    editor.historyGroup(false);
    // Used before the server has saved it, it becomes current once it is saved.
    answer.node.then((node) => node && tree.setCurrent(node.id));
    close();
  });

  function close() {
    result.hidden = true;
    asked = answer = null;
  }
  discardButton.addEventListener("click", () => {
    close();
    // The passage is still selected, for another tool.
    showBar(editor.selectionRange());
  });

  summaryAdd.addEventListener("click", () => {
    const draft = summaryDraft.value.trim();
    if (!draft) return;
    memory.value = memory.value.trim() ? `${memory.value.trimEnd()}\n\n${draft}` : draft;
    memory.dispatchEvent(new Event("input", { bubbles: true }));
    summaryBox.hidden = true;
    memory.focus();
  });
  document.getElementById("summary-discard").addEventListener("click", () => {
    summaryBox.hidden = true;
  });

  return {
    // A word of the answer, as it streams.
    token(text) {
      if (!asked) return;
      if (asked.action === "summarize") summaryDraft.value += text;
      else resultText.textContent += text;
    },
    // The answer is written (or the model stopped, or failed, saying `message`).
    // `cutShort`: it ended at its length limit, maybe in the middle of a sentence.
    done(text, message, cutShort) {
      if (!asked) return;
      const whole = (answer, original) => (cutShort ? wholeSentences(answer, original) : answer);
      if (asked.action === "summarize") {
        // A summary is sentences, whatever the story's text ends with.
        summaryDraft.value = whole(withoutPreamble(summaryDraft.value.trim(), editor.text()), ".");
        summaryState.textContent = text.trim() ? "Edit the draft, then add it to Memory." : message;
        summaryAdd.disabled = !text.trim();
        return;
      }
      const written = whole(withoutPreamble(text.trim(), asked.original), asked.original.trim());
      const words = (passage) => passage.split(/\s+/).filter(Boolean).length;
      if (!written) resultState.textContent = message;
      else if (message !== "Done") resultState.textContent = `${message}: what it wrote can still be used`;
      else if (cutShort && !ENDS_A_SENTENCE.test(written)) {
        resultState.textContent = "cut short at its length limit: to use in place of your passage, or discard";
      } else if (asked.action === "shorten" && words(written) >= words(asked.original)) {
        resultState.textContent = "no shorter than your passage: to use in its place, or discard";
      } else resultState.textContent = "to use in place of your passage, or discard";
      discardButton.disabled = false;
      if (!written) return;
      // Without the spaces the model put around it: the passage's own stay where they are.
      const lead = asked.original.match(/^\s*/)[0];
      const trail = asked.original.match(/\s*$/)[0];
      const placed = `${lead}${written}${trail}`;
      answer = { text: placed, node: keep(placed) };
      resultText.textContent = written;
      useButton.disabled = false;
    },
    label: (action) => LABELS[action],
  };
}
