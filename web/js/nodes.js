// Node classes built from the server's node schemas (GET /api/nodes): one litegraph class per node
// type, with a socket per link input, a widget (plus its socket) per literal input, and a socket per
// output. No node needs front-end code: a new pack's nodes appear as soon as the server lists them.
//
// Each node also carries the editor's run state (progress, images, errors) and draws it.

import { LGraphNode, LiteGraph } from "@comfyorg/litegraph";
import { drawMode, modeOf, toggleMode } from "./modes.js";
import { createWidget, isLinkPort } from "./widgets.js";

const IMAGE_AREA_MIN = 160;

/** Base class of every schema-built node type. */
export class NgNode extends LGraphNode {
  /** @type {object} the node schema (set on each subclass) */
  static ngSchema = null;
  /** @type {import("./app.js").App} */
  static ngApp = null;

  constructor(title) {
    const schema = new.target.ngSchema;
    super(title ?? schema.title, schema.type);
    const app = new.target.ngApp;
    this.ngApp = app;
    this.ngType = schema.type;
    this.ngVersion = schema.version;
    this.ngOmitted = new Set(); // literal inputs the loaded workflow left out (kept out while unchanged)
    this.ngExtraInputs = {}; // inputs the schema does not know (kept as they were)
    this.ngUi = {}; // unknown keys of the node's `ui` (kept as they were)
    this.ngErrors = []; // [{message, port, code}] validation or runtime errors shown on the node
    this.ngRun = { state: null, images: [], preview: null, text: null, thumb: null };
    this.serialize_widgets = true;
    this.ngWidgets = new Map(); // port name -> value widget
    for (const port of schema.inputs) {
      if (isLinkPort(port)) {
        this.addInput(port.name, port.type, { tooltip: port.description });
      } else {
        const widget = createWidget(this, port, app);
        this.ngWidgets.set(port.name, widget);
        this.addInput(port.name, port.type, { widget: { name: widget.name }, tooltip: port.description });
      }
    }
    for (const port of schema.outputs) this.addOutput(port.name, port.type, { tooltip: port.description });
    if (schema.output_node) this.color = "#335533";
    this.ngDefaultColor = this.color;
    if (schema.deprecated) this.title = `${this.title} (deprecated)`;
    this.strokeStyles.running = function () {
      if (this.ngRun.state === "running") return { color: "#4caf50", lineWidth: 3, padding: 6 };
    };
    this.size = this.computeSize();
  }

  get ngSchema() {
    return this.constructor.ngSchema;
  }

  /** The port schema of an input, or undefined. */
  ngPort(name) {
    return this.ngSchema.inputs.find((p) => p.name === name);
  }

  onNodeCreated() {
    this.ngApp.hooks.emit("nodeCreated", { node: this, schema: this.ngSchema });
  }

  onRemoved() {
    for (const w of this.widgets ?? []) w.onRemove?.();
  }

  onConnectInput(inputIndex, outputType) {
    // litegraph checks types before calling this; it is a second guard for direct connect() calls.
    const input = this.inputs[inputIndex];
    return LiteGraph.isValidConnection(outputType, input?.type);
  }

  onConnectionsChange() {
    this.ngApp?.nodeChanged(this);
  }

  // --- run state -------------------------------------------------------------------------------
  ngSetThumbnail(image) {
    this.ngRun.thumb = image ? this.ngApp.loadImage(this.ngApp.api.viewUrl(image), this) : null;
    if (image) this.ngGrowForImages();
    this.setDirtyCanvas(true, false);
  }

  ngSetImages(images) {
    this.ngRun.images = images.map((img) => this.ngApp.loadImage(this.ngApp.api.viewUrl(img), this, img));
    this.ngRun.preview = null;
    this.ngGrowForImages();
    this.setDirtyCanvas(true, false);
  }

  ngSetPreview(dataUrl) {
    if (!dataUrl.startsWith("data:image/")) return;
    this.ngRun.preview = this.ngApp.loadImage(dataUrl, this);
    this.ngGrowForImages();
    this.setDirtyCanvas(true, false);
  }

  ngGrowForImages() {
    const top = this.ngContentTop();
    const want = top + IMAGE_AREA_MIN + 8;
    if (this.size[1] < want || this.size[0] < 200) this.setSize([Math.max(this.size[0], 200), Math.max(this.size[1], want)]);
  }

  /** y (node space) below the widgets and slots, where previews and text are drawn. */
  ngContentTop() {
    let top = Math.max(this.inputs.filter((i) => !i.widget).length, this.outputs.length, 1) * LiteGraph.NODE_SLOT_HEIGHT + 6;
    for (const w of this.widgets ?? []) {
      if (w.hidden) continue;
      const bottom = (w.y ?? 0) + (w.computedHeight ?? LiteGraph.NODE_WIDGET_HEIGHT + 4);
      if (bottom > top) top = bottom;
    }
    return top + 4;
  }

  /** The image to show: an in-progress preview, else the outputs, else the chosen input's thumbnail. */
  ngShownImages() {
    const r = this.ngRun;
    if (r.preview && r.state === "running") return [r.preview];
    if (r.images.length) return r.images;
    if (r.preview) return [r.preview];
    return r.thumb ? [r.thumb] : [];
  }

  /** Where the images are drawn (node space) [x, y, w, h], or null when there is no room. */
  ngImageArea() {
    const top = this.ngContentTop();
    const area = [6, top, this.size[0] - 12, this.size[1] - top - 6];
    return area[3] >= 24 && area[2] >= 24 ? area : null;
  }

  onDrawBackground(ctx) {
    if (this.flags.collapsed) return;
    const images = this.ngShownImages().filter((i) => i.complete && i.naturalWidth);
    const area = this.ngImageArea();
    if (area && images.length) drawImages(ctx, images, area);
    else if (area && this.ngRun.text?.length) drawText(ctx, this.ngRun.text.join("\n"), area, "#ddd");
  }

  onDrawForeground(ctx) {
    drawMode(this, ctx);
    if (!modeOf(this) && (this.ngRun.state === "cached" || this.ngRun.state === "done")) {
      ctx.save();
      ctx.font = "10px sans-serif";
      ctx.textAlign = "right";
      ctx.fillStyle = this.ngRun.state === "cached" ? "#9e9e9e" : "#81c784";
      ctx.fillText(this.ngRun.state === "cached" ? "cached" : "✓", this.size[0] - 6, -LiteGraph.NODE_TITLE_HEIGHT + 13);
      ctx.restore();
    }
    if (!this.ngErrors.length) return;
    ctx.save();
    // Mark the ports named by the errors.
    ctx.strokeStyle = LiteGraph.NODE_ERROR_COLOUR ?? "#f44";
    ctx.lineWidth = 2;
    for (const err of this.ngErrors) {
      if (!err.port) continue;
      const i = this.inputs.findIndex((s) => s.name === err.port);
      if (i < 0) continue;
      const widget = this.ngWidgets.get(err.port);
      if (widget && this.inputs[i].link == null && widget.y != null) {
        ctx.strokeRect(8, widget.y - 1, this.size[0] - 16, (widget.computedHeight ?? 24) - 2);
      } else {
        const pos = this.getInputPos(i);
        ctx.beginPath();
        ctx.arc(pos[0] - this.pos[0], pos[1] - this.pos[1], 7, 0, Math.PI * 2);
        ctx.stroke();
      }
    }
    // The messages, under the node.
    const text = this.ngErrors.map((e) => (e.port ? `${e.port}: ${e.message}` : e.message)).join("\n");
    drawText(ctx, text, [0, this.size[1] + 6, Math.max(this.size[0], 240), 64], "#ff8a80");
    ctx.restore();
  }

  /** Items litegraph puts at the top of the node's context menu (returned, never added to `options`). */
  getExtraMenuOptions() {
    const app = this.ngApp;
    const nodes = () => (this.is_selected ? app.selectedNodes() : [this]);
    const items = [
      { content: "Queue this node's branch", callback: () => app.queue({ targets: [String(this.id)] }) },
      { content: modeOf(this) === "bypass" ? "Stop bypassing (Ctrl+B)" : "Bypass (Ctrl+B)", callback: () => toggleMode(app, nodes(), "bypass") },
      { content: modeOf(this) === "mute" ? "Unmute (Ctrl+M)" : "Mute (Ctrl+M)", callback: () => toggleMode(app, nodes(), "mute") },
      { content: "Copy", callback: () => app.clipboard.copy([this]) },
    ];
    for (const extra of app.hooks.collect("nodeMenu", { node: this })) items.push(...extra);
    return items;
  }
}

/** A node whose type no loaded pack provides: keeps the workflow entry so saving loses nothing. */
export class MissingNode extends LGraphNode {
  static title = "Missing node";
  constructor(title) {
    super(title ?? "Missing node");
    this.ngMissing = true;
    this.ngErrors = [];
    this.ngRun = { state: null, images: [], preview: null, text: null, thumb: null };
    this.color = "#6b2a2a";
    this.bgcolor = "#3a1f1f";
  }

  /** The context menu's title: the workflow's type name. */
  get displayType() {
    return this.ngType;
  }

  onDrawForeground(ctx) {
    drawMode(this, ctx);
    ctx.save();
    const msg = `No pack provides "${this.ngType}". It is kept as it is; install its pack to run it.`;
    drawText(ctx, msg, [6, Math.max(this.inputs.length, this.outputs.length, 1) * LiteGraph.NODE_SLOT_HEIGHT + 8, this.size[0] - 12, 60], "#ff8a80");
    ctx.restore();
  }
}

/** Fit images into an area (node space), side by side when there are several. */
export function drawImages(ctx, images, [x, y, w, h]) {
  const n = images.length;
  const cols = Math.ceil(Math.sqrt(n));
  const rows = Math.ceil(n / cols);
  const cw = w / cols;
  const ch = h / rows;
  images.forEach((img, i) => {
    const scale = Math.min(cw / img.naturalWidth, ch / img.naturalHeight);
    const dw = img.naturalWidth * scale;
    const dh = img.naturalHeight * scale;
    const cx = x + (i % cols) * cw + (cw - dw) / 2;
    const cy = y + Math.floor(i / cols) * ch + (ch - dh) / 2;
    ctx.imageSmoothingEnabled = scale < 1;
    ctx.drawImage(img, cx, cy, dw, dh);
  });
}

/** Word-wrapped text in an area (canvas text, never HTML). */
export function drawText(ctx, text, [x, y, w, h], colour) {
  ctx.font = "12px sans-serif";
  ctx.fillStyle = colour;
  ctx.textAlign = "left";
  const lineHeight = 14;
  let line = "";
  let ty = y + 12;
  const lines = [];
  for (const para of String(text).split("\n")) {
    line = "";
    for (const word of para.split(/\s+/)) {
      const next = line ? `${line} ${word}` : word;
      if (ctx.measureText(next).width > w - 4 && line) {
        lines.push(line);
        line = word;
      } else line = next;
    }
    lines.push(line);
  }
  const max = Math.max(1, Math.floor(h / lineHeight));
  lines.slice(0, max).forEach((l, i) => {
    const shown = i === max - 1 && lines.length > max ? `${l} …` : l;
    ctx.fillText(shown, x + 2, ty);
    ty += lineHeight;
  });
}

/** Build and register the node classes of a catalogue; returns {type: class}. */
export function registerNodeTypes(app, catalogue) {
  const classes = {};
  for (const [type, schema] of Object.entries(catalogue.nodes ?? {})) {
    const NodeClass = class extends NgNode {};
    Object.defineProperty(NodeClass, "name", { value: `Ng_${type.replace(/\W/g, "_")}` });
    NodeClass.ngSchema = schema;
    NodeClass.ngApp = app;
    NodeClass.title = schema.title;
    NodeClass.description = schema.description;
    app.hooks.emit("beforeRegisterNodeType", { nodeClass: NodeClass, schema });
    LiteGraph.registerNodeType(type, NodeClass);
    NodeClass.category = schema.category; // registerNodeType derives it from "a/b" names; ours are dotted
    classes[type] = NodeClass;
  }
  if (!LiteGraph.registered_node_types["nodegraph/missing"]) LiteGraph.registerNodeType("nodegraph/missing", MissingNode);
  return classes;
}
