// Pack extensions (docs/editor.md, "Extensions"): the ES modules GET /api/extensions lists are imported
// before the node types are registered, each module's `setup(app)` is called, and ComfyUI-style
// extension objects (`app.registerExtension`) become hook handlers whose own `setup` runs once the
// editor is ready. A module or setup that fails is reported and skipped.

import { ApiError } from "./api.js";
import { HOOKS } from "./hooks.js";

/** Import every extension module the server lists and call its `setup(app)`. */
export async function importExtensions(app) {
  let scripts = [];
  try {
    scripts = (await app.api.extensions()).scripts ?? [];
  } catch (err) {
    if (!(err instanceof ApiError && err.status === 404)) console.warn("no extension list", err);
    return;
  }
  for (const src of scripts) {
    if (typeof src !== "string" || !src.startsWith("/extensions/")) continue;
    try {
      const mod = await import(app.api.url(src));
      if (typeof mod.setup === "function") await mod.setup(app);
      app.loadedExtensionScripts ??= [];
      app.loadedExtensionScripts.push(src);
    } catch (err) {
      console.error(`extension ${src} failed`, err);
      app.toast(`Extension ${src} failed to load: ${err?.message ?? err}`, "error", 8000);
    }
  }
}

/** Add an extension object's hook methods as handlers (the node hooks get positional arguments). */
export function addExtensionHooks(app, ext) {
  for (const hook of HOOKS) {
    if (typeof ext[hook] !== "function") continue;
    app.on(hook, (payload) => {
      if (hook === "beforeRegisterNodeType") return ext[hook](payload.nodeClass, payload.schema, app);
      if (hook === "nodeCreated") return ext[hook](payload.node, app);
      return ext[hook](payload, app);
    });
  }
}

/** Call the `setup(app)` of every registered extension object. */
export async function setUpExtensions(app, extensions) {
  for (const ext of extensions) {
    try {
      await ext.setup?.(app);
    } catch (err) {
      app.hooks.onError(err, `${ext.name ?? "extension"}.setup`);
    }
  }
}
