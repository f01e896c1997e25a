// Descriptions as tooltips on the canvas: hovering a node's title shows the node type's description,
// a socket or widget its port's description (from the schema). Text only (textContent).

import { h } from "./dom.js";

const DELAY_MS = 500;

export function installTooltips(app) {
  const tip = h("div", { className: "ng-tooltip", role: "tooltip", hidden: true });
  document.body.append(tip);
  let timer = null;
  let last = null;
  const hide = () => {
    clearTimeout(timer);
    tip.hidden = true;
  };

  const describe = (gx, gy) => {
    const node = app.graph.getNodeOnPos(gx, gy);
    if (!node?.ngSchema) return null;
    const schema = node.ngSchema;
    const slot = node.getSlotOnPos([gx, gy]);
    if (slot) {
      const isInput = node.inputs.includes(slot);
      const port = (isInput ? schema.inputs : schema.outputs).find((p) => p.name === slot.name);
      return port ? `${port.name} (${port.type})${port.description ? `\n${port.description}` : ""}` : null;
    }
    const widget = node.getWidgetOnPos(gx, gy, true);
    if (widget?.ngPort) {
      const p = widget.ngPort;
      const range = p.minimum != null || p.maximum != null ? `, ${p.minimum ?? "…"} to ${p.maximum ?? "…"}` : "";
      return `${p.name} (${p.type}${range})${p.description ? `\n${p.description}` : ""}`;
    }
    if (widget?.tooltip) return widget.tooltip;
    if (gy < node.pos[1]) return `${schema.title} — ${schema.type}${schema.description ? `\n${schema.description}` : ""}`;
    return null;
  };

  app.el.canvas.addEventListener("pointermove", (e) => {
    hide();
    if (e.buttons) return;
    last = e;
    timer = setTimeout(() => {
      const [gx, gy] = app.canvas.convertEventToCanvasOffset(last);
      const text = describe(gx, gy);
      if (!text) return;
      tip.textContent = text;
      tip.style.left = `${Math.min(last.clientX + 12, window.innerWidth - 320)}px`;
      tip.style.top = `${last.clientY + 16}px`;
      tip.hidden = false;
    }, DELAY_MS);
  });
  app.el.canvas.addEventListener("pointerleave", hide);
  app.el.canvas.addEventListener("pointerdown", hide);
  app.el.canvas.addEventListener("wheel", hide, { passive: true });
  return tip;
}
