// The hook registry behind the extension API (docs/editor.md, "Extensions"). A failing hook is
// reported and skipped: one broken extension does not break the editor or the other extensions.

export const HOOKS = [
  "beforeRegisterNodeType", // {nodeClass, schema}: before litegraph registers a node class
  "nodeCreated", // {node, schema}: a node was created (palette, load, paste)
  "workflowLoaded", // {workflow}: a workflow was loaded into the graph
  "beforeQueue", // {workflow, targets}: may change the workflow; throw to stop the queueing
  "queued", // {jobId, position, workflow}
  "message", // {type, data}: every WebSocket message
  "executed", // {node, ui}: a node finished (or came from the cache) in one of this editor's jobs
  "jobFinished", // {jobId, status, error}
  "nodeMenu", // {node} -> returns extra litegraph menu items for the node's context menu
];

export class Hooks {
  constructor(onError = console.error) {
    this.handlers = new Map(HOOKS.map((h) => [h, []]));
    this.onError = onError;
  }

  /** Add a handler; returns a function that removes it. */
  on(name, fn) {
    if (!this.handlers.has(name)) throw new Error(`unknown hook "${name}"; hooks are: ${HOOKS.join(", ")}`);
    this.handlers.get(name).push(fn);
    return () => {
      const list = this.handlers.get(name);
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    };
  }

  /** Call every handler of a hook with the payload (synchronously; errors are reported, not thrown). */
  emit(name, payload) {
    for (const fn of this.handlers.get(name) ?? []) {
      try {
        fn(payload);
      } catch (err) {
        this.onError(err, name);
      }
    }
  }

  /** Call every handler and collect what they return (skipping undefined). */
  collect(name, payload) {
    const out = [];
    for (const fn of this.handlers.get(name) ?? []) {
      try {
        const r = fn(payload);
        if (r !== undefined && r !== null) out.push(r);
      } catch (err) {
        this.onError(err, name);
      }
    }
    return out;
  }

  /** Like emit, but awaits each handler and lets errors through (beforeQueue may veto). */
  async emitStrict(name, payload) {
    for (const fn of this.handlers.get(name) ?? []) await fn(payload);
  }
}
