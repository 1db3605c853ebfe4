// The story editor: autosave with conflict detection, and generation over the story socket.
// The contract with the server is docs/protocol.md.

const root = document.querySelector(".editor");
const story = JSON.parse(document.getElementById("story-data").textContent);
const textarea = document.getElementById("story");
const titleInput = document.getElementById("title");
const saveState = document.getElementById("save-state");
const genState = document.getElementById("gen-state");
const wordCount = document.getElementById("word-count");
const generateButton = document.getElementById("generate");
const stopButton = document.getElementById("stop");
const conflictBanner = document.getElementById("conflict");
const maxChars = Number(root.dataset.maxChars);

const SAVE_DELAY_MS = 1000;
const backupKey = `storyteller:story:${story.id}:unsaved`;

function csrfToken() {
  const match = document.cookie.match(/(?:^|; )csrftoken=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : "";
}

// ---- saving -----------------------------------------------------------------------

let revision = story.revision;
let savedText = story.text;
let savedTitle = story.title;
let saveTimer = null;
let saving = null;
let conflict = null;

function setSaveState(text) {
  saveState.textContent = text;
}

function dirty() {
  return textarea.value !== savedText || titleInput.value !== savedTitle;
}

function scheduleSave() {
  updateWordCount();
  if (dirty()) {
    setSaveState("Unsaved changes");
    localStorage.setItem(backupKey, JSON.stringify({ text: textarea.value, title: titleInput.value, revision }));
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
  const body = { text: textarea.value, title: titleInput.value, base_revision: revision };
  setSaveState("Saving...");
  saving = (async () => {
    try {
      const response = await fetch(`/api/stories/${story.id}/`, {
        method: "PUT",
        headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken() },
        body: JSON.stringify(body),
        keepalive,
      });
      const data = await response.json();
      if (response.ok) {
        revision = data.revision;
        savedText = body.text;
        savedTitle = body.title;
        if (!dirty()) localStorage.removeItem(backupKey);
        setSaveState(dirty() ? "Unsaved changes" : "Saved");
      } else if (response.status === 409) {
        showConflict(data.story);
      } else {
        setSaveState(`Not saved: ${data.error ? data.error.message : response.statusText}`);
      }
    } catch {
      setSaveState("Offline: kept in this browser");
      saveTimer = setTimeout(save, 5000);
    } finally {
      saving = null;
    }
  })();
  await saving;
  if (dirty() && !conflict) scheduleSave();
}

function showConflict(theirs) {
  conflict = theirs;
  conflictBanner.hidden = false;
  setSaveState("Not saved: conflict");
}

document.getElementById("keep-mine").addEventListener("click", () => {
  revision = conflict.revision;
  conflict = null;
  conflictBanner.hidden = true;
  save();
});

document.getElementById("load-theirs").addEventListener("click", () => {
  revision = conflict.revision;
  textarea.value = savedText = conflict.text;
  titleInput.value = savedTitle = conflict.title;
  conflict = null;
  conflictBanner.hidden = true;
  localStorage.removeItem(backupKey);
  setSaveState("Saved");
  updateWordCount();
});

function updateWordCount() {
  const words = textarea.value.trim().split(/\s+/).filter(Boolean).length;
  wordCount.textContent = `${words} ${words === 1 ? "word" : "words"}`;
}

textarea.addEventListener("input", scheduleSave);
titleInput.addEventListener("input", scheduleSave);
textarea.addEventListener("blur", () => save());
window.addEventListener("beforeunload", (event) => {
  if (dirty()) {
    save({ keepalive: true });
    event.preventDefault();
  }
});

// A previous visit's text that never reached the server comes back first.
const backup = JSON.parse(localStorage.getItem(backupKey) || "null");
if (backup && backup.revision === revision && (backup.text !== savedText || backup.title !== savedTitle)) {
  textarea.value = backup.text;
  titleInput.value = backup.title;
  scheduleSave();
}
updateWordCount();

// ---- generating ---------------------------------------------------------------------

let socket = null;
let reconnectDelay = 500;
let current = null; // {id, insertAt, lastSeq} while a generation streams into the editor
let requestCounter = 0;

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws/stories/${story.id}/`);
  socket.addEventListener("open", () => {
    reconnectDelay = 500;
    genState.textContent = current ? "Reconnected" : "";
    if (current && current.id) {
      socket.send(JSON.stringify({ type: "resume", generation_id: current.id, after_seq: current.lastSeq }));
    }
    generateButton.disabled = Boolean(current);
  });
  socket.addEventListener("message", (event) => handle(JSON.parse(event.data)));
  socket.addEventListener("close", () => {
    generateButton.disabled = true;
    genState.textContent = "Connection lost; reconnecting...";
    setTimeout(connect, reconnectDelay);
    reconnectDelay = Math.min(reconnectDelay * 2, 10000);
  });
}

function params() {
  return {
    max_new_tokens: Number(document.getElementById("max-new-tokens").value),
    temperature: Number(document.getElementById("temperature").value),
  };
}

function generate() {
  if (current || !socket || socket.readyState !== WebSocket.OPEN) return;
  const insertAt = textarea.selectionEnd ?? textarea.value.length;
  const text = textarea.value.slice(Math.max(0, insertAt - maxChars), insertAt);
  const requestId = `r${++requestCounter}`;
  current = { id: null, requestId, insertAt, lastSeq: -1 };
  generateButton.disabled = true;
  stopButton.disabled = false;
  genState.textContent = "Waiting for the model...";
  socket.send(JSON.stringify({ type: "generate", request_id: requestId, text, params: params() }));
}

function stop() {
  if (current && current.id) socket.send(JSON.stringify({ type: "cancel", generation_id: current.id }));
}

function insert(text) {
  const { selectionStart, selectionEnd } = textarea;
  const at = current.insertAt;
  textarea.value = textarea.value.slice(0, at) + text + textarea.value.slice(at);
  current.insertAt += text.length;
  // Keep the writer's own cursor where it was relative to their text.
  const shift = (pos) => (pos >= at ? pos + text.length : pos);
  textarea.setSelectionRange(shift(selectionStart), shift(selectionEnd));
  scheduleSave();
}

function finish(message) {
  current = null;
  generateButton.disabled = false;
  stopButton.disabled = true;
  genState.textContent = message;
  save();
}

function handle(message) {
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
        finish(reasons[message.finish_reason] || "The model failed; try again");
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
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    generate();
  } else if (event.key === "Escape") {
    stop();
  }
});

connect();
