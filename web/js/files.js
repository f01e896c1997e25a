// Files in and out of the browser: a file dropped on the window or chosen with Open file (a workflow
// .json, a PNG made by nodegraph whose embedded workflow is restored and never queued, or an image for
// the image widget of the node it was dropped on), Download (the workflow as a .json file), and node
// types dragged from the palette onto the canvas.

import { download, h } from "./dom.js";
import { readPngWorkflow } from "./png.js";

const IMAGE_TYPES = /^image\/(png|jpeg|webp|bmp)$/;

/** Take drops on the whole window: files, and node types from the palette. */
export function bindDrops(app) {
  document.addEventListener("dragover", (e) => {
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("drop", (e) => onDrop(app, e));
}

async function onDrop(app, e) {
  e.preventDefault();
  const pos = app.canvas.convertEventToCanvasOffset(e);
  const type = e.dataTransfer?.getData("application/x-nodegraph-type");
  if (type) {
    app.addNode(type, { pos: [pos[0], pos[1]], select: true });
    return;
  }
  const file = e.dataTransfer?.files?.[0];
  if (!file) return;
  await openFile(app, file, { target: app.graph.getNodeOnPos(pos[0], pos[1]) });
}

/** Open a file given by a drop (on `target`, a node or null) or by the file picker. */
export async function openFile(app, file, { target = null } = {}) {
  const name = file.name ?? "";
  const isJson = file.type === "application/json" || name.toLowerCase().endsWith(".json");
  try {
    if (isJson) {
      const data = JSON.parse(await file.text());
      return await app.loadWorkflow(data, { source: "file", name: name.replace(/\.json$/i, "") });
    }
    if (IMAGE_TYPES.test(file.type) || /\.(png|jpe?g|webp|bmp)$/i.test(name)) {
      const imageWidget = target?.ngWidgets && [...target.ngWidgets.values()].find((w) => w.ngUpload);
      if (imageWidget) return await imageWidget.ngUpload(file);
      const workflow = file.type === "image/png" || /\.png$/i.test(name) ? await readPngWorkflow(await file.arrayBuffer()) : null;
      if (workflow) return await app.loadWorkflow(workflow, { source: "png", name: name.replace(/\.png$/i, "") });
      app.toast(`${name}: no nodegraph workflow in this image. Drop it on a Load Image node to use it as an input.`, "error");
      return null;
    }
    app.toast(`${name}: not a workflow (.json) or an image`, "error");
  } catch (err) {
    app.toast(`${name}: ${err.message}`, "error");
  }
  return null;
}

/** Open file: the browser's file picker, for a workflow .json or a nodegraph PNG. */
export function pickLocalFile(app) {
  const input = h("input", { type: "file", accept: ".json,application/json,image/png" });
  input.addEventListener("change", () => {
    if (input.files?.[0]) openFile(app, input.files[0]);
  });
  input.click();
}

/** Download: the workflow as `<name>.json`. */
export function downloadWorkflow(app) {
  const name = (app.workflowName ?? "workflow").replace(/[^\w.-]+/g, "_");
  download(`${name}.json`, JSON.stringify(app.exportWorkflow(), null, 2));
}
