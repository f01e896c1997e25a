// Node modes as the workflow format states them (docs/workflows.md): a bypassed node (Ctrl+B) passes its
// matching inputs through, a muted node (Ctrl+M) does not run, nor what needs it. The editor keeps them in
// litegraph's own `node.mode` (BYPASS, NEVER), writes them as a node's `mode`, and draws them over the node.

import { LGraphEventMode, LiteGraph } from "@comfyorg/litegraph";

const MODES = { bypass: LGraphEventMode.BYPASS, mute: LGraphEventMode.NEVER };

/** A node's mode in the workflow format: "bypass", "mute" or null (it runs). */
export function modeOf(node) {
  if (node.mode === LGraphEventMode.BYPASS) return "bypass";
  if (node.mode === LGraphEventMode.NEVER) return "mute";
  return null;
}

/** Put a workflow mode ("bypass", "mute", anything else: runs) on a node. */
export function setMode(node, mode) {
  node.mode = MODES[mode] ?? LGraphEventMode.ALWAYS;
}

/** Ctrl+B / Ctrl+M: give the nodes the mode, or take it away when they all have it already. */
export function toggleMode(app, nodes, mode) {
  const list = nodes.filter((n) => n.ngType);
  if (!list.length) return;
  const off = list.every((n) => modeOf(n) === mode);
  for (const node of list) setMode(node, off ? null : mode);
  app.canvas.setDirty(true, true);
  app.changed();
}

/** Draw a node's mode over it: bypassed nodes purple, muted ones greyed out, each with its label. */
export function drawMode(node, ctx) {
  const mode = modeOf(node);
  if (!mode) return;
  const title = LiteGraph.NODE_TITLE_HEIGHT;
  const width = node.flags?.collapsed ? (node._collapsed_width ?? LiteGraph.NODE_COLLAPSED_WIDTH) : node.size[0];
  const height = node.flags?.collapsed ? 0 : node.size[1];
  ctx.save();
  ctx.fillStyle = mode === "bypass" ? "rgba(170, 60, 210, 0.38)" : "rgba(20, 20, 20, 0.6)";
  ctx.beginPath();
  ctx.roundRect(0, -title, width, height + title, 8);
  ctx.fill();
  ctx.font = "bold 11px sans-serif";
  ctx.textAlign = "right";
  ctx.fillStyle = mode === "bypass" ? "#e1bee7" : "#bdbdbd";
  ctx.fillText(mode === "bypass" ? "bypassed" : "muted", width - 8, -title + 13);
  ctx.restore();
}
