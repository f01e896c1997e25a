// The editor application: the object that ties the editor's parts together, and the API that pack
// extensions get (`window.app`, `setup(app)`; docs/editor.md lists the supported members). It creates
// the graph, the canvas and the parts, starts them in order, and answers for the operations on the
// graph every part uses. The parts live in their own modules: canvas, catalogue, extensions, jobs and
// run state, issues, loading, storage, saved workflows, files, clipboard, shortcuts, toolbar, panels.

import * as litegraph from "@comfyorg/litegraph";
import { Api } from "./api.js";
import { patchNumberPrompt } from "./arith.js";
import { fitView, focusNode, graphToClient, loadImage, setUpCanvas, viewCentre } from "./canvas.js";
import { loadCatalogue } from "./catalogue.js";
import { Clipboard } from "./clipboard.js";
import { patchContextMenu } from "./contextmenu.js";
import { toast } from "./dom.js";
import { addExtensionHooks, importExtensions, setUpExtensions } from "./extensions.js";
import { serverFileLists } from "./filelists.js";
import { bindDrops } from "./files.js";
import { ChangeTracker } from "./history.js";
import { Hooks } from "./hooks.js";
import { IssueList } from "./issues.js";
import { Jobs } from "./jobs.js";
import { WorkflowLoader } from "./loading.js";
import { Palette } from "./palette.js";
import { QueuePanel } from "./queue.js";
import { RunState } from "./runstate.js";
import { bindShortcuts } from "./shortcuts.js";
import { Autosave } from "./storage.js";
import { Toolbar } from "./toolbar.js";
import { installTooltips } from "./tooltips.js";
import { LinkRules } from "./types.js";
import { exportWorkflow, graphId } from "./workflow.js";

const { LGraph, LiteGraph, NumberWidget } = litegraph;

export class App {
  constructor() {
    this.litegraph = litegraph;
    this.LiteGraph = LiteGraph;
    this.api = new Api();
    this.hooks = new Hooks((err, hook) => {
      console.error(`extension hook ${hook} failed`, err);
      this.toast(`An extension failed in ${hook}: ${err?.message ?? err}`, "error");
    });
    this.widgetKinds = new Map();
    this.schemas = {};
    this.catalogue = null;
    this.linkRules = new LinkRules(); // until the catalogue states the server's: equal types only
    this.workflowUi = {}; // the loaded workflow's top-level `ui` (less the canvas view), kept on export
    this.workflowMeta = {};
    this.workflowName = null;
    this.allowAnyLink = false; // true while a workflow's links are restored as they are
    this.extensions = [];
    this.files = serverFileLists(this.api);
  }

  // --- start-up --------------------------------------------------------------------------------
  async start() {
    patchContextMenu();
    patchNumberPrompt(NumberWidget);
    const byId = (id) => document.getElementById(id);
    this.el = { canvasWrap: byId("canvas-wrap"), canvas: byId("graph-canvas"), domLayer: byId("dom-widgets") };
    this.graph = new LGraph();
    setUpCanvas(this);
    this.tracker = new ChangeTracker(this);
    this.toolbar = new Toolbar(this);
    this.issues = new IssueList(this, byId("issues"));
    this.storage = new Autosave(this);
    this.loader = new WorkflowLoader(this);
    this.clipboard = new Clipboard(this);
    this.palette = new Palette(this, byId("palette"));
    this.queuePanel = new QueuePanel(this, byId("queue-panel"));
    this.runState = new RunState(this);
    this.jobs = new Jobs(this);
    bindShortcuts(this);
    this.clipboard.bind();
    bindDrops(this);
    this.jobs.bind(this.api);
    installTooltips(this);

    await importExtensions(this);
    await loadCatalogue(this);
    await this.storage.restore();
    this.api.connect();
    this.queuePanel.refresh();
    this.files.input.refresh();
    await setUpExtensions(this, this.extensions);
    this.canvas.startRendering?.();
    this.ready = true;
    document.body.dataset.ready = "true";
    window.dispatchEvent(new CustomEvent("nodegraph:ready", { detail: { app: this } }));
  }

  // --- the extension API -----------------------------------------------------------------------
  /** Add a hook handler (see hooks.js HOOKS); returns a function that removes it. */
  on(hook, fn) {
    return this.hooks.on(hook, fn);
  }

  /**
   * ComfyUI-style registration: an object whose methods are hooks, e.g.
   * {name, setup(app), beforeRegisterNodeType(nodeClass, schema, app), nodeCreated(node, app), ...}.
   */
  registerExtension(ext) {
    if (!ext || typeof ext !== "object") throw new TypeError("registerExtension takes an object");
    this.extensions.push(ext);
    addExtensionHooks(this, ext);
    if (this.ready) ext.setup?.(this);
  }

  /** A widget factory for ports whose schema says `widget: kind`: (node, port, app) => widget. */
  registerWidget(kind, factory) {
    this.widgetKinds.set(kind, factory);
  }

  /** A button in the toolbar. */
  addToolbarButton({ label, title = "", onClick }) {
    return this.toolbar.addButton({ label, title, onClick });
  }

  toast(message, kind = "info", ms) {
    return toast(message, kind, ms);
  }

  /** The graph as a workflow (options: nodes, canvas, keepOutsideLinks; see workflow.js). */
  exportWorkflow(options) {
    return exportWorkflow(this, options);
  }

  /**
   * Replace the graph with a workflow (never queues it); its issues are shown on the nodes. A workflow
   * in the editor's format is loaded before this returns; an older one once the server upgraded it.
   * Resolves with {nodes, problems}, or null when it was not loaded.
   */
  loadWorkflow(data, options) {
    return this.loader.load(data, options);
  }

  /** Queue the graph, as the Queue button does (Ctrl+Enter). Seeds set to "randomize" get a new value first. */
  queue(options) {
    return this.jobs.queue(options);
  }

  // --- the graph -------------------------------------------------------------------------------
  nodeById(id) {
    return id == null ? null : this.graph.getNodeById(graphId(String(id)));
  }

  selectedNodes() {
    return Object.values(this.canvas.selected_nodes ?? {});
  }

  /** Add a node of a type (at pos, graph coordinates; default: the view centre, moved off other nodes). */
  addNode(type, { pos = null, select = true } = {}) {
    const node = LiteGraph.createNode(type);
    if (!node) {
      this.toast(`Unknown node type ${type}`, "error");
      return null;
    }
    const taken = (x, y) => this.graph.nodes.some((n) => Math.abs(n.pos[0] - x) < 4 && Math.abs(n.pos[1] - y) < 4);
    let [x, y] = pos ?? viewCentre(this);
    while (taken(x, y)) {
      x += 24;
      y += 24;
    }
    node.pos = [x, y];
    this.graph.add(node);
    if (select) this.canvas.selectNode(node, false);
    this.canvas.setDirty(true, true);
    this.changed();
    return node;
  }

  /** A node's widget or links changed: its shown errors are stale. */
  nodeChanged(node) {
    this.issues.nodeChanged(node);
    this.changed();
  }

  /** Tell the editor the graph changed: records an undo step and autosaves, once per burst of changes. */
  changed() {
    if (this._changeScheduled) return;
    this._changeScheduled = true;
    queueMicrotask(() => {
      this._changeScheduled = false;
      if (!this.tracker || this.tracker.restoring) return;
      if (this.tracker.check()) this.storage.save();
      this.canvas.setDirty(true, true);
    });
  }

  undo() {
    if (this.tracker.undo()) this.issues.render(); // marks of nodes that were rebuilt are gone
  }

  redo() {
    if (this.tracker.redo()) this.issues.render();
  }

  // --- the view --------------------------------------------------------------------------------
  fitView() {
    fitView(this);
  }

  focusNode(node) {
    focusNode(this, node);
  }

  /** An image for a node to draw (the canvas is redrawn when it has loaded). */
  loadImage(url, node) {
    return loadImage(this, url, node);
  }

  /** Client coordinates of a point in graph space. */
  graphToClient(pos) {
    return graphToClient(this, pos);
  }

  /** Client (page) coordinates of a node's input or output socket. */
  slotClientPos(nodeId, kind, index) {
    const node = this.nodeById(nodeId);
    return graphToClient(this, kind === "input" ? node.getInputPos(index) : node.getOutputPos(index));
  }
}
