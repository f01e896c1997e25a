// Arithmetic typed into number widgets ("512", "2*256", "(1+2)/4", "-1e-3"), parsed without `eval`.
//
// litegraph's number widget runs the text of its "Value" prompt through `eval`; the editor's
// Content-Security-Policy forbids eval, so `patchNumberPrompt` replaces that click handler with one
// that reads the text with this small parser: numbers, + - * /, unary signs and parentheses only.

const NUMBER = /^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?/;

/** The value of an arithmetic expression, or NaN when the text is anything else. */
export function parseArithmetic(text) {
  const src = String(text ?? "").replace(/\s+/g, "");
  if (!src || src.length > 200) return NaN;
  let i = 0;
  let depth = 0;

  function fail() {
    throw new SyntaxError("not arithmetic");
  }

  function factor() {
    const c = src[i];
    if (c === "+" || c === "-") {
      i += 1;
      const v = factor();
      return c === "-" ? -v : v;
    }
    if (c === "(") {
      i += 1;
      if (++depth > 32) fail();
      const v = sum();
      if (src[i] !== ")") fail();
      i += 1;
      depth -= 1;
      return v;
    }
    const m = NUMBER.exec(src.slice(i));
    if (!m) fail();
    i += m[0].length;
    return Number(m[0]);
  }

  function product() {
    let v = factor();
    while (src[i] === "*" || src[i] === "/") {
      const op = src[i];
      i += 1;
      const r = factor();
      v = op === "*" ? v * r : v / r;
    }
    return v;
  }

  function sum() {
    let v = product();
    while (src[i] === "+" || src[i] === "-") {
      const op = src[i];
      i += 1;
      const r = product();
      v = op === "+" ? v + r : v - r;
    }
    return v;
  }

  try {
    const v = sum();
    return i === src.length && Number.isFinite(v) ? v : NaN;
  } catch {
    return NaN;
  }
}

let patched = false;

/** Make litegraph's number widget read its prompt with `parseArithmetic` instead of `eval`. */
export function patchNumberPrompt(NumberWidget) {
  if (patched || !NumberWidget?.prototype) return;
  patched = true;
  const getStep = (options) => options.step2 || (options.step || 10) * 0.1; // as litegraph's getWidgetStep
  NumberWidget.prototype.onClick = function ({ e, node, canvas }) {
    const x = e.canvasX - node.pos[0];
    const width = this.width || node.size[0];
    const delta = x < 40 ? -1 : x > width - 40 ? 1 : 0;
    if (delta) {
      this.setValue(this.value + delta * getStep(this.options), { e, node, canvas });
      return;
    }
    canvas.prompt("Value", this.value, (v) => {
      const value = parseArithmetic(v);
      if (!Number.isNaN(value)) this.setValue(value, { e, node, canvas });
    }, e);
  };
}
