// Templates: the example workflows the server ships (GET /api/templates: name, title and the description
// of each one's `meta`). The Templates dialog opens one (never runs it), and a first visit opens the
// server's default one — the text-to-image workflow — as it is on the server, not a copy typed in here.

import { h, modal, setChildren } from "./dom.js";
import { emptyWorkflow } from "./workflow.js";

/** The Templates dialog: pick an example workflow to open. */
export async function openTemplates(app) {
  let listing;
  try {
    listing = await app.api.templates();
  } catch (err) {
    app.toast(`Cannot list the templates: ${err.message}`, "error");
    return null;
  }
  const chosen = await modal("Templates", (close) => {
    const list = h("ul", { className: "ng-template-list" });
    const items = (listing.templates ?? []).map((t) =>
      h("li", {},
        h("button", { type: "button", className: "ng-link", dataset: { name: t.name }, onclick: () => close(t.name) }, t.title),
        h("span", { className: "ng-template-desc", title: t.description }, firstLine(t.description))));
    setChildren(list, items.length ? items : h("li", { className: "ng-empty" }, "The server has no templates."));
    return [list, h("div", { className: "ng-modal-buttons" }, h("button", { type: "button", onclick: () => close(null) }, "Close"))];
  }, { className: "ng-templates" });
  return chosen ? openTemplate(app, chosen) : null;
}

/** Load one template by name (it replaces the graph; it is not saved under a name until you save it). */
export async function openTemplate(app, name) {
  try {
    return await app.loadWorkflow(await app.api.template(name), { source: "template", name: null });
  } catch (err) {
    app.toast(`Cannot open the template ${name}: ${err.message}`, "error");
    return null;
  }
}

/**
 * The workflow a first visit opens: the server's default template when every node type it uses is here,
 * else the first template that has them all, else an empty workflow.
 */
export async function defaultWorkflow(app) {
  let listing;
  try {
    listing = await app.api.templates();
  } catch {
    return emptyWorkflow();
  }
  const names = (listing.templates ?? []).map((t) => t.name);
  const order = listing.default ? [listing.default, ...names.filter((n) => n !== listing.default)] : names;
  const known = (type) => type in (app.schemas ?? {}) || Object.hasOwn(app.catalogue?.aliases ?? {}, type);
  for (const name of order) {
    try {
      const data = await app.api.template(name);
      if (Object.values(data?.nodes ?? {}).every((n) => known(n?.type))) return data;
    } catch {
      // a template that cannot be read: try the next
    }
  }
  return emptyWorkflow();
}

/** The first line (up to the end of the first sentence) of a description. */
export function firstLine(text) {
  const s = String(text ?? "").split("\n")[0];
  const end = s.search(/\.(\s|$)/);
  return end >= 0 ? s.slice(0, end + 1) : s;
}
