// Keyboard shortcuts (the table in docs/editor.md). Queue, Save and Open work everywhere, also while
// typing a prompt; Escape closes a context menu; the graph's own shortcuts (undo, redo, copy, paste,
// delete) act only when no text field, dialog or search box has the keyboard. litegraph's keys on
// the focused canvas (Ctrl+A, Space-drag) are its own.

import { LiteGraph } from "@comfyorg/litegraph";
import { isEditable } from "./dom.js";
import { openFromServer, saveOnServer } from "./saved.js";

// Ctrl (or Cmd) + key, everywhere.
const EVERYWHERE = new Map([
  ["enter", (app, e) => app.queue({ front: e.shiftKey })],
  ["s", (app, e) => saveOnServer(app, { askName: e.shiftKey })],
  ["o", (app) => openFromServer(app)],
]);

export function bindShortcuts(app) {
  window.addEventListener("keydown", (e) => onKeyDown(app, e), true);
}

function stop(e) {
  e.preventDefault();
  e.stopPropagation();
}

function onKeyDown(app, e) {
  const mod = e.ctrlKey || e.metaKey;
  const key = e.key.toLowerCase();
  const action = mod && EVERYWHERE.get(key);
  if (action) {
    stop(e);
    action(app, e);
    return;
  }
  if (key === "escape" && document.querySelector(".litecontextmenu")) {
    LiteGraph.closeAllContextMenus(window);
    return;
  }
  if (isEditable(e.target) || document.querySelector(".ng-modal, .ng-search-dialog")) return;
  if (mod && key === "z" && !e.shiftKey) {
    stop(e);
    app.undo();
  } else if (mod && (key === "y" || (key === "z" && e.shiftKey))) {
    stop(e);
    app.redo();
  } else if (mod && key === "c") {
    e.stopPropagation(); // not preventDefault: the browser's copy event also gets the JSON
    app.clipboard.copy();
  } else if (mod && key === "v") {
    e.stopPropagation(); // not preventDefault: the browser's paste event brings the system clipboard
    app.clipboard.pasteShortcut({ keepOutsideLinks: e.shiftKey });
  } else if (key === "delete" || key === "backspace") {
    stop(e);
    app.canvas.deleteSelected();
    app.changed();
  }
}
