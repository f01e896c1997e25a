// Port types: which links are allowed (the same rule as nodegraph/types.py `compatible()`), and a
// colour per type for sockets and links.

// Which output types a port of a given type accepts, besides its own name (nodegraph/types.py _ACCEPTS).
const ACCEPTS = {
  FLOAT: ["INT"],
  SEED: ["INT"],
  INT: ["SEED"],
  ENUM: ["STRING"],
  JSON: ["INT", "FLOAT", "STRING", "BOOLEAN"],
};

/** Whether an output of `outputType` may be linked into an input of `inputType`. */
export function compatible(outputType, inputType) {
  if (inputType === "ANY" || outputType === "ANY" || outputType === inputType) return true;
  return (ACCEPTS[inputType] ?? []).includes(outputType);
}

const COLOURS = {
  IMAGE: "#64b5f6",
  MASK: "#81c784",
  INT: "#4db6ac",
  FLOAT: "#aed581",
  SEED: "#ffb74d",
  STRING: "#ffd54f",
  ENUM: "#ba68c8",
  BOOLEAN: "#e57373",
  JSON: "#a1887f",
  ANY: "#cfd8dc",
};

/** A stable colour for a type; pack types get one derived from their name. */
export function typeColour(type) {
  if (COLOURS[type]) return COLOURS[type];
  let hash = 0;
  for (const ch of String(type)) hash = (hash * 31 + ch.charCodeAt(0)) >>> 0;
  return hslToHex(hash % 360, 0.6, 0.62);
}

function hslToHex(h, s, l) {
  const a = s * Math.min(l, 1 - l);
  const f = (n) => {
    const k = (n + h / 30) % 12;
    const c = l - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
    return Math.round(255 * c).toString(16).padStart(2, "0");
  };
  return `#${f(0)}${f(8)}${f(4)}`;
}

/** litegraph's own wildcard spellings (reroutes, generic slots). */
function isWildcard(t) {
  return t === undefined || t === null || t === "" || t === "*" || t === 0;
}

/**
 * Make litegraph use our compatibility rule for every connection it checks (drag highlighting,
 * drop, connect()), and colour sockets and links by type. `bypass()` true lets every link through
 * (used while loading a workflow, so that a mismatched link is kept and reported, not dropped).
 */
export function installTypeRules(LiteGraph, LGraphCanvas, canvas, types, bypass = () => false) {
  LiteGraph.isValidConnection = (outputType, inputType) => {
    if (bypass() || isWildcard(outputType) || isWildcard(inputType)) return true;
    return compatible(String(outputType), String(inputType));
  };
  for (const type of types) colourType(LGraphCanvas, canvas, type);
}

export function colourType(LGraphCanvas, canvas, type) {
  const colour = typeColour(type);
  LGraphCanvas.link_type_colors[type] = colour;
  if (canvas) {
    canvas.default_connection_color_byType[type] = colour;
    canvas.default_connection_color_byTypeOff[type] = colour;
  }
}
