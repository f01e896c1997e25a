// The queue panel: the running job (cancel), the queued jobs (cancel, move up/down), and the history
// (status, duration, error; load its workflow, queue it again, forget it). Refreshed on the server's
// status and job_finished messages.

import { h, setChildren } from "./dom.js";

function shortId(id) {
  return String(id).slice(0, 8);
}

function duration(job) {
  if (job.started == null || job.finished == null) return "";
  const s = job.finished - job.started;
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`;
}

function timeOf(t) {
  return t ? new Date(t * 1000).toLocaleTimeString() : "";
}

function title(job) {
  return job.workflow?.meta?.title || job.workflow?.meta?.name || `job ${shortId(job.id)}`;
}

export class QueuePanel {
  constructor(app, root) {
    this.app = app;
    this.root = root;
    this.running = h("div", { className: "ng-queue-running" });
    this.queued = h("ol", { className: "ng-queue-list" });
    this.history = h("ol", { className: "ng-history-list" });
    this.historyTotal = h("span", { className: "ng-count" });
    setChildren(
      root,
      h("div", { className: "ng-panel-title" }, "Queue"),
      h("section", { "aria-label": "Running" }, h("h3", {}, "Running"), this.running),
      h("section", { "aria-label": "Queued" }, h("h3", {}, "Queued"), this.queued),
      h(
        "section",
        { "aria-label": "History" },
        h("h3", {}, "History ", this.historyTotal,
          h("button", { type: "button", className: "ng-small", title: "Refresh", onclick: () => this.refresh() }, "↻")),
        this.history,
      ),
    );
    this._pending = null;
    this.generation = 0;
  }

  /** Refresh soon (several messages in a burst make one refresh). */
  refreshSoon() {
    if (this._pending) return;
    this._pending = Promise.resolve().then(() => {
      this._pending = null;
      return this.refresh();
    });
  }

  async refresh() {
    const generation = ++this.generation;
    let jobs;
    let history;
    try {
      [jobs, history] = await Promise.all([this.app.api.jobs(), this.app.api.history({ limit: 30 })]);
    } catch (err) {
      if (generation === this.generation) setChildren(this.running, h("div", { className: "ng-error-text" }, `queue unavailable: ${err.message}`));
      return;
    }
    if (generation !== this.generation) return; // a newer refresh won
    this.render(jobs, history);
    this.app.toolbar.setQueueSize((jobs.queued?.length ?? 0) + (jobs.running ? 1 : 0));
  }

  render(jobs, history) {
    const api = this.app.api;
    const act = (fn) => async () => {
      try {
        await fn();
      } catch (err) {
        this.app.toast(err.message, "error");
      }
      this.refresh();
    };
    const run = jobs.running;
    setChildren(
      this.running,
      run
        ? h(
            "div",
            { className: "ng-job ng-job-running", dataset: { jobId: run.id, status: run.status } },
            h("span", { className: "ng-job-title" }, title(run)),
            h("span", { className: "ng-job-meta" }, `started ${timeOf(run.started)}`),
            h("button", { type: "button", className: "ng-small danger", title: "Cancel the running job", onclick: act(() => api.interrupt(run.id)) }, "Cancel"),
          )
        : h("div", { className: "ng-empty" }, "Nothing is running."),
    );
    const queued = jobs.queued ?? [];
    setChildren(
      this.queued,
      queued.length
        ? queued.map((job, i) =>
            h(
              "li",
              { className: "ng-job", dataset: { jobId: job.id, status: job.status } },
              h("span", { className: "ng-job-title" }, title(job)),
              h("span", { className: "ng-job-meta" }, `#${i + 1} · ${timeOf(job.created)}`),
              h("button", { type: "button", className: "ng-small", title: "Move up", disabled: i === 0, onclick: act(() => api.moveJob(job.id, i - 1)) }, "↑"),
              h("button", { type: "button", className: "ng-small", title: "Move down", disabled: i === queued.length - 1, onclick: act(() => api.moveJob(job.id, i + 1)) }, "↓"),
              h("button", { type: "button", className: "ng-small danger", title: "Remove from the queue", onclick: act(() => api.deleteJob(job.id)) }, "✕"),
            ),
          )
        : h("li", { className: "ng-empty" }, "The queue is empty."),
    );
    const items = history.jobs ?? [];
    this.historyTotal.textContent = String(history.total ?? items.length);
    setChildren(
      this.history,
      items.length
        ? items.map((job) => {
            const images = Object.values(job.outputs ?? {}).flatMap((ui) => ui?.images ?? []).slice(0, 4);
            return h(
              "li",
              { className: `ng-job ng-status-${job.status}`, dataset: { jobId: job.id, status: job.status } },
              h("span", { className: "ng-job-status" }, job.status),
              h("span", { className: "ng-job-title" }, title(job)),
              h("span", { className: "ng-job-meta" }, `${timeOf(job.finished)} ${duration(job)}`),
              job.error ? h("div", { className: "ng-error-text", title: job.error.traceback ?? "" }, `${job.error.node ?? ""}: ${job.error.message ?? job.error.error_type ?? ""}`) : null,
              images.length
                ? h("div", { className: "ng-thumbs" }, images.map((img) => h("img", { src: api.viewUrl(img), alt: img.filename ?? "", loading: "lazy" })))
                : null,
              h(
                "div",
                { className: "ng-job-actions" },
                job.workflow ? h("button", { type: "button", className: "ng-small", title: "Load this job's workflow", onclick: () => this.app.loadWorkflow(job.workflow, { source: "history" }) }, "Load") : null,
                h("button", { type: "button", className: "ng-small", title: "Queue again", onclick: act(() => this.app.jobs.track(api.requeue(job.id))) }, "Re-queue"),
                h("button", { type: "button", className: "ng-small", title: "Forget", onclick: act(() => api.deleteHistory(job.id)) }, "✕"),
              ),
            );
          })
        : h("li", { className: "ng-empty" }, "No finished jobs yet."),
    );
  }
}
