// Editor settings (the Settings dialog, ⚙ in the toolbar): how links are drawn, snapping nodes to the
// grid, the zoom below which litegraph draws nodes as plain boxes (Fit never zooms out further), and the
// minimap. Kept in this browser's localStorage and applied at start; `app.settings` for extensions.

import { LiteGraph } from "@comfyorg/litegraph";
import { h, modal } from "./dom.js";

const KEY = "nodegraph.settings";
// litegraph's LinkRenderType values.
const LINK_STYLES = { spline: LiteGraph.SPLINE_LINK, linear: LiteGraph.LINEAR_LINK, straight: LiteGraph.STRAIGHT_LINK };

export const DEFAULTS = Object.freeze({ linkStyle: "spline", snapToGrid: false, gridSize: 10, lowQualityZoom: 0.5, minimap: true });

/** Each setting's check: the value to keep, or undefined to refuse it. */
const CHECKS = {
  linkStyle: (v) => (Object.hasOwn(LINK_STYLES, v) ? v : undefined),
  snapToGrid: (v) => (typeof v === "boolean" ? v : undefined),
  gridSize: (v) => (Number.isInteger(v) && v >= 2 && v <= 200 ? v : undefined),
  lowQualityZoom: (v) => (typeof v === "number" && v >= 0.1 && v <= 1 ? Math.round(v * 100) / 100 : undefined),
  minimap: (v) => (typeof v === "boolean" ? v : undefined),
};

export class EditorSettings {
  constructor(app) {
    this.app = app;
    this.values = { ...DEFAULTS };
    let stored = {};
    try {
      stored = JSON.parse(localStorage.getItem(KEY) ?? "{}") ?? {};
    } catch {
      stored = {};
    }
    for (const [key, value] of Object.entries(stored)) {
      const ok = CHECKS[key]?.(value);
      if (ok !== undefined) this.values[key] = ok;
    }
  }

  get(key) {
    return this.values[key];
  }

  /** Change a setting (refused with an error when the value does not fit), keep it and apply it. */
  set(key, value) {
    const ok = CHECKS[key]?.(value);
    if (ok === undefined) throw new Error(`setting ${key}: ${JSON.stringify(value)} is not allowed`);
    this.values[key] = ok;
    try {
      localStorage.setItem(KEY, JSON.stringify(this.values));
    } catch {
      // storage full or disabled: the setting holds for this page
    }
    this.apply();
  }

  /** Put the settings into the canvas. */
  apply() {
    const { app, values } = this;
    app.canvas.links_render_mode = LINK_STYLES[values.linkStyle];
    app.canvas.low_quality_zoom_threshold = values.lowQualityZoom;
    LiteGraph.alwaysSnapToGrid = values.snapToGrid;
    LiteGraph.CANVAS_GRID_SIZE = values.gridSize;
    app.minimap?.setVisible(values.minimap);
    app.canvas.setDirty(true, true);
  }

  /** The Settings dialog: each control applies its setting at once. */
  open() {
    const field = (label, control, hint) => h("label", { className: "ng-setting" }, h("span", {}, label), control,
      hint ? h("small", {}, hint) : null);
    const onChange = (key, read) => (e) => {
      try {
        this.set(key, read(e.target));
      } catch (err) {
        this.app.toast(err.message, "error");
        e.target.value = String(this.values[key]);
      }
    };
    return modal("Settings", (close) => [
      field("Links", h("select", { name: "linkStyle", onchange: onChange("linkStyle", (t) => t.value) },
        Object.keys(LINK_STYLES).map((style) => h("option", { value: style, selected: style === this.values.linkStyle }, style)))),
      field("Snap to grid", h("input", { type: "checkbox", name: "snapToGrid", checked: this.values.snapToGrid,
        onchange: onChange("snapToGrid", (t) => t.checked) }), "Shift while dragging snaps too"),
      field("Grid size", h("input", { type: "number", name: "gridSize", min: 2, max: 200, step: 1, value: this.values.gridSize,
        onchange: onChange("gridSize", (t) => Number(t.value)) })),
      field("Low-quality zoom", h("input", { type: "number", name: "lowQualityZoom", min: 0.1, max: 1, step: 0.05,
        value: this.values.lowQualityZoom, onchange: onChange("lowQualityZoom", (t) => Number(t.value)) }),
      "below this zoom nodes are drawn as boxes; Fit never zooms out further"),
      field("Minimap", h("input", { type: "checkbox", name: "minimap", checked: this.values.minimap,
        onchange: onChange("minimap", (t) => t.checked) })),
      h("div", { className: "ng-modal-buttons" }, h("button", { type: "button", onclick: () => close(null) }, "Close")),
    ], { className: "ng-settings" });
  }
}
