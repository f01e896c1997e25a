// The toolbar (web/index.html): what its buttons do, what it shows (the workflow's name, the status of
// the running job, the connection, the queue size, whether undo/redo can act), and the buttons that
// extensions add.

import { h } from "./dom.js";
import { downloadWorkflow, pickLocalFile } from "./files.js";
import { openFromServer, saveOnServer } from "./saved.js";
import { emptyWorkflow } from "./storage.js";

export class Toolbar {
  constructor(app) {
    this.app = app;
    const el = (id) => document.getElementById(id);
    this.el = {
      status: el("status"),
      connection: el("connection"),
      queueSize: el("queue-size"),
      workflowName: el("workflow-name"),
      extra: el("toolbar-extra"),
      undo: el("undo-button"),
      redo: el("redo-button"),
    };
    const on = (id, fn) => el(id)?.addEventListener("click", fn);
    on("queue-button", (e) => app.queue({ front: e.shiftKey }));
    on("save-button", () => saveOnServer(app));
    on("save-as-button", () => saveOnServer(app, { askName: true }));
    on("open-button", () => openFromServer(app));
    on("download-button", () => downloadWorkflow(app));
    on("upload-button", () => pickLocalFile(app));
    on("new-button", () => app.loadWorkflow(emptyWorkflow(), { source: "new" }));
    on("undo-button", () => app.undo());
    on("redo-button", () => app.redo());
    on("fit-button", () => app.fitView());
    on("queue-toggle", () => document.body.classList.toggle("queue-hidden"));
    on("palette-toggle", () => document.body.classList.toggle("palette-hidden"));
    on("interrupt-button", () => app.api.interrupt().catch((err) => app.toast(err.message, "error")));
    app.tracker.onChange((t) => {
      this.el.undo.disabled = !t.canUndo;
      this.el.redo.disabled = !t.canRedo;
    });
  }

  /** A button among the extensions' buttons. */
  addButton({ label, title = "", onClick }) {
    const button = h("button", { type: "button", title, onclick: onClick }, label);
    this.el.extra.append(button);
    return button;
  }

  showWorkflowName(name) {
    this.el.workflowName.textContent = name ?? "unsaved workflow";
    document.title = `${name ?? "unsaved"} — nodegraph`;
  }

  /** The status text; `state` (and the job and node it is about) go in data- attributes for styling and tests. */
  setStatus(text, state = "", { job = null, node = null } = {}) {
    const el = this.el.status;
    el.textContent = text;
    el.dataset.state = state;
    if (job) el.dataset.job = job;
    if (node) el.dataset.node = node;
    else delete el.dataset.node;
  }

  setConnection(ok) {
    this.el.connection.textContent = ok ? "connected" : "disconnected";
    this.el.connection.dataset.state = ok ? "connected" : "disconnected";
  }

  setQueueSize(n) {
    this.el.queueSize.textContent = n ? String(n) : "";
    this.el.queueSize.dataset.count = String(n);
  }
}
