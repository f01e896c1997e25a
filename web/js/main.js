// Entry point: start the editor; `window.app` is the running App (extensions and tests use it).
import { App } from "./app.js";

const app = new App();
window.app = app;
app.start().catch((err) => {
  console.error(err);
  document.body.dataset.ready = "error";
  const status = document.getElementById("status");
  if (status) {
    status.textContent = `The editor could not start: ${err?.message ?? err}`;
    status.dataset.state = "error";
  }
});
