// This editor's jobs: queueing the graph (seeds on "randomize" get a new value first, the `beforeQueue`
// hook may change the workflow or stop the queueing, validation issues are shown on the nodes), knowing
// which jobs are its own (those its requests created, also when their first events arrive before the
// request's answer), and routing the server's WebSocket messages: connection and queue status to the
// toolbar and the queue panel, the run events of its own jobs to the run state (runstate.js).

import { ApiError } from "./api.js";

const PENDING_MAX = 1000; // events kept per job while a request of ours has not answered yet

export class Jobs {
  constructor(app) {
    this.app = app;
    this.mine = new Set();
    this.pending = new Map(); // job id -> [{type, data}] that came before we knew whose job it is
    this.inFlight = 0;
  }

  /** Queue the graph (Ctrl+Enter): resolves with the server's answer, or null when it was not queued. */
  async queue({ targets = null, front = false } = {}) {
    const app = this.app;
    randomizeSeeds(app.graph);
    app.changed();
    app.issues.clear();
    const workflow = app.exportWorkflow();
    try {
      await app.hooks.emitStrict("beforeQueue", { workflow, targets });
    } catch (err) {
      app.toast(`Not queued: ${err.message}`, "error");
      return null;
    }
    let res;
    try {
      res = await this.track(app.api.queue(workflow, { targets, front }));
    } catch (err) {
      if (err instanceof ApiError && err.payload?.issues) {
        app.issues.show(err.payload.issues);
        app.toast(`Not queued: ${err.payload.issues.length} problem(s) in the workflow; see the marked nodes`, "error", 6000);
      } else app.toast(`Not queued: ${err.message}`, "error", 6000);
      return null;
    }
    app.hooks.emit("queued", { jobId: res.job_id, position: res.position, workflow });
    app.queuePanel.refreshSoon();
    return res;
  }

  /** Follow the job a request of this editor creates (queue, re-queue from the history). */
  async track(request) {
    this.inFlight++;
    try {
      const res = await request;
      this.claim(res.job_id);
      return res;
    } finally {
      // Events of jobs no request of ours created belong to other clients: forget them.
      if (--this.inFlight === 0) this.pending.clear();
    }
  }

  claim(jobId) {
    this.mine.add(jobId);
    const early = this.pending.get(jobId) ?? [];
    this.pending.delete(jobId);
    for (const msg of early) this.app.runState.apply(msg.type, msg.data);
  }

  /** Listen to the API client's connection events and WebSocket messages. */
  bind(api) {
    const app = this.app;
    api.addEventListener("connected", () => app.toolbar.setConnection(true));
    api.addEventListener("reconnected", () => {
      app.toolbar.setConnection(true);
      app.queuePanel.refresh();
    });
    api.addEventListener("disconnected", () => app.toolbar.setConnection(false));
    api.addEventListener("message", (e) => this.onMessage(e.detail));
  }

  onMessage({ type, data }) {
    const app = this.app;
    app.hooks.emit("message", { type, data });
    if (type === "status") {
      app.toolbar.setQueueSize((data.queue_remaining ?? 0) + (data.running ? 1 : 0));
      app.queuePanel.refreshSoon();
      return;
    }
    if (type === "validation_failed") {
      app.issues.show(data.issues ?? []);
      return;
    }
    const jobId = data?.job_id;
    if (!jobId) return;
    if (this.mine.has(jobId)) app.runState.apply(type, data);
    else if (this.inFlight > 0) {
      // Our POST /api/jobs may not have answered yet: keep the events until it does.
      if (!this.pending.has(jobId)) this.pending.set(jobId, []);
      const list = this.pending.get(jobId);
      if (list.length < PENDING_MAX) list.push({ type, data });
    }
    if (type === "job_finished" || type === "job_started") app.queuePanel.refreshSoon();
  }
}

/** Seeds on "randomize" whose socket has no link get a new value. */
function randomizeSeeds(graph) {
  for (const node of graph.nodes) {
    for (const w of node.widgets ?? []) {
      if (w.ngRandomize && w.ngSeedControl?.value === "randomize" && node.getSlotFromWidget(w)?.link == null) w.ngRandomize();
    }
  }
}
