// The editor's side panels: Lorebook, History, Share and What the model saw. Memory, the
// Author's Note and Settings are plain fields that editor.js saves with the story.

import { api, errorMessage } from "./api.js";

export function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

function when(iso) {
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function initPanels({ story, save, loadStory, revision }) {
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

  // ---- Lorebook ----
  const loreList = document.getElementById("lore-list");
  const loreState = document.getElementById("lore-state");

  function loreRow(entry) {
    const row = element("li", { class: "lore-entry" });
    const keys = element("input", { "aria-label": "Keywords", placeholder: "keywords, separated by commas" });
    const text = element("textarea", { "aria-label": "Lore text", rows: "3", placeholder: "What the model should know" });
    const enabledLabel = element("label", {}, " On");
    const enabled = element("input", { type: "checkbox", "aria-label": "Entry on" });
    const remove = element("button", { type: "button" }, "Delete entry");
    keys.value = entry.keys || "";
    text.value = entry.text || "";
    enabled.checked = entry.enabled !== false;
    enabledLabel.prepend(enabled);
    row.append(keys, text, enabledLabel, remove);

    async function store() {
      const body = { keys: keys.value, text: text.value, enabled: enabled.checked };
      if (!entry.id && (!body.keys.trim() || !body.text.trim())) return;
      loreState.textContent = "Saving...";
      try {
        const result = entry.id ? await api("PUT", `${base}/lore/${entry.id}/`, body) : await api("POST", `${base}/lore/`, body);
        if (result.ok) {
          entry.id = result.data.id;
          loreState.textContent = "Lore saved";
        } else {
          loreState.textContent = `Not saved: ${errorMessage(result)}`;
        }
      } catch {
        loreState.textContent = "Offline: the lore entry is not saved yet";
      }
    }
    keys.addEventListener("change", store);
    text.addEventListener("change", store);
    enabled.addEventListener("change", store);
    remove.addEventListener("click", async () => {
      if (entry.id) {
        const result = await api("DELETE", `${base}/lore/${entry.id}/`);
        if (!result.ok && result.status !== 404) {
          loreState.textContent = `Not deleted: ${errorMessage(result)}`;
          return;
        }
      }
      row.remove();
      loreState.textContent = "Entry deleted";
    });
    return row;
  }

  for (const entry of story.lore) loreList.append(loreRow({ ...entry }));
  document.getElementById("lore-add").addEventListener("click", () => {
    const row = loreRow({});
    loreList.append(row);
    row.querySelector("input").focus();
  });

  // ---- History ----
  const historyList = document.getElementById("history-list");
  const preview = document.getElementById("history-preview");
  let previewed = null;

  loaders.history = async () => {
    await save();
    const result = await api("GET", `${base}/revisions/`);
    historyList.replaceChildren();
    if (!result.ok) {
      historyList.append(element("li", {}, errorMessage(result)));
      return;
    }
    for (const item of result.data) {
      const button = element("button", { type: "button", class: "link" }, `Revision ${item.number}`);
      const meta = element("span", { class: "meta" }, ` ${when(item.created_at)} · ${item.words} words · ${item.chars} characters`);
      button.addEventListener("click", () => showRevision(item.number));
      const row = element("li");
      row.append(button, meta);
      historyList.append(row);
    }
  };

  async function showRevision(number) {
    const result = await api("GET", `${base}/revisions/${number}/`);
    if (!result.ok) return;
    previewed = number;
    document.getElementById("history-preview-title").textContent = `Revision ${number}: ${result.data.title}`;
    document.getElementById("history-preview-text").textContent = result.data.text;
    preview.hidden = false;
  }

  document.getElementById("history-restore").addEventListener("click", async () => {
    await save();
    const result = await api("POST", `${base}/revisions/${previewed}/restore`, { base_revision: revision() });
    if (result.ok) {
      loadStory(result.data);
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
    generationDone() {
      if (isOpen("seen")) loaders.seen();
      if (isOpen("history")) loaders.history();
    },
  };
}
