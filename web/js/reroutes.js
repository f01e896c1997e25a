// Reroutes: points a link passes through on the canvas (Alt+click a link, or "Add Reroute" in its menu;
// litegraph's native reroutes). They are drawing only: the workflow's link stays `{"from", "output"}` on
// the input it feeds, and the reroutes are kept in the top-level `ui.reroutes` the engine ignores:
// [{id, pos, parent?, links: [[node id, input name], ...]}] — `parent` is the reroute before it (nearer
// the output), `links` the inputs whose links pass through it.

const round = (v) => Math.round(v * 100) / 100;

/** The graph's reroutes in the workflow's `ui.reroutes` form (those no link passes through are left out). */
export function exportReroutes(graph) {
  const out = [];
  for (const reroute of graph.reroutes.values()) {
    const links = [];
    for (const id of reroute.linkIds) {
      const link = graph.links.get(id);
      const target = link && graph.getNodeById(link.target_id);
      const slot = target?.inputs?.[link.target_slot];
      if (slot) links.push([String(target.id), slot.name]);
    }
    if (!links.length) continue;
    const entry = { id: reroute.id, pos: [round(reroute.pos[0]), round(reroute.pos[1])], links };
    if (reroute.parentId != null && graph.reroutes.has(reroute.parentId)) entry.parent = reroute.parentId;
    out.push(entry);
  }
  return out;
}

/** Put a workflow's `ui.reroutes` on the links of the graph (entries naming no existing link are dropped). */
export function restoreReroutes(app, list) {
  if (!Array.isArray(list)) return;
  const graph = app.graph;
  const linkInto = ([nodeId, input]) => {
    const slot = app.nodeById(String(nodeId))?.inputs?.find((s) => s.name === String(input));
    return slot?.link != null ? graph.links.get(slot.link) : null;
  };
  const kept = [];
  for (const r of list) {
    if (!Number.isInteger(r?.id) || !Array.isArray(r.pos) || r.pos.length !== 2 || !Array.isArray(r.links)) continue;
    const links = r.links.filter((l) => Array.isArray(l) && l.length === 2).map(linkInto).filter(Boolean);
    if (links.length) kept.push({ r, links });
  }
  const ids = new Set(kept.map(({ r }) => r.id));
  for (const { r, links } of kept) {
    const pos = [Number(r.pos[0]) || 0, Number(r.pos[1]) || 0];
    graph.setReroute({ id: r.id, parentId: ids.has(r.parent) ? r.parent : undefined, pos, linkIds: links.map((l) => l.id) });
  }
  // A link's own parent is its reroute nearest the input: the one no other reroute of that link follows.
  const onLink = new Map();
  for (const { r, links } of kept) for (const link of links) onLink.set(link, [...(onLink.get(link) ?? []), r]);
  for (const [link, reroutes] of onLink) {
    const parents = new Set(reroutes.map((r) => r.parent));
    const last = reroutes.find((r) => !parents.has(r.id));
    if (last) link.parentId = last.id;
  }
}
