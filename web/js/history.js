// Undo/redo: snapshots of the workflow (our format, without the canvas view), taken after every user
// action that may have changed the graph; a snapshot equal to the current one is not a change.

import { exportWorkflow, loadWorkflow } from "./workflow.js";

export class ChangeTracker {
  constructor(app, { limit = 100 } = {}) {
    this.app = app;
    this.limit = limit;
    this.undoStack = [];
    this.redoStack = [];
    this.current = null;
    this.restoring = false;
    this.listeners = [];
  }

  snapshot() {
    return JSON.stringify(exportWorkflow(this.app, { canvas: false }));
  }

  /** Forget the history (after loading another workflow). */
  reset() {
    this.undoStack = [];
    this.redoStack = [];
    this.current = this.snapshot();
    this.notify();
  }

  /** Record a change if the graph differs from the last snapshot; returns whether it did. */
  check() {
    if (this.restoring || this.current === null) return false;
    const now = this.snapshot();
    if (now === this.current) return false;
    this.undoStack.push(this.current);
    if (this.undoStack.length > this.limit) this.undoStack.shift();
    this.redoStack = [];
    this.current = now;
    this.notify();
    return true;
  }

  get canUndo() {
    return this.undoStack.length > 0;
  }

  get canRedo() {
    return this.redoStack.length > 0;
  }

  undo() {
    this.check();
    if (!this.undoStack.length) return false;
    this.redoStack.push(this.current);
    this.restore(this.undoStack.pop());
    return true;
  }

  redo() {
    this.check();
    if (!this.redoStack.length) return false;
    this.undoStack.push(this.current);
    this.restore(this.redoStack.pop());
    return true;
  }

  restore(snapshot) {
    const app = this.app;
    // Keep what the nodes show (images, run state) across the reload, by node id and type.
    const shown = new Map(app.graph.nodes.map((n) => [`${n.id}\u0000${n.ngType}`, n.ngRun]));
    const view = { offset: [...app.canvas.ds.offset], scale: app.canvas.ds.scale };
    const selected = new Set(Object.keys(app.canvas.selected_nodes ?? {}));
    this.restoring = true;
    try {
      const workflow = JSON.parse(snapshot);
      workflow.ui = { ...(workflow.ui ?? {}), canvas: view };
      loadWorkflow(app, workflow);
      for (const node of app.graph.nodes) {
        const run = shown.get(`${node.id}\u0000${node.ngType}`);
        if (run && node.ngRun) Object.assign(node.ngRun, { images: run.images, text: run.text, preview: run.preview });
        if (selected.has(String(node.id))) app.canvas.selectNode(node, true);
      }
    } finally {
      this.restoring = false;
    }
    this.current = snapshot;
    app.storage.save();
    app.canvas.setDirty(true, true);
    this.notify();
  }

  onChange(fn) {
    this.listeners.push(fn);
  }

  notify() {
    for (const fn of this.listeners) fn(this);
  }
}
