// litegraph's context menu takes HTML strings for its items' names and its title; in the editor they
// come from workflows (titles, slot names, uploaded file names). This patch escapes them, so that they
// always show as text.

import { ContextMenu, LiteGraph } from "@comfyorg/litegraph";
import { escapeHtml } from "./dom.js";

let patched = false;

/** Escape the names and titles of every context menu litegraph builds (once per page). */
export function patchContextMenu() {
  if (patched) return;
  patched = true;
  const addItem = ContextMenu.prototype.addItem;
  ContextMenu.prototype.addItem = function (name, value, options) {
    const safeName = name == null ? name : escapeHtml(name);
    let safeValue = value;
    if (value && typeof value === "object" && value.title != null) {
      safeValue = Object.create(value, { title: { value: escapeHtml(value.title), enumerable: true } });
    }
    return addItem.call(this, safeName, safeValue, options);
  };
  class SafeContextMenu extends ContextMenu {
    constructor(values, options, win) {
      super(values, options?.title != null ? { ...options, title: escapeHtml(options.title) } : options, win);
    }
  }
  LiteGraph.ContextMenu = SafeContextMenu;
}
