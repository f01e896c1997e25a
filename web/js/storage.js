// The workflow kept in this browser (localStorage): saved after every change of the graph and restored
// on reload. A first visit, with nothing saved, opens the default graph built from the catalogue.

import { FORMAT } from "./workflow.js";

const STORAGE_WORKFLOW = "nodegraph.workflow";
const STORAGE_NAME = "nodegraph.workflow_name";

export class Autosave {
  constructor(app) {
    this.app = app;
  }

  /** Keep the current workflow and its name. */
  save() {
    const app = this.app;
    try {
      localStorage.setItem(STORAGE_WORKFLOW, JSON.stringify(app.exportWorkflow()));
      if (app.workflowName) localStorage.setItem(STORAGE_NAME, app.workflowName);
      else localStorage.removeItem(STORAGE_NAME);
    } catch {
      // storage full or disabled
    }
  }

  /** Load the kept workflow (not validated), or the default graph when there is none or it does not load. */
  async restore() {
    const app = this.app;
    let data = null;
    try {
      data = JSON.parse(localStorage.getItem(STORAGE_WORKFLOW) ?? "null");
    } catch {
      data = null;
    }
    if (data && (await app.loadWorkflow(data, { source: "autosave", name: localStorage.getItem(STORAGE_NAME), validate: false }))) return;
    await app.loadWorkflow(defaultWorkflow(app.schemas), { source: "default", validate: false });
  }
}

/** A workflow without nodes (New). */
export function emptyWorkflow() {
  return { format: FORMAT, nodes: {}, ui: {}, meta: {} };
}

/** The first workflow, from what the catalogue has: text-to-image when unCLIP is there. */
export function defaultWorkflow(schemas) {
  const has = (t) => t in schemas;
  const workflow = emptyWorkflow();
  const nodes = workflow.nodes;
  const node = (type, pos, inputs = {}) => ({ type, version: schemas[type].version, inputs, ui: { pos } });
  const link = (from, output) => ({ from, output });
  const t2i = ["unclip.load_clip", "unclip.text_encode", "unclip.load_prior", "unclip.prior",
    "unclip.load_decoder", "unclip.decoder", "core.save_image"];
  if (t2i.every(has)) {
    // The DALL·E 2 cascade with the schemas' defaults (the shipped model, the prompt "a red circle").
    nodes.load_clip = node("unclip.load_clip", [40, 60]);
    nodes.load_prior = node("unclip.load_prior", [40, 200]);
    nodes.load_decoder = node("unclip.load_decoder", [40, 340]);
    nodes.encode = node("unclip.text_encode", [300, 60], { clip: link("load_clip", "clip") });
    nodes.prior = node("unclip.prior", [300, 280], { prior: link("load_prior", "prior"), conditioning: link("encode", "conditioning") });
    nodes.decoder = node("unclip.decoder", [620, 60], {
      decoder: link("load_decoder", "decoder"), image_embedding: link("prior", "embedding"), conditioning: link("encode", "conditioning"),
    });
    nodes.save = node("core.save_image", [900, 60], { images: link("decoder", "images") });
    for (const id of ["prior", "decoder"]) nodes[id].ui.seed_modes = { seed: "randomize" }; // a new image per queue
  } else if (has("core.solid_color") && has("core.save_image")) {
    nodes.color = node("core.solid_color", [80, 120], { color: "#3f51b5" });
    nodes.save = node("core.save_image", [420, 120], { images: link("color", "images") });
  }
  return workflow;
}
