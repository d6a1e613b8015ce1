// Building the page with DOM APIs only: text goes in as text nodes, never
// as markup, so a key's name or metadata can never become an element.

/**
 * An element: `h("p", { class: "x" }, "text", child)`. Attributes are set
 * with setAttribute (`on*` refused); `on` is an object of event listeners;
 * strings and numbers become text nodes.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") {
      for (const [event, listener] of Object.entries(value)) el.addEventListener(event, listener);
    } else if (name.startsWith("on") || name === "style") {
      throw new Error("refused attribute " + name);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** Replaces every child of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

let ids = 0;

/** A fresh element id. */
export function uid(stem) {
  ids += 1;
  return stem + "-" + ids;
}

/** A labelled control: `field("Name", input)`, with an optional hint. */
export function field(label, control, hint) {
  if (!control.id) control.id = uid("f");
  const parts = [h("label", { for: control.id }, label), control];
  if (hint) {
    const hintId = control.id + "-hint";
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("small", { id: hintId, class: "hint" }, hint));
  }
  return h("div", { class: "field" }, parts);
}

/** A timestamp as the reader's local time, or a dash. */
export function when(text) {
  if (!text) return "—";
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return String(text);
  return date.toLocaleString() + " (" + text + ")";
}

/** A modal confirmation: resolves with true when confirmed. */
export function confirmDialog(title, body, confirmLabel, danger) {
  return new Promise((resolve) => {
    const ok = h("button", { type: "submit", class: danger ? "danger" : "primary", value: "ok" }, confirmLabel);
    const cancel = h("button", { type: "button", value: "cancel" }, "Cancel");
    const titleId = uid("dialog-title");
    const dialog = h("dialog", { "aria-labelledby": titleId },
      h("form", { method: "dialog" },
        h("h2", { id: titleId }, title),
        body,
        h("div", { class: "actions" }, cancel, ok)));
    let done = false;
    const finish = (value) => {
      if (done) return;
      done = true;
      dialog.close();
      dialog.remove();
      resolve(value);
    };
    cancel.addEventListener("click", () => finish(false));
    dialog.addEventListener("cancel", () => finish(false));
    dialog.querySelector("form").addEventListener("submit", (event) => {
      event.preventDefault();
      finish(true);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    cancel.focus();
  });
}
