// The workflow kept in this browser (localStorage): saved after every change of the graph and restored
// on reload. A first visit, with nothing saved, opens the server's default template (templates.js).

import { defaultWorkflow } from "./templates.js";

const STORAGE_WORKFLOW = "nodegraph.workflow";
const STORAGE_NAME = "nodegraph.workflow_name";

export class Autosave {
  constructor(app) {
    this.app = app;
  }

  /** Keep the current workflow and its name. */
  save() {
    const app = this.app;
    try {
      localStorage.setItem(STORAGE_WORKFLOW, JSON.stringify(app.exportWorkflow()));
      if (app.workflowName) localStorage.setItem(STORAGE_NAME, app.workflowName);
      else localStorage.removeItem(STORAGE_NAME);
    } catch {
      // storage full or disabled
    }
  }

  /** Load the kept workflow (not validated), or the default template when there is none or it does not load. */
  async restore() {
    const app = this.app;
    let data = null;
    try {
      data = JSON.parse(localStorage.getItem(STORAGE_WORKFLOW) ?? "null");
    } catch {
      data = null;
    }
    if (data && (await app.loadWorkflow(data, { source: "autosave", name: localStorage.getItem(STORAGE_NAME), validate: false }))) return;
    await app.loadWorkflow(await defaultWorkflow(app), { source: "default", validate: false });
  }
}
