// Front-end extension of the browser-test pack: exercises the documented hook API (docs/editor.md).
export function setup(app) {
  const seen = { setup: true, created: [], messages: 0, executed: [], loaded: 0, queued: 0 };
  window.__browsertest = seen;
  app.on("nodeCreated", ({ node }) => {
    if (node.type.startsWith("browsertest.")) seen.created.push(node.type);
  });
  app.on("message", () => {
    seen.messages += 1;
  });
  app.on("executed", ({ node }) => seen.executed.push(String(node.id)));
  app.on("workflowLoaded", () => {
    seen.loaded += 1;
  });
  app.on("queued", () => {
    seen.queued += 1;
  });
  app.registerExtension({
    name: "browsertest.colour",
    beforeRegisterNodeType(nodeClass, schema) {
      if (schema.type === "browsertest.gated_steps") nodeClass.prototype.ngFromExtension = true;
    },
  });
  app.addToolbarButton({ label: "Ext", title: "Added by the browsertest pack", onClick: () => app.toast("hello from browsertest") });
}
