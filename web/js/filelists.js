// The names of the files the server has in its folders, for the choices of file widgets: the input
// folder (GET /api/files/input) and each model folder (GET /api/models?kind=...). Each list is fetched
// on first use and again on demand (after an upload).

/** One folder's file names, refreshed on demand. */
export class FileList {
  constructor(load) {
    this.load = load;
    this.list = [];
    this.loaded = null;
  }

  /** The names known now (a first call starts fetching them). */
  names() {
    if (!this.loaded) this.refresh();
    return this.list;
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

/** {input: FileList, forFolder(folder): FileList} over the server API. */
export function serverFileLists(api) {
  const models = new Map();
  return {
    input: new FileList(() => api.inputFiles().then((r) => r.files)),
    forFolder: (folder) => {
      if (!models.has(folder)) models.set(folder, new FileList(() => api.models(folder).then((r) => r.models)));
      return models.get(folder);
    },
  };
}
