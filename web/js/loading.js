// Loading a workflow into the editor: the graph is replaced (workflow.js), the undo history forgotten,
// the workflow autosaved, the load's problems shown, the `workflowLoaded` hook called and the graph
// validated by the server (it never runs it).

import { WorkflowError, loadWorkflow } from "./workflow.js";

export class WorkflowLoader {
  constructor(app) {
    this.app = app;
  }

  /** Load a workflow (never queues it); returns {nodes, problems}, or null when it could not be loaded (a message says why). */
  load(data, { source = "api", name = null, validate = true } = {}) {
    const app = this.app;
    let result;
    try {
      result = loadWorkflow(app, data);
    } catch (err) {
      const message = err instanceof WorkflowError ? err.message : `cannot load this workflow: ${err.message}`;
      app.toast(message, "error", 8000);
      return null;
    }
    app.workflowName = name;
    app.toolbar.showWorkflowName(name);
    app.issues.clear();
    app.tracker.reset();
    app.storage.save();
    for (const problem of result.problems) app.toast(problem, "error", 8000);
    app.hooks.emit("workflowLoaded", { workflow: app.exportWorkflow(), source });
    if (validate && app.graph.nodes.length) app.issues.validate();
    return result;
  }
}
