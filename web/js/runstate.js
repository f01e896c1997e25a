// What the events of this editor's jobs show: the running node outlined, progress on the node and
// `step/total` in the status bar, previews while a node samples, each finished node's images or text,
// the `cached` mark, a failure on the node that failed (with its traceback in the problem list), and
// the `executed` and `jobFinished` hooks. A bounded log of the events is kept for tests.

const LOG_MAX = 2000;

export class RunState {
  constructor(app) {
    this.app = app;
    this.runningJob = null;
    this.lastJob = null; // {id, status} of the last job of this editor that finished
    this.eventLog = [];
  }

  /** Apply one run event ({type, data} of a WebSocket message) of this editor's job to the nodes it names. */
  apply(type, data) {
    this.eventLog.push({ type, node: data.node ?? null, step: data.step, total: data.total });
    if (this.eventLog.length > LOG_MAX) this.eventLog.splice(0, LOG_MAX / 2);
    const node = this.app.nodeById(data.node);
    const handler = HANDLERS[type];
    if (handler) handler.call(this, data, node?.ngRun ? node : null, node);
    this.app.canvas.setDirty(true, true);
  }

  status(text, state, data, node = null) {
    this.app.toolbar.setStatus(text, state, { job: data.job_id, node: node ? String(node.id) : null });
  }

  jobStarted(data) {
    this.runningJob = data.job_id;
    for (const n of this.app.graph.nodes) {
      if (!n.ngRun) continue;
      n.ngRun.state = null;
      n.progress = undefined;
    }
    this.app.issues.clear();
    this.status("running", "running", data);
  }

  nodeStarted(data, node) {
    if (!node) return;
    node.ngRun.state = "running";
    node.progress = undefined;
    this.status(`running ${node.title}`, "running", data, node);
  }

  progress(data, node) {
    if (!node) return;
    const { step, total } = data;
    Object.assign(node.ngRun, { state: "running", step, total });
    node.progress = total ? Math.max(0.001, Math.min(1, step / total)) : undefined;
    this.status(`running ${node.title}${total ? ` ${step}/${total}` : ` step ${step}`}`, "running", data, node);
  }

  preview(data, node) {
    if (node && typeof data.image === "string") node.ngSetPreview(data.image);
  }

  nodeFinished(data, node, cached) {
    if (!node) return;
    node.ngRun.state = cached ? "cached" : "done";
    node.progress = undefined;
    const ui = data.ui ?? {};
    if (Array.isArray(ui.images) && ui.images.length) node.ngSetImages(ui.images);
    if (Array.isArray(ui.text)) node.ngRun.text = ui.text.map(String);
    this.app.hooks.emit("executed", { node, ui });
  }

  nodeFailed(data, node, anyNode) {
    if (!anyNode) return;
    if (node) {
      node.ngRun.state = "failed";
      node.progress = undefined;
    }
    this.app.issues.add(failure(data.node, data));
  }

  jobFinished(data) {
    this.runningJob = null;
    for (const n of this.app.graph.nodes) {
      if (n.ngRun?.state === "running") n.ngRun.state = null;
      n.progress = undefined;
    }
    const seconds = typeof data.duration === "number" ? ` in ${data.duration.toFixed(2)} s` : "";
    this.lastJob = { id: data.job_id, status: data.status };
    this.status(`${data.status}${seconds}`, data.status, data);
    const err = data.error;
    // Mark the failed node, unless its node_failed event already did.
    if (data.status === "failed" && err?.node && !this.app.nodeById(err.node)?.ngErrors?.length) this.app.issues.add(failure(err.node, err));
    this.app.hooks.emit("jobFinished", { jobId: data.job_id, status: data.status, error: err ?? null });
  }
}

/** The problem-list entry of a run-time failure. */
function failure(node, { error_type: code, message, traceback }) {
  return { node, port: null, code, message: `${code}: ${message}`, traceback };
}

const HANDLERS = {
  job_started: RunState.prototype.jobStarted,
  node_started: RunState.prototype.nodeStarted,
  progress: RunState.prototype.progress,
  preview: RunState.prototype.preview,
  node_cached(data, node) {
    this.nodeFinished(data, node, true);
  },
  node_completed(data, node) {
    this.nodeFinished(data, node, false);
  },
  node_failed: RunState.prototype.nodeFailed,
  job_finished: RunState.prototype.jobFinished,
};
