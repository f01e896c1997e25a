// Workflows saved on the server (GET/PUT/DELETE /api/workflows): Save (Ctrl+S; asks for a name the
// first time), Save as (Ctrl+Shift+S; asks again), and the Open dialog (Ctrl+O) that lists the saved
// workflows to open or delete.

import { askText, h, modal, setChildren } from "./dom.js";

/** Save the graph under the workflow's name (asked when there is none, or with askName); resolves with the name or null. */
export async function saveOnServer(app, { askName = false } = {}) {
  let name = app.workflowName;
  if (!name || askName) {
    name = await askText("Save workflow", { value: name ?? "", label: "Name", okText: "Save" });
    if (!name) return null;
    name = name.trim();
  }
  try {
    const res = await app.api.saveWorkflow(name, app.exportWorkflow());
    app.workflowName = res?.name ?? name;
    app.toolbar.showWorkflowName(app.workflowName);
    app.storage.save();
    app.toast(`Saved "${app.workflowName}"`, "success");
    return app.workflowName;
  } catch (err) {
    app.toast(`Save failed: ${err.message}`, "error", 8000);
    return null;
  }
}

/** The Open dialog: pick a saved workflow to load (or delete some). */
export async function openFromServer(app) {
  let names;
  try {
    names = (await app.api.workflows()).workflows ?? [];
  } catch (err) {
    app.toast(`Cannot list workflows: ${err.message}`, "error");
    return;
  }
  const chosen = await modal("Open workflow", (close) => {
    const list = h("ul", { className: "ng-workflow-list" });
    const remove = async (name) => {
      try {
        await app.api.deleteWorkflow(name);
        names = names.filter((x) => x !== name);
        render();
      } catch (err) {
        app.toast(err.message, "error");
      }
    };
    const item = (name) =>
      h("li", {},
        h("button", { type: "button", className: "ng-link", dataset: { name }, onclick: () => close(name) }, name),
        h("button", { type: "button", className: "ng-small danger", title: `Delete ${name}`, onclick: () => remove(name) }, "✕"));
    const render = () => setChildren(list, names.length ? names.map(item) : h("li", { className: "ng-empty" }, "No saved workflows."));
    render();
    return [list, h("div", { className: "ng-modal-buttons" }, h("button", { type: "button", onclick: () => close(null) }, "Close"))];
  });
  if (!chosen) return;
  try {
    const data = await app.api.workflow(chosen);
    await app.loadWorkflow(data, { source: "server", name: chosen });
  } catch (err) {
    app.toast(`Cannot open ${chosen}: ${err.message}`, "error");
  }
}
