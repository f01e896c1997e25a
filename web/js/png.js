// Read the workflow a nodegraph PNG carries (text chunk "nodegraph.workflow"; nodegraph/png.py writes it
// as tEXt, and iTXt/zTXt are read too). The result is untrusted input: the editor only loads it into
// the canvas (the server validates it when it is queued); it never runs on its own.

export const PNG_KEY = "nodegraph.workflow";
const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** All text chunks of a PNG as {key: text}; null if the bytes are not a PNG. */
export async function readPngText(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const latin1 = new TextDecoder("latin1");
  const utf8 = new TextDecoder("utf-8");
  const out = {};
  let pos = 8;
  while (pos + 12 <= bytes.length) {
    const length = view.getUint32(pos);
    const type = latin1.decode(bytes.subarray(pos + 4, pos + 8));
    const start = pos + 8;
    const end = start + length;
    if (end + 4 > bytes.length) break; // truncated file: keep what was read
    const data = bytes.subarray(start, end);
    if (type === "tEXt" || type === "zTXt" || type === "iTXt") {
      const nul = data.indexOf(0);
      if (nul > 0) {
        const key = latin1.decode(data.subarray(0, nul));
        try {
          if (type === "tEXt") out[key] = latin1.decode(data.subarray(nul + 1));
          else if (type === "zTXt") out[key] = latin1.decode(await inflate(data.subarray(nul + 2)));
          else {
            const compressed = data[nul + 1] === 1;
            let p = nul + 3; // compression flag, method
            p = data.indexOf(0, p) + 1; // language tag
            p = data.indexOf(0, p) + 1; // translated keyword
            const text = data.subarray(p);
            out[key] = utf8.decode(compressed ? await inflate(text) : text);
          }
        } catch {
          // A damaged chunk is skipped, like any unreadable metadata.
        }
      }
    }
    if (type === "IEND") break;
    pos = end + 4;
  }
  return out;
}

/** The keys a workflow may be under: ours, then ComfyUI's editor workflow and its API-format prompt (the
 * server reads those two when the editor loads them). */
const WORKFLOW_KEYS = [PNG_KEY, "workflow", "prompt"];

/** The workflow object embedded in a PNG, or null when there is none (or it is not JSON). */
export async function readPngWorkflow(buffer) {
  const texts = (await readPngText(buffer)) ?? {};
  for (const key of WORKFLOW_KEYS) {
    if (!texts[key]) continue;
    try {
      const value = JSON.parse(texts[key]);
      if (value && typeof value === "object" && !Array.isArray(value)) return value;
    } catch {
      // not JSON: try the next key
    }
  }
  return null;
}
