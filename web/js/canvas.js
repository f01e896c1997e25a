// The litegraph canvas as the editor sets it up: its settings, the layer of DOM widgets over it, the
// node search (double-click, or a link dropped on empty canvas), the node context menu without
// litegraph's property panels, the link rule, a size that follows the window in device pixels, fitting
// the graph in view, coordinates for tests and extensions, and the pointer and key events after which
// the graph may have changed.

import { LGraphCanvas, LiteGraph } from "@comfyorg/litegraph";
import { DomWidgetLayer } from "./domwidgets.js";
import { openSearchDialog } from "./palette.js";
import { installLinkRule } from "./types.js";

const HIDDEN_NODE_MENU = new Set(["Properties", "Properties Panel", "Mode", "Convert to Subgraph 🆕"]);

/** Create app.canvas (and app.domLayer) on app.el.canvas, drawing app.graph. */
export function setUpCanvas(app) {
  const canvas = new LGraphCanvas(app.el.canvas, app.graph);
  app.canvas = canvas;
  canvas.show_info = false;
  canvas.render_canvas_border = false;
  canvas.low_quality_zoom_threshold = 0.5; // litegraph: 0.6; titles stay readable a bit further out
  canvas.allow_searchbox = true;
  app.domLayer = new DomWidgetLayer(app.el.domLayer);
  canvas.onRender = () => app.domLayer.beginFrame();
  canvas.onDrawOverlay = () => app.domLayer.endFrame();
  canvas.showSearchBox = (event, linkContext) => openSearch(app, event, linkContext);
  // A link dropped on empty canvas opens the node search, filtered to nodes that fit the link.
  LiteGraph.release_link_on_empty_shows_menu = true;
  canvas.showConnectionMenu = ({ nodeFrom, slotFrom, nodeTo, slotTo, e }) =>
    openSearch(app, e, nodeFrom ? { node_from: nodeFrom, slot_from: slotFrom } : { node_to: nodeTo, slot_from: slotTo });
  const baseNodeMenu = canvas.getNodeMenuOptions.bind(canvas);
  canvas.getNodeMenuOptions = (node) => baseNodeMenu(node).filter((item) => !item || !HIDDEN_NODE_MENU.has(item.content));
  installLinkRule(LiteGraph, () => app.linkRules, () => app.allowAnyLink);
  resizeCanvas(app);
  new ResizeObserver(() => resizeCanvas(app)).observe(app.el.canvasWrap);
  watchCanvas(app);
}

/** Match the canvas's pixels to its box and the device pixel ratio. */
function resizeCanvas(app) {
  const el = app.el.canvas;
  const rect = app.el.canvasWrap.getBoundingClientRect();
  const dpr = Math.max(1, window.devicePixelRatio || 1);
  const w = Math.max(1, Math.round(rect.width));
  const hgt = Math.max(1, Math.round(rect.height));
  if (el.width === Math.round(w * dpr) && el.height === Math.round(hgt * dpr)) return;
  el.width = Math.round(w * dpr);
  el.height = Math.round(hgt * dpr);
  el.style.width = `${w}px`;
  el.style.height = `${hgt}px`;
  el.getContext("2d").scale(dpr, dpr);
  app.canvas.setDirty(true, true);
  app.canvas.draw(true, true);
}

/** Every finished pointer or key action may have changed the graph: check for a change. */
function watchCanvas(app) {
  const el = app.el.canvas;
  // The canvas takes the keyboard when clicked (litegraph's own keys: Ctrl+A, Space-drag).
  el.addEventListener("pointerdown", () => el.focus({ preventScroll: true }));
  // litegraph sees a double click when two presses are < 300 ms apart by its own clock, which a busy
  // machine can miss; the browser's dblclick (the system's double-click rule) opens the search too.
  el.addEventListener("dblclick", (e) => {
    if (document.querySelector(".ng-search-dialog")) return;
    const [x, y] = app.canvas.convertEventToCanvasOffset(e);
    if (!app.graph.getNodeOnPos(x, y) && !app.graph.getGroupOnPos?.(x, y)) openSearch(app, e);
  });
  const check = () => app.changed();
  el.addEventListener("pointerup", () => queueMicrotask(check));
  document.addEventListener("pointerup", (e) => {
    if (e.target.closest?.(".litecontextmenu, .graphdialog")) setTimeout(check, 0);
  }, true);
  document.addEventListener("keyup", (e) => {
    if (e.target.closest?.(".graphdialog") || e.key === "Delete" || e.key === "Backspace") setTimeout(check, 0);
  }, true);
}

/** The node search dialog at the event (or the view's centre); with a link context, for nodes that fit the link. */
export function openSearch(app, event, linkContext) {
  const pos = event ? app.canvas.convertEventToCanvasOffset(event) : viewCentre(app);
  openSearchDialog(app, {
    clientX: event?.clientX,
    clientY: event?.clientY,
    graphPos: [pos[0], pos[1]],
    linkContext: linkContext?.slot_from ? linkContext : null,
  });
}

/** The graph position at the centre of the view. */
export function viewCentre(app) {
  const rect = app.el.canvas.getBoundingClientRect();
  return app.canvas.ds.convertCanvasToOffset([rect.width / 2, rect.height / 2]);
}

/** Zoom and pan so that every node is in view. */
export function fitView(app) {
  const nodes = app.graph.nodes;
  if (!nodes.length) return;
  let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const n of nodes) {
    x0 = Math.min(x0, n.pos[0]);
    y0 = Math.min(y0, n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT);
    x1 = Math.max(x1, n.pos[0] + n.size[0]);
    y1 = Math.max(y1, n.pos[1] + n.size[1]);
  }
  const rect = app.el.canvas.getBoundingClientRect();
  const margin = 40;
  const scale = Math.max(0.1, Math.min(1.25, (rect.width - 2 * margin) / (x1 - x0), (rect.height - 2 * margin) / (y1 - y0)));
  const ds = app.canvas.ds;
  ds.scale = scale;
  ds.offset[0] = (rect.width / scale - (x1 - x0)) / 2 - x0;
  ds.offset[1] = (rect.height / scale - (y1 - y0)) / 2 - y0;
  app.canvas.setDirty(true, true);
}

/** Centre the view on a node and select it. */
export function focusNode(app, node) {
  app.canvas.centerOnNode(node);
  app.canvas.selectNode(node, false);
  app.canvas.setDirty(true, true);
}

/** Client (page) coordinates of a point in graph space. */
export function graphToClient(app, [gx, gy]) {
  const [x, y] = app.canvas.ds.convertOffsetToCanvas([gx, gy]);
  const rect = app.el.canvas.getBoundingClientRect();
  return [rect.left + x, rect.top + y];
}

/** An image for a node to draw; the canvas is redrawn when it has loaded. */
export function loadImage(app, url, node) {
  const img = new Image();
  img.decoding = "async";
  img.onload = () => {
    node?.setDirtyCanvas?.(true, false);
    app.canvas.setDirty(true, false);
  };
  img.src = url;
  return img;
}
