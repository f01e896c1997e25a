// Problems shown where they are: validation issues and run-time failures marked on the nodes that
// caused them (the port named by an issue is outlined, see nodes.js), and the list of problems at the
// bottom left (click one to go to its node; a failure's traceback folds open). Text only.

import { ApiError } from "./api.js";
import { h, setChildren } from "./dom.js";

export class IssueList {
  constructor(app, box) {
    this.app = app;
    this.box = box;
    this.list = [];
  }

  /** Forget every problem, on the nodes and in the list. */
  clear() {
    this.list = [];
    for (const n of this.app.graph.nodes) {
      if (n.ngErrors) n.ngErrors = [];
      n.has_errors = false;
    }
    this.render();
  }

  /** Replace the problems with these ({node, port, code, message, traceback?}). */
  show(issues) {
    this.clear();
    for (const issue of issues) this.add(issue, { render: false });
    this.render();
  }

  add(issue, { render = true } = {}) {
    this.list.push(issue);
    const node = this.app.nodeById(issue.node);
    if (node?.ngErrors) {
      node.ngErrors.push({ message: String(issue.message ?? issue.code ?? "error"), port: issue.port ?? null, code: issue.code ?? null });
      node.has_errors = true;
    }
    if (render) this.render();
  }

  /** A node's widget or links changed: its marks are stale. */
  nodeChanged(node) {
    if (!node?.ngErrors?.length) return;
    node.ngErrors = [];
    node.has_errors = false;
    this.render();
  }

  /** Ask the server to validate the graph and show its issues (nothing runs). */
  async validate() {
    try {
      const res = await this.app.api.validate(this.app.exportWorkflow());
      this.show(res.issues ?? []);
      return res;
    } catch (err) {
      if (err instanceof ApiError && err.payload?.issues) this.show(err.payload.issues);
      return null;
    }
  }

  render() {
    const app = this.app;
    // Issues of a node edited since are gone; those of nodes not in the graph stay listed.
    this.list = this.list.filter((i) => {
      const node = app.nodeById(i.node);
      return !node || node.ngErrors?.length;
    });
    const issues = this.list;
    this.box.hidden = !issues.length;
    setChildren(
      this.box,
      issues.length ? h("div", { className: "ng-issues-title" }, `${issues.length} problem${issues.length > 1 ? "s" : ""}`,
        h("button", { type: "button", className: "ng-small", title: "Hide", onclick: () => this.clear() }, "✕")) : null,
      issues.map((issue) => this.item(issue)),
    );
    app.canvas?.setDirty(true, true);
  }

  item(issue) {
    const node = this.app.nodeById(issue.node);
    const port = issue.port ? `.${issue.port}` : "";
    const where = node ? `${node.title}${port}` : issue.node ? `${issue.node}${port}` : "workflow";
    return h(
      "div",
      { className: "ng-issue", dataset: { node: issue.node ?? "", code: issue.code ?? "" } },
      h("button", { type: "button", className: "ng-link", disabled: !node, onclick: () => node && this.app.focusNode(node) }, where),
      h("span", { className: "ng-issue-message" }, String(issue.message ?? issue.code ?? "")),
      issue.traceback ? h("details", {}, h("summary", {}, "traceback"), h("pre", {}, String(issue.traceback))) : null,
    );
  }
}
