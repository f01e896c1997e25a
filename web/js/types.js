// Port types: which links are allowed, by the rule the server states in its node catalogue
// (`link_rules` of GET /api/nodes, the engine's own table), and a colour per type for sockets and links.

/**
 * The link rule: an output may go into an input of the same type, the wildcard type (`any`) goes
 * with everything, and `accepts[inputType]` lists the other output types an input takes.
 */
export class LinkRules {
  constructor({ any = null, accepts = {} } = {}) {
    this.any = any;
    this.accepts = new Map(Object.entries(accepts).map(([input, outputs]) => [input, new Set(outputs)]));
  }

  /** The rule of a node catalogue; throws when the catalogue states none (a server too old for this editor). */
  static fromCatalogue(catalogue) {
    const rules = catalogue?.link_rules;
    const isList = (v) => Array.isArray(v) && v.every((t) => typeof t === "string");
    if (
      !rules ||
      typeof rules.any !== "string" ||
      !rules.accepts ||
      typeof rules.accepts !== "object" ||
      !Object.values(rules.accepts).every(isList)
    ) {
      throw new Error(
        `the server's node catalogue (GET /api/nodes) has no valid "link_rules" ({"any": TYPE, "accepts": {TYPE: [TYPE, ...]}}); ` +
          "the editor and the server come from different nodegraph versions: reinstall nodegraph and restart the server",
      );
    }
    return new LinkRules(rules);
  }

  /** Whether an output of `outputType` may be linked into an input of `inputType`. */
  compatible(outputType, inputType) {
    if (outputType === inputType || inputType === this.any || outputType === this.any) return true;
    return this.accepts.get(inputType)?.has(outputType) ?? false;
  }
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
 * Make litegraph use the link rule for every connection it checks (drag highlighting, drop,
 * connect()). `rules()` gives the rule in force; `bypass()` true lets every link through (used while
 * loading a workflow, so that a mismatched link is kept and reported, not dropped).
 */
export function installLinkRule(LiteGraph, rules, bypass = () => false) {
  LiteGraph.isValidConnection = (outputType, inputType) => {
    if (bypass() || isWildcard(outputType) || isWildcard(inputType)) return true;
    return rules().compatible(String(outputType), String(inputType));
  };
}

/** Colour a type's sockets and links. */
export function colourType(LGraphCanvas, canvas, type) {
  const colour = typeColour(type);
  LGraphCanvas.link_type_colors[type] = colour;
  if (canvas) {
    canvas.default_connection_color_byType[type] = colour;
    canvas.default_connection_color_byTypeOff[type] = colour;
  }
}
