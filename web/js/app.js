// The editor application: owns the litegraph graph and canvas, the server API, the node types built
// from the server's schemas, the queue and the live run state, and the extension hooks.
//
// `window.app` is this object; pack extensions get it in `setup(app)` (docs/editor.md lists the
// supported members).

import * as litegraph from "@comfyorg/litegraph";
import { Api, ApiError } from "./api.js";
import { patchNumberPrompt } from "./arith.js";
import { Clipboard } from "./clipboard.js";
import { download, escapeHtml, h, modal, askText, setChildren, toast } from "./dom.js";
import { DomWidgetLayer } from "./domwidgets.js";
import { ChangeTracker } from "./history.js";
import { HOOKS, Hooks } from "./hooks.js";
import { registerNodeTypes } from "./nodes.js";
import { Palette, openSearchDialog } from "./palette.js";
import { readPngWorkflow } from "./png.js";
import { QueuePanel } from "./queue.js";
import { installTooltips } from "./tooltips.js";
import { colourType, compatible, installTypeRules } from "./types.js";
import { setWidgetLiteral } from "./widgets.js";
import { WorkflowError, exportWorkflow, graphId, loadWorkflow, migrate } from "./workflow.js";

const { LGraph, LGraphCanvas, LiteGraph, ContextMenu, NumberWidget } = litegraph;

const STORAGE_WORKFLOW = "nodegraph.workflow";
const STORAGE_NAME = "nodegraph.workflow_name";
const IMAGE_TYPES = /^image\/(png|jpeg|webp|bmp)$/;
// the prompt of the first graph a new user sees, as in workflows/text2image.json
const DEFAULT_PROMPT = "a large red circle in the center on a white background";

let contextMenuPatched = false;

/**
 * litegraph's context menu takes HTML strings for item names and titles; ours come from workflows
 * (titles, slot names, uploaded file names). Escape them so they always show as text.
 */
function patchContextMenu() {
  if (contextMenuPatched) return;
  contextMenuPatched = true;
  const addItem = ContextMenu.prototype.addItem;
  ContextMenu.prototype.addItem = function (name, value, options) {
    const safeName = name == null ? name : escapeHtml(name);
    let safeValue = value;
    if (value && typeof value === "object" && value.title != null) {
      safeValue = Object.create(value, { title: { value: escapeHtml(value.title), enumerable: true } });
    }
    return addItem.call(this, safeName, safeValue, options);
  };
  class SafeContextMenu extends ContextMenu {
    constructor(values, options, win) {
      super(values, options?.title != null ? { ...options, title: escapeHtml(options.title) } : options, win);
    }
  }
  LiteGraph.ContextMenu = SafeContextMenu;
}

/** A list of file names the server has in one folder (image widgets), refreshed on demand. */
class FileList {
  constructor(load) {
    this.load = load;
    this.list = [];
    this.loaded = null;
  }

  names() {
    if (!this.loaded) this.refresh();
    return this.list;
  }

  refresh() {
    this.loaded = this.load()
      .then((names) => {
        this.list = Array.isArray(names) ? names.filter((n) => typeof n === "string") : [];
      })
      .catch(() => {
        this.list = [];
      });
    return this.loaded;
  }
}

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
    this.workflowUi = {};
    this.workflowMeta = {};
    this.workflowName = null;
    this.allowAnyLink = false;
    this.myJobs = new Set();
    this.pendingEvents = new Map();
    this.queueInFlight = 0;
    this.runningJob = null;
    this.lastJob = null;
    this.extensions = [];
    this.eventLog = [];
    const modelLists = new Map();
    this.files = {
      input: new FileList(() => this.api.inputFiles().then((r) => r.files)),
      forFolder: (folder) => {
        if (!modelLists.has(folder)) modelLists.set(folder, new FileList(() => this.api.models(folder).then((r) => r.models)));
        return modelLists.get(folder);
      },
    };
  }

  // --- start-up --------------------------------------------------------------------------------
  async start() {
    patchContextMenu();
    patchNumberPrompt(NumberWidget);
    this.el = {
      canvasWrap: document.getElementById("canvas-wrap"),
      canvas: document.getElementById("graph-canvas"),
      domLayer: document.getElementById("dom-widgets"),
      palette: document.getElementById("palette"),
      queue: document.getElementById("queue-panel"),
      queueButton: document.getElementById("queue-button"),
      queueSize: document.getElementById("queue-size"),
      status: document.getElementById("status"),
      connection: document.getElementById("connection"),
      workflowName: document.getElementById("workflow-name"),
      issues: document.getElementById("issues"),
      toolbar: document.getElementById("toolbar-extra"),
      undo: document.getElementById("undo-button"),
      redo: document.getElementById("redo-button"),
    };
    this.graph = new LGraph();
    this.canvas = new LGraphCanvas(this.el.canvas, this.graph);
    this.canvas.show_info = false;
    this.canvas.render_canvas_border = false;
    this.canvas.low_quality_zoom_threshold = 0.5; // litegraph: 0.6; titles stay readable a bit further out
    this.canvas.allow_searchbox = true;
    this.domLayer = new DomWidgetLayer(this.el.domLayer);
    this.canvas.onRender = () => this.domLayer.beginFrame();
    this.canvas.onDrawOverlay = () => this.domLayer.endFrame();
    this.canvas.showSearchBox = (event, linkContext) => this.openSearch(event, linkContext);
    // A link dropped on empty canvas opens the node search, filtered to nodes that fit the link.
    LiteGraph.release_link_on_empty_shows_menu = true;
    this.canvas.showConnectionMenu = ({ nodeFrom, slotFrom, nodeTo, slotTo, e }) =>
      this.openSearch(e, nodeFrom ? { node_from: nodeFrom, slot_from: slotFrom } : { node_to: nodeTo, slot_from: slotTo });
    const baseNodeMenu = this.canvas.getNodeMenuOptions.bind(this.canvas);
    const hidden = new Set(["Properties", "Properties Panel", "Mode", "Convert to Subgraph 🆕"]);
    this.canvas.getNodeMenuOptions = (node) => baseNodeMenu(node).filter((item) => !item || !hidden.has(item.content));
    installTypeRules(LiteGraph, LGraphCanvas, this.canvas, [], () => this.allowAnyLink);
    this.resizeCanvas();
    new ResizeObserver(() => this.resizeCanvas()).observe(this.el.canvasWrap);

    this.tracker = new ChangeTracker(this);
    this.tracker.onChange((t) => {
      this.el.undo.disabled = !t.canUndo;
      this.el.redo.disabled = !t.canRedo;
    });
    this.clipboard = new Clipboard(this);
    this.palette = new Palette(this, this.el.palette);
    this.queuePanel = new QueuePanel(this, this.el.queue);
    this.bindUi();
    this.bindSocket();
    installTooltips(this);

    await this.loadExtensions();
    await this.loadCatalogue();
    this.restoreWorkflow();
    this.api.connect();
    this.queuePanel.refresh();
    this.files.input.refresh();
    for (const ext of this.extensions) {
      try {
        await ext.setup?.(this);
      } catch (err) {
        this.hooks.onError(err, `${ext.name ?? "extension"}.setup`);
      }
    }
    this.canvas.startRendering?.();
    this.ready = true;
    document.body.dataset.ready = "true";
    window.dispatchEvent(new CustomEvent("nodegraph:ready", { detail: { app: this } }));
  }

  resizeCanvas() {
    const el = this.el.canvas;
    const rect = this.el.canvasWrap.getBoundingClientRect();
    const dpr = Math.max(1, window.devicePixelRatio || 1);
    const w = Math.max(1, Math.round(rect.width));
    const hgt = Math.max(1, Math.round(rect.height));
    if (el.width === Math.round(w * dpr) && el.height === Math.round(hgt * dpr)) return;
    el.width = Math.round(w * dpr);
    el.height = Math.round(hgt * dpr);
    el.style.width = `${w}px`;
    el.style.height = `${hgt}px`;
    el.getContext("2d").scale(dpr, dpr);
    this.canvas.setDirty(true, true);
    this.canvas.draw(true, true);
  }

  async loadCatalogue() {
    let catalogue;
    try {
      catalogue = await this.api.nodes();
    } catch (err) {
      this.setStatus(`Cannot load the node catalogue: ${err.message}`, "error");
      throw err;
    }
    this.catalogue = catalogue;
    this.schemas = catalogue.nodes ?? {};
    registerNodeTypes(this, catalogue);
    const types = new Set();
    for (const s of Object.values(this.schemas)) for (const p of [...s.inputs, ...s.outputs]) types.add(p.type);
    for (const t of types) colourType(LGraphCanvas, this.canvas, t);
    this.palette.render();
    for (const failed of catalogue.failed_packs ?? []) {
      this.toast(`Pack ${failed.name ?? failed.pack ?? "?"} failed to load: ${failed.error ?? failed.message ?? ""}`, "error", 8000);
    }
  }

  async loadExtensions() {
    let scripts = [];
    try {
      scripts = (await this.api.extensions()).scripts ?? [];
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 404)) console.warn("no extension list", err);
      return;
    }
    for (const src of scripts) {
      if (typeof src !== "string" || !src.startsWith("/extensions/")) continue;
      try {
        const mod = await import(this.api.url(src));
        if (typeof mod.setup === "function") await mod.setup(this);
        this.loadedExtensionScripts ??= [];
        this.loadedExtensionScripts.push(src);
      } catch (err) {
        console.error(`extension ${src} failed`, err);
        this.toast(`Extension ${src} failed to load: ${err?.message ?? err}`, "error", 8000);
      }
    }
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
    for (const hook of HOOKS) {
      if (typeof ext[hook] !== "function") continue;
      this.on(hook, (payload) => {
        if (hook === "beforeRegisterNodeType") return ext[hook](payload.nodeClass, payload.schema, this);
        if (hook === "nodeCreated") return ext[hook](payload.node, this);
        return ext[hook](payload, this);
      });
    }
    if (this.ready) ext.setup?.(this);
  }

  /** A widget factory for ports whose schema says `widget: kind`: (node, port, app) => widget. */
  registerWidget(kind, factory) {
    this.widgetKinds.set(kind, factory);
  }

  /** A button in the toolbar. */
  addToolbarButton({ label, title = "", onClick }) {
    const button = h("button", { type: "button", title, onclick: onClick }, label);
    this.el.toolbar.append(button);
    return button;
  }

  toast(message, kind = "info", ms) {
    return toast(message, kind, ms);
  }

  // --- UI wiring -------------------------------------------------------------------------------
  bindUi() {
    const on = (id, fn) => document.getElementById(id)?.addEventListener("click", fn);
    on("queue-button", (e) => this.queue({ front: e.shiftKey }));
    on("save-button", () => this.save());
    on("save-as-button", () => this.save({ askName: true }));
    on("open-button", () => this.openServerWorkflows());
    on("download-button", () => this.downloadWorkflow());
    on("upload-button", () => this.openLocalFile());
    on("new-button", () => this.newWorkflow());
    on("undo-button", () => this.undo());
    on("redo-button", () => this.redo());
    on("fit-button", () => this.fitView());
    on("queue-toggle", () => document.body.classList.toggle("queue-hidden"));
    on("palette-toggle", () => document.body.classList.toggle("palette-hidden"));
    on("interrupt-button", () => this.api.interrupt().catch((err) => this.toast(err.message, "error")));

    // Every finished pointer or key action may have changed the graph: check for a change.
    // The canvas takes the keyboard when clicked (litegraph's own keys: Ctrl+A, Space-drag).
    this.el.canvas.addEventListener("pointerdown", () => this.el.canvas.focus({ preventScroll: true }));
    // litegraph sees a double click when two presses are < 300 ms apart by its own clock, which a busy
    // machine can miss; the browser's dblclick (the system's double-click rule) opens the search too.
    this.el.canvas.addEventListener("dblclick", (e) => {
      if (document.querySelector(".ng-search-dialog")) return;
      const [x, y] = this.canvas.convertEventToCanvasOffset(e);
      if (!this.graph.getNodeOnPos(x, y) && !this.graph.getGroupOnPos?.(x, y)) this.openSearch(e);
    });
    const check = () => this.changed();
    this.el.canvas.addEventListener("pointerup", () => queueMicrotask(check));
    document.addEventListener("pointerup", (e) => {
      if (e.target.closest?.(".litecontextmenu, .graphdialog")) setTimeout(check, 0);
    }, true);
    document.addEventListener("keyup", (e) => {
      if (e.target.closest?.(".graphdialog") || e.key === "Delete" || e.key === "Backspace") setTimeout(check, 0);
    }, true);
    window.addEventListener("keydown", (e) => this.onKeyDown(e), true);
    document.addEventListener("paste", (e) => this.onPaste(e));
    document.addEventListener("copy", (e) => this.onCopy(e));

    // Drag and drop: workflow files (JSON or a PNG made by nodegraph), images onto image widgets,
    // node types from the palette.
    document.addEventListener("dragover", (e) => {
      e.preventDefault();
      e.dataTransfer.dropEffect = "copy";
    });
    document.addEventListener("drop", (e) => this.onDrop(e));
  }

  isEditable(target) {
    return !!target?.closest?.("input, textarea, select, [contenteditable=''], [contenteditable='true'], .graphdialog, .ng-modal");
  }

  onKeyDown(e) {
    const mod = e.ctrlKey || e.metaKey;
    const key = e.key.toLowerCase();
    const editable = this.isEditable(e.target);
    const stop = () => {
      e.preventDefault();
      e.stopPropagation();
    };
    // These work everywhere, also while typing a prompt.
    if (mod && key === "enter") {
      stop();
      this.queue({ front: e.shiftKey });
      return;
    }
    if (mod && key === "s") {
      stop();
      this.save({ askName: e.shiftKey });
      return;
    }
    if (mod && key === "o") {
      stop();
      this.openServerWorkflows();
      return;
    }
    if (key === "escape" && document.querySelector(".litecontextmenu")) {
      LiteGraph.closeAllContextMenus(window);
      return;
    }
    if (editable || document.querySelector(".ng-modal, .ng-search-dialog")) return;
    if (mod && key === "z" && !e.shiftKey) {
      stop();
      this.undo();
    } else if (mod && (key === "y" || (key === "z" && e.shiftKey))) {
      stop();
      this.redo();
    } else if (mod && key === "c") {
      e.stopPropagation(); // not preventDefault: the browser's copy event also gets the JSON
      this.clipboard.copy();
    } else if (mod && key === "v") {
      e.stopPropagation();
      // The paste event (system clipboard text) comes right after this key event, in the same task;
      // if it did not paste a workflow, paste the editor's own clipboard.
      this.pasteHandled = false;
      const keepOutsideLinks = e.shiftKey;
      setTimeout(() => {
        if (!this.pasteHandled) this.clipboard.paste({ keepOutsideLinks });
      }, 0);
    } else if (key === "delete" || key === "backspace") {
      stop();
      this.canvas.deleteSelected();
      this.changed();
    }
  }

  onCopy(e) {
    if (this.isEditable(e.target)) return;
    const nodes = this.selectedNodes();
    if (!nodes.length) return;
    const workflow = exportWorkflow(this, { nodes, canvas: false, keepOutsideLinks: true });
    delete workflow.ui.groups;
    e.clipboardData?.setData("text/plain", JSON.stringify(workflow, null, 2));
    e.preventDefault();
  }

  onPaste(e) {
    if (this.isEditable(e.target)) return;
    const text = e.clipboardData?.getData("text/plain");
    if (!text || !text.trim().startsWith("{")) return;
    let workflow;
    try {
      workflow = migrate(JSON.parse(text));
    } catch {
      return;
    }
    // A copy made by this editor is also in its own clipboard: paste it from there (same result).
    this.pasteHandled = true;
    e.preventDefault();
    this.clipboard.paste({ workflow });
  }

  async onDrop(e) {
    e.preventDefault();
    const type = e.dataTransfer?.getData("application/x-nodegraph-type");
    if (type) {
      const pos = this.canvas.convertEventToCanvasOffset(e);
      this.addNode(type, { pos: [pos[0], pos[1]], select: true });
      return;
    }
    const file = e.dataTransfer?.files?.[0];
    if (!file) return;
    const pos = this.canvas.convertEventToCanvasOffset(e);
    const target = this.graph.getNodeOnPos(pos[0], pos[1]);
    await this.handleFile(file, { target });
  }

  /**
   * A file given by drop or file picker: a workflow JSON, a PNG with an embedded workflow (restored,
   * never queued), or an image for the image widget of the node it was dropped on.
   */
  async handleFile(file, { target = null } = {}) {
    const name = file.name ?? "";
    const isJson = file.type === "application/json" || name.toLowerCase().endsWith(".json");
    try {
      if (isJson) {
        const data = JSON.parse(await file.text());
        return this.loadWorkflow(data, { source: "file", name: name.replace(/\.json$/i, "") });
      }
      if (IMAGE_TYPES.test(file.type) || /\.(png|jpe?g|webp|bmp)$/i.test(name)) {
        const imageWidget = target?.ngWidgets && [...target.ngWidgets.values()].find((w) => w.ngUpload);
        if (imageWidget) return imageWidget.ngUpload(file);
        const workflow = file.type === "image/png" || /\.png$/i.test(name) ? await readPngWorkflow(await file.arrayBuffer()) : null;
        if (workflow) return this.loadWorkflow(workflow, { source: "png", name: name.replace(/\.png$/i, "") });
        this.toast(`${name}: no nodegraph workflow in this image. Drop it on a Load Image node to use it as an input.`, "error");
        return null;
      }
      this.toast(`${name}: not a workflow (.json) or an image`, "error");
    } catch (err) {
      this.toast(`${name}: ${err.message}`, "error");
    }
    return null;
  }

  openLocalFile() {
    const input = h("input", { type: "file", accept: ".json,application/json,image/png" });
    input.addEventListener("change", () => {
      if (input.files?.[0]) this.handleFile(input.files[0]);
    });
    input.click();
  }

  openSearch(event, linkContext) {
    const pos = event ? this.canvas.convertEventToCanvasOffset(event) : this.viewCentre();
    openSearchDialog(this, {
      clientX: event?.clientX,
      clientY: event?.clientY,
      graphPos: [pos[0], pos[1]],
      linkContext: linkContext?.slot_from ? linkContext : null,
    });
  }

  // --- graph operations ------------------------------------------------------------------------
  selectedNodes() {
    return Object.values(this.canvas.selected_nodes ?? {});
  }

  viewCentre() {
    const rect = this.el.canvas.getBoundingClientRect();
    return this.canvas.ds.convertCanvasToOffset([rect.width / 2, rect.height / 2]);
  }

  /** Add a node of a type (at pos, graph coordinates; default: the view centre). */
  addNode(type, { pos = null, select = true } = {}) {
    const node = LiteGraph.createNode(type);
    if (!node) {
      this.toast(`Unknown node type ${type}`, "error");
      return null;
    }
    const at = pos ?? this.viewCentre();
    const taken = (x, y) => this.graph.nodes.some((n) => Math.abs(n.pos[0] - x) < 4 && Math.abs(n.pos[1] - y) < 4);
    let [x, y] = at;
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

  /** After the search dialog opened from a dropped link: connect the new node to that link's end. */
  connectFromContext(node, ctx) {
    const slot = ctx.slot_from;
    if (ctx.node_from) {
      const out = ctx.node_from.outputs.indexOf(slot);
      const i = node.inputs.findIndex((inp) => compatible(slot.type, inp.type));
      if (out >= 0 && i >= 0) ctx.node_from.connect(out, node, i);
    } else if (ctx.node_to) {
      const inp = ctx.node_to.inputs.indexOf(slot);
      const o = node.outputs.findIndex((output) => compatible(output.type, slot.type));
      if (inp >= 0 && o >= 0) node.connect(o, ctx.node_to, inp);
    }
    this.changed();
  }

  /** A node's widget or links changed: its shown errors are stale. */
  nodeChanged(node) {
    if (node?.ngErrors?.length) {
      node.ngErrors = [];
      node.has_errors = false;
      this.renderIssues();
    }
    this.changed();
  }

  /** Record an undo step and autosave, once per burst of changes. */
  changed() {
    if (this._changeScheduled) return;
    this._changeScheduled = true;
    queueMicrotask(() => {
      this._changeScheduled = false;
      if (!this.tracker || this.tracker.restoring) return;
      if (this.tracker.check()) this.autosave();
      this.canvas.setDirty(true, true);
    });
  }

  autosave() {
    try {
      localStorage.setItem(STORAGE_WORKFLOW, JSON.stringify(exportWorkflow(this)));
      if (this.workflowName) localStorage.setItem(STORAGE_NAME, this.workflowName);
      else localStorage.removeItem(STORAGE_NAME);
    } catch {
      // storage full or disabled
    }
  }

  afterGraphReplaced() {
    this.autosave();
    this.canvas.setDirty(true, true);
  }

  undo() {
    if (this.tracker.undo()) this.renderIssues(); // marks of nodes that were rebuilt are gone
  }

  redo() {
    if (this.tracker.redo()) this.renderIssues();
  }

  fitView() {
    const nodes = this.graph.nodes;
    if (!nodes.length) return;
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const n of nodes) {
      x0 = Math.min(x0, n.pos[0]);
      y0 = Math.min(y0, n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT);
      x1 = Math.max(x1, n.pos[0] + n.size[0]);
      y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    const rect = this.el.canvas.getBoundingClientRect();
    const margin = 40;
    const scale = Math.max(0.1, Math.min(1.25, (rect.width - 2 * margin) / (x1 - x0), (rect.height - 2 * margin) / (y1 - y0)));
    const ds = this.canvas.ds;
    ds.scale = scale;
    ds.offset[0] = (rect.width / scale - (x1 - x0)) / 2 - x0;
    ds.offset[1] = (rect.height / scale - (y1 - y0)) / 2 - y0;
    this.canvas.setDirty(true, true);
  }

  // --- workflows: load, save, files ---------------------------------------------------------------
  exportWorkflow(options) {
    return exportWorkflow(this, options);
  }

  /** Load a workflow into the editor (never queues it); its issues are shown on the nodes. */
  loadWorkflow(data, { source = "api", name = null, validate = true } = {}) {
    let result;
    try {
      result = loadWorkflow(this, data);
    } catch (err) {
      const message = err instanceof WorkflowError ? err.message : `cannot load this workflow: ${err.message}`;
      this.toast(message, "error", 8000);
      return null;
    }
    this.workflowName = name;
    this.showWorkflowName();
    this.clearIssues();
    this.tracker.reset();
    this.autosave();
    for (const p of result.problems) this.toast(p, "error", 8000);
    this.hooks.emit("workflowLoaded", { workflow: this.exportWorkflow(), source });
    if (validate && this.graph.nodes.length) this.validateShown();
    return result;
  }

  /** Ask the server to validate the current graph and show the issues on the nodes (nothing runs). */
  async validateShown() {
    try {
      const res = await this.api.validate(this.exportWorkflow());
      this.showIssues(res.issues ?? []);
      return res;
    } catch (err) {
      if (err instanceof ApiError && err.payload?.issues) this.showIssues(err.payload.issues);
      return null;
    }
  }

  restoreWorkflow() {
    let data = null;
    try {
      data = JSON.parse(localStorage.getItem(STORAGE_WORKFLOW) ?? "null");
    } catch {
      data = null;
    }
    if (data && this.loadWorkflow(data, { source: "autosave", name: localStorage.getItem(STORAGE_NAME), validate: false })) return;
    this.loadWorkflow(this.defaultWorkflow(), { source: "default", validate: false });
  }

  /** A first workflow built from what the catalogue has: text-to-image when unCLIP is there. */
  defaultWorkflow() {
    const has = (t) => t in this.schemas;
    const nodes = {};
    const node = (type, pos, inputs = {}) => ({ type, version: this.schemas[type].version, inputs, ui: { pos } });
    const link = (from, output) => ({ from, output });
    const t2i = ["unclip.clip_loader", "unclip.text_encode", "unclip.prior_loader", "unclip.prior",
      "unclip.decoder_loader", "unclip.decoder", "core.save_image"];
    if (t2i.every(has)) {
      // workflows/text2image.json: the DALL·E 2 cascade with the shipped model, upsampler stage included when
      // the catalogue has it, and a prompt that names every attribute (the shipped models at their best).
      nodes.load_clip = node("unclip.clip_loader", [40, 60]);
      nodes.load_prior = node("unclip.prior_loader", [40, 200]);
      nodes.load_decoder = node("unclip.decoder_loader", [40, 340]);
      nodes.encode = node("unclip.text_encode", [300, 60], { clip: link("load_clip", "clip"), text: DEFAULT_PROMPT });
      nodes.prior = node("unclip.prior", [300, 280], { prior: link("load_prior", "prior"), conditioning: link("encode", "conditioning") });
      nodes.decoder = node("unclip.decoder", [620, 60], {
        decoder: link("load_decoder", "decoder"), image_embedding: link("prior", "embedding"), conditioning: link("encode", "conditioning"),
      });
      let images = link("decoder", "images");
      if (has("unclip.upsampler_loader") && has("unclip.upsample")) {
        nodes.load_upsampler = node("unclip.upsampler_loader", [40, 480]);
        nodes.upsample = node("unclip.upsample", [900, 60], { upsampler: link("load_upsampler", "upsampler"), images });
        images = link("upsample", "images");
      }
      nodes.save = node("core.save_image", [1180, 60], { images });
      for (const id of ["prior", "decoder", "upsample"].filter((i) => i in nodes)) nodes[id].ui.seed_modes = { seed: "randomize" }; // a new image per queue
    } else if (has("core.solid_color") && has("core.save_image")) {
      nodes.color = { type: "core.solid_color", version: this.schemas["core.solid_color"].version, inputs: { color: "#3f51b5" }, ui: { pos: [80, 120] } };
      nodes.save = {
        type: "core.save_image",
        version: this.schemas["core.save_image"].version,
        inputs: { images: { from: "color", output: "images" } },
        ui: { pos: [420, 120] },
      };
    }
    return { format: "nodegraph/1", nodes, ui: {}, meta: {} };
  }

  newWorkflow() {
    this.loadWorkflow({ format: "nodegraph/1", nodes: {}, ui: {}, meta: {} }, { source: "new" });
  }

  showWorkflowName() {
    this.el.workflowName.textContent = this.workflowName ?? "unsaved workflow";
    document.title = `${this.workflowName ?? "unsaved"} — nodegraph`;
  }

  /** Save to the server's named workflows (Ctrl+S); asks for a name the first time. */
  async save({ askName = false } = {}) {
    let name = this.workflowName;
    if (!name || askName) {
      name = await askText("Save workflow", { value: name ?? "", label: "Name", okText: "Save" });
      if (!name) return null;
      name = name.trim();
    }
    try {
      const res = await this.api.saveWorkflow(name, this.exportWorkflow());
      this.workflowName = res?.name ?? name;
      this.showWorkflowName();
      this.autosave();
      this.toast(`Saved "${this.workflowName}"`, "success");
      return this.workflowName;
    } catch (err) {
      this.toast(`Save failed: ${err.message}`, "error", 8000);
      return null;
    }
  }

  /** The server's saved workflows: open or delete one. */
  async openServerWorkflows() {
    let names;
    try {
      names = (await this.api.workflows()).workflows ?? [];
    } catch (err) {
      this.toast(`Cannot list workflows: ${err.message}`, "error");
      return;
    }
    const chosen = await modal("Open workflow", (close) => {
      const list = h("ul", { className: "ng-workflow-list" });
      const render = () =>
        setChildren(
          list,
          names.length
            ? names.map((n) =>
                h("li", {},
                  h("button", { type: "button", className: "ng-link", dataset: { name: n }, onclick: () => close(n) }, n),
                  h("button", {
                    type: "button",
                    className: "ng-small danger",
                    title: `Delete ${n}`,
                    onclick: async () => {
                      try {
                        await this.api.deleteWorkflow(n);
                        names = names.filter((x) => x !== n);
                        render();
                      } catch (err) {
                        this.toast(err.message, "error");
                      }
                    },
                  }, "✕")))
            : h("li", { className: "ng-empty" }, "No saved workflows."),
        );
      render();
      return [list, h("div", { className: "ng-modal-buttons" }, h("button", { type: "button", onclick: () => close(null) }, "Close"))];
    });
    if (!chosen) return;
    try {
      const data = await this.api.workflow(chosen);
      this.loadWorkflow(data, { source: "server", name: chosen });
    } catch (err) {
      this.toast(`Cannot open ${chosen}: ${err.message}`, "error");
    }
  }

  downloadWorkflow() {
    const name = (this.workflowName ?? "workflow").replace(/[^\w.-]+/g, "_");
    download(`${name}.json`, JSON.stringify(this.exportWorkflow(), null, 2));
  }

  // --- images and uploads ----------------------------------------------------------------------
  loadImage(url, node) {
    const img = new Image();
    img.decoding = "async";
    img.onload = () => {
      node?.setDirtyCanvas?.(true, false);
      this.canvas.setDirty(true, false);
    };
    img.src = url;
    return img;
  }

  async uploadToWidget(node, widget, file) {
    try {
      const res = await this.api.upload(file);
      await this.files.input.refresh();
      const name = res.subfolder ? `${res.subfolder}/${res.name}` : res.name;
      setWidgetLiteral(widget, name);
      this.nodeChanged(node);
      return name;
    } catch (err) {
      this.toast(`Upload failed: ${err.message}`, "error");
      return null;
    }
  }

  // --- queueing and run state --------------------------------------------------------------------
  /** Queue the current workflow (Ctrl+Enter). Seeds set to "randomize" get a new value first. */
  async queue({ targets = null, front = false } = {}) {
    for (const node of this.graph.nodes) {
      for (const w of node.widgets ?? []) {
        if (w.ngRandomize && w.ngSeedControl?.value === "randomize" && node.getSlotFromWidget(w)?.link == null) w.ngRandomize();
      }
    }
    this.changed();
    this.clearIssues();
    const workflow = this.exportWorkflow();
    try {
      await this.hooks.emitStrict("beforeQueue", { workflow, targets });
    } catch (err) {
      this.toast(`Not queued: ${err.message}`, "error");
      return null;
    }
    let res;
    try {
      res = await this.trackJob(this.api.queue(workflow, { targets, front }));
    } catch (err) {
      if (err instanceof ApiError && err.payload?.issues) {
        this.showIssues(err.payload.issues);
        this.toast(`Not queued: ${err.payload.issues.length} problem(s) in the workflow; see the marked nodes`, "error", 6000);
      } else this.toast(`Not queued: ${err.message}`, "error", 6000);
      return null;
    }
    this.hooks.emit("queued", { jobId: res.job_id, position: res.position, workflow });
    this.queuePanel.refreshSoon();
    return res;
  }

  /** Follow a job queued elsewhere in the editor (e.g. re-queue from the history). */
  async trackJob(promise) {
    this.queueInFlight++;
    try {
      const res = await promise;
      this.claimJob(res.job_id);
      return res;
    } finally {
      // Events of jobs no request of ours created belong to other clients: forget them.
      if (--this.queueInFlight === 0) this.pendingEvents.clear();
    }
  }

  claimJob(jobId) {
    this.myJobs.add(jobId);
    const early = this.pendingEvents.get(jobId) ?? [];
    this.pendingEvents.delete(jobId);
    for (const msg of early) this.applyRunEvent(msg.type, msg.data);
  }

  setQueueSize(n) {
    this.el.queueSize.textContent = n ? String(n) : "";
    this.el.queueSize.dataset.count = String(n);
  }

  bindSocket() {
    const api = this.api;
    api.addEventListener("connected", () => this.setConnection(true));
    api.addEventListener("reconnected", () => {
      this.setConnection(true);
      this.queuePanel.refresh();
    });
    api.addEventListener("disconnected", () => this.setConnection(false));
    api.addEventListener("message", (e) => {
      const { type, data } = e.detail;
      this.hooks.emit("message", { type, data });
      if (type === "status") {
        this.setQueueSize((data.queue_remaining ?? 0) + (data.running ? 1 : 0));
        this.queuePanel.refreshSoon();
        return;
      }
      if (type === "validation_failed") {
        this.showIssues(data.issues ?? []);
        return;
      }
      const jobId = data?.job_id;
      if (!jobId) return;
      if (this.myJobs.has(jobId)) this.applyRunEvent(type, data);
      else if (this.queueInFlight > 0) {
        // Our POST /api/jobs may not have answered yet: keep the events until it does.
        if (!this.pendingEvents.has(jobId)) this.pendingEvents.set(jobId, []);
        const list = this.pendingEvents.get(jobId);
        if (list.length < 1000) list.push({ type, data });
      }
      if (type === "job_finished" || type === "job_started") this.queuePanel.refreshSoon();
    });
  }

  setConnection(ok) {
    this.el.connection.textContent = ok ? "connected" : "disconnected";
    this.el.connection.dataset.state = ok ? "connected" : "disconnected";
  }

  nodeById(id) {
    return id == null ? null : this.graph.getNodeById(graphId(String(id)));
  }

  /** Apply one run event of this editor's job to the nodes it names. */
  applyRunEvent(type, data) {
    this.eventLog.push({ type, node: data.node ?? null, step: data.step, total: data.total });
    if (this.eventLog.length > 2000) this.eventLog.splice(0, 1000);
    const node = this.nodeById(data.node);
    switch (type) {
      case "job_started":
        this.runningJob = data.job_id;
        for (const n of this.graph.nodes) {
          if (!n.ngRun) continue;
          n.ngRun.state = null;
          n.progress = undefined;
        }
        this.clearIssues();
        this.setStatus("running", "running", { job: data.job_id });
        break;
      case "node_started":
        if (node?.ngRun) {
          node.ngRun.state = "running";
          node.progress = undefined;
          this.setStatus(`running ${node.title}`, "running", { job: data.job_id, node: String(node.id) });
        }
        break;
      case "progress":
        if (node?.ngRun) {
          node.ngRun.state = "running";
          node.ngRun.step = data.step;
          node.ngRun.total = data.total;
          node.progress = data.total ? Math.max(0.001, Math.min(1, data.step / data.total)) : undefined;
          this.setStatus(`running ${node.title}${data.total ? ` ${data.step}/${data.total}` : ` step ${data.step}`}`, "running", { job: data.job_id, node: String(node.id) });
        }
        break;
      case "preview":
        if (node?.ngRun && typeof data.image === "string") node.ngSetPreview(data.image);
        break;
      case "node_cached":
      case "node_completed":
        if (node?.ngRun) {
          node.ngRun.state = type === "node_cached" ? "cached" : "done";
          node.progress = undefined;
          const ui = data.ui ?? {};
          if (Array.isArray(ui.images) && ui.images.length) node.ngSetImages(ui.images);
          if (Array.isArray(ui.text)) node.ngRun.text = ui.text.map(String);
          this.hooks.emit("executed", { node, ui });
        }
        break;
      case "node_failed":
        if (node) {
          if (node.ngRun) {
            node.ngRun.state = "failed";
            node.progress = undefined;
          }
          this.addIssue({ node: data.node, port: null, code: data.error_type, message: `${data.error_type}: ${data.message}`, traceback: data.traceback });
        }
        break;
      case "job_finished": {
        this.runningJob = null;
        for (const n of this.graph.nodes) {
          if (n.ngRun?.state === "running") n.ngRun.state = null;
          n.progress = undefined;
        }
        const seconds = typeof data.duration === "number" ? ` in ${data.duration.toFixed(2)} s` : "";
        this.lastJob = { id: data.job_id, status: data.status };
        this.setStatus(`${data.status}${seconds}`, data.status, { job: data.job_id });
        if (data.status === "failed" && data.error?.node && !this.nodeById(data.error.node)?.ngErrors?.length) {
          this.addIssue({ node: data.error.node, port: null, code: data.error.error_type, message: `${data.error.error_type}: ${data.error.message}`, traceback: data.error.traceback });
        }
        this.hooks.emit("jobFinished", { jobId: data.job_id, status: data.status, error: data.error ?? null });
        break;
      }
      default:
        break;
    }
    this.canvas.setDirty(true, true);
  }

  setStatus(text, state = "", { job = null, node = null } = {}) {
    const el = this.el.status;
    el.textContent = text;
    el.dataset.state = state;
    if (job) el.dataset.job = job;
    if (node) el.dataset.node = node;
    else delete el.dataset.node;
  }

  // --- issues (validation and runtime errors) on the nodes ---------------------------------------
  clearIssues() {
    this.issues = [];
    for (const n of this.graph.nodes) {
      if (n.ngErrors) n.ngErrors = [];
      n.has_errors = false;
    }
    this.renderIssues();
  }

  showIssues(issues) {
    this.clearIssues();
    for (const issue of issues) this.addIssue(issue, { render: false });
    this.renderIssues();
  }

  addIssue(issue, { render = true } = {}) {
    this.issues ??= [];
    this.issues.push(issue);
    const node = this.nodeById(issue.node);
    if (node?.ngErrors) {
      node.ngErrors.push({ message: String(issue.message ?? issue.code ?? "error"), port: issue.port ?? null, code: issue.code ?? null });
      node.has_errors = true;
    }
    if (render) this.renderIssues();
  }

  renderIssues() {
    const issues = (this.issues ?? []).filter((i) => {
      const node = this.nodeById(i.node);
      return !node || node.ngErrors?.length; // issues of a node edited since are gone
    });
    this.issues = issues;
    const box = this.el.issues;
    box.hidden = !issues.length;
    setChildren(
      box,
      issues.length ? h("div", { className: "ng-issues-title" }, `${issues.length} problem${issues.length > 1 ? "s" : ""}`,
        h("button", { type: "button", className: "ng-small", title: "Hide", onclick: () => this.clearIssues() }, "✕")) : null,
      issues.map((issue) => {
        const node = this.nodeById(issue.node);
        const where = node ? `${node.title}${issue.port ? `.${issue.port}` : ""}` : issue.node ? `${issue.node}${issue.port ? `.${issue.port}` : ""}` : "workflow";
        return h(
          "div",
          { className: "ng-issue", dataset: { node: issue.node ?? "", code: issue.code ?? "" } },
          h("button", { type: "button", className: "ng-link", disabled: !node, onclick: () => node && this.focusNode(node) }, where),
          h("span", { className: "ng-issue-message" }, String(issue.message ?? issue.code ?? "")),
          issue.traceback ? h("details", {}, h("summary", {}, "traceback"), h("pre", {}, String(issue.traceback))) : null,
        );
      }),
    );
    this.canvas?.setDirty(true, true);
  }

  focusNode(node) {
    this.canvas.centerOnNode(node);
    this.canvas.selectNode(node, false);
    this.canvas.setDirty(true, true);
  }

  // --- helpers for tests and extensions ----------------------------------------------------------
  /** Client (page) coordinates of a node's input or output socket. */
  slotClientPos(nodeId, kind, index) {
    const node = this.nodeById(nodeId);
    const pos = kind === "input" ? node.getInputPos(index) : node.getOutputPos(index);
    const [x, y] = this.canvas.ds.convertOffsetToCanvas(pos);
    const rect = this.el.canvas.getBoundingClientRect();
    return [rect.left + x, rect.top + y];
  }

  /** Client coordinates of a point in graph space. */
  graphToClient([gx, gy]) {
    const [x, y] = this.canvas.ds.convertOffsetToCanvas([gx, gy]);
    const rect = this.el.canvas.getBoundingClientRect();
    return [rect.left + x, rect.top + y];
  }
}
