// The server's HTTP + WebSocket API (docs/api.md, v1), as the editor uses it.
//
// Authentication: when the page was opened with ?token=T, every fetch sends `Authorization: Bearer T`
// and every URL the browser fetches by itself (WebSocket, <img src>, extension modules) carries ?token=T.

export class ApiError extends Error {
  constructor(status, payload, message) {
    super(message || payload?.message || `HTTP ${status}`);
    this.status = status;
    this.payload = payload;
    this.code = payload?.error;
  }
}

function randomId() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Api extends EventTarget {
  /**
   * @param {object} opts
   * @param {string} [opts.base] URL prefix of the server ("" = same origin as the page)
   * @param {string|null} [opts.token] API token (default: the page's ?token=)
   */
  constructor({ base = "", token } = {}) {
    super();
    this.base = base.replace(/\/$/, "");
    this.token = token !== undefined ? token : new URLSearchParams(location.search).get("token");
    this.clientId = sessionStorage.getItem("nodegraph.client_id") || randomId();
    sessionStorage.setItem("nodegraph.client_id", this.clientId);
    this.socket = null;
    this.connected = false;
    this._retry = 0;
    this._closed = false;
  }

  /** An absolute-path URL on the server, with the token as a query parameter when there is one. */
  url(path, params = {}) {
    const u = new URL(this.base + path, location.href);
    for (const [k, v] of Object.entries(params)) if (v != null) u.searchParams.set(k, String(v));
    if (this.token && !u.searchParams.has("token")) u.searchParams.set("token", this.token);
    return u.origin === location.origin ? u.pathname + u.search : u.href;
  }

  headers(extra = {}) {
    const h = { ...extra };
    if (this.token) h.Authorization = `Bearer ${this.token}`;
    return h;
  }

  /** fetch + JSON; throws ApiError for a 4xx/5xx answer (its JSON body in .payload). */
  async fetchJson(path, { method = "GET", body, params, raw = false } = {}) {
    const init = { method, headers: this.headers(), credentials: "same-origin" };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const u = new URL(this.base + path, location.href);
    for (const [k, v] of Object.entries(params ?? {})) if (v != null) u.searchParams.set(k, String(v));
    const res = await fetch(u, init);
    if (raw) return res;
    let payload = null;
    const text = await res.text();
    if (text) {
      try {
        payload = JSON.parse(text);
      } catch {
        payload = { message: text };
      }
    }
    if (!res.ok) throw new ApiError(res.status, payload);
    return payload;
  }

  // --- routes -----------------------------------------------------------------------------------
  nodes() { return this.fetchJson("/api/nodes"); }
  validate(workflow) { return this.fetchJson("/api/validate", { method: "POST", body: { workflow } }); }
  /** A workflow of any format the server reads, as {workflow (current format), issues}. */
  upgrade(workflow) { return this.fetchJson("/api/upgrade", { method: "POST", body: workflow }); }
  queue(workflow, { targets, front } = {}) {
    const body = { workflow, client_id: this.clientId };
    if (targets?.length) body.targets = targets;
    if (front) body.front = true;
    return this.fetchJson("/api/jobs", { method: "POST", body });
  }
  jobs() { return this.fetchJson("/api/jobs"); }
  job(id) { return this.fetchJson(`/api/jobs/${encodeURIComponent(id)}`); }
  deleteJob(id) { return this.fetchJson(`/api/jobs/${encodeURIComponent(id)}`, { method: "DELETE" }); }
  moveJob(id, position) {
    return this.fetchJson(`/api/jobs/${encodeURIComponent(id)}/move`, { method: "POST", body: { position } });
  }
  requeue(id) { return this.fetchJson(`/api/jobs/${encodeURIComponent(id)}/requeue`, { method: "POST", body: {} }); }
  interrupt(jobId) { return this.fetchJson("/api/interrupt", { method: "POST", body: jobId ? { job_id: jobId } : {} }); }
  history({ limit = 50, offset = 0 } = {}) { return this.fetchJson("/api/history", { params: { limit, offset } }); }
  deleteHistory(id) { return this.fetchJson(`/api/history/${encodeURIComponent(id)}`, { method: "DELETE" }); }
  inputFiles() { return this.fetchJson("/api/files/input"); }
  models(kind) { return this.fetchJson("/api/models", { params: { kind } }); }
  workflows() { return this.fetchJson("/api/workflows"); }
  workflow(name) { return this.fetchJson(`/api/workflows/${encodeURIComponent(name)}`); }
  saveWorkflow(name, workflow) {
    return this.fetchJson(`/api/workflows/${encodeURIComponent(name)}`, { method: "PUT", body: workflow });
  }
  deleteWorkflow(name) { return this.fetchJson(`/api/workflows/${encodeURIComponent(name)}`, { method: "DELETE" }); }
  system() { return this.fetchJson("/api/system"); }
  extensions() { return this.fetchJson("/api/extensions"); }

  /** Upload an image to the input folder; resolves with {name, subfolder, type}. */
  upload(file, { overwrite = false } = {}) {
    const form = new FormData();
    form.append("image", file, file.name);
    if (overwrite) form.append("overwrite", "true");
    return this.fetchJson("/api/upload", { method: "POST", body: form });
  }

  /** URL of an image the server reported ({filename, subfolder, type, url?}). */
  viewUrl(image) {
    if (image.url) return this.url(image.url);
    return this.url("/api/view", { filename: image.filename, subfolder: image.subfolder || "", type: image.type || "output" });
  }

  // --- WebSocket --------------------------------------------------------------------------------
  /**
   * Connect the WebSocket; every message is dispatched as a CustomEvent named after its type
   * (detail = data), and as "message" (detail = the whole message). Reconnects with back-off;
   * "reconnected" is dispatched after a reconnection (state may have changed meanwhile).
   */
  connect() {
    this._closed = false;
    const u = new URL(this.url("/ws", { client_id: this.clientId }), location.href);
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    const socket = new WebSocket(u.href);
    this.socket = socket;
    socket.addEventListener("open", () => {
      const again = this._retry > 0 || this._everConnected;
      this._retry = 0;
      this._everConnected = true;
      this.connected = true;
      this.dispatchEvent(new CustomEvent(again ? "reconnected" : "connected"));
    });
    socket.addEventListener("message", (ev) => {
      if (typeof ev.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (!msg || typeof msg.type !== "string") return;
      this.dispatchEvent(new CustomEvent("message", { detail: msg }));
      this.dispatchEvent(new CustomEvent(msg.type, { detail: msg.data ?? {} }));
    });
    socket.addEventListener("close", () => {
      if (this.socket !== socket) return;
      const was = this.connected;
      this.connected = false;
      if (was) this.dispatchEvent(new CustomEvent("disconnected"));
      if (this._closed) return;
      const delay = Math.min(10000, 250 * 2 ** this._retry++);
      setTimeout(() => {
        if (!this._closed && this.socket === socket) this.connect();
      }, delay);
    });
  }

  close() {
    this._closed = true;
    this.socket?.close();
  }
}
