"""The ``nodegraph`` command: run, validate, nodes, serve, eval.

Exit codes of ``run``: 0 success, 1 a node failed, 2 invalid workflow, 130 interrupted.
``--help``, ``validate`` and ``nodes`` never import torch (packs import it inside ``run``).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import NodegraphError

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def cluster_arguments(parser: argparse.ArgumentParser) -> None:
    from .cluster.cli import add_arguments  # argparse only: ray is imported when a cluster is used

    add_arguments(parser)


def _attach_cluster(engine, args: argparse.Namespace, **kwargs: Any):
    """The cluster executor the flags ask for, attached to ``engine``; ``None`` for the local one. Raises
    ClusterUnavailable with the reason and the fix."""
    if getattr(args, "executor", "local") != "ray":
        return None
    from .cluster.cli import attach

    return attach(engine, args, **kwargs)


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="nodegraph", description="Node-graph workflows for unCLIP text-to-image.")
    p.add_argument("-v", "--verbose", action="store_true", help="log more (model loading, pack discovery)")
    p.add_argument("--version", action="version", version=f"nodegraph {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--nodes-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="extra folder of packs (like custom_nodes/); repeatable")
        sp.add_argument("--models-dir", action="append", type=Path, default=[], metavar="DIR",
                        help="extra folder searched for models by name; repeatable")

    r = sub.add_parser("run", help="run a workflow (JSON, or a PNG made by nodegraph)")
    r.add_argument("workflow", type=Path)
    r.add_argument("--set", action="append", default=[], metavar="NODE.PORT=VALUE", dest="sets",
                   help="override an input; VALUE is parsed as JSON when it parses, else taken as a string")
    r.add_argument("--output-dir", type=Path, default=None, help="where output nodes write (default: output/)")
    r.add_argument("--input-dir", type=Path, default=None, help="where input images are read from")
    r.add_argument("--batch", type=Path, default=None, metavar="FILE.jsonl",
                   help="one run per line, each a JSON object of NODE.PORT overrides; line k writes to DIR/k/")
    r.add_argument("--node", action="append", default=[], metavar="NODE_ID",
                   help="run only what this node needs (default: every output node); repeatable")
    r.add_argument("--quiet", action="store_true", help="print only failures and the summary")
    r.add_argument("--json-events", action="store_true", help="print every event as a JSON line on stdout, "
                   "in the shapes of the server's WebSocket messages (docs/api.md)")
    common(r)
    cluster_arguments(r)

    v = sub.add_parser("validate", help="check a workflow without running it")
    v.add_argument("workflow", type=Path)
    v.add_argument("--json", action="store_true", help='print {"valid": bool, "issues": [...]}')
    v.add_argument("--input-dir", type=Path, default=None, help="where input images are looked for")
    common(v)

    n = sub.add_parser("nodes", help="list the node catalogue (and packs that failed to load)")
    n.add_argument("--json", action="store_true", help="print the catalogue as JSON")
    common(n)

    s = sub.add_parser("serve", help="start the editor and HTTP/WebSocket API server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8188)
    s.add_argument("--token", default=None, help="require this token (mandatory when not on 127.0.0.1)")
    s.add_argument("--data-dir", type=Path, default=Path(".nodegraph"), help="queue/history database folder")
    s.add_argument("--output-dir", type=Path, default=None)
    s.add_argument("--input-dir", type=Path, default=None)
    common(s)
    cluster_arguments(s)

    e = sub.add_parser("eval", help="run an evaluation (a pack's, or a source checkout's eval/), "
                       "e.g. `nodegraph eval shapes`")
    e.add_argument("name", help="evaluation name")
    e.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the evaluation")
    common(e)
    return p


def _settings(args: argparse.Namespace, **overrides: Any):
    from .config import Settings

    settings = Settings.from_env(**overrides)
    if args.nodes_dir:
        settings.nodes_dirs = [*settings.nodes_dirs, *args.nodes_dir]
    if getattr(args, "models_dir", None):
        settings.model_dirs = [*args.models_dir, *settings.model_dirs]
    return settings


def _engine(args: argparse.Namespace, **overrides: Any):
    from .engine import Engine

    return Engine.from_settings(_settings(args, **overrides))


def _read_workflow(path: Path) -> tuple[Any, str | None]:
    """The workflow source at ``path`` (JSON text or a PNG's embedded workflow), or an error line."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror or exc}"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        from .png import read_png_workflow

        wf = read_png_workflow(data)
        if wf is None:
            return None, f"{path} is a PNG without an embedded nodegraph workflow"
        return wf, None
    return data, None


def _print_issues(issues: list, stream=None, sets: dict[str, Any] | None = None) -> None:
    """Every issue; ``sets`` (the ``--set`` values given) adds how to quote a value that JSON made a
    number, a boolean, null or a list where the port wants text."""
    stream = stream or sys.stderr
    print(f"invalid workflow: {len(issues)} issue(s)", file=stream)
    for i in issues:
        print(f"  [{i.code}] {i.message}", file=stream)
        target = f"{i.node}.{i.port}"
        if i.code == "invalid_value" and sets and target in sets and not isinstance(sets[target], str) \
                and "valid string" in i.message:
            text = json.dumps(sets[target])  # as JSON reads it: 1000, 3.5, true, null, [1, 2]
            print(f"    --set reads VALUE as JSON when it parses, which made it {text}; for the text, "
                  f"quote it: --set {target}='{json.dumps(text)}'", file=stream)


def parse_override_value(text: str) -> Any:
    """``--set`` values: JSON when they parse as JSON, else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parse_sets(items: list[str]) -> tuple[dict[str, Any], list[str]]:
    out: dict[str, Any] = {}
    errors = []
    for item in items:
        target, eq, value = item.partition("=")
        if not eq or "." not in target:
            errors.append(f"--set {item!r}: expected NODE.PORT=VALUE, e.g. --set prompt.value='a red circle'")
            continue
        out[target] = parse_override_value(value)
    return out, errors


class _Interrupt:
    """First Ctrl-C cancels cooperatively; a second one interrupts at once."""

    def __init__(self, token) -> None:
        self.token = token
        self.previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.token.cancelled:
                raise KeyboardInterrupt
            print("\ninterrupt: cancelling (press Ctrl-C again to stop now)", file=sys.stderr)
            self.token.cancel("interrupted")

        try:
            self.previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            self.previous = None
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


def _json_sink(stream=None):
    """One line per event, in the shape /ws sends it (the run id stands for the job id)."""
    from .server.messages import message_of

    def sink(event: Any) -> None:
        message = message_of(event.run_id, event)
        if message is not None:
            print(message.model_dump_json(), file=stream or sys.stdout, flush=True)

    return sink


def _run_once(engine, source: Any, overrides: dict[str, Any], out_dir: Path, args, token, *,
              sets: Iterable[str] = (), out=None, err=None) -> int:
    """One run; its progress goes to ``err`` (a terminal's stderr by default), written files to ``out``.
    ``sets``: the ``overrides`` that came from ``--set`` (not from a ``--batch`` line)."""
    from .engine import apply_overrides
    from .errors import WorkflowInvalid
    from .events import fanout
    from .render import ConsoleRenderer

    data, issues = apply_overrides(source, overrides)
    if issues or data is None:
        _print_issues(issues, err)
        return EXIT_INVALID
    renderer = ConsoleRenderer(err, tty=False if err is not None else None, quiet=args.quiet)
    sink = fanout(renderer, _json_sink(out) if args.json_events else None)
    try:
        result = engine.run(data, targets=args.node or None, sink=sink, cancel=token, output_dir=out_dir)
    except WorkflowInvalid as exc:
        _print_issues(exc.issues, err, {k: overrides[k] for k in sets if k in overrides})
        return EXIT_INVALID
    for f in renderer.files:
        print(str(out_dir / f), file=out or sys.stdout)
    if result.status == "cancelled":
        return EXIT_INTERRUPTED
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_run(args: argparse.Namespace) -> int:
    from .atomic import remove_partial
    from .context import CancelToken

    source, err = _read_workflow(args.workflow)
    if err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_INVALID
    overrides, errors = _parse_sets(args.sets)
    if errors:
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        return EXIT_INVALID
    out_root = args.output_dir or None
    engine = _engine(args, output_dir=out_root, input_dir=args.input_dir)
    out_root = Path(engine.settings.output_dir)
    remove_partial([out_root, Path(engine.settings.temp_dir)])  # what an interrupted earlier run left
    token = CancelToken()
    try:
        # one workflow spreads its independent branches over the workers; a batch spreads its lines
        cluster = _attach_cluster(engine, args, spread=args.batch is None)
    except NodegraphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        with _Interrupt(token):
            try:
                if args.batch is None:
                    return _run_once(engine, source, overrides, out_root, args, token, sets=overrides)
                return _run_batch(engine, source, overrides, out_root, args, token)
            except KeyboardInterrupt:
                print("interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
    finally:
        if cluster is not None:
            cluster.close()


def _run_batch(engine, source, base_overrides, out_root: Path, args, token) -> int:
    from .validation import check

    _, issues = check(source, engine.registry)
    if issues and any(i.code in ("invalid_json", "unsupported_format", "invalid_workflow") for i in issues):
        _print_issues(issues)
        return EXIT_INVALID
    try:
        lines = args.batch.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        print(f"error: cannot read batch file {args.batch}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    failed: list[str] = []
    runs: list[tuple[str, int, dict[str, Any], set[str]]] = []
    k = -1
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        k += 1
        where = f"{args.batch}:{lineno} (run {k})"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            print(f"error: {where}: not valid JSON ({exc}); skipped", file=sys.stderr)
            failed.append(where)
            continue
        if not isinstance(item, dict):
            print(f"error: {where}: expected an object of \"NODE.PORT\": value overrides; skipped",
                  file=sys.stderr)
            failed.append(where)
            continue
        runs.append((where, k, {**base_overrides, **item}, set(base_overrides) - set(item)))
    for where, code in _run_lines(engine, source, runs, out_root, args, token):
        if code == EXIT_INTERRUPTED:
            return code
        if code != EXIT_OK:
            failed.append(where)
    total = k + 1
    print(f"batch: {total - len(failed)}/{total} runs succeeded", file=sys.stderr)
    for f in failed:
        print(f"  failed: {f}", file=sys.stderr)
    return EXIT_OK if not failed else EXIT_FAILED


def _run_lines(engine, source, runs: list[tuple[str, int, dict[str, Any], set[str]]], out_root: Path, args, token):
    """Yield ``(where, exit code)`` of each batch run: one after the other, or as many at once as the
    engine's executor runs (a cluster), each run's output printed in one piece when it ends."""
    parallel = getattr(engine.executor, "concurrency", 1)
    if parallel <= 1:
        for where, k, overrides, sets in runs:
            print(f"== {where} → {out_root / str(k)}", file=sys.stderr)
            yield where, _run_once(engine, source, overrides, out_root / str(k), args, token, sets=sets)
        return
    import io
    import threading
    from concurrent.futures import ThreadPoolExecutor

    lock = threading.Lock()

    def one(run: tuple[str, int, dict[str, Any], set[str]]) -> tuple[str, int]:
        where, k, overrides, sets = run
        out, err = io.StringIO(), io.StringIO()
        code = _run_once(engine, source, overrides, out_root / str(k), args, token, sets=sets, out=out, err=err)
        with lock:
            print(f"== {where} → {out_root / str(k)}", file=sys.stderr)
            sys.stderr.write(err.getvalue())
            sys.stdout.write(out.getvalue())
            sys.stdout.flush()
        return where, code

    with ThreadPoolExecutor(parallel, thread_name_prefix="nodegraph-batch") as pool:
        yield from pool.map(one, runs)


def cmd_validate(args: argparse.Namespace) -> int:
    # Only what validation needs: the packs and the checks, not an engine (executor, caches, events).
    from .plugins import load_settings_packs
    from .validation import Issue, ValidationResult, validate_for

    source, err = _read_workflow(args.workflow)
    settings = _settings(args, input_dir=args.input_dir)
    registry = load_settings_packs(settings, indexed=True)  # imports only the packs the workflow uses
    if err:
        code = "invalid_json" if Path(args.workflow).exists() else "file_not_found"
        result = ValidationResult(valid=False, issues=[Issue(code=code, message=err)])
    else:
        result = validate_for(source, registry, settings)
    if args.json:
        print(result.model_dump_json(indent=2))
    elif result.valid:
        print(f"{args.workflow}: valid")
    else:
        _print_issues(result.issues, sys.stdout)
    return EXIT_OK if result.valid else EXIT_INVALID


def cmd_nodes(args: argparse.Namespace) -> int:
    engine = _engine(args)
    cat = engine.registry.catalogue()
    if args.json:
        print(json.dumps(cat, indent=2, default=str))
        return EXIT_OK
    nodes = [n for n in cat["nodes"].values() if "replaced_by" not in n]  # old ids: listed as renames below
    by_cat: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        by_cat.setdefault(node["category"], []).append(node)
    for category in sorted(by_cat):
        print(f"{category}:")
        for node in by_cat[category]:
            ins = ", ".join(f"{i['name']}:{i['type']}" for i in node["inputs"])
            outs = ", ".join(f"{o['name']}:{o['type']}" for o in node["outputs"])
            first = node["description"].splitlines()[0] if node["description"] else ""
            print(f"  {node['type']} v{node['version']}  ({ins}) -> ({outs})")
            if first:
                print(f"      {first}")
    print(f"\n{len(nodes)} node types from {len(cat['packs'])} pack(s)")
    if cat["aliases"]:
        print("old type ids still accepted: " + ", ".join(f"{a} → {b}" for a, b in cat["aliases"].items()))
    for f in cat["failed_packs"]:
        print(f"FAILED pack {f['source']}: {f['message']}")
        if args.verbose and f["traceback"]:
            print(f["traceback"])
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from .server import ServerConfig, serve

    try:
        config = ServerConfig.from_env(host=args.host, port=args.port, token=args.token, data_dir=args.data_dir)
    except ValueError as exc:  # pydantic's ValidationError
        print(f"error: invalid server options: {exc}", file=sys.stderr)
        return EXIT_INVALID
    # A server loads models by name only: a client must not make it read a path of its choosing.
    engine = _engine(args, output_dir=args.output_dir, input_dir=args.input_dir, allow_model_paths=False)
    try:
        cluster = _attach_cluster(engine, args, preview_interval=config.preview_interval)
    except NodegraphError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return serve(engine, config)
    finally:
        if cluster is not None:
            cluster.close()


def cmd_eval(args: argparse.Namespace) -> int:
    import importlib

    engine = _engine(args)
    available = {name: target for pack in engine.registry.packs.values()
                 for name, target in pack.evaluations.items()}
    folder, names = _checkout_evaluations()
    available.update({name: f"eval.{name}:main" for name in names if name not in available})
    target = available.get(args.name)
    if target is None:
        print(f"error: unknown evaluation {args.name!r}; available: {', '.join(sorted(available)) or 'none'} "
              "(packs declare evaluations; a source checkout adds those of its eval/ folder)", file=sys.stderr)
        return EXIT_INVALID
    module_name, _, func = target.partition(":")
    if folder is not None and module_name.partition(".")[0] == "eval" and "eval" not in sys.modules:
        _import_package("eval", folder)  # the checkout's root is not on sys.path of an installed command
    module = importlib.import_module(module_name)
    return int(getattr(module, func or "main")(args.args) or 0)


def _checkout_evaluations() -> tuple[Path | None, list[str]]:
    """The ``eval/`` folder beside the built-in packs of a source checkout and its evaluations' names."""
    import importlib.util

    spec = importlib.util.find_spec("nodes")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        folder = Path(location).resolve().parent / "eval"
        if (folder / "__init__.py").is_file():
            return folder, sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
    return None, []


def _import_package(name: str, folder: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {folder} as the package {name!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "eval":  # an evaluation is its own program: it sets up logging as `python -m eval` does
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")
    commands = {"run": cmd_run, "validate": cmd_validate, "nodes": cmd_nodes, "serve": cmd_serve,
                "eval": cmd_eval}
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    return commands[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
