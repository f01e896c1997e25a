// The names of the files the server has in its folders, for the choices of file and model widgets: the
// input folder (GET /api/files/input) and the models of each kind a loader declares, or of a model
// folder (GET /api/models?kind=...). Each list is fetched on first use and again on demand (after an
// upload).

/** One folder's file names, refreshed on demand. */
export class FileList {
  constructor(load) {
    this.load = load;
    this.list = [];
    this.loaded = null;
    this.pending = null;
  }

  /** The names known now (a first call starts fetching them). */
  names() {
    if (!this.loaded) this.refresh();
    return this.list;
  }

  /** Fetch the list again unless a fetch is under way; resolves once it is in. */
  fresh() {
    if (!this.pending) {
      this.pending = this.refresh().finally(() => {
        this.pending = null;
      });
    }
    return this.pending;
  }

  refresh() {
    this.loaded = this.load()
      .then((names) => {
        this.list = Array.isArray(names) ? names.filter((n) => typeof n === "string") : [];
      })
      .catch(() => {
        this.list = [];
      });
    return this.loaded;
  }
}

/** {input: FileList, forKind(kind): FileList, forFolder(folder): FileList} over the server API. */
export function serverFileLists(api) {
  const models = new Map();
  const byKind = (kind) => {
    if (!models.has(kind)) models.set(kind, new FileList(() => api.models(kind).then((r) => r.models)));
    return models.get(kind);
  };
  return { input: new FileList(() => api.inputFiles().then((r) => r.files)), forKind: byKind, forFolder: byKind };
}
