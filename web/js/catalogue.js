// The node catalogue (GET /api/nodes): a node class per schema, the link rule the server states, a
// colour per port type, the palette, and a message for each pack that failed to load.

import { LGraphCanvas } from "@comfyorg/litegraph";
import { registerNodeTypes } from "./nodes.js";
import { LinkRules, colourType } from "./types.js";

/** Fetch the catalogue and build the editor's node types from it; throws when it cannot be had. */
export async function loadCatalogue(app) {
  let catalogue;
  let rules;
  try {
    catalogue = await app.api.nodes();
    rules = LinkRules.fromCatalogue(catalogue);
  } catch (err) {
    app.toolbar.setStatus(`Cannot load the node catalogue: ${err.message}`, "error");
    throw err;
  }
  app.catalogue = catalogue;
  app.schemas = catalogue.nodes ?? {};
  app.linkRules = rules;
  registerNodeTypes(app, catalogue);
  const types = new Set();
  for (const s of Object.values(app.schemas)) for (const p of [...s.inputs, ...s.outputs]) types.add(p.type);
  for (const t of types) colourType(LGraphCanvas, app.canvas, t);
  app.palette.render();
  for (const failed of catalogue.failed_packs ?? []) {
    app.toast(`Pack ${failed.name ?? failed.pack ?? "?"} failed to load: ${failed.error ?? failed.message ?? ""}`, "error", 8000);
  }
}
