// Loading a workflow into the editor. A workflow that is current (the editor's format, today's node
// type ids and versions) loads at once; any other is first upgraded by the server (POST /api/upgrade),
// which owns the format migrations, the renames of node types and the nodes' own migrations. A load
// replaces the graph, forgets the undo history, autosaves, shows the load's problems, calls the
// `workflowLoaded` hook and has the server validate the graph (it never runs it).

import { ApiError } from "./api.js";
import { FORMAT, WorkflowError, checkWorkflow, loadWorkflow } from "./workflow.js";

/**
 * A workflow of an older format, upgraded by the server: {workflow, issues}. Throws WorkflowError with
 * the server's explanation when the server cannot read it.
 */
export async function upgradeWorkflow(api, data) {
  let res;
  try {
    res = await api.upgrade(data);
  } catch (err) {
    if (err instanceof ApiError && err.status >= 400 && err.status < 500) throw new WorkflowError(err.message);
    throw err;
  }
  return { workflow: checkWorkflow(res?.workflow), issues: Array.isArray(res?.issues) ? res.issues : [] };
}

/** Whether the server must upgrade `data` first: an older format, a renamed type, an older node version. */
export function needsUpgrade(app, data) {
  if (data?.format !== FORMAT) return true;
  const aliases = app.catalogue?.aliases ?? {};
  const nodes = data.nodes && typeof data.nodes === "object" ? Object.values(data.nodes) : [];
  return nodes.some((n) => {
    if (!n || typeof n !== "object") return false;
    if (Object.hasOwn(aliases, n.type)) return true;
    const schema = app.schemas?.[n.type];
    return Boolean(schema && Number.isInteger(n.version) && n.version < schema.version);
  });
}

export class WorkflowLoader {
  constructor(app) {
    this.app = app;
    this.loads = 0;
  }

  /**
   * Load a workflow (never queues it). Resolves with {nodes, problems}, or null when it could not be
   * loaded (a message says why) or a later load replaced it first.
   */
  async load(data, { source = "api", name = null, validate = true } = {}) {
    const app = this.app;
    const ticket = ++this.loads;
    let read;
    let result;
    try {
      // A current workflow needs no round trip, and loads synchronously: the graph is replaced before
      // this call returns.
      read = needsUpgrade(app, data) ? await upgradeWorkflow(app.api, data) : { workflow: data, issues: [] };
      if (ticket !== this.loads) return null;
      result = loadWorkflow(app, read.workflow);
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
    for (const issue of read.issues) app.toast(String(issue?.message ?? issue?.code ?? issue), "info", 8000);
    for (const problem of result.problems) app.toast(problem, "error", 8000);
    app.hooks.emit("workflowLoaded", { workflow: app.exportWorkflow(), source });
    if (validate && app.graph.nodes.length) app.issues.validate();
    return result;
  }
}
