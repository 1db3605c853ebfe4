// The model's choices: when a story records them, hovering a word of the last
// continuation shows the candidates the model weighed for it, with their chances;
// clicking one rewrites the story from there, starting with that candidate.

const percent = (p) => `${(p * 100).toFixed(1)}%`;
// Line breaks made visible; a candidate's leading space shows as a space.
const visible = (text) => text.replaceAll("\n", "\u21b5");

export function initChoices({ root, editor, onRewrite }) {
  let tokens = null; // [{start, end, id, top: [[id, text, probability]]}] in the editor's text
  let shown = null;
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

  function show(token, x, y) {
    if (shown === token) return;
    shown = token;
    popup.replaceChildren();
    const title = document.createElement("p");
    title.className = "meta";
    title.textContent = "The model weighed:";
    popup.append(title);
    for (const [id, text, probability] of token.top) {
      const button = document.createElement("button");
      button.type = "button";
      button.setAttribute("role", "menuitem");
      button.dataset.token = String(id);
      button.textContent = `${visible(text)}  ${percent(probability)}`;
      if (id === token.id) button.classList.add("written");
      button.title = id === token.id ? "What it wrote" : "Rewrite from here, starting with this";
      button.addEventListener("click", () => {
        const at = token.start;
        tokens = null;
        hide();
        onRewrite({ at, firstToken: id });
      });
      popup.append(button);
    }
    popup.style.left = `${x + window.scrollX + 8}px`;
    popup.style.top = `${y + window.scrollY + 14}px`;
    popup.hidden = false;
  }

  root.addEventListener("mousemove", (event) => {
    if (!tokens) return;
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

  return {
    // A continuation written at `start` as `text`, and its recorded choices.
    set(start, text, choices) {
      let at = start;
      const spans = choices.map((choice) => {
        const span = { start: at, end: at + choice.text.length, id: choice.id, top: choice.top };
        at = span.end;
        return span;
      });
      // Only when the pieces spell the text exactly (a stop sequence may have cut it).
      tokens = choices.length && choices.map((c) => c.text).join("") === text ? spans : null;
      root.dataset.choices = tokens ? "ready" : "";
    },
    clear() {
      tokens = null;
      root.dataset.choices = "";
      hide();
    },
  };
}
