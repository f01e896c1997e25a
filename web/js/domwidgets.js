// Widgets drawn as real DOM elements over the canvas (multi-line text). litegraph draws the node; the
// widget's draw() only records where it is on screen and moves its element there, so the element pans
// and zooms with the canvas. Elements of nodes that were not drawn in a frame (off screen) are hidden.

/** The layer over the canvas that holds DOM widgets; frame bookkeeping hides the ones off screen. */
export class DomWidgetLayer {
  constructor(container) {
    this.el = container;
    this.frame = 0;
    this.widgets = new Set();
  }

  get dpr() {
    return Math.max(1, window.devicePixelRatio || 1);
  }

  beginFrame() {
    this.frame++;
  }

  endFrame() {
    for (const w of this.widgets) {
      if (!w.node.graph) {
        w.onRemove();
        continue;
      }
      if (w.drawnFrame !== this.frame && !w.el.hidden) w.el.hidden = true;
    }
  }

  add(widget) {
    this.widgets.add(widget);
    this.el.append(widget.el);
  }

  remove(widget) {
    this.widgets.delete(widget);
    widget.el.remove();
  }
}

/** A multi-line text widget (prompts): a <textarea> that follows the node. */
export class DomTextWidget {
  constructor(node, port, app, changed) {
    this.type = "ng_text";
    this.name = port.name;
    this.options = {};
    this.y = 0;
    this.node = node;
    this.app = app;
    this.el = document.createElement("textarea");
    this.el.className = "ng-textarea";
    this.el.placeholder = port.name;
    this.el.spellcheck = false;
    this.el.hidden = true;
    this.el.value = port.default ?? "";
    this.el.setAttribute("aria-label", `${port.name}`);
    this.el.dataset.port = port.name;
    // Typing makes one undo step per pause, not one per key.
    let timer = null;
    const flush = () => {
      clearTimeout(timer);
      timer = null;
      changed(this.el.value);
    };
    this.el.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(flush, 400);
    });
    this.el.addEventListener("change", () => timer && flush());
    // Focus on the element selects its node, as a click on a canvas widget does.
    this.el.addEventListener("pointerdown", () => {
      if (!node.selected) app.canvas.selectNode(node, false);
    });
    app.domLayer.add(this);
  }

  get value() {
    return this.el.value;
  }

  set value(v) {
    this.el.value = v == null ? "" : String(v);
  }

  computeLayoutSize() {
    return { minHeight: 60, maxHeight: 600, minWidth: 150 };
  }

  draw(ctx, node, width, y, H, lowQuality) {
    this.drawnFrame = this.app.domLayer.frame;
    const margin = 10;
    const height = Math.max(20, (this.computedHeight ?? 64) - 6);
    const scale = this.app.canvas.ds.scale;
    const showElement = !lowQuality && scale >= 0.4 && !node.flags?.collapsed && !this.computedDisabled;
    if (!showElement) {
      this.el.hidden = true;
      ctx.save();
      ctx.fillStyle = "#222";
      ctx.strokeStyle = "#555";
      ctx.beginPath();
      ctx.rect(margin, y, width - 2 * margin, height);
      ctx.fill();
      ctx.stroke();
      if (this.computedDisabled) {
        ctx.fillStyle = "#888";
        ctx.font = "12px sans-serif";
        ctx.fillText(`${this.name} (linked)`, margin + 6, y + 16);
      }
      ctx.restore();
      return;
    }
    const dpr = this.app.domLayer.dpr;
    const t = ctx.getTransform();
    const left = (t.a * margin + t.c * y + t.e) / dpr;
    const top = (t.b * margin + t.d * y + t.f) / dpr;
    const s = t.a / dpr;
    const style = this.el.style;
    const transform = `translate(${left}px, ${top}px) scale(${s})`;
    if (style.transform !== transform) style.transform = transform;
    const w = `${Math.max(10, width - 2 * margin)}px`;
    const h = `${height}px`;
    if (style.width !== w) style.width = w;
    if (style.height !== h) style.height = h;
    if (this.el.hidden) this.el.hidden = false;
  }

  onRemove() {
    this.app.domLayer.remove(this);
  }
}
