// The minimap: the whole graph in a small box at the bottom right of the canvas, with the part in view
// outlined. Click or drag in it to move the view there. Redrawn with every frame the canvas draws.

import { LiteGraph } from "@comfyorg/litegraph";
import { h } from "./dom.js";

const WIDTH = 200;
const HEIGHT = 140;
const PAD = 6;

export class Minimap {
  constructor(app, parent) {
    this.app = app;
    this.el = h("canvas", { className: "ng-minimap", width: WIDTH, height: HEIGHT, title: "Minimap: click or drag to move the view" });
    parent.append(this.el);
    this.transform = null; // graph -> minimap: {x0, y0, scale}
    const move = (e) => this.centreAt(e.offsetX, e.offsetY);
    this.el.addEventListener("pointerdown", (e) => {
      e.stopPropagation();
      this.el.setPointerCapture(e.pointerId);
      move(e);
      const onMove = (ev) => move(ev);
      const up = () => {
        this.el.removeEventListener("pointermove", onMove);
        this.el.removeEventListener("pointerup", up);
      };
      this.el.addEventListener("pointermove", onMove);
      this.el.addEventListener("pointerup", up);
    });
  }

  setVisible(visible) {
    this.el.hidden = !visible;
    if (visible) this.draw();
  }

  /** The graph's bounds and the view's, in graph space: [x0, y0, x1, y1] each. */
  bounds() {
    const app = this.app;
    const rect = app.el.canvas.getBoundingClientRect();
    const [vx0, vy0] = app.canvas.ds.convertCanvasToOffset([0, 0]);
    const [vx1, vy1] = app.canvas.ds.convertCanvasToOffset([rect.width, rect.height]);
    const view = [vx0, vy0, vx1, vy1];
    const all = [...view];
    for (const n of app.graph.nodes) {
      all[0] = Math.min(all[0], n.pos[0]);
      all[1] = Math.min(all[1], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT);
      all[2] = Math.max(all[2], n.pos[0] + n.size[0]);
      all[3] = Math.max(all[3], n.pos[1] + n.size[1]);
    }
    return { all, view };
  }

  draw() {
    if (this.el.hidden) return;
    const ctx = this.el.getContext("2d");
    const { all, view } = this.bounds();
    const scale = Math.min((WIDTH - 2 * PAD) / (all[2] - all[0] || 1), (HEIGHT - 2 * PAD) / (all[3] - all[1] || 1));
    const x0 = all[0] - ((WIDTH - 2 * PAD) / scale - (all[2] - all[0])) / 2 - PAD / scale;
    const y0 = all[1] - ((HEIGHT - 2 * PAD) / scale - (all[3] - all[1])) / 2 - PAD / scale;
    this.transform = { x0, y0, scale };
    const map = (x, y) => [(x - x0) * scale, (y - y0) * scale];
    ctx.clearRect(0, 0, WIDTH, HEIGHT);
    ctx.fillStyle = "rgba(20, 20, 20, 0.85)";
    ctx.fillRect(0, 0, WIDTH, HEIGHT);
    for (const n of this.app.graph.nodes) {
      const [x, y] = map(n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT);
      const height = n.flags?.collapsed ? LiteGraph.NODE_TITLE_HEIGHT : n.size[1] + LiteGraph.NODE_TITLE_HEIGHT;
      ctx.fillStyle = n.ngErrors?.length ? "#c62828" : n.color || "#607d8b";
      ctx.fillRect(x, y, Math.max(2, n.size[0] * scale), Math.max(2, height * scale));
    }
    const [a, b] = map(view[0], view[1]);
    const [c, d] = map(view[2], view[3]);
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 1;
    ctx.strokeRect(a + 0.5, b + 0.5, c - a, d - b);
  }

  /** Centre the view on the graph point under minimap pixel (x, y). */
  centreAt(x, y) {
    const t = this.transform;
    if (!t) return;
    const gx = x / t.scale + t.x0;
    const gy = y / t.scale + t.y0;
    const ds = this.app.canvas.ds;
    const rect = this.app.el.canvas.getBoundingClientRect();
    ds.offset[0] = rect.width / (2 * ds.scale) - gx;
    ds.offset[1] = rect.height / (2 * ds.scale) - gy;
    this.app.canvas.setDirty(true, true);
  }
}
