// The editor's graph ⇄ our workflow format (docs/workflows.md). The server never sees litegraph's own
// format: every save, download, queue and copy goes through exportWorkflow(), every load through
// loadWorkflow().
//
// Round trip: node ids, types, versions, modes, inputs (literals and {"from", "output"} links), title,
// and each node's `ui` (pos, size, collapsed, colours, seed modes, plus any keys the editor does not
// know) are kept; the top-level `ui` holds the canvas state (view, groups, reroutes) and `meta` is kept
// as is. An input the loaded workflow left out stays out while its widget keeps the default.

import { LGraphGroup, LiteGraph } from "@comfyorg/litegraph";
import { modeOf, setMode } from "./modes.js";
import { exportReroutes, restoreReroutes } from "./reroutes.js";
import { setWidgetLiteral, widgetLiteral } from "./widgets.js";

export const FORMAT = "nodegraph/1";

export class WorkflowError extends Error {}

/** A workflow without nodes (New). */
export function emptyWorkflow() {
  return { format: FORMAT, nodes: {}, ui: {}, meta: {} };
}

const round = (v) => Math.round(v * 100) / 100;

function isLink(value) {
  return (
    value !== null &&
    typeof value === "object" &&
    !Array.isArray(value) &&
    Object.keys(value).length === 2 &&
    typeof value.from === "string" &&
    typeof value.output === "string"
  );
}

function deepEqual(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** litegraph node id for a workflow id: canonical integers become numbers (so new ids never clash). */
export function graphId(id) {
  return /^(0|[1-9]\d{0,14})$/.test(id) ? Number(id) : id;
}

/**
 * A workflow in the editor's format, its shape checked (throws WorkflowError). Older formats are not
 * read here: the server upgrades them (see loading.js).
 */
export function checkWorkflow(data) {
  if (!data || typeof data !== "object" || Array.isArray(data)) throw new WorkflowError("not a workflow (expected a JSON object)");
  if (data.format !== FORMAT) throw new WorkflowError(`expected a workflow in format ${FORMAT}, found ${JSON.stringify(data.format ?? null)}`);
  if (!data.nodes || typeof data.nodes !== "object" || Array.isArray(data.nodes)) throw new WorkflowError("workflow without a 'nodes' object");
  return data;
}

// --- graph → workflow ----------------------------------------------------------------------------

/**
 * The workflow of the whole graph, or of some nodes (links to nodes outside them are left out unless
 * keepOutsideLinks). `canvas: false` leaves the view (offset, scale) out; groups and reroutes belong to
 * the whole graph only.
 */
export function exportWorkflow(app, { nodes, canvas = true, keepOutsideLinks = false } = {}) {
  const graph = app.graph;
  const list = nodes ?? graph.nodes;
  const inside = new Set(list.map((n) => n.id));
  const out = { format: FORMAT, nodes: {}, ui: structuredClone(app.workflowUi ?? {}), meta: structuredClone(app.workflowMeta ?? {}) };
  for (const node of list) {
    if (!node.ngType) continue; // not one of ours (e.g. a litegraph built-in an extension added)
    out.nodes[String(node.id)] = exportNode(graph, node, (id) => keepOutsideLinks || inside.has(id));
  }
  if (canvas && app.canvas) out.ui.canvas = { offset: app.canvas.ds.offset.map(round), scale: round(app.canvas.ds.scale) };
  else delete out.ui.canvas;
  const groups = nodes ? [] : graph.groups.map((g) => {
    const s = g.serialize();
    const group = { title: s.title, bounding: s.bounding.map(round) };
    if (s.color) group.color = s.color;
    if (s.font_size && s.font_size !== LiteGraph.DEFAULT_GROUP_FONT) group.font_size = s.font_size;
    return group;
  });
  const reroutes = nodes ? [] : exportReroutes(graph);
  for (const [key, value] of [["groups", groups], ["reroutes", reroutes]]) {
    if (value.length) out.ui[key] = value;
    else delete out.ui[key];
  }
  return out;
}

function exportNode(graph, node, keepLinkFrom) {
  const entry = { type: node.ngType, version: node.ngVersion, inputs: {} };
  const mode = modeOf(node);
  if (mode) entry.mode = mode;
  const linked = {};
  for (const slot of node.inputs ?? []) {
    if (slot.link == null) continue;
    const link = graph.getLink(slot.link);
    const source = link && graph.getNodeById(link.origin_id);
    if (!source || !keepLinkFrom(source.id)) continue;
    linked[slot.name] = { from: String(source.id), output: source.outputs[link.origin_slot].name };
  }
  if (node.ngMissing) {
    for (const [name, value] of Object.entries(node.ngRawInputs)) {
      if (isLink(value)) {
        if (linked[name]) entry.inputs[name] = linked[name];
        else if (!node.inputs.some((s) => s.name === name) && keepLinkFrom(graphId(value.from))) entry.inputs[name] = value;
      } else entry.inputs[name] = structuredClone(value);
    }
    for (const [name, value] of Object.entries(linked)) entry.inputs[name] ??= value;
  } else {
    for (const port of node.ngSchema.inputs) {
      if (linked[port.name]) {
        entry.inputs[port.name] = linked[port.name];
        continue;
      }
      const widget = node.ngWidgets.get(port.name);
      if (!widget) continue;
      const value = widgetLiteral(widget);
      if (value === undefined) continue;
      if (node.ngOmitted.has(port.name) && deepEqual(value, port.default)) continue;
      entry.inputs[port.name] = value;
    }
    for (const [name, value] of Object.entries(node.ngExtraInputs)) {
      if (isLink(value) && !keepLinkFrom(graphId(value.from))) continue;
      entry.inputs[name] ??= structuredClone(value);
    }
  }
  const schemaTitle = node.ngMissing ? null : node.ngSchema.title;
  if (node.title && node.title !== schemaTitle && !(node.ngMissing && node.title === node.ngRawTitleDefault)) entry.title = node.title;
  const ui = structuredClone(node.ngUi ?? {});
  ui.pos = [round(node.pos[0]), round(node.pos[1])];
  ui.size = [round(node.size[0]), round(node.size[1])];
  if (node.flags?.collapsed) ui.collapsed = true;
  else delete ui.collapsed;
  if (node.color && node.color !== node.ngDefaultColor && !node.ngMissing) ui.color = node.color;
  if (node.bgcolor && !node.ngMissing) ui.bgcolor = node.bgcolor;
  const seeds = {};
  for (const w of node.widgets ?? []) if (w.ngControlFor && w.ngPort === undefined && w.type === "combo") seeds[w.ngControlFor] = w.value;
  if (Object.keys(seeds).length) ui.seed_modes = seeds;
  else delete ui.seed_modes;
  entry.ui = ui;
  return entry;
}

// --- workflow → graph ----------------------------------------------------------------------------

/**
 * Add a workflow's nodes to the graph. Returns {nodes: Map(workflowId -> node), problems: [text]}.
 * With fresh ids (pasting), nodes get new ids and `offset` moves them.
 */
export function addWorkflowNodes(app, workflow, { freshIds = false, offset = null, keepOutsideLinks = false } = {}) {
  const graph = app.graph;
  const created = new Map();
  const problems = [];
  for (const [id, entry] of Object.entries(workflow.nodes)) {
    if (!entry || typeof entry !== "object" || typeof entry.type !== "string") {
      problems.push(`node ${id}: no "type"; skipped`);
      continue;
    }
    const node = createNodeFor(app, entry);
    if (!freshIds) {
      const gid = graphId(id);
      if (graph.getNodeById(gid)) {
        problems.push(`node ${id} appears twice; skipped`);
        continue;
      }
      node.id = gid;
    }
    applyEntry(node, entry, offset);
    graph.add(node, true);
    created.set(id, node);
  }
  // Links, second: the loaded workflow is connected as it is, even where types disagree (validation
  // then shows the mismatch on the node), so nothing in the file is dropped.
  app.allowAnyLink = true;
  try {
    for (const [id, entry] of Object.entries(workflow.nodes)) {
      const node = created.get(id);
      if (!node) continue;
      for (const [name, value] of Object.entries(entry.inputs ?? {})) {
        if (!isLink(value)) continue;
        let source = created.get(value.from);
        if (!source && keepOutsideLinks) source = graph.getNodeById(graphId(value.from));
        let inIndex = node.findInputSlot(name);
        if (!source) {
          if (!freshIds || keepOutsideLinks) keepExtra(node, name, value);
          if (!freshIds) problems.push(`${id}.${name}: links to a missing node "${value.from}"`);
          continue;
        }
        let outIndex = source.findOutputSlot(value.output);
        if (outIndex < 0 && source.ngMissing) {
          source.addOutput(value.output, "*");
          outIndex = source.outputs.length - 1;
        }
        if (inIndex < 0 && node.ngMissing) {
          node.addInput(name, "*");
          inIndex = node.inputs.length - 1;
        }
        if (outIndex < 0 || inIndex < 0) {
          keepExtra(node, name, freshIds ? { from: String(source.id), output: value.output } : value);
          problems.push(`${id}.${name}: cannot link to ${value.from}.${value.output}`);
          continue;
        }
        source.connect(outIndex, node, inIndex);
      }
    }
  } finally {
    app.allowAnyLink = false;
  }
  graph.updateExecutionOrder();
  for (const node of created.values()) node.ngOnLoaded?.();
  return { nodes: created, problems };
}

function keepExtra(node, name, value) {
  if (node.ngMissing) node.ngRawInputs[name] = value;
  else node.ngExtraInputs[name] = value;
}

function createNodeFor(app, entry) {
  const node = LiteGraph.registered_node_types[entry.type] && LiteGraph.createNode(entry.type);
  if (node) return node;
  const missing = LiteGraph.createNode("nodegraph/missing");
  missing.ngType = entry.type;
  missing.ngVersion = entry.version;
  missing.ngRawInputs = {};
  missing.ngUi = {};
  missing.ngRawTitleDefault = `${entry.type} (missing)`;
  missing.title = missing.ngRawTitleDefault;
  for (const [name, value] of Object.entries(entry.inputs ?? {})) {
    if (isLink(value)) missing.addInput(name, "*");
    missing.ngRawInputs[name] = value;
  }
  return missing;
}

function applyEntry(node, entry, offset) {
  node.ngLoaded = true; // its values come from the workflow, not from the editor's defaults
  if (Number.isInteger(entry.version)) node.ngVersion = entry.version;
  setMode(node, entry.mode);
  const title = typeof entry.title === "string" ? entry.title : typeof entry.ui?.title === "string" ? entry.ui.title : null;
  if (title != null) node.title = title;
  const { pos, size, collapsed, color, bgcolor, seed_modes: seedModes, title: _t, ...restUi } =
    entry.ui && typeof entry.ui === "object" ? entry.ui : {};
  node.ngUi = restUi;
  if (Array.isArray(pos) && pos.length === 2) node.pos = [Number(pos[0]) || 0, Number(pos[1]) || 0];
  if (offset) node.pos = [node.pos[0] + offset[0], node.pos[1] + offset[1]];
  if (collapsed) node.flags.collapsed = true;
  if (typeof color === "string") node.color = color;
  if (typeof bgcolor === "string") node.bgcolor = bgcolor;
  if (node.ngMissing) {
    if (Array.isArray(size)) node.size = [Number(size[0]) || 200, Number(size[1]) || 80];
    return;
  }
  const inputs = entry.inputs && typeof entry.inputs === "object" ? entry.inputs : {};
  for (const port of node.ngSchema.inputs) {
    const widget = node.ngWidgets.get(port.name);
    if (!(port.name in inputs)) {
      if (widget) node.ngOmitted.add(port.name);
      if (widget?.ngPickedFirst) setWidgetLiteral(widget, port.default ?? ""); // left out: not the first image
      continue;
    }
    const value = inputs[port.name];
    if (widget && !isLink(value)) setWidgetLiteral(widget, value);
    else if (!widget && !isLink(value)) node.ngExtraInputs[port.name] = value; // literal on a link-only port
  }
  for (const [name, value] of Object.entries(inputs)) {
    if (!node.ngSchema.inputs.some((p) => p.name === name) && !isLink(value)) node.ngExtraInputs[name] = value;
  }
  // Seed modes: a loaded workflow keeps its seeds unless its ui says "randomize".
  for (const w of node.widgets ?? []) {
    if (w.ngControlFor && w.type === "combo") w.value = seedModes?.[w.ngControlFor] === "randomize" ? "randomize" : "fixed";
  }
  // The saved size is kept as it is (the round trip is exact); without one, the node's natural size.
  if (Array.isArray(size) && size.length === 2 && size.every((v) => Number.isFinite(Number(v)) && Number(v) > 0)) {
    node.size = [Number(size[0]), Number(size[1])];
  } else node.size = node.computeSize();
}

/** Replace the graph with a workflow in the editor's format (canvas view, groups and meta included). */
export function loadWorkflow(app, data) {
  const workflow = checkWorkflow(structuredClone(data));
  const graph = app.graph;
  graph.clear();
  app.canvas.deselectAll?.();
  const { canvas: view, groups, reroutes, ...ui } = workflow.ui && typeof workflow.ui === "object" ? workflow.ui : {};
  app.workflowUi = ui;
  app.workflowMeta = workflow.meta && typeof workflow.meta === "object" ? workflow.meta : {};
  const result = addWorkflowNodes(app, workflow);
  restoreReroutes(app, reroutes);
  for (const g of Array.isArray(groups) ? groups : []) {
    if (!Array.isArray(g?.bounding) || g.bounding.length !== 4) continue;
    const group = new LGraphGroup();
    group.configure({ id: -1, title: String(g.title ?? "Group"), bounding: g.bounding, color: g.color, font_size: g.font_size });
    graph.add(group);
  }
  if (view && Array.isArray(view.offset) && typeof view.scale === "number") {
    app.canvas.ds.offset[0] = view.offset[0];
    app.canvas.ds.offset[1] = view.offset[1];
    app.canvas.ds.scale = view.scale;
  } else if (graph.nodes.length) {
    app.fitView();
  }
  // Draw now, not on the next frame: litegraph hit-tests clicks against the nodes its last draw found
  // visible, and clearing the graph emptied that list, so a click right after a load found no node.
  app.canvas.draw(true, true);
  return result;
}
