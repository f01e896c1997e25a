// The node palette (a side panel of node types grouped by category, descriptions as tooltips) and the
// node search dialog (double-click on the canvas, or drop a link on empty space: then it offers the
// nodes that fit the link, by the link rule, and connects the one chosen). Both are built from the node
// schemas, so a new pack's nodes appear with no front-end code.

import { h, setChildren } from "./dom.js";

/**
 * Node schemas matching a query: every word must appear in the title, type, category or description.
 * `fits(schema)`, when given, keeps only the schemas it accepts.
 */
export function searchSchemas(schemas, query, { fits = null } = {}) {
  const words = query.toLowerCase().split(/\s+/).filter(Boolean);
  const scored = [];
  for (const s of schemas) {
    if (s.replaced_by || (s.deprecated && !query)) continue; // an old id of a renamed node: its new id is listed
    if (fits && !fits(s)) continue;
    const title = s.title.toLowerCase();
    const hay = `${title} ${s.type.toLowerCase()} ${String(s.category ?? "").toLowerCase()} ${String(s.description ?? "").toLowerCase()}`;
    if (!words.every((w) => hay.includes(w))) continue;
    let score = 0;
    const q = words.join(" ");
    if (title === q || s.type.toLowerCase() === q) score += 100;
    if (title.startsWith(q)) score += 50;
    if (words.every((w) => title.includes(w) || s.type.toLowerCase().includes(w))) score += 20;
    if (s.deprecated) score -= 40;
    scored.push([score, s]);
  }
  scored.sort((a, b) => b[0] - a[0] || a[1].title.localeCompare(b[1].title));
  return scored.map(([, s]) => s);
}

function byCategory(schemas) {
  const groups = new Map();
  for (const s of schemas) {
    const cat = s.category || "other";
    if (!groups.has(cat)) groups.set(cat, []);
    groups.get(cat).push(s);
  }
  return [...groups.entries()].sort((a, b) => a[0].localeCompare(b[0]));
}

function tooltip(schema) {
  return `${schema.title} (${schema.type}, pack ${schema.pack})\n${schema.description ?? ""}`;
}

/** The side panel. */
export class Palette {
  constructor(app, root) {
    this.app = app;
    this.root = root;
    this.search = h("input", {
      type: "search",
      placeholder: "Search nodes…",
      className: "ng-palette-search",
      "aria-label": "Search nodes",
      oninput: () => this.render(),
      onkeydown: (e) => {
        if (e.key === "Enter") {
          const first = this.list.querySelector("button.ng-palette-item");
          first?.click();
        }
      },
    });
    this.list = h("div", { className: "ng-palette-list" });
    setChildren(root, h("div", { className: "ng-panel-title" }, "Nodes"), this.search, this.list);
  }

  render() {
    const schemas = Object.values(this.app.schemas);
    const query = this.search.value.trim();
    const shown = query ? searchSchemas(schemas, query) : schemas.filter((s) => !s.deprecated);
    const open = new Set([...this.list.querySelectorAll("details[open]")].map((d) => d.dataset.category));
    const groups = byCategory(shown).map(([category, list]) => {
      const details = h(
        "details",
        { className: "ng-palette-category", dataset: { category }, open: !!query || open.has(category) },
        h("summary", {}, category, h("span", { className: "ng-count" }, String(list.length))),
        list
          .sort((a, b) => a.title.localeCompare(b.title))
          .map((s) =>
            h(
              "button",
              {
                type: "button",
                className: "ng-palette-item",
                title: tooltip(s),
                draggable: true,
                dataset: { type: s.type },
                onclick: () => this.app.addNode(s.type),
                ondragstart: (e) => {
                  e.dataTransfer.setData("application/x-nodegraph-type", s.type);
                  e.dataTransfer.effectAllowed = "copy";
                },
              },
              s.title,
            ),
          ),
      );
      return details;
    });
    const failed = (this.app.catalogue?.failed_packs ?? []).map((f) =>
      h("div", { className: "ng-failed-pack", title: String(f.error ?? f.message ?? "") }, `pack ${f.name ?? f.pack ?? "?"} failed to load`),
    );
    setChildren(this.list, groups, failed, shown.length ? null : h("div", { className: "ng-empty" }, "No node matches."));
  }
}

/**
 * The floating search dialog. Resolves when a type is chosen: the node is added at `graphPos` and,
 * when opened by dropping a link, connected to it.
 */
export function openSearchDialog(app, { clientX, clientY, graphPos, linkContext = null } = {}) {
  document.querySelector(".ng-search-dialog")?.remove();
  const schemas = Object.values(app.schemas);
  const filter = { fits: linkContext?.slot_from ? (schema) => fitsLink(app.linkRules, schema, linkContext) : null };
  let selected = 0;
  let results = [];
  const input = h("input", { type: "search", placeholder: "Add a node…", "aria-label": "Add a node", className: "ng-search-input" });
  const list = h("ul", { className: "ng-search-results", role: "listbox" });
  const box = h("div", { className: "ng-search-dialog", role: "dialog", "aria-label": "Add a node" }, input, list);
  const close = () => {
    box.remove();
    document.removeEventListener("pointerdown", outside, true);
  };
  const outside = (e) => {
    if (!box.contains(e.target)) close();
  };
  const choose = (schema) => {
    close();
    const node = app.addNode(schema.type, { pos: graphPos, select: true });
    if (node && linkContext) connectToLink(app, node, linkContext);
  };
  const render = () => {
    results = searchSchemas(schemas, input.value.trim(), filter).slice(0, 30);
    selected = Math.min(selected, Math.max(0, results.length - 1));
    setChildren(
      list,
      results.map((s, i) =>
        h(
          "li",
          {
            className: i === selected ? "selected" : "",
            role: "option",
            title: s.description ?? "",
            dataset: { type: s.type },
            onpointerdown: (e) => {
              e.preventDefault();
              choose(s);
            },
          },
          h("span", { className: "ng-search-title" }, s.title),
          h("span", { className: "ng-search-cat" }, `${s.category} · ${s.type}`),
        ),
      ),
    );
  };
  input.addEventListener("input", () => {
    selected = 0;
    render();
  });
  input.addEventListener("keydown", (e) => {
    if (e.key === "ArrowDown") selected = Math.min(selected + 1, results.length - 1);
    else if (e.key === "ArrowUp") selected = Math.max(selected - 1, 0);
    else if (e.key === "Enter") {
      if (results[selected]) choose(results[selected]);
      e.preventDefault();
      return;
    } else if (e.key === "Escape") {
      close();
      return;
    } else return;
    e.preventDefault();
    render();
  });
  box.style.left = `${Math.max(0, Math.min(clientX ?? 200, window.innerWidth - 340))}px`;
  box.style.top = `${Math.max(0, Math.min(clientY ?? 120, window.innerHeight - 360))}px`;
  document.body.append(box);
  document.addEventListener("pointerdown", outside, true);
  render();
  input.focus();
  return box;
}

/**
 * Whether a node type fits the link being dropped. Dragged from an output: it needs an input that
 * accepts the output; from an input: an output the input accepts.
 */
function fitsLink(rules, schema, ctx) {
  const type = ctx.slot_from.type;
  if (ctx.node_from && !schema.inputs.some((p) => rules.compatible(type, p.type))) return false;
  if (ctx.node_to && !schema.outputs.some((p) => rules.compatible(p.type, type))) return false;
  return true;
}

/** After the search opened from a dropped link: connect the new node to that link's end. */
function connectToLink(app, node, ctx) {
  const slot = ctx.slot_from;
  const rules = app.linkRules;
  if (ctx.node_from) {
    const out = ctx.node_from.outputs.indexOf(slot);
    const i = node.inputs.findIndex((inp) => rules.compatible(slot.type, inp.type));
    if (out >= 0 && i >= 0) ctx.node_from.connect(out, node, i);
  } else if (ctx.node_to) {
    const inp = ctx.node_to.inputs.indexOf(slot);
    const o = node.outputs.findIndex((output) => rules.compatible(output.type, slot.type));
    if (inp >= 0 && o >= 0) node.connect(o, ctx.node_to, inp);
  }
  app.changed();
}
