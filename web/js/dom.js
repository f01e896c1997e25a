// DOM helpers. Every piece of text from a workflow, a schema or the server goes in as textContent or an
// attribute value, never as HTML: this file is the only place the editor builds elements, and it has no
// innerHTML.

/**
 * Create an element: h("button", {className: "x", title: "tip", onclick: fn, dataset: {id: "a"}}, "text", child).
 * Strings among the children become text nodes; null/false children are skipped.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value == null || value === false) continue;
    if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key in el && key !== "list" && key !== "form") el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace an element's children. */
export function setChildren(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Whether an element takes typed text (fields, litegraph's prompts, our dialogs): editor shortcuts leave its keys alone. */
export function isEditable(target) {
  return !!target?.closest?.("input, textarea, select, [contenteditable=''], [contenteditable='true'], .graphdialog, .ng-modal");
}

/** Escape text for the few third-party APIs that only take HTML strings (litegraph's context menu). */
export function escapeHtml(text) {
  return String(text)
    .replaceAll("&", "&amp;")
    .replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;")
    .replaceAll("'", "&#39;");
}

/** A short-lived message in the corner of the window. kind: "info" | "error" | "success". */
export function toast(message, kind = "info", ms = 4000) {
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div", { id: "toasts", role: "status", "aria-live": "polite" });
    document.body.append(box);
  }
  const item = h("div", { className: `toast toast-${kind}` }, message);
  box.append(item);
  setTimeout(() => item.remove(), ms);
  return item;
}

/**
 * A modal dialog. Resolves with the value passed to close(value), or null when dismissed.
 * build(close) returns the dialog's content (an element or a list of them).
 */
export function modal(title, build, { className = "" } = {}) {
  return new Promise((resolve) => {
    const backdrop = h("div", { className: "ng-modal-backdrop" });
    const box = h("div", { className: `ng-modal ${className}`, role: "dialog", "aria-modal": "true", "aria-label": title });
    let done = false;
    const close = (value = null) => {
      if (done) return;
      done = true;
      backdrop.remove();
      document.removeEventListener("keydown", onKey, true);
      resolve(value);
    };
    const onKey = (e) => {
      if (e.key === "Escape") {
        e.stopPropagation();
        close(null);
      }
    };
    backdrop.addEventListener("pointerdown", (e) => {
      if (e.target === backdrop) close(null);
    });
    document.addEventListener("keydown", onKey, true);
    box.append(h("h2", {}, title), h("div", { className: "ng-modal-body" }, build(close)));
    backdrop.append(box);
    document.body.append(backdrop);
    const first = box.querySelector("input, textarea, select, button");
    first?.focus();
  });
}

/** Ask for one line of text (e.g. a workflow name). */
export function askText(title, { value = "", label = "", okText = "OK" } = {}) {
  return modal(title, (close) => {
    const input = h("input", { type: "text", value, "aria-label": label || title, className: "ng-modal-input" });
    const form = h(
      "form",
      {
        onsubmit: (e) => {
          e.preventDefault();
          close(input.value);
        },
      },
      label ? h("label", {}, label, input) : input,
      h("div", { className: "ng-modal-buttons" },
        h("button", { type: "button", onclick: () => close(null) }, "Cancel"),
        h("button", { type: "submit", className: "primary" }, okText)),
    );
    setTimeout(() => input.select(), 0);
    return form;
  });
}

/** Trigger a browser download of some text. */
export function download(filename, text, type = "application/json") {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: filename, style: { display: "none" } });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
