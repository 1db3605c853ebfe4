// The story editor: a Quill editor (static/vendor) with autosave and conflict detection,
// and generation over the story socket with retry, alternatives and one undo history.
// The contract with the server is docs/protocol.md; the socket itself lives in
// story-socket.js, the side panels in panels.js.

import { UNAVAILABLE, api, errorMessage } from "./api.js";
import { initChoices } from "./choices.js";
import { fingerprint } from "./fingerprint.js";
import { initInspect } from "./inspect.js";
import { initPanels } from "./panels.js";
import { createStoryEditor } from "./story-editor.js";
import { createStorySocket } from "./story-socket.js";
import { initTools } from "./tools.js";
import { initTree } from "./tree.js";

const root = document.querySelector(".editor");
const story = JSON.parse(document.getElementById("story-data").textContent);
const siteDefaults = JSON.parse(document.getElementById("site-defaults").textContent);
const presets = JSON.parse(document.getElementById("presets").textContent);
const presetSelect = document.getElementById("preset");
const editor = createStoryEditor(document.getElementById("story"), story.text);
editor.setModelSpans(story.model_spans, { silent: true });
// Colouring the model's words is not a change of the writer's to undo.
editor.historyClear();
const titleInput = document.getElementById("title");
const memoryInput = document.getElementById("memory");
const noteInput = document.getElementById("note");
const noteDepthInput = document.getElementById("note-depth");
const allowTrainingInput = document.getElementById("allow-training");
const settingInputs = [...document.querySelectorAll("[data-setting]")];
const saveState = document.getElementById("save-state");
const genState = document.getElementById("gen-state");
const wordCount = document.getElementById("word-count");
const generateButton = document.getElementById("generate");
const stopButton = document.getElementById("stop");
const conflictBanner = document.getElementById("conflict");
const conflictReason = document.getElementById("conflict-reason");
const warningsBanner = document.getElementById("context-warnings");
const maxChars = Number(root.dataset.maxChars);

const SAVE_DELAY_MS = 1000;
const SAVE_AT_LEAST_EVERY_MS = 5000;
// A save the server could not take is tried again this often, kept in the browser meanwhile.
const SAVE_RETRY_MS = 3000;
const backupKey = `storyteller:story:${story.id}:unsaved`;
// "Saved" says so when settings typed wrong were left out of what was saved.
const SAVED = "Saved";
const SAVED_BUT_SETTINGS = "Saved; settings need fixing";

// ---- the story's fields ---------------------------------------------------------------

// Lists of strings (stop sequences, DRY's sequence breakers) are typed one per line, in a
// textarea, with \n for a line break.
const escapeLine = (item) => item.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
const unescapeLine = (line) => line.replace(/\\(n|\\)/g, (_, c) => (c === "n" ? "\n" : "\\"));
const isBias = (input) => input.dataset.setting === "bias";
const isList = (input) => input.tagName === "TEXTAREA" && !isBias(input);

// Word bias is typed one word a line, "word = amount"; a line that is not is kept as it
// is, for settingProblem to name.
function readBias(input) {
  const bias = {};
  const wrong = [];
  input.value.split("\n").forEach((line, at) => {
    if (!line.trim()) return;
    const match = line.match(/^(.*\S)\s*=\s*(-?\d+(?:\.\d+)?)\s*$/);
    if (match && match[1].trim()) bias[match[1].trim()] = Number(match[2]);
    else wrong.push(at + 1);
  });
  return { bias, wrong };
}

function readSetting(input) {
  if (isBias(input)) return readBias(input).bias;
  if (isList(input)) {
    return input.value.split("\n").filter((line) => line.length > 0).map(unescapeLine);
  }
  if (input.type === "checkbox") return input.checked;
  return input.value.trim() === "" ? NaN : Number(input.value);
}

// ---- settings, checked at their fields: a wrong one is marked where it is typed and never
// sent, so it cannot stop the story from saving; the story keeps its saved value for it.

const FIX_SETTINGS = "Fix the settings first:";
// Problems the server found that the page's own checks did not, by setting, until edited.
const serverProblems = {};
const settingsSummary = document.getElementById("settings-problems");
const settingsTab = document.querySelector('[data-panel="settings"]');

const settingLabel = (input) => input.labels[0].firstChild.textContent.trim();

// What is wrong with a setting, in words a writer reads, or "". The number inputs carry
// the site's ranges (min, max, step); the stop list carries its limits.
function settingProblem(input) {
  const name = input.dataset.setting;
  const label = settingLabel(input);
  if (isBias(input)) {
    const { bias, wrong } = readBias(input);
    const most = Number(input.dataset.max);
    const words = Object.keys(bias);
    if (wrong.length) return `${label}: line ${wrong[0]} must be a word, "=" and a number, such as "dragon = -5".`;
    if (words.length > Number(input.dataset.maxLines)) return `${label}: at most ${input.dataset.maxLines} words.`;
    const outside = words.find((word) => Math.abs(bias[word]) > most);
    if (outside) return `${label}: ${outside} must be from -${most} to ${most}.`;
  } else if (isList(input)) {
    const lines = readSetting(input);
    const most = Number(input.dataset.maxLines);
    const longest = Number(input.dataset.maxChars);
    if (lines.length > most) return `${label}: at most ${most} lines.`;
    if (lines.some((line) => line.length > longest)) return `${label}: at most ${longest} characters a line.`;
  } else if (input.type !== "checkbox") {
    const value = readSetting(input);
    const whole = input.step === "1";
    if (Number.isNaN(value) || (whole && !Number.isInteger(value)) || value < Number(input.min) || value > Number(input.max)) {
      return `${label} must be ${whole ? "a whole number" : "a number"} from ${input.min} to ${input.max}.`;
    }
  }
  return serverProblems[name] || "";
}

// Marks every setting with its problem; returns the problems.
function checkSettings() {
  const problems = [];
  for (const input of settingInputs) {
    const problem = settingProblem(input);
    const note = document.getElementById(input.getAttribute("aria-describedby"));
    note.textContent = problem;
    note.hidden = !problem;
    input.setAttribute("aria-invalid", problem ? "true" : "false");
    if (problem) problems.push(problem);
  }
  const count = problems.length;
  settingsSummary.hidden = count === 0;
  settingsSummary.textContent =
    count === 0
      ? ""
      : `${count === 1 ? "One setting needs" : `${count} settings need`} fixing. Until then the story keeps its saved ${count === 1 ? "value" : "values"}, and Generate waits.`;
  settingsTab.classList.toggle("has-problem", count > 0);
  if ([SAVED, SAVED_BUT_SETTINGS].includes(saveState.textContent)) showSaved();
  if (count === 0 && genState.textContent.startsWith(FIX_SETTINGS)) genState.textContent = "";
  return problems;
}

for (const input of settingInputs) {
  const note = document.createElement("span");
  note.id = `${input.id}-problem`;
  note.className = "field-problem";
  note.hidden = true;
  input.labels[0].append(note);
  input.setAttribute("aria-describedby", note.id);
}

const chosenPreset = () => presets.find((preset) => String(preset.id) === presetSelect.value) || null;

function showPresetDescription() {
  const preset = chosenPreset();
  document.getElementById("preset-description").textContent = preset ? preset.description : "";
}

function writeSettings(values) {
  const preset = chosenPreset();
  const shown = { ...siteDefaults, ...(preset ? preset.params : {}), ...values };
  for (const input of settingInputs) {
    const value = shown[input.dataset.setting];
    if (isBias(input)) input.value = Object.entries(value || {}).map(([word, amount]) => `${word} = ${amount}`).join("\n");
    else if (isList(input)) input.value = (value || []).map(escapeLine).join("\n");
    else if (input.type === "checkbox") input.checked = Boolean(value);
    else input.value = value ?? "";
  }
}

const withoutInputs = (values) =>
  Object.fromEntries(Object.entries(values || {}).filter(([name]) => !settingInputs.some((i) => i.dataset.setting === name)));

// Whose the settings are: "saved", as the server has them until the writer changes one
// (an empty object follows the preset and the site's defaults); "own", every input's value
// once the writer changes one; "preset", none of the inputs' values once the writer asks
// for the preset's again (what the panel has no input for, such as a seed set through
// the API, is kept).
let settingsMode = Object.keys(story.settings).length > 0 ? "own" : "saved";

const fields = {
  text: { get: () => editor.text(), set: (v) => editor.setText(v) },
  title: { get: () => titleInput.value, set: (v) => (titleInput.value = v) },
  memory: { get: () => memoryInput.value, set: (v) => (memoryInput.value = v) },
  note: { get: () => noteInput.value, set: (v) => (noteInput.value = v) },
  note_depth: { get: () => Number(noteDepthInput.value), set: (v) => (noteDepthInput.value = v) },
  allow_training: { get: () => allowTrainingInput.checked, set: (v) => (allowTrainingInput.checked = v) },
  preset: {
    get: () => (presetSelect.value ? Number(presetSelect.value) : null),
    set: (v) => {
      presetSelect.value = v === null ? "" : String(v);
      showPresetDescription();
    },
  },
  settings: {
    // What the panel shows, over the story's settings it has no input for (a seed set
    // through the API), which a save must not drop. A setting with a problem keeps its
    // saved value.
    get: () => {
      if (settingsMode === "saved") return saved.settings;
      const values = withoutInputs(saved.settings);
      if (settingsMode === "preset") return values;
      for (const input of settingInputs) {
        const name = input.dataset.setting;
        if (!settingProblem(input)) values[name] = readSetting(input);
        else if (name in saved.settings) values[name] = saved.settings[name];
      }
      return values;
    },
    set: (v) => {
      settingsMode = Object.keys(v).length > 0 ? "own" : "saved";
      writeSettings(v);
      for (const name of Object.keys(serverProblems)) delete serverProblems[name];
      checkSettings();
    },
  },
  // After text: the spans index into it.
  model_spans: { get: () => editor.modelSpans(), set: (v) => editor.setModelSpans(v) },
};

// The page shows the settings in its inputs' own terms (a list's line breaks as \n).
writeSettings(story.settings);

let revision = story.revision;
let saved = Object.fromEntries(Object.keys(fields).map((name) => [name, story[name]]));
let saveTimer = null;
let saving = null;
let conflict = null;

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

function changes() {
  const changed = {};
  for (const [name, field] of Object.entries(fields)) {
    const value = field.get();
    if (!same(value, saved[name])) changed[name] = value;
  }
  return changed;
}

const dirty = () => Object.keys(changes()).length > 0;

function setSaveState(text) {
  saveState.textContent = text;
}

// Saved, and saying so when settings typed wrong were left out of what was saved.
function showSaved() {
  setSaveState(settingsTab.classList.contains("has-problem") ? SAVED_BUT_SETTINGS : SAVED);
}

function store(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // The browser's storage is full or off: the server still gets every save.
  }
}

function backUp() {
  store(backupKey, { revision, changes: changes() });
}

// ---- this tab's own saves ---------------------------------------------------------------
// A reload's keep-alive save, or a save on its way when the page was reloaded, can land
// after the next page has loaded that same story. The version it made is this tab's own,
// not another tab's: each save leaves a fingerprint here, with the tab's id (kept in
// sessionStorage, which a reload keeps and other tabs do not share), and a version that
// matches one of this tab's is built on instead of shown as a conflict.

const sentKey = `storyteller:story:${story.id}:sent`;
const SENT_KEPT = 10;
const tabKey = "storyteller:tab";
const tabId = sessionStorage.getItem(tabKey) || `${Date.now()}-${Math.random().toString(36).slice(2)}`;
sessionStorage.setItem(tabKey, tabId);

// JSON with sorted keys: the server may keep an object's keys in another order.
function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(",")}]`;
  if (value && typeof value === "object") {
    return `{${Object.keys(value).sort().map((key) => `${JSON.stringify(key)}:${canonical(value[key])}`).join(",")}}`;
  }
  return JSON.stringify(value ?? null);
}

// The server tidies a title (trims it, names an empty one), so it is left out.
const fieldsPrint = (names, values) => fingerprint(canonical(names.map((name) => values[name])));

function sentSaves() {
  try {
    return JSON.parse(localStorage.getItem(sentKey) || "[]");
  } catch {
    return [];
  }
}

function rememberSent(body) {
  const names = Object.keys(body).filter((name) => name !== "base_revision" && name !== "title");
  const entry = { tab: tabId, base: body.base_revision, names, print: fieldsPrint(names, body) };
  store(sentKey, [...sentSaves(), entry].slice(-SENT_KEPT));
  return entry;
}

function forgetSent(entry) {
  store(
    sentKey,
    sentSaves().filter((other) => other.tab !== entry.tab || other.base !== entry.base || other.print !== entry.print),
  );
}

// Whether this version of the story was made by one of this tab's saves.
const isOwnSave = (data) =>
  sentSaves().some(
    (entry) => entry.tab === tabId && entry.base + 1 === data.revision && entry.print === fieldsPrint(entry.names, data),
  );

// Takes the server's version as the one the page's changes are on top of.
function rebaseOn(data) {
  revision = data.revision;
  saved = Object.fromEntries(Object.keys(fields).map((name) => [name, data[name]]));
}

// Saves a second after the last change, and at least every few seconds while changes keep
// coming (a continuation streaming in, a writer typing without a pause).
let unsavedSince = null;

function scheduleSave() {
  updateWordCount();
  if (dirty()) {
    setSaveState("Unsaved changes");
    backUp();
    unsavedSince ??= Date.now();
  }
  clearTimeout(saveTimer);
  const waited = unsavedSince === null ? 0 : Date.now() - unsavedSince;
  saveTimer = setTimeout(save, Math.max(0, Math.min(SAVE_DELAY_MS, SAVE_AT_LEAST_EVERY_MS - waited)));
}

async function save({ keepalive = false } = {}) {
  clearTimeout(saveTimer);
  if (conflict || !dirty()) return;
  if (saving) {
    await saving;
    return save({ keepalive });
  }
  const body = { ...changes(), base_revision: revision };
  // The server forgets the model's passages when the text changes without them.
  if ("text" in body) body.model_spans = fields.model_spans.get();
  const sent = rememberSent(body);
  unsavedSince = null;
  let again = false;
  setSaveState("Saving...");
  saving = (async () => {
    try {
      const result = await api("PUT", `/api/stories/${story.id}/`, body, { keepalive });
      if (result.ok) {
        forgetSent(sent);
        revision = result.data.revision;
        for (const name of Object.keys(fields)) if (name in body) saved[name] = body[name];
        if (!dirty()) localStorage.removeItem(backupKey);
        if (dirty()) setSaveState("Unsaved changes");
        else showSaved();
        // Memory, the note and the settings are read from the saved story.
        scheduleContext();
      } else if (result.status === 409 && isOwnSave(result.data.story)) {
        // An earlier save of this tab landed after this page had loaded.
        forgetSent(sent);
        rebaseOn(result.data.story);
        again = true;
      } else if (result.status === 409) {
        forgetSent(sent);
        showConflict(result.data.story);
      } else if (UNAVAILABLE.includes(result.status)) {
        // The fingerprint stays: the save may have landed before its answer was lost.
        setSaveState("Server unavailable: kept in this browser");
        saveTimer = setTimeout(save, SAVE_RETRY_MS);
      } else {
        forgetSent(sent);
        again = markServerProblem(result);
        if (!again) setSaveState(`Not saved: ${errorMessage(result)}`);
      }
    } catch {
      setSaveState("Offline: kept in this browser");
      saveTimer = setTimeout(save, SAVE_RETRY_MS);
    } finally {
      saving = null;
    }
  })();
  await saving;
  if (again) return save({ keepalive });
  // Words typed while the save was on its way go in the next one.
  if (saveState.textContent === "Unsaved changes") scheduleSave();
}

// A setting the server refused is marked at its field, and the rest is saved without it;
// returns whether there is something to save again.
function markServerProblem(result) {
  const field = (result.data && result.data.error && result.data.error.field) || "";
  const input = settingInputs.find((i) => field === `settings.${i.dataset.setting}`);
  if (!input || serverProblems[input.dataset.setting]) return false;
  serverProblems[input.dataset.setting] = `${settingLabel(input)}: ${errorMessage(result).replace(/^settings\.\w+: /, "")}`;
  checkSettings();
  return true;
}

const CONFLICT_REASONS = {
  elsewhere: "This story was changed in another tab or device.",
  offline: "What you wrote here while offline was kept in this browser, and the story has changed on the server since.",
};

function showConflict(theirs, reason = "elsewhere") {
  conflict = theirs;
  conflictReason.textContent = CONFLICT_REASONS[reason];
  conflictBanner.hidden = false;
  document.getElementById("conflict-mine").textContent = editor.text();
  document.getElementById("conflict-theirs").textContent = theirs.text;
  setSaveState("Not saved: conflict");
}

// Shows a story from the server (another tab's version, a restored revision) as saved.
function loadStory(data) {
  revision = data.revision;
  for (const [name, field] of Object.entries(fields)) field.set(data[name]);
  saved = Object.fromEntries(Object.keys(fields).map((name) => [name, data[name]]));
  localStorage.removeItem(backupKey);
  showSaved();
  updateWordCount();
}

document.getElementById("keep-mine").addEventListener("click", () => {
  revision = conflict.revision;
  conflict = null;
  conflictBanner.hidden = true;
  save();
});

// Both versions' words, for the writer to edit, line by line: the lines the two share,
// once and in order (their longest common run), and where they differ, the other version's
// lines, then this page's, a blank line apart.
function mergeTexts(mine, theirs) {
  if (mine === theirs) return mine;
  const ours = mine.split("\n");
  const other = theirs.split("\n");
  const width = other.length + 1;
  // shared[i * width + j]: the longest common run of ours from i and other from j.
  const shared = new Uint32Array((ours.length + 1) * width);
  for (let i = ours.length - 1; i >= 0; i--) {
    for (let j = other.length - 1; j >= 0; j--) {
      shared[i * width + j] =
        ours[i] === other[j]
          ? shared[(i + 1) * width + j + 1] + 1
          : Math.max(shared[(i + 1) * width + j], shared[i * width + j + 1]);
    }
  }
  const merged = [];
  let onlyOurs = [];
  let onlyOther = [];
  const settle = () => {
    const apart = onlyOther.length && onlyOurs.length && onlyOther.at(-1) !== "" && onlyOurs[0] !== "";
    merged.push(...onlyOther, ...(apart ? [""] : []), ...onlyOurs);
    onlyOurs = [];
    onlyOther = [];
  };
  let i = 0;
  let j = 0;
  while (i < ours.length && j < other.length) {
    if (ours[i] === other[j]) {
      settle();
      merged.push(ours[i]);
      i++;
      j++;
    } else if (shared[(i + 1) * width + j] >= shared[i * width + j + 1]) {
      onlyOurs.push(ours[i++]);
    } else {
      onlyOther.push(other[j++]);
    }
  }
  onlyOurs.push(...ours.slice(i));
  onlyOther.push(...other.slice(j));
  settle();
  return merged.join("\n");
}

document.getElementById("merge-both").addEventListener("click", () => {
  const merged = mergeTexts(editor.text(), conflict.text);
  revision = conflict.revision;
  conflict = null;
  conflictBanner.hidden = true;
  // The last continuation's place in the text is gone: no Retry or alternatives of it.
  last = null;
  updateButtons();
  editor.setText(merged);
  // The model's passages cannot be followed through a merge; the text is the writer's now.
  editor.setModelSpans([]);
  scheduleSave();
});

document.getElementById("load-theirs").addEventListener("click", () => {
  const theirs = conflict;
  conflict = null;
  conflictBanner.hidden = true;
  loadStory(theirs);
  last = null;
  updateButtons();
});

// The story's own settings give way to its preset's (and the site's) values, shown and saved.
function followPreset() {
  fields.settings.set({});
  settingsMode = "preset";
  scheduleSave();
}

document.getElementById("settings-reset").addEventListener("click", followPreset);

// Choosing a preset shows its values; the story's own changes start again from them.
presetSelect.addEventListener("change", () => {
  showPresetDescription();
  followPreset();
});
showPresetDescription();

// The story's length in tokens, as the model's tokenizer counted it last (the context bar).
let storyTokens = null;

// The story's token count moved by a version's tokens in place of another's, when this
// page knows both (the worker's next count of the text is exact either way).
function countTokens(added, removed = 0) {
  if (storyTokens === null || added === undefined || removed === undefined) return;
  storyTokens += added - removed;
  updateWordCount();
}

function updateWordCount() {
  const words = editor.text().trim().split(/\s+/).filter(Boolean).length;
  const tokens = storyTokens === null ? "" : ` · ${storyTokens.toLocaleString()} ${storyTokens === 1 ? "token" : "tokens"}`;
  wordCount.textContent = `${words} ${words === 1 ? "word" : "words"}${tokens}`;
}

editor.onChange(scheduleSave);
editor.onBlur(() => save());
for (const input of [titleInput, memoryInput, noteInput, noteDepthInput]) {
  input.addEventListener("input", scheduleSave);
  input.addEventListener("blur", () => save());
}
allowTrainingInput.addEventListener("change", () => save());
// Whether the writer changed a setting on this visit (a saved value the site's limits no
// longer allow is nothing they would lose by leaving).
let settingsTyped = false;
for (const input of settingInputs) {
  input.addEventListener("input", () => {
    settingsTyped = true;
    settingsMode = "own";
    delete serverProblems[input.dataset.setting];
    checkSettings();
    scheduleSave();
  });
}
window.addEventListener("beforeunload", (event) => {
  if (dirty()) {
    save({ keepalive: true });
    event.preventDefault();
  } else if ((settingsTyped && settingsTab.classList.contains("has-problem")) || panels.loreRefused()) {
    // What the writer typed wrong is kept nowhere but in its field: the page asks first.
    event.preventDefault();
  }
});
window.addEventListener("online", () => save());

// A previous visit's changes that never reached the server come back first: on the version
// they were made on, or on the one that visit's own last save made.
// If the server's version has moved on since, they are shown as a conflict, never dropped.
const backup = JSON.parse(localStorage.getItem(backupKey) || "null");
if (backup && backup.revision + 1 === revision && isOwnSave(story)) backup.revision = revision;
if (backup && backup.changes) {
  const moved = backup.revision !== revision;
  // As for a conflict met while saving, the changes stay on the version they were made on
  // (set first: the fields' changes below back them up again).
  if (moved) revision = backup.revision;
  for (const [name, value] of Object.entries(backup.changes)) {
    if (name in fields) fields[name].set(value);
  }
  if (!moved) scheduleSave();
  else if (dirty()) showConflict(story, "offline");
  else {
    revision = story.revision;
    localStorage.removeItem(backupKey);
  }
}
updateWordCount();
checkSettings();

// ---- where the writer was ----------------------------------------------------------------

// A story opens where the writer last worked in it (where they placed the cursor, typed or
// pasted, or the end of the last continuation), or at its end, where a continuation goes:
// a long story does not reopen at its first line. Only the view moves; the cursor is the
// writer's to place (Generate "at the cursor" waits for it).
const placeKey = `storyteller:story:${story.id}:place`;
const dock = document.querySelector(".dock");
const rememberPlace = (index) => store(placeKey, index);
const place = Number.parseInt(localStorage.getItem(placeKey), 10);
const textLength = editor.text().length;
requestAnimationFrame(() => editor.reveal(place >= 0 && place <= textLength ? place : textLength, dock.offsetHeight));
editor.onSelection((range) => rememberPlace(range.index));
// Typing and pasting move the cursor without a selection change: the place is the end of
// what they changed.
editor.onUserEdit((from, to, shift) => rememberPlace(to + shift));

// ---- generating ---------------------------------------------------------------------

// The generation streaming in, while storySocket follows it: {insertAt, text, retry, kind,
// recording, replaying, reading, cutShort, tokens}; `reading` is what the status says
// while the model reads the story, until its first word; `kind` is the try's kind in the
// story's tree; once it is done, `cutShort` says whether it ended at its length limit and
// `tokens` how many it wrote.
let current = null;
// The last continuation, while it is intact: where it starts, the text it followed, and
// every version of it, to browse: its alternatives in the story's tree, with their nodes'
// ids (null until the server has saved the node) and their token counts (undefined where
// this page did not write the version).
let last = null; // {start, prompt, versions: [text], ids: [id], tokens: [count], shown}

const retryButton = document.getElementById("retry");
const alternatives = document.getElementById("alternatives");
const altPosition = document.getElementById("alt-position");

const storySocket = createStorySocket(story.id, {
  open() {
    genState.textContent = current ? "Reconnected" : "";
    updateButtons();
    scheduleContext();
  },
  close() {
    generateButton.disabled = retryButton.disabled = true;
    genState.textContent = "Connection lost; reconnecting...";
  },
  queued(message) {
    // Position 1 is the next to start: it waits for a free place, usually a moment. A
    // late `queued` that says it runs does not hide how far the model has read.
    if (message.position > 1) genState.textContent = `Queued (${message.position - 1} ahead)`;
    else if (message.position === 1) genState.textContent = "Waiting for the model...";
    else genState.textContent = current?.reading || (current?.text ? "Writing..." : "Starting...");
  },
  reading(message) {
    current.reading = `Reading your story... ${Math.round((100 * message.done) / message.total)}%`;
    genState.textContent = current.reading;
  },
  token(message) {
    current.reading = null;
    if (!storySocket.stopping()) genState.textContent = "Writing...";
    if (current.tool) {
      current.text += message.text;
      tools.token(message.text);
    } else {
      insert(message.text);
    }
  },
  done(message) {
    const reasons = { length: "Done", stop: "Done", eos: "Done", cancelled: "Stopped" };
    showWarnings(message.context);
    // A continuation's tokens join the story's count at once (a Retry's in place of the
    // version it replaced, when this page wrote that one); a worker's count of the whole
    // text follows a moment later.
    current.tokens = message.stats?.new_tokens;
    const replaced = current.retry ? last?.tokens[last.shown] : 0;
    if (!current.tool && (current.tokens || !current.retry)) countTokens(current.tokens, replaced);
    if (current.recording) addChoices(message.generation_id);
    current.cutShort = message.finish_reason === "length";
    finish(reasons[message.finish_reason] || "The model failed; try again", message.generation_id);
    panels.generationDone();
  },
  refused: (message) => finish(message.message),
  error(message) {
    genState.textContent = message.message;
  },
  inspection: (message) => inspect.handle(message),
  context: (message) => panels.contextAnswer(message) || showContext(message),
});
const connected = () => storySocket.connected();

function updateButtons() {
  generateButton.disabled = Boolean(current) || !connected();
  retryButton.disabled = Boolean(current) || !connected() || !last;
  stopButton.disabled = !current || storySocket.stopping();
  document.getElementById("undo").disabled = Boolean(current) || !editor.canUndo();
  document.getElementById("redo").disabled = Boolean(current) || !editor.canRedo();
  alternatives.hidden = !last || last.versions.length < 2;
  if (last) altPosition.textContent = `${last.shown + 1} of ${last.versions.length}`;
  document.getElementById("alt-prev").disabled = Boolean(current) || !last || last.shown === 0;
  document.getElementById("alt-next").disabled = Boolean(current) || !last || last.shown === last.versions.length - 1;
  if (current) document.getElementById("selection-tools").hidden = true;
}

function params({ freshSeed = false } = {}) {
  const values = Object.fromEntries(settingInputs.map((input) => [input.dataset.setting, readSetting(input)]));
  // Retry asks for another continuation, even when the story's settings fix the seed.
  if (freshSeed) values.seed = Math.floor(Math.random() * 2 ** 31);
  return values;
}

// Generate waits for settings with a problem, and says which.
function settingsReady() {
  const problems = checkSettings();
  if (problems.length === 0) return true;
  genState.textContent = `${FIX_SETTINGS} ${problems.join(" ")}`;
  if (settingsTab.getAttribute("aria-expanded") !== "true") settingsTab.click();
  return false;
}

async function start({ insertAt, prompt, retry, firstToken = null }) {
  // The text before this try, with the try it went on from, for an Undo that comes back.
  tree.remember();
  const kind = retry ? "retry" : firstToken !== null ? "candidate" : "generation";
  current = { insertAt, text: "", retry, kind, recording: false };
  storySocket.begin();
  choices.pause(true);
  editor.lock(true);
  editor.historyGroup(true);
  warningsBanner.hidden = true;
  genState.textContent = "Waiting for the model...";
  updateButtons();
  // Memory, note and lore are read by the worker from the saved story.
  await save();
  if (storySocket.stopping()) {
    // Stopped while the story was being saved: nothing was asked of the model.
    finish("Stopped");
    return;
  }
  const text = prompt.slice(Math.max(0, prompt.length - maxChars));
  const asked = params({ freshSeed: retry });
  if (firstToken !== null) asked.first_token = firstToken;
  current.recording = asked.record_choices === true;
  storySocket.generate(text, asked);
}

// Generate continues the story from its end, or from the cursor when the writer asks.
const atCursor = document.getElementById("at-cursor");
const atCursorKey = "storyteller:generate-at-cursor";
atCursor.checked = localStorage.getItem(atCursorKey) === "1";
atCursor.addEventListener("change", () => localStorage.setItem(atCursorKey, atCursor.checked ? "1" : "0"));

// Letters, digits and the apostrophes inside words; a low surrogate is the rest of a character.
const inWord = (text, at) => /[\p{L}\p{M}\p{N}'\u2019]/u.test(text[at] || "") || /[\uDC00-\uDFFF]/.test(text[at] || "");

// The cursor moved past the end of the word it is in, so that a continuation never splits one.
function afterWord(text, at) {
  if (at === 0 || !inWord(text, at - 1)) return at;
  while (at < text.length && inWord(text, at)) at++;
  return at;
}

// Openings offered to a writer who pressed Generate on an empty story.
const EXAMPLE_OPENINGS = [
  "The lighthouse keeper found the letter on the stairs, though no boat had come in a week.",
  "Mara had promised her grandmother she would never open the blue door. On the morning of the storm, it was open.",
  "The last train out of the city was late, and the man across from me had not blinked since we left.",
];
const emptyHint = document.getElementById("empty-hint");

document.getElementById("use-example").addEventListener("click", () => {
  editor.setText(EXAMPLE_OPENINGS[Math.floor(Math.random() * EXAMPLE_OPENINGS.length)]);
  emptyHint.hidden = true;
  editor.focusEnd();
});
editor.onChange(() => {
  if (!emptyHint.hidden && editor.text().trim()) emptyHint.hidden = true;
});

// A selection tool's answer (tools.js asks): the story's text before the passage, or all of
// it for a summary, with the tool; the answer streams into the tool's box. Returns whether
// it was asked.
function runTool({ tool, text, maxNewTokens }) {
  if (current || !connected() || !settingsReady()) return false;
  current = { insertAt: 0, text: "", retry: false, kind: "tool", tool: tool.action, recording: false };
  storySocket.begin();
  choices.pause(true);
  editor.lock(true);
  warningsBanner.hidden = true;
  genState.textContent = `${tools.label(tool.action)}: waiting for the model...`;
  updateButtons();
  (async () => {
    await save();
    if (storySocket.stopping()) {
      finish("Stopped");
      return;
    }
    // A fresh seed each time, and no stop sequences: an answer may run to several paragraphs.
    const asked = { ...params({ freshSeed: true }), max_new_tokens: maxNewTokens, stop: [], record_choices: false };
    storySocket.generate(text.slice(Math.max(0, text.length - maxChars)), asked, tool);
  })();
  return true;
}

function generate() {
  if (current || !connected() || !settingsReady()) return;
  const text = editor.text();
  // Nothing to continue: the model would write whatever it likes. Say what helps instead.
  if (!text.trim()) {
    emptyHint.hidden = false;
    return;
  }
  const insertAt = atCursor.checked ? afterWord(text, editor.cursor()) : text.length;
  last = null;
  start({ insertAt, prompt: text.slice(0, insertAt), retry: false });
}

function retry() {
  if (current || !connected() || !last || !settingsReady()) return;
  // The old continuation goes in the same undo step as the new one: Undo brings it back.
  editor.historyGroup(true);
  editor.replaceModelText(last.start, last.versions[last.shown].length, "");
  start({ insertAt: last.start, prompt: last.prompt, retry: true });
}

function show(index) {
  if (current || !last || index < 0 || index >= last.versions.length) return;
  countTokens(last.tokens[index], last.tokens[last.shown]);
  editor.replaceModelText(last.start, last.versions[last.shown].length, last.versions[index]);
  last.shown = index;
  if (last.ids[index] !== null) tree.setCurrent(last.ids[index]);
  updateButtons();
}

// Stop is taken at once: shown, and sent as soon as the generation has an id (a Stop
// pressed before the server has answered is sent when it does, by storySocket).
function stop() {
  if (!current || storySocket.stopping()) return;
  storySocket.stop();
  genState.textContent = "Stopping...";
  updateButtons();
}

// How much of `text` the model's passage at `at` already holds: a generation followed again
// after a reload replays words that autosave, or the last visit's backup, already put there.
// Only the model's own words count (and line breaks, which carry no colour), never the
// writer's text after them.
function alreadyThere(at, text) {
  const have = editor.text();
  let same = 0;
  while (same < text.length && have[at + same] === text[same] && (text[same] === "\n" || editor.isModelAt(at + same))) {
    same++;
  }
  return same;
}

function insert(text) {
  if (current.replaying) {
    const same = alreadyThere(current.insertAt, text);
    current.insertAt += same;
    current.text += text.slice(0, same);
    text = text.slice(same);
    if (!text) return;
    current.replaying = false;
  }
  // The words are shown as they come: from the first, and after it as long as the writer
  // keeps them on screen (one who scrolls away to read is left there).
  const follow = !current.text || editor.isOnScreen(current.insertAt);
  editor.insertModelText(current.insertAt, text);
  current.insertAt += text.length;
  current.text += text;
  if (follow) editor.reveal(current.insertAt, dock.offsetHeight);
}

function finish(message, generationId = null) {
  const done = current;
  current = null;
  storySocket.end();
  if (done.tool) {
    // A selection tool's answer went to its own box; the story is as it was.
    editor.lock(false);
    genState.textContent = message;
    choices.pause(false);
    updateButtons();
    tools.done(done.text, message, Boolean(done.cutShort));
    return;
  }
  if (done.text) {
    const start = done.insertAt - done.text.length;
    if (done.retry && last) {
      last.versions.push(done.text);
      last.ids.push(null);
      last.tokens.push(done.tokens);
    } else {
      last = { start, prompt: editor.text().slice(0, start), versions: [done.text], ids: [null], tokens: [done.tokens] };
    }
    last.shown = last.versions.length - 1;
    keepTry(done.kind, start, done.insertAt, generationId);
    rememberPlace(done.insertAt);
  } else if (done.retry && last) {
    // A retry that wrote nothing puts the version it replaced back.
    editor.replaceModelText(last.start, 0, last.versions[last.shown]);
  }
  editor.historyGroup(false);
  editor.lock(false);
  genState.textContent = message;
  choices.pause(false);
  updateButtons();
  save();
}

// Every try is saved as a node of the story's tree, from the editor's text as it is when
// the try ends; the arrows learn the node's id when the server answers.
async function keepTry(kind, start, end, generationId = null) {
  const entry = last;
  const index = last.shown;
  const node = await tree.add({ kind, start, end, generationId });
  if (!node) return;
  entry.ids[index] = node.id;
  // The writer left this version for another and came back to it while it was on its
  // way: the server is told it is the current try again, after the other.
  if (last === entry && entry.shown === index && tree.current()?.id !== node.id) tree.setCurrent(node.id);
  // The tree may hold more alternatives of this place than this page wrote (a try made
  // there before, on this visit or another): the arrows show them all.
  const versions = tree.alternatives(node.id);
  if (last === entry && versions.length > entry.versions.length) {
    const counted = new Map(entry.ids.map((id, at) => [id, entry.tokens[at]]));
    entry.versions = versions.map((version) => version.words);
    entry.ids = versions.map((version) => version.id);
    entry.tokens = versions.map((version) => counted.get(version.id));
    entry.shown = entry.ids.indexOf(node.id);
    updateButtons();
  }
}

// The alternatives of a node of the tree, shown in the editor, for the arrows and Retry.
function lastOf(node) {
  const versions = tree.alternatives(node.id);
  return {
    start: node.start,
    prompt: editor.text().slice(0, node.start),
    versions: versions.map((version) => version.words),
    tokens: [],
    ids: versions.map((version) => version.id),
    shown: versions.findIndex((version) => version.id === node.id),
  };
}

// Whether a try's words are in the editor where it left them, still the model's.
function inPlace(node) {
  return editor.text().slice(node.start, node.end) === node.words && editor.isModelRun(node.start, node.end);
}

// A try opened in the Tree panel becomes the story's text, as one step Undo takes back.
function makeCurrent(node) {
  if (current) return;
  // The text now and its try, for an Undo that comes back to them.
  tree.remember();
  editor.historyGroup(true);
  editor.setText(node.text);
  editor.setModelSpans(node.model_spans);
  editor.historyGroup(false);
  tree.setCurrent(node.id);
  last = lastOf(node);
  updateButtons();
  // The try's words are brought into view, wherever the writer was reading.
  editor.reveal(node.end, dock.offsetHeight);
}

// On a new visit, the arrows and Retry come back for the current try of the tree while its
// words are still where it left them, the model's, after the same text.
async function followTree() {
  if (!(await tree.load())) return;
  const node = tree.current();
  if (!node || current || last || editor.text().slice(node.start, node.end) !== node.words) return;
  const whole = await tree.get(node.id).catch(() => null);
  if (!whole || !whole.ok || current || last) return;
  if (editor.text().slice(0, node.end) !== whole.data.text.slice(0, node.end) || !inPlace(node)) return;
  tree.remember();
  last = lastOf(node);
  updateButtons();
}

// An undo or redo may take the continuation away or bring another back: Retry and the
// arrows start again from the next generation, unless it brings back a text a try was
// current for (an Undo of a generation, of Make current, of a Redo): that try is current
// again, with its arrows and Retry while its words are still the model's.
editor.onHistory(() => {
  if (current) return;
  last = null;
  const node = tree.follow();
  if (node && inPlace(node)) last = lastOf(node);
  updateButtons();
});

// The writer's own edits: a continuation they changed is no longer one Retry may replace,
// and one before it moves it.
editor.onUserEdit((from, to, shift) => {
  if (!last) return;
  const end = last.start + last.versions[last.shown].length;
  if (to < last.start) last.start += shift;
  else if (from <= end) last = null;
  updateButtons();
});

function showWarnings(context) {
  const warnings = (context && context.warnings) || [];
  warningsBanner.textContent = warnings.join(" ");
  warningsBanner.hidden = warnings.length === 0;
  showWindowNote(context);
}

// A story longer than the model's window: how much of it the model read.
function showWindowNote(context) {
  const note = document.getElementById("window-note");
  const trimmed = (context && context.trimmed_tokens) || 0;
  const kept = trimmed ? context.parts.filter((part) => part.kind === "story").reduce((sum, part) => sum + part.tokens, 0) : 0;
  note.hidden = trimmed === 0;
  if (!trimmed) return;
  const share = Math.round((100 * kept) / (kept + trimmed));
  note.textContent =
    `This story is longer than the model reads at once: it read the last ${kept.toLocaleString()} ` +
    `of its ${(kept + trimmed).toLocaleString()} tokens (${share}%). "What the model saw" shows where it starts.`;
}

const inspect = initInspect({
  send: (message) => storySocket.inspect(message),
  selection: () => editor.selection(),
});

const choices = initChoices({
  root: document.getElementById("story"),
  editor,
  onRewrite({ at, end, firstToken }) {
    if (current || !connected()) return;
    // The continuation from the chosen word on is replaced by one that starts with it;
    // what follows the continuation stays.
    editor.historyGroup(true);
    editor.replaceModelText(at, end - at, "");
    last = null;
    start({ insertAt: at, prompt: editor.text().slice(0, at), retry: false, firstToken });
  },
});

// The candidates of continuations written in earlier visits (or offered on return).
api("GET", `/api/stories/${story.id}/generations/?choices=1&limit=50`).then((result) => {
  if (result.ok) choices.add(...result.data.generations);
});

async function addChoices(generationId) {
  const result = await api("GET", `/api/stories/${story.id}/generations/${generationId}/`);
  if (result.ok) choices.add(result.data);
}

generateButton.addEventListener("click", generate);
stopButton.addEventListener("click", stop);
retryButton.addEventListener("click", retry);
document.getElementById("alt-prev").addEventListener("click", () => show(last.shown - 1));
document.getElementById("alt-next").addEventListener("click", () => show(last.shown + 1));
document.getElementById("undo").addEventListener("click", () => editor.undo());
document.getElementById("redo").addEventListener("click", () => editor.redo());
// Undo and Redo are offered only when there is something to undo or redo. The history
// changes after Quill's own text-change handlers, so the buttons follow a moment later.
editor.onChange(() => setTimeout(updateButtons));
editor.onHistory(() => setTimeout(updateButtons));

// ---- the context bar: how the model's window would be spent on the story now ------------
// Asked of a worker over the socket (the model's own tokenizer counts), a moment after the
// story, its settings or what is saved beside it last changed; only the latest answer counts.

const CONTEXT_DELAY_MS = 800;
const contextBar = document.getElementById("context-bar");
const contextMeter = contextBar.querySelector(".context-meter");
const contextCached = contextBar.querySelector(".context-cached");
const contextLegend = document.getElementById("context-legend");
const contextWarning = document.getElementById("context-warning");
let contextTimer = null;
let contextAsked = null;
let contextKey = null;

function scheduleContext() {
  clearTimeout(contextTimer);
  contextTimer = setTimeout(askContext, CONTEXT_DELAY_MS);
}

// The continuation's length as the settings say now; undefined for the story's own.
function wantedNewTokens() {
  const length = readSetting(document.getElementById("max-new-tokens"));
  return Number.isInteger(length) && length >= 1 ? length : undefined;
}

function askContext() {
  const text = editor.text();
  const maxNew = wantedNewTokens();
  const key = `${revision}:${maxNew}:${fingerprint(text)}`;
  if (key === contextKey) return;
  const asked = storySocket.context(text, maxNew);
  if (asked) [contextAsked, contextKey] = [asked, key];
}

const CONTEXT_PARTS = { memory: "Memory", lore: "Lore", note: "Author's Note", story: "Story read" };

function showContext(message) {
  if (message.request_id !== contextAsked) return;
  if (message.type === "error") {
    contextKey = null;
    contextBar.hidden = true;
    return;
  }
  const size = message.window;
  const share = (tokens) => `${Math.min(100, (100 * tokens) / size).toFixed(2)}%`;
  const segments = message.parts.map((part) => {
    const segment = document.createElement("span");
    segment.className = `context-${part.kind}`;
    segment.style.width = share(part.tokens);
    segment.title = `${part.label}: ${part.tokens.toLocaleString()} tokens`;
    return segment;
  });
  const room = document.createElement("span");
  room.className = "context-room";
  room.style.width = share(message.max_new_tokens);
  room.title = `Room for the continuation: ${message.max_new_tokens.toLocaleString()} tokens`;
  contextMeter.replaceChildren(...segments, room, contextCached);
  contextCached.style.width = share(message.cached_tokens);
  const totals = {};
  for (const part of message.parts) {
    const label = part.kind === "lore" ? part.label : CONTEXT_PARTS[part.kind] || part.label;
    totals[label] = (totals[label] || 0) + part.tokens;
  }
  const spent = Object.entries(totals).map(([label, tokens]) => `${label} ${tokens.toLocaleString()}`);
  if (message.story_left_out) spent.push(`left out ${message.story_left_out.toLocaleString()}`);
  spent.push(`room for the continuation ${message.max_new_tokens.toLocaleString()}`);
  const cached = message.cached_tokens ? `; ${message.cached_tokens.toLocaleString()} already read and kept by the model` : "";
  contextLegend.textContent = `${spent.join(" · ")}, of ${size.toLocaleString()} tokens${cached}.`;
  contextWarning.textContent = message.warnings.join(" ");
  contextWarning.hidden = message.warnings.length === 0;
  contextBar.hidden = false;
  storyTokens = message.story_tokens;
  updateWordCount();
}

editor.onChange(scheduleContext);
document.getElementById("max-new-tokens").addEventListener("input", scheduleContext);

// ---- keyboard shortcuts, and a quieter page to write in ----------------------------------

const shortcutsDialog = document.getElementById("shortcuts");
const focusButton = document.getElementById("focus-mode");
const typingIn = (target) => target.closest("input, textarea, select, [contenteditable=true]") !== null;

function setFocusMode(on) {
  document.body.classList.toggle("focus-mode", on);
  focusButton.setAttribute("aria-pressed", String(on));
  localStorage.setItem("storyteller:focus-mode", on ? "on" : "off");
}

focusButton.addEventListener("click", () => setFocusMode(!document.body.classList.contains("focus-mode")));
if (localStorage.getItem("storyteller:focus-mode") === "on") setFocusMode(true);
document.getElementById("shortcuts-open").addEventListener("click", () => shortcutsDialog.showModal());
document.getElementById("shortcuts-close").addEventListener("click", () => shortcutsDialog.close());

// Ctrl+R stays the browser's reload; Retry is Alt+R. On a Mac, Option+R types a character,
// so the keys are matched by where they are (event.code), not by what they type.
document.addEventListener("keydown", (event) => {
  const command = event.ctrlKey || event.metaKey;
  if (shortcutsDialog.open) return;
  if (event.key === "Enter" && command) {
    event.preventDefault();
    generate();
  } else if (event.key === "Escape") {
    // Escape closes the panels shown over the story first; it stops a generation otherwise.
    if (!panels.closeOverlay()) stop();
  } else if (event.altKey && !command && event.code === "KeyR") {
    event.preventDefault();
    if (!retryButton.disabled) retry();
  } else if (event.altKey && !command && (event.code === "BracketLeft" || event.code === "BracketRight")) {
    event.preventDefault();
    const button = document.getElementById(event.code === "BracketLeft" ? "alt-prev" : "alt-next");
    if (!alternatives.hidden && !button.disabled) button.click();
  } else if (event.altKey && !command && event.code === "KeyF") {
    event.preventDefault();
    focusButton.click();
  } else if (command && event.code === "KeyZ" && !typingIn(event.target)) {
    // In the story Quill undoes by itself; from elsewhere on the page the story's history
    // too, when its button would (not while a continuation streams in).
    event.preventDefault();
    const button = document.getElementById(event.shiftKey ? "redo" : "undo");
    if (!button.disabled) button.click();
  } else if (event.key === "?" && !command && !typingIn(event.target)) {
    event.preventDefault();
    shortcutsDialog.showModal();
  }
});

// ---- a generation the writer has not seen: offered, or followed again -------------------

function offerUnseen(unseen) {
  const dismissedKey = `storyteller:story:${story.id}:dismissed`;
  if (!unseen || localStorage.getItem(dismissedKey) === String(unseen.id)) return;
  const at = Math.min(unseen.insert_at, editor.text().length);
  if (unseen.status === "queued" || unseen.status === "running") {
    // Still writing: follow it from its first word (the socket's open handler sends
    // resume); the words the story already holds are passed over, not written twice.
    const start = Math.min(unseen.insert_at - unseen.skip, editor.text().length);
    current = { insertAt: start, text: "", retry: false, kind: "generation", replaying: true, recording: true };
    storySocket.follow(unseen.id);
    choices.pause(true);
    editor.lock(true);
    editor.historyGroup(true);
    genState.textContent = "Writing...";
    return;
  }
  const banner = document.getElementById("unseen");
  document.getElementById("unseen-text").textContent = unseen.text;
  banner.hidden = false;
  document.getElementById("unseen-insert").addEventListener("click", () => {
    editor.historyCut();
    const same = alreadyThere(at, unseen.text);
    if (same < unseen.text.length) editor.insertModelText(at + same, unseen.text.slice(same));
    editor.historyCut();
    last = { start: at, prompt: editor.text().slice(0, at), versions: [unseen.text], ids: [null], tokens: [], shown: 0 };
    keepTry("generation", at, at + unseen.text.length, unseen.id);
    banner.hidden = true;
    updateButtons();
  });
  document.getElementById("unseen-dismiss").addEventListener("click", () => {
    localStorage.setItem(dismissedKey, String(unseen.id));
    banner.hidden = true;
  });
}

offerUnseen(story.unseen_generation);
// The lorebook is saved apart from the story: the context bar counts again after it.
const loreChanged = () => {
  contextKey = null;
  scheduleContext();
};
// A restored revision of the History panel is a try of the tree, its text all its own.
function restored(number) {
  last = null;
  updateButtons();
  tree.add({ kind: "restore", start: 0, end: editor.text().length, label: `Revision ${number}` });
}
const panels = initPanels({
  story,
  save,
  loadStory,
  revision: () => revision,
  loreChanged,
  restored,
  currentText: () => editor.text(),
  onTextChange: editor.onChange,
  // The Test box's question: the context bar's, about another text.
  askContext: (text) => storySocket.context(text.slice(Math.max(0, text.length - maxChars)), wantedNewTokens()),
});
const tree = initTree({ story, editor, busy: () => Boolean(current), makeCurrent, isOpen: () => panels.isOpen("tree") });
panels.onOpen("tree", () => tree.load());
const tools = initTools({ editor, tree, run: runTool, busy: () => Boolean(current) || !connected() });
followTree();
updateButtons();
storySocket.connect();
