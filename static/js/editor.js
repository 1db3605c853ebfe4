// The story editor: a Quill editor (static/vendor) with autosave and conflict detection,
// and generation over the story socket with retry, alternatives and one undo history.
// The contract with the server is docs/protocol.md; the side panels live in panels.js.

import { api, errorMessage } from "./api.js";
import { initChoices } from "./choices.js";
import { initInspect } from "./inspect.js";
import { initPanels } from "./panels.js";
import { createStoryEditor } from "./story-editor.js";

const root = document.querySelector(".editor");
const story = JSON.parse(document.getElementById("story-data").textContent);
const siteDefaults = JSON.parse(document.getElementById("site-defaults").textContent);
const presets = JSON.parse(document.getElementById("presets").textContent);
const presetSelect = document.getElementById("preset");
const editor = createStoryEditor(document.getElementById("story"), story.text);
editor.setModelSpans(story.model_spans, { silent: true });
const titleInput = document.getElementById("title");
const memoryInput = document.getElementById("memory");
const noteInput = document.getElementById("note");
const noteDepthInput = document.getElementById("note-depth");
const settingInputs = [...document.querySelectorAll("[data-setting]")];
const saveState = document.getElementById("save-state");
const genState = document.getElementById("gen-state");
const wordCount = document.getElementById("word-count");
const generateButton = document.getElementById("generate");
const stopButton = document.getElementById("stop");
const conflictBanner = document.getElementById("conflict");
const warningsBanner = document.getElementById("context-warnings");
const maxChars = Number(root.dataset.maxChars);

const SAVE_DELAY_MS = 1000;
const backupKey = `storyteller:story:${story.id}:unsaved`;

// ---- the story's fields ---------------------------------------------------------------

// Stop sequences are typed one per line, with \n for a line break.
const escapeStop = (stop) => stop.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
const unescapeStop = (line) => line.replace(/\\(n|\\)/g, (_, c) => (c === "n" ? "\n" : "\\"));

function readSetting(input) {
  if (input.dataset.setting === "stop") {
    return input.value.split("\n").filter((line) => line.length > 0).map(unescapeStop);
  }
  if (input.type === "checkbox") return input.checked;
  return input.value.trim() === "" ? NaN : Number(input.value);
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
    if (input.dataset.setting === "stop") input.value = (value || []).map(escapeStop).join("\n");
    else if (input.type === "checkbox") input.checked = Boolean(value);
    else input.value = value ?? "";
  }
}

const withoutInputs = (values) =>
  Object.fromEntries(Object.entries(values || {}).filter(([name]) => !settingInputs.some((i) => i.dataset.setting === name)));

// The settings are the story's own only once the writer changes one; until then the
// story follows the site's defaults (an empty object).
let settingsTouched = Object.keys(story.settings).length > 0;

const fields = {
  text: { get: () => editor.text(), set: (v) => editor.setText(v) },
  title: { get: () => titleInput.value, set: (v) => (titleInput.value = v) },
  memory: { get: () => memoryInput.value, set: (v) => (memoryInput.value = v) },
  note: { get: () => noteInput.value, set: (v) => (noteInput.value = v) },
  note_depth: { get: () => Number(noteDepthInput.value), set: (v) => (noteDepthInput.value = v) },
  preset: {
    get: () => (presetSelect.value ? Number(presetSelect.value) : null),
    set: (v) => {
      presetSelect.value = v === null ? "" : String(v);
      showPresetDescription();
    },
  },
  settings: {
    // What the panel shows, over the story's settings it has no input for (a seed set
    // through the API), which a save must not drop.
    get: () =>
      settingsTouched
        ? { ...withoutInputs(saved.settings), ...Object.fromEntries(settingInputs.map((i) => [i.dataset.setting, readSetting(i)])) }
        : saved.settings,
    set: (v) => {
      settingsTouched = Object.keys(v).length > 0;
      writeSettings(v);
    },
  },
  // After text: the spans index into it.
  model_spans: { get: () => editor.modelSpans(), set: (v) => editor.setModelSpans(v) },
};

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

function backUp() {
  localStorage.setItem(backupKey, JSON.stringify({ revision, changes: changes() }));
}

function scheduleSave() {
  updateWordCount();
  if (dirty()) {
    setSaveState("Unsaved changes");
    backUp();
  }
  clearTimeout(saveTimer);
  saveTimer = setTimeout(save, SAVE_DELAY_MS);
}

async function save({ keepalive = false } = {}) {
  clearTimeout(saveTimer);
  if (conflict || !dirty()) return;
  if (saving) {
    await saving;
    return save({ keepalive });
  }
  const body = { ...changes(), base_revision: revision };
  setSaveState("Saving...");
  saving = (async () => {
    try {
      const result = await api("PUT", `/api/stories/${story.id}/`, body, { keepalive });
      if (result.ok) {
        revision = result.data.revision;
        for (const name of Object.keys(fields)) if (name in body) saved[name] = body[name];
        if (!dirty()) localStorage.removeItem(backupKey);
        setSaveState(dirty() ? "Unsaved changes" : "Saved");
      } else if (result.status === 409) {
        showConflict(result.data.story);
      } else {
        setSaveState(`Not saved: ${errorMessage(result)}`);
      }
    } catch {
      setSaveState("Offline: kept in this browser");
      saveTimer = setTimeout(save, 3000);
    } finally {
      saving = null;
    }
  })();
  await saving;
  // Words typed while the save was on its way go in the next one.
  if (saveState.textContent === "Unsaved changes") scheduleSave();
}

function showConflict(theirs) {
  conflict = theirs;
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
  setSaveState("Saved");
  updateWordCount();
}

document.getElementById("keep-mine").addEventListener("click", () => {
  revision = conflict.revision;
  conflict = null;
  conflictBanner.hidden = true;
  save();
});

document.getElementById("load-theirs").addEventListener("click", () => {
  const theirs = conflict;
  conflict = null;
  conflictBanner.hidden = true;
  loadStory(theirs);
});

document.getElementById("settings-reset").addEventListener("click", () => {
  fields.settings.set({});
  scheduleSave();
});

// Choosing a preset shows its values; the story's own changes start again from them.
presetSelect.addEventListener("change", () => {
  showPresetDescription();
  fields.settings.set({});
  scheduleSave();
});
showPresetDescription();

function updateWordCount() {
  const words = editor.text().trim().split(/\s+/).filter(Boolean).length;
  wordCount.textContent = `${words} ${words === 1 ? "word" : "words"}`;
}

editor.onChange(scheduleSave);
editor.onBlur(() => save());
for (const input of [titleInput, memoryInput, noteInput, noteDepthInput]) {
  input.addEventListener("input", scheduleSave);
  input.addEventListener("blur", () => save());
}
for (const input of settingInputs) {
  input.addEventListener("input", () => {
    settingsTouched = true;
    scheduleSave();
  });
}
window.addEventListener("beforeunload", (event) => {
  if (dirty()) {
    save({ keepalive: true });
    event.preventDefault();
  }
});
window.addEventListener("online", () => save());

// A previous visit's changes that never reached the server come back first.
const backup = JSON.parse(localStorage.getItem(backupKey) || "null");
if (backup && backup.revision === revision && backup.changes) {
  for (const [name, value] of Object.entries(backup.changes)) {
    if (name in fields) {
      if (name === "settings") settingsTouched = true;
      fields[name].set(value);
    }
  }
  scheduleSave();
}
updateWordCount();

// ---- generating ---------------------------------------------------------------------

let socket = null;
let reconnectDelay = 500;
let current = null; // {id, requestId, insertAt, lastSeq, text} while a generation streams in
let requestCounter = 0;
// The last continuation, while it is intact: where it starts, the text it followed, and
// every version Retry has written, to browse.
let last = null; // {start, prompt, versions: [text], shown}

const retryButton = document.getElementById("retry");
const alternatives = document.getElementById("alternatives");
const altPosition = document.getElementById("alt-position");

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/stories/${story.id}/`);
  socket.addEventListener("open", () => {
    reconnectDelay = 500;
    genState.textContent = current ? "Reconnected" : "";
    if (current && current.id) {
      socket.send(JSON.stringify({ type: "resume", generation_id: current.id, after_seq: current.lastSeq }));
    }
    updateButtons();
  });
  socket.addEventListener("message", (event) => handle(JSON.parse(event.data)));
  socket.addEventListener("close", () => {
    generateButton.disabled = retryButton.disabled = true;
    genState.textContent = "Connection lost; reconnecting...";
    setTimeout(connect, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 10000);
  });
}

const connected = () => socket && socket.readyState === WebSocket.OPEN;

function updateButtons() {
  generateButton.disabled = Boolean(current) || !connected();
  retryButton.disabled = Boolean(current) || !connected() || !last;
  stopButton.disabled = !current;
  document.getElementById("undo").disabled = Boolean(current);
  document.getElementById("redo").disabled = Boolean(current);
  alternatives.hidden = !last || last.versions.length < 2;
  if (last) altPosition.textContent = `${last.shown + 1} of ${last.versions.length}`;
  document.getElementById("alt-prev").disabled = Boolean(current) || !last || last.shown === 0;
  document.getElementById("alt-next").disabled = Boolean(current) || !last || last.shown === last.versions.length - 1;
}

function params({ freshSeed = false } = {}) {
  const values = Object.fromEntries(settingInputs.map((input) => [input.dataset.setting, readSetting(input)]));
  // Retry asks for another continuation, even when the story's settings fix the seed.
  if (freshSeed) values.seed = Math.floor(Math.random() * 2 ** 31);
  return values;
}

async function start({ insertAt, prompt, retry, firstToken = null }) {
  const requestId = `r${++requestCounter}`;
  current = { id: null, requestId, insertAt, lastSeq: -1, text: "", retry, recording: false };
  choices.pause(true);
  editor.lock(true);
  editor.historyCut();
  warningsBanner.hidden = true;
  genState.textContent = "Waiting for the model...";
  updateButtons();
  // Memory, note and lore are read by the worker from the saved story.
  await save();
  const text = prompt.slice(Math.max(0, prompt.length - maxChars));
  const asked = params({ freshSeed: retry });
  if (firstToken !== null) asked.first_token = firstToken;
  current.recording = asked.record_choices === true;
  socket.send(JSON.stringify({ type: "generate", request_id: requestId, text, params: asked }));
}

// Generate continues from the cursor, or from the end of the story when the writer asks.
const fromEnd = document.getElementById("from-end");
const fromEndKey = "storyteller:generate-from-end";
fromEnd.checked = localStorage.getItem(fromEndKey) === "1";
fromEnd.addEventListener("change", () => localStorage.setItem(fromEndKey, fromEnd.checked ? "1" : "0"));

function generate() {
  if (current || !connected()) return;
  const insertAt = fromEnd.checked ? editor.text().length : editor.cursor();
  last = null;
  start({ insertAt, prompt: editor.text().slice(0, insertAt), retry: false });
}

function retry() {
  if (current || !connected() || !last) return;
  editor.replaceModelText(last.start, last.versions[last.shown].length, "");
  start({ insertAt: last.start, prompt: last.prompt, retry: true });
}

function show(index) {
  if (current || !last || index < 0 || index >= last.versions.length) return;
  editor.replaceModelText(last.start, last.versions[last.shown].length, last.versions[index]);
  last.shown = index;
  updateButtons();
}

function stop() {
  if (current && current.id) socket.send(JSON.stringify({ type: "cancel", generation_id: current.id }));
}

function insert(text) {
  // A resumed generation replays words that autosave had already put in the story.
  if (current.skip) {
    const skipped = Math.min(current.skip, text.length);
    current.skip -= skipped;
    text = text.slice(skipped);
    if (!text) return;
  }
  editor.insertModelText(current.insertAt, text);
  current.insertAt += text.length;
  current.text += text;
}

function finish(message) {
  const done = current;
  current = null;
  editor.historyCut();
  editor.lock(false);
  if (done.text) {
    if (done.retry && last) last.versions.push(done.text);
    else last = { start: done.insertAt - done.text.length, prompt: editor.text().slice(0, done.insertAt - done.text.length), versions: [done.text] };
    last.shown = last.versions.length - 1;
  } else if (done.retry && last) {
    // A retry that wrote nothing puts the version it replaced back.
    editor.replaceModelText(last.start, 0, last.versions[last.shown]);
  }
  genState.textContent = message;
  choices.pause(false);
  updateButtons();
  save();
}

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
}

const inspect = initInspect({
  send: (message) => connected() && (socket.send(JSON.stringify(message)), true),
  selection: () => editor.selection(),
});

const choices = initChoices({
  root: document.getElementById("story"),
  editor,
  onRewrite({ at, end, firstToken }) {
    if (current || !connected()) return;
    // The continuation from the chosen word on is replaced by one that starts with it;
    // what follows the continuation stays.
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

function handle(message) {
  if (String(message.request_id || "").startsWith("inspect-") || message.type === "inspection") {
    inspect.handle(message);
    return;
  }
  switch (message.type) {
    case "queued":
      if (current && message.request_id === current.requestId) {
        current.id = message.generation_id;
        genState.textContent = message.position > 0 ? `Queued (${message.position} ahead)` : "Writing...";
      }
      break;
    case "token":
      if (current && message.generation_id === current.id && message.seq === current.lastSeq + 1) {
        current.lastSeq = message.seq;
        genState.textContent = "Writing...";
        insert(message.text);
      }
      break;
    case "done":
      if (current && message.generation_id === current.id) {
        const reasons = { length: "Done", stop: "Done", eos: "Done", cancelled: "Stopped" };
        showWarnings(message.context);
        if (current.recording) addChoices(message.generation_id);
        finish(reasons[message.finish_reason] || "The model failed; try again");
        panels.generationDone();
      }
      break;
    case "error":
      if (current && (!current.id || message.generation_id === current.id || message.request_id === current.requestId)) {
        if (!current.id) finish(message.message);
        else genState.textContent = message.message;
      } else {
        genState.textContent = message.message;
      }
      break;
  }
}

generateButton.addEventListener("click", generate);
stopButton.addEventListener("click", stop);
retryButton.addEventListener("click", retry);
document.getElementById("alt-prev").addEventListener("click", () => show(last.shown - 1));
document.getElementById("alt-next").addEventListener("click", () => show(last.shown + 1));
document.getElementById("undo").addEventListener("click", () => editor.undo());
document.getElementById("redo").addEventListener("click", () => editor.redo());
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    generate();
  } else if (event.key === "Escape") {
    stop();
  }
});

// ---- a generation the writer has not seen: offered, or followed again -------------------

function offerUnseen(unseen) {
  const dismissedKey = `storyteller:story:${story.id}:dismissed`;
  if (!unseen || localStorage.getItem(dismissedKey) === String(unseen.id)) return;
  const at = Math.min(unseen.insert_at, editor.text().length);
  if (unseen.status === "queued" || unseen.status === "running") {
    // Still writing: follow it where it left off (the socket's open handler sends resume).
    current = { id: unseen.id, requestId: null, insertAt: at, lastSeq: -1, text: "", retry: false, skip: unseen.skip, recording: true };
    choices.pause(true);
    editor.lock(true);
    editor.historyCut();
    genState.textContent = "Writing...";
    return;
  }
  const banner = document.getElementById("unseen");
  document.getElementById("unseen-text").textContent = unseen.text;
  banner.hidden = false;
  document.getElementById("unseen-insert").addEventListener("click", () => {
    editor.historyCut();
    editor.insertModelText(at, unseen.text);
    editor.historyCut();
    last = { start: at, prompt: editor.text().slice(0, at), versions: [unseen.text], shown: 0 };
    banner.hidden = true;
    updateButtons();
  });
  document.getElementById("unseen-dismiss").addEventListener("click", () => {
    localStorage.setItem(dismissedKey, String(unseen.id));
    banner.hidden = true;
  });
}

offerUnseen(story.unseen_generation);
const panels = initPanels({ story, save, loadStory, revision: () => revision });
updateButtons();
connect();
