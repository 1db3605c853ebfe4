// The editor's side panels: Lorebook, History, Share and What the model saw. Memory, the
// Author's Note and Settings are plain fields that editor.js saves with the story.

import { UNAVAILABLE, api, errorMessage } from "./api.js";
import { redrawOnChange, showComparison } from "./diff.js";

export function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function when(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

// How an entry's secondary keywords count (generation/lore.py, LOGICS).
const LORE_LOGICS = [
  ["and_any", "with any of"],
  ["and_all", "with all of"],
  ["not_any", "with none of"],
  ["not_all", "without all of"],
];

export function initPanels({ story, save, loadStory, revision, loreChanged, restored, currentText, onTextChange, askContext }) {
  const base = `/api/stories/${story.id}`;
  const loaders = {};

  // ---- one panel open at a time ----
  const buttons = [...document.querySelectorAll("[data-panel]")];
  for (const button of buttons) {
    button.addEventListener("click", () => {
      const opening = button.getAttribute("aria-expanded") !== "true";
      for (const other of buttons) {
        other.setAttribute("aria-expanded", "false");
        document.getElementById(`panel-${other.dataset.panel}`).hidden = true;
      }
      if (opening) {
        button.setAttribute("aria-expanded", "true");
        document.getElementById(`panel-${button.dataset.panel}`).hidden = false;
        if (loaders[button.dataset.panel]) loaders[button.dataset.panel]();
      }
    });
  }
  const isOpen = (name) => !document.getElementById(`panel-${name}`).hidden;

  // On a narrow screen the panels are below the story; "Panels" shows them over it.
  const panelsOpen = document.getElementById("panels-open");
  const side = document.getElementById("side");
  function showPanels(shown) {
    document.body.classList.toggle("panels-shown", shown);
    panelsOpen.setAttribute("aria-expanded", String(shown));
    if (shown) (buttons.find((b) => b.getAttribute("aria-expanded") === "true") || buttons[0]).focus();
    else panelsOpen.focus();
  }
  panelsOpen.addEventListener("click", () => showPanels(true));
  document.getElementById("panels-close").addEventListener("click", () => showPanels(false));
  // Whether the panels are over the story now (the class stays when the window grows wide,
  // or focus mode hides them, and then they are not).
  const overlaid = () =>
    document.body.classList.contains("panels-shown") && getComputedStyle(side).position === "fixed" && side.getClientRects().length > 0;

  // ---- Lorebook ----
  // An entry the server could not take (offline, or an answer of UNAVAILABLE) is kept in
  // the browser, by entry, and sent again every few seconds, when the browser is back
  // online, and on the next visit: {key: {id, keys, text, enabled, deleted}}, where the
  // key is the entry's id, or "new-..." for an entry the server has not seen yet.
  const loreList = document.getElementById("lore-list");
  const loreState = document.getElementById("lore-state");
  const unsavedLoreKey = `storyteller:story:${story.id}:lore-unsaved`;
  const LORE_RETRY_MS = 3000;
  // An entry is sent this long after the writer stops typing in it (as the story is).
  const LORE_TYPING_MS = 1000;
  const loreSenders = new Map();
  const loreSaving = new Set();
  let loreRetry = null;

  function unsavedLore() {
    try {
      return JSON.parse(localStorage.getItem(unsavedLoreKey) || "{}");
    } catch {
      return {};
    }
  }

  function keepUnsavedLore(key, value) {
    const all = unsavedLore();
    if (value === null) delete all[key];
    else all[key] = value;
    try {
      if (Object.keys(all).length > 0) localStorage.setItem(unsavedLoreKey, JSON.stringify(all));
      else localStorage.removeItem(unsavedLoreKey);
    } catch {
      // The browser's storage is full or off: the retries below still run while the page is open.
    }
  }

  function sendUnsavedLoreSoon() {
    clearTimeout(loreRetry);
    loreRetry = setTimeout(sendUnsavedLore, LORE_RETRY_MS);
  }

  function sendUnsavedLore() {
    clearTimeout(loreRetry);
    for (const key of Object.keys(unsavedLore())) {
      const send = loreSenders.get(key);
      if (send) send();
    }
  }

  // Whether the server could not take it (kept and tried again), from an answer or a throw.
  const unreachable = (result) => result === null || UNAVAILABLE.includes(result.status);

  async function loreCall(method, url, body) {
    try {
      return await api(method, url, body);
    } catch {
      return null;
    }
  }

  // Whether an entry holds an edit the server refused, which leaving the page would lose.
  const loreRefused = () => [...loreList.querySelectorAll(".refused")].some((row) => !row.hidden);
  const markLoreTab = () => document.querySelector('[data-panel="lorebook"]').classList.toggle("has-problem", loreRefused());

  const newLoreKey = () => `new-${Date.now()}-${Math.random().toString(36).slice(2)}`;

  function loreRow(entry, key = entry.id ? String(entry.id) : newLoreKey()) {
    const row = element("li", { class: "lore-entry" });
    const keys = element("input", { "aria-label": "Keywords", placeholder: "keywords, separated by commas" });
    const text = element("textarea", { "aria-label": "Lore text", rows: "3", placeholder: "What the model should know" });
    const enabledLabel = element("label", {}, " On");
    const enabled = element("input", { type: "checkbox", "aria-label": "Entry on" });
    const remove = element("button", { type: "button" }, "Delete entry");
    // The entry's rules, folded away until the writer wants them.
    const rules = element("details", { class: "lore-rules-box" });
    const secondary = element("input", { "aria-label": "Secondary keys", placeholder: "e.g. storm, /night(fall)?/i" });
    const logic = element("select", { "aria-label": "Secondary keys rule" });
    for (const [value, words] of LORE_LOGICS) logic.append(Object.assign(element("option", { value }, words), { selected: value === (entry.logic || "and_any") }));
    const priority = element("input", { type: "number", min: "0", max: "1000", step: "1", "aria-label": "Priority" });
    const scan = element("input", { type: "number", min: "100", max: "100000", step: "100", "aria-label": "Scan depth", placeholder: "3000" });
    const labelled = (words, input) => {
      const label = element("label", {}, words);
      label.append(input);
      return label;
    };
    const grid = element("div", { class: "lore-rules" });
    grid.append(
      labelled("Fires only ", logic),
      labelled("these keywords ", secondary),
      labelled("Priority (higher first) ", priority),
      labelled("Scan depth (characters from the end) ", scan),
    );
    rules.append(element("summary", {}, "Rules"), grid);
    if (entry.secondary_keys || (entry.priority ?? 100) !== 100 || entry.scan_chars) rules.open = true;
    keys.value = entry.keys || "";
    text.value = entry.text || "";
    enabled.checked = entry.enabled !== false;
    secondary.value = entry.secondary_keys || "";
    priority.value = String(entry.priority ?? 100);
    scan.value = entry.scan_chars ? String(entry.scan_chars) : "";
    enabledLabel.prepend(enabled);
    // What the server refused in this entry, beside it until a save of it is taken.
    const problem = element("p", { class: "field-problem", id: `lore-problem-${key}` });
    problem.hidden = true;
    row.append(keys, text, enabledLabel, remove, rules, problem);
    const inputs = { keys, text, secondary_keys: secondary, logic, priority, scan_chars: scan };
    let sending = false;
    let deleted = false;
    let typing = null;

    function showProblem(message, field) {
      problem.textContent = message ? `Not saved: ${message}` : "";
      problem.hidden = !message;
      row.classList.toggle("refused", Boolean(message));
      markLoreTab();
      for (const [name, input] of Object.entries(inputs)) {
        const wrong = Boolean(message) && name === field;
        input.setAttribute("aria-invalid", String(wrong));
        if (wrong) input.setAttribute("aria-describedby", problem.id);
        else input.removeAttribute("aria-describedby");
      }
      if (message && inputs[field] && rules.contains(inputs[field])) rules.open = true;
    }

    // A save the Test box waits for: it asks about the entries as the server has them.
    function storeTracked() {
      const saving = store();
      loreSaving.add(saving);
      saving.finally(() => loreSaving.delete(saving));
    }

    // The entry as the server takes it; a number the writer left empty is the default.
    function read() {
      return {
        keys: keys.value,
        text: text.value,
        enabled: enabled.checked,
        secondary_keys: secondary.value,
        logic: logic.value,
        priority: priority.value.trim() === "" ? 100 : Number(priority.value),
        scan_chars: scan.value.trim() === "" ? null : Number(scan.value),
      };
    }

    async function store() {
      if (deleted) return;
      const body = read();
      if (!entry.id && (!body.keys.trim() || !body.text.trim())) return;
      // Kept before it is sent: a page closed while the request is on its way loses nothing.
      keepUnsavedLore(key, { id: entry.id || null, ...body });
      if (sending) return;
      sending = true;
      loreState.textContent = "Saving...";
      const result = entry.id
        ? await loreCall("PUT", `${base}/lore/${entry.id}/`, body)
        : await loreCall("POST", `${base}/lore/`, body);
      sending = false;
      if (deleted) {
        // Deleted while this was on its way: a new entry that landed is deleted as well.
        if (!unreachable(result) && result.ok && !entry.id) {
          loreSenders.delete(key);
          keepUnsavedLore(key, null);
          entry.id = result.data.id;
          key = String(entry.id);
          loreSenders.set(key, resend);
        }
        forget();
        return;
      }
      if (unreachable(result)) {
        loreState.textContent = result ? "Server unavailable: lore kept in this browser" : "Offline: lore kept in this browser";
        sendUnsavedLoreSoon();
        return;
      }
      const kept = unsavedLore()[key];
      const changedSince = kept && Object.keys(body).some((field) => kept[field] !== body[field]);
      if (result.ok) {
        loreSenders.delete(key);
        keepUnsavedLore(key, null);
        entry.id = result.data.id;
        key = String(entry.id);
        loreSenders.set(key, resend);
        loreState.textContent = "Lore saved";
        showProblem("");
        loreChanged();
        if (changedSince) store();
      } else {
        // The refused edit stays in its fields, marked, until the writer fixes it (and the
        // page asks before it is left meanwhile).
        loreState.textContent = `Not saved: ${errorMessage(result)}`;
        showProblem(errorMessage(result), result.data?.error?.field);
        // Changed while this was on its way (fixed, perhaps): that is sent now.
        if (changedSince) store();
        else keepUnsavedLore(key, null);
      }
    }

    async function forget() {
      deleted = true;
      keepUnsavedLore(key, { id: entry.id || null, deleted: true });
      row.hidden = true;
      markLoreTab();
      // A save on its way decides first: store() comes back here once it is answered.
      if (sending) return;
      if (!entry.id) {
        keepUnsavedLore(key, null);
        row.remove();
        loreState.textContent = "Entry deleted";
        return;
      }
      const result = await loreCall("DELETE", `${base}/lore/${entry.id}/`);
      if (unreachable(result)) {
        loreState.textContent = result ? "Server unavailable: lore kept in this browser" : "Offline: lore kept in this browser";
        sendUnsavedLoreSoon();
        return;
      }
      if (!result.ok && result.status !== 404) {
        keepUnsavedLore(key, null);
        deleted = false;
        row.hidden = false;
        markLoreTab();
        loreState.textContent = `Not deleted: ${errorMessage(result)}`;
        return;
      }
      keepUnsavedLore(key, null);
      loreSenders.delete(key);
      row.remove();
      loreState.textContent = "Entry deleted";
      loreChanged();
    }

    function resend() {
      const kept = unsavedLore()[key];
      return kept && kept.deleted ? forget() : store();
    }

    // Kept in the browser as it is typed, before it is sent.
    function keep() {
      const body = read();
      if (entry.id || (body.keys.trim() && body.text.trim())) keepUnsavedLore(key, { id: entry.id || null, ...body });
    }

    loreSenders.set(key, resend);
    // Sent when the writer leaves the field, or stops typing for a moment in it.
    for (const field of [keys, text, secondary, priority, scan]) {
      field.addEventListener("input", () => {
        keep();
        clearTimeout(typing);
        typing = setTimeout(storeTracked, LORE_TYPING_MS);
      });
      field.addEventListener("change", () => {
        clearTimeout(typing);
        storeTracked();
      });
    }
    enabled.addEventListener("change", storeTracked);
    logic.addEventListener("change", storeTracked);
    remove.addEventListener("click", forget);
    return row;
  }

  // The server's entries, with what this browser kept of them on top; then the kept new ones.
  const keptLore = unsavedLore();
  for (const entry of story.lore) {
    const kept = keptLore[String(entry.id)];
    loreList.append(loreRow(kept && !kept.deleted ? { ...entry, ...kept, id: entry.id } : { ...entry }));
    if (kept && kept.deleted) loreList.lastElementChild.hidden = true;
  }
  // New entries, and edits of an entry deleted elsewhere since, come back as new entries;
  // one the server already holds word for word is the same entry, whose save landed
  // although its answer never came back.
  const held = (kept) => story.lore.some((entry) => entry.keys === kept.keys && entry.text === kept.text);
  for (const [key, kept] of Object.entries(keptLore)) {
    if (loreSenders.has(key)) continue;
    keepUnsavedLore(key, null);
    if (kept.deleted || held(kept)) continue;
    const { id: _id, deleted: _deleted, ...fresh } = kept;
    const freshKey = key.startsWith("new-") ? key : newLoreKey();
    keepUnsavedLore(freshKey, { id: null, ...fresh });
    loreList.append(loreRow(fresh, freshKey));
  }
  sendUnsavedLore();
  window.addEventListener("online", sendUnsavedLore);
  document.getElementById("lore-add").addEventListener("click", () => {
    const row = loreRow({});
    loreList.append(row);
    row.querySelector("input").focus();
  });

  // ---- the Lorebook's Test box: a worker assembles the prompt for the passage (the end of
  // the story when it is empty) and says, entry by entry, whether it fires and why, and
  // whether the budget leaves it out (docs/protocol.md, `context`, its `lore`).
  const testText = document.getElementById("lore-test-text");
  const testState = document.getElementById("lore-test-state");
  const testResults = document.getElementById("lore-test-results");
  let testAsked = null;

  const REASONS = {
    no_key: (line) => `no keyword in the last ${line.scanned_chars.toLocaleString()} characters`,
    no_secondary: () => "its keyword is there, but not the other keywords its rule asks for",
    blocked: (line) => `its keyword is there, but so is ${quoteList(line.secondary_matches)}, which its rule forbids`,
    empty: () => "it has no text",
  };
  const quoteList = (matches) => matches.map((match) => `“${match.text}”`).join(", ");

  function found(match) {
    const item = element("span");
    item.append(`“${match.text}” (key ${match.key}), ${match.from_end.toLocaleString()} characters from the end: `);
    item.append(element("q", {}, match.around));
    return item;
  }

  function showTest(answer) {
    testResults.replaceChildren();
    if (answer.type === "error") {
      testState.textContent = answer.message;
      return;
    }
    const lines = answer.lore || [];
    const fired = lines.filter((line) => line.fires);
    testState.textContent = lines.length === 0
      ? "The Lorebook has no entry that is on."
      : `${fired.length} of ${lines.length} ${lines.length === 1 ? "entry fires" : "entries fire"}; entries are taken by priority, highest first.`;
    for (const line of lines) {
      const row = element("li");
      const verdict = line.fires ? (line.placed ? "fires" : "fires, but left out") : "does not fire";
      row.append(element("strong", { class: line.fires ? (line.placed ? "fires" : "left-out") : "" }, `${line.name}: ${verdict}`));
      row.append(` (priority ${line.priority})`);
      if (line.fires) {
        for (const match of line.matches) row.append(element("br"), found(match));
        if (line.secondary_matches.length) row.append(element("br"), `with ${quoteList(line.secondary_matches)}`);
        if (!line.placed) row.append(element("br"), `It takes ${line.tokens} tokens, more than the room memory, the note and higher-priority entries leave.`);
      } else {
        row.append(element("br"), `Why not: ${REASONS[line.reason] ? REASONS[line.reason](line) : line.reason}.`);
      }
      if (line.timed_out.length) row.append(element("br"), `Too slow to search, counted as no match: ${line.timed_out.join(", ")}.`);
      testResults.append(row);
    }
  }

  document.getElementById("lore-test").addEventListener("click", async () => {
    // The entries as they are now: a field left for this button has just been sent.
    testState.textContent = "Testing...";
    await Promise.all([...loreSaving]);
    testAsked = askContext(testText.value.trim() ? testText.value : currentText());
    testState.textContent = testAsked ? "Testing..." : "Not connected: try again in a moment.";
  });

  // ---- History ----
  const historyList = document.getElementById("history-list");
  const preview = document.getElementById("history-preview");
  let previewed = null;
  let previewedText = "";
  const historyDiff = document.getElementById("history-diff");
  const historyCompare = document.getElementById("history-compare");

  function drawHistoryDiff() {
    if (!historyDiff.hidden && !preview.hidden) showComparison(historyDiff, currentText(), previewedText, "this revision's");
  }

  historyCompare.addEventListener("click", () => {
    const showing = historyDiff.hidden;
    historyDiff.hidden = !showing;
    historyCompare.setAttribute("aria-expanded", String(showing));
    if (showing) drawHistoryDiff();
  });
  redrawOnChange(onTextChange, () => {
    if (isOpen("history")) drawHistoryDiff();
  });

  loaders.history = async () => {
    drawHistoryDiff();
    await save();
    const result = await api("GET", `${base}/revisions/`);
    historyList.replaceChildren();
    if (!result.ok) {
      historyList.append(element("li", {}, errorMessage(result)));
      return;
    }
    result.data.forEach((item, index) => {
      const button = element("button", { type: "button", class: "link" }, `Revision ${item.number}`);
      // What the save changed, against the revision before it (the list is newest first).
      const before = result.data[index + 1];
      const change = [];
      if (before) {
        const words = item.words - before.words;
        if (words) change.push(`${words > 0 ? "+" : "−"}${Math.abs(words).toLocaleString()} ${Math.abs(words) === 1 ? "word" : "words"}`);
        else if (item.chars !== before.chars) change.push("words changed");
        if (item.title !== before.title) change.push(`renamed “${item.title}”`);
      } else {
        change.push("the oldest kept");
      }
      if (index === 0) change.unshift("now");
      const label = change.length ? ` · ${change.join(", ")}` : "";
      const meta = element("span", { class: "meta" }, ` ${when(item.created_at)} · ${item.words.toLocaleString()} words${label}`);
      button.addEventListener("click", () => showRevision(item.number));
      const row = element("li");
      row.append(button, meta);
      historyList.append(row);
    });
  };

  async function showRevision(number) {
    const result = await api("GET", `${base}/revisions/${number}/`);
    if (!result.ok) return;
    previewed = number;
    document.getElementById("history-preview-title").textContent = `Revision ${number}: ${result.data.title}`;
    document.getElementById("history-preview-text").textContent = result.data.text;
    previewedText = result.data.text;
    historyDiff.hidden = true;
    historyCompare.setAttribute("aria-expanded", "false");
    preview.hidden = false;
  }

  document.getElementById("history-restore").addEventListener("click", async () => {
    await save();
    const result = await api("POST", `${base}/revisions/${previewed}/restore`, { base_revision: revision() });
    if (result.ok) {
      loadStory(result.data);
      restored(previewed);
      preview.hidden = true;
      loaders.history();
    } else {
      document.getElementById("history-preview-title").textContent = errorMessage(result);
    }
  });

  // ---- Share ----
  const shareLink = document.getElementById("share-link");
  const shareCreate = document.getElementById("share-create");
  const shareRevoke = document.getElementById("share-revoke");

  function showShare(path) {
    shareLink.hidden = !path;
    shareLink.value = path ? new URL(path, location.href).href : "";
    shareCreate.hidden = Boolean(path);
    shareRevoke.hidden = !path;
  }
  showShare(story.share_url);
  shareCreate.addEventListener("click", async () => {
    const result = await api("POST", `${base}/share`);
    if (result.ok) {
      showShare(result.data.share_path);
      shareLink.select();
    }
  });
  shareRevoke.addEventListener("click", async () => {
    const result = await api("DELETE", `${base}/share`);
    if (result.ok) showShare(null);
  });

  // ---- What the model saw ----
  loaders.seen = async () => {
    const summary = document.getElementById("seen-summary");
    const parts = document.getElementById("seen-parts");
    const result = await api("GET", `${base}/context`);
    parts.replaceChildren();
    if (!result.ok) {
      summary.textContent = result.status === 404 ? "Generate once to see the exact text the model read." : errorMessage(result);
      return;
    }
    const seen = result.data;
    if (!seen.parts) {
      summary.textContent = "The model has not started on this generation yet.";
      return;
    }
    const trimmed = seen.trimmed_tokens ? ` The oldest ${seen.trimmed_tokens} tokens of the story did not fit and were left out.` : "";
    summary.textContent = `${seen.prompt_tokens} tokens of the ${seen.budget} this model can read before its continuation.${trimmed}`;
    for (const warning of seen.warnings) parts.append(element("li", { class: "warning" }, warning));
    for (const part of seen.parts) {
      const row = element("li");
      row.append(element("strong", {}, `${part.label}: ${part.tokens} tokens`), element("pre", { class: "preview" }, part.text));
      parts.append(row);
    }
  };

  return {
    isOpen,
    loreRefused,
    // Closes the panels shown over the story (a narrow screen's "Panels"); whether they were.
    closeOverlay() {
      if (!overlaid()) return false;
      showPanels(false);
      return true;
    },
    // A `context` answer for the Test box, if it is one; whether it was.
    contextAnswer(message) {
      if (!testAsked || message.request_id !== testAsked) return false;
      testAsked = null;
      showTest(message);
      return true;
    },
    // What opening the panel `name` loads, for a panel another module fills.
    onOpen(name, loader) {
      loaders[name] = loader;
    },
    generationDone() {
      if (isOpen("seen")) loaders.seen();
      if (isOpen("history")) loaders.history();
    },
  };
}
