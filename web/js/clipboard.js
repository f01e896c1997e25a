// Copy/paste of nodes, in our workflow format: Ctrl+C copies the selected nodes (with the links among
// them, and those from outside for Ctrl+Shift+V), Ctrl+V pastes them at the mouse with new ids. The
// copy also goes to the system clipboard as workflow JSON, and pasting workflow JSON text (from a file
// or another editor) adds its nodes; text in an older format is upgraded by the server first.

import { isEditable } from "./dom.js";
import { upgradeWorkflow } from "./loading.js";
import { FORMAT, addWorkflowNodes, checkWorkflow, exportWorkflow } from "./workflow.js";

const KEY = "nodegraph.clipboard";

export class Clipboard {
  constructor(app) {
    this.app = app;
    this.pasteHandled = false;
  }

  /** Take the browser's copy and paste events (the system clipboard carries workflow JSON). */
  bind() {
    document.addEventListener("paste", (e) => this.onPasteEvent(e));
    document.addEventListener("copy", (e) => this.onCopyEvent(e));
  }

  /** Copy nodes (default: the selection); returns the copied workflow or null. */
  copy(nodes = this.app.selectedNodes()) {
    if (!nodes.length) return null;
    const workflow = this.exportNodes(nodes);
    const text = JSON.stringify(workflow);
    try {
      localStorage.setItem(KEY, text);
    } catch {
      // storage full or disabled: the in-memory copy still works in this tab
    }
    this.memory = text;
    return workflow;
  }

  exportNodes(nodes) {
    const workflow = exportWorkflow(this.app, { nodes, canvas: false, keepOutsideLinks: true });
    delete workflow.ui.groups;
    return workflow;
  }

  stored() {
    let text = null;
    try {
      text = localStorage.getItem(KEY);
    } catch {
      text = null;
    }
    text ??= this.memory;
    if (!text) return null;
    try {
      return checkWorkflow(JSON.parse(text));
    } catch {
      return null;
    }
  }

  /**
   * Paste a workflow's nodes (default: the copied ones) with their top-left corner at the mouse.
   * keepOutsideLinks: also link inputs to the nodes they came from, when those are in the graph.
   */
  paste({ workflow = this.stored(), keepOutsideLinks = false, at = null } = {}) {
    if (!workflow || !Object.keys(workflow.nodes).length) return [];
    const app = this.app;
    let minX = Infinity;
    let minY = Infinity;
    for (const entry of Object.values(workflow.nodes)) {
      const pos = entry?.ui?.pos;
      if (Array.isArray(pos)) {
        minX = Math.min(minX, pos[0]);
        minY = Math.min(minY, pos[1]);
      }
    }
    if (!Number.isFinite(minX)) minX = minY = 0;
    const target = at ?? app.canvas.graph_mouse;
    const { nodes } = addWorkflowNodes(app, workflow, {
      freshIds: true,
      offset: [target[0] - minX, target[1] - minY],
      keepOutsideLinks,
    });
    const created = [...nodes.values()];
    app.canvas.deselectAll();
    for (const node of created) app.canvas.selectNode(node, true);
    app.canvas.setDirty(true, true);
    app.changed();
    return created;
  }

  /**
   * Ctrl+V. The browser's paste event (system clipboard text) comes right after the key, in the same
   * task; if it did not paste a workflow, paste the editor's own clipboard.
   */
  pasteShortcut({ keepOutsideLinks = false } = {}) {
    this.pasteHandled = false;
    setTimeout(() => {
      if (!this.pasteHandled) this.paste({ keepOutsideLinks });
    }, 0);
  }

  onCopyEvent(e) {
    if (isEditable(e.target)) return;
    const nodes = this.app.selectedNodes();
    if (!nodes.length) return;
    e.clipboardData?.setData("text/plain", JSON.stringify(this.exportNodes(nodes), null, 2));
    e.preventDefault();
  }

  /** Workflow JSON text from the system clipboard: paste its nodes (a copy made by this editor gives the same result as its own clipboard). */
  onPasteEvent(e) {
    if (isEditable(e.target)) return;
    const text = e.clipboardData?.getData("text/plain");
    if (!text || !text.trim().startsWith("{")) return;
    let data;
    try {
      data = JSON.parse(text);
      if (data?.format === FORMAT) checkWorkflow(data);
      else if (typeof data?.format !== "string") return; // JSON, but no workflow
    } catch {
      return;
    }
    this.pasteHandled = true;
    e.preventDefault();
    if (data.format === FORMAT) {
      this.paste({ workflow: data });
      return;
    }
    const at = [...this.app.canvas.graph_mouse];
    upgradeWorkflow(this.app.api, data)
      .then(({ workflow }) => this.paste({ workflow, at }))
      .catch((err) => this.app.toast(`Cannot paste this workflow: ${err.message}`, "error", 8000));
  }
}
