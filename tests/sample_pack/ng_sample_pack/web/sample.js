// Front-end extension of the sample pack: served under /extensions/sample/.
export function setup(app) {
  app.registerExtension?.({ name: "sample.hello" });
}
