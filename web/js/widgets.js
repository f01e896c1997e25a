// Widgets from port schemas: every input that is not link-only gets a widget, chosen from its type and
// its `widget` hint (seed, text, file), with the schema's min/max/step/choices/default. Every widget
// also has an input socket on the node (a litegraph "widget input"): linking into it replaces the value.
// A file widget of the input folder also uploads: its button (or an image dropped on its node) sends
// the file to the server and chooses it.

import { DomTextWidget } from "./domwidgets.js";

export const SEED_MODES = ["randomize", "fixed"];
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Whether a port only takes links (no widget). */
export function isLinkPort(port) {
  return !!port.link;
}

/** A port that may be left unset (optional, default null): its widget is text, empty = not given. */
function isNullable(port) {
  return !port.required && port.default === null;
}

function decimals(step) {
  if (!step || Number.isInteger(step)) return 0;
  const text = String(step);
  const i = text.indexOf(".");
  return i < 0 ? 0 : Math.min(6, text.length - i - 1);
}

function numericBounds(port) {
  const isInt = port.type === "INT" || port.type === "SEED";
  let min = port.minimum;
  let max = port.maximum;
  if (port.exclusiveMinimum != null) min = isInt ? port.exclusiveMinimum + 1 : port.exclusiveMinimum;
  if (port.exclusiveMaximum != null) max = isInt ? port.exclusiveMaximum - 1 : port.exclusiveMaximum;
  return { min, max, isInt };
}

/** The literal a widget holds, as it goes into the workflow (undefined = leave the input out). */
export function widgetLiteral(widget) {
  const port = widget.ngPort;
  const value = widget.value;
  if (widget.ngParse) return widget.ngParse(value);
  if (port && (port.type === "INT" || port.type === "SEED")) return Math.round(Number(value));
  if (port && port.type === "FLOAT") return Number(value);
  return value;
}

/** Put a workflow literal into a widget. */
export function setWidgetLiteral(widget, value) {
  if (widget.ngFormat) widget.value = widget.ngFormat(value);
  else widget.value = value;
  widget.ngOnSet?.(value);
}

/** Parse the text of a free-form widget (nullable ports, JSON, ANY) into a literal. */
function parseFree(port, text) {
  if (text === "" || text == null) return undefined;
  switch (port.type) {
    case "STRING":
    case "ENUM":
      return text;
    case "INT":
    case "SEED": {
      const n = Number(text);
      return Number.isFinite(n) ? Math.round(n) : text;
    }
    case "FLOAT": {
      const n = Number(text);
      return Number.isFinite(n) ? n : text;
    }
    case "BOOLEAN":
      return text === "true" ? true : text === "false" ? false : text;
    default:
      try {
        return JSON.parse(text);
      } catch {
        return text; // the server reports it as an invalid value, on this node
      }
  }
}

function formatFree(port, value) {
  if (value === undefined || value === null) return "";
  if ((port.type === "STRING" || port.type === "ENUM") && typeof value === "string") return value;
  if (["INT", "FLOAT", "SEED", "BOOLEAN"].includes(port.type) && typeof value !== "object") return String(value);
  return JSON.stringify(value);
}

/**
 * Add the widget(s) for one port to a node; returns the port's value widget.
 * @param {import("./app.js").App} app
 */
export function createWidget(node, port, app) {
  const custom = port.widget && app.widgetKinds.get(port.widget);
  const changed = () => app.nodeChanged(node);
  let widget;
  if (custom) {
    widget = custom(node, port, app);
  } else if (isNullable(port) || port.type === "JSON" || port.type === "ANY") {
    widget = node.addWidget("text", port.name, formatFree(port, port.default), changed, {});
    widget.ngParse = (v) => parseFree(port, v);
    widget.ngFormat = (v) => formatFree(port, v);
  } else if (port.type === "BOOLEAN") {
    widget = node.addWidget("toggle", port.name, port.default ?? false, changed, { on: "true", off: "false" });
  } else if (port.type === "INT" || port.type === "FLOAT" || port.type === "SEED") {
    widget = numberWidget(node, port, app, changed);
  } else if (port.type === "ENUM" || port.choices) {
    const values = (port.choices ?? []).slice();
    widget = node.addWidget("combo", port.name, port.default ?? values[0] ?? "", changed, { values });
  } else if (port.widget === "text") {
    widget = new DomTextWidget(node, port, app, changed);
    node.addCustomWidget(widget);
  } else if (port.widget === "file") {
    widget = fileWidget(node, port, app, changed);
  } else {
    widget = node.addWidget("text", port.name, port.default ?? "", changed, {});
  }
  widget.ngPort = port;
  widget.tooltip = port.description;
  return widget;
}

function numberWidget(node, port, app, changed) {
  const { min, max, isInt } = numericBounds(port);
  const step = port.step ?? (isInt ? 1 : 0.01);
  const precision = isInt ? 0 : Math.max(decimals(step), 2);
  const fallback = min ?? 0;
  const value = port.default ?? fallback;
  const options = { min, max, step2: step, precision };
  const callback = (v) => {
    if (isInt && !Number.isInteger(widget.value)) widget.value = Math.round(widget.value);
    changed(v);
  };
  let widget;
  if (port.display === "slider" && min != null && max != null) {
    widget = node.addWidget("slider", port.name, value, callback, options);
  } else {
    widget = node.addWidget("number", port.name, value, callback, options);
  }
  if (port.type === "SEED" || port.widget === "seed") {
    const control = node.addWidget("combo", `${port.name} mode`, node.ngNewSeedMode ?? "randomize", changed, {
      values: SEED_MODES,
    });
    control.serialize = false;
    control.ngControlFor = port.name;
    control.tooltip = "randomize: a new random seed before each queue; fixed: keep this seed";
    widget.ngSeedControl = control;
    widget.ngRandomize = () => {
      const lo = Math.max(min ?? 0, 0);
      const hi = Math.min(max ?? MAX_SAFE, 2 ** 48);
      widget.value = lo + Math.floor(Math.random() * (hi - lo + 1));
    };
  }
  return widget;
}

function fileWidget(node, port, app, changed) {
  const folder = port.folder ?? "input";
  const source = folder === "input" ? app.files.input : app.files.forFolder(folder);
  const widget = node.addWidget("combo", port.name, port.default ?? "", (v) => {
    widget.ngOnSet?.(v);
    changed(v);
  }, {
    values: () => {
      const names = source.names();
      return widget.value && !names.includes(widget.value) ? [widget.value, ...names] : names;
    },
  });
  if (folder === "input") {
    widget.ngOnSet = (name) => node.ngSetThumbnail(name ? { filename: name, subfolder: "", type: "input" } : null);
    const button = node.addWidget("button", `upload ${port.name}`, null, () => {
      const input = document.createElement("input");
      input.type = "file";
      input.accept = (port.extensions ?? []).join(",") || "image/*";
      input.addEventListener("change", async () => {
        const file = input.files?.[0];
        if (file) await uploadInto(app, node, widget, file);
      });
      input.click();
    }, {});
    button.serialize = false;
    button.ngControlFor = port.name;
    button.label = "choose file to upload";
    widget.ngUpload = (file) => uploadInto(app, node, widget, file);
  }
  return widget;
}

/** Upload an image to the server's input folder and choose it in the widget; resolves with its name or null. */
async function uploadInto(app, node, widget, file) {
  try {
    const res = await app.api.upload(file);
    await app.files.input.refresh();
    const name = res.subfolder ? `${res.subfolder}/${res.name}` : res.name;
    setWidgetLiteral(widget, name);
    app.nodeChanged(node);
    return name;
  } catch (err) {
    app.toast(`Upload failed: ${err.message}`, "error");
    return null;
  }
}
