"""Built-in node packs. Each subpackage is a pack that uses only the public ``nodegraph`` API."""
