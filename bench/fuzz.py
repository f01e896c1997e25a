"""Hostile requests for the server soak (bench/soak.py): seeded, reproducible, built from valid ones.

:class:`Fuzzer` makes one request at a time: a workflow of the built-in core pack (or of the
repository's ``workflows/``) with one to three mutations — wrong types and sizes, huge numbers,
long strings, missing or renamed nodes and ports, self-links and cycles, broken structure, literal
sizes that ask for far more memory than a machine has — posted to ``/api/validate`` or
``/api/jobs``; now and then a graph of tens of thousands of nodes; bodies that are not JSON, not
UTF-8, nested 100,000 deep or sent with the wrong content type; uploads whose multipart headers
carry NUL bytes or whose boundary is wrong; odd query strings and ids on the read routes. Raw
requests (:meth:`Fuzzer.raw`) break the HTTP framing itself (bad chunked encoding, NUL bytes in
headers) and are sent over a plain socket.
"""

from __future__ import annotations

import copy
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["FuzzRequest", "Fuzzer", "cheap_workflows"]


@dataclass
class FuzzRequest:
    kind: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def _wf(**nodes: Any) -> dict[str, Any]:
    return {"format": "nodegraph/1", "nodes": nodes, "ui": {}, "meta": {"title": "fuzz"}}


def _n(type_: str, **inputs: Any) -> dict[str, Any]:
    return {"type": type_, "inputs": inputs}


def _link(src: str, output: str) -> dict[str, str]:
    return {"from": src, "output": output}


def cheap_workflows() -> list[dict[str, Any]]:
    """Valid workflows of the core pack that run in milliseconds (the seeds of the mutations)."""
    return [
        _wf(v=_n("core.float", value=1.5), show=_n("core.show", value=_link("v", "value"))),
        _wf(a=_n("core.int", value=3), m=_n("core.math", a=_link("a", "value"), b=2.0, op="power"),
            show=_n("core.show", value=_link("m", "value"))),
        _wf(t=_n("core.text", value="a red circle"), r=_n("core.replace", text=_link("t", "value"), old="red",
                                                               new="blue"),
            show=_n("core.show", value=_link("r", "text"))),
        _wf(c=_n("core.solid_color", width=16, height=16, color="#ff0000", batch=1),
            p=_n("core.preview_image", images=_link("c", "images"))),
        _wf(c=_n("core.solid_color", width=8, height=8, color="#00ff00", batch=2),
            g=_n("core.image_grid", images=_link("c", "images"), columns=2, padding=1),
            s=_n("core.save_image", images=_link("g", "image"), filename_prefix="fuzz/grid")),
    ]


def _shipped_workflows() -> list[dict[str, Any]]:
    out = []
    for path in sorted((ROOT / "workflows").glob("*.json")):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return out


class Fuzzer:
    """``next()`` gives the next request; the same seed gives the same sequence."""

    KINDS = (("validate", 40), ("queue", 25), ("raw_body", 10), ("multipart", 8), ("read", 12),
             ("huge_graph", 1), ("too_large", 4))

    def __init__(self, seed: int = 0, *, huge_nodes: int = 50_000) -> None:
        self.rng = random.Random(seed)
        self.cheap = cheap_workflows()
        self.shipped = _shipped_workflows()
        self.huge_nodes = huge_nodes
        kinds, weights = zip(*self.KINDS, strict=True)
        self._kinds, self._weights = list(kinds), list(weights)

    # -- requests --------------------------------------------------------------------------------
    def next(self) -> FuzzRequest:
        kind = self.rng.choices(self._kinds, self._weights)[0]
        return getattr(self, f"_{kind}")()

    def _post_json(self, kind: str, path: str, value: Any) -> FuzzRequest:
        body = json.dumps(value, allow_nan=True).encode()
        return FuzzRequest(kind, "POST", path, body, {"Content-Type": "application/json"})

    def _validate(self) -> FuzzRequest:
        return self._post_json("validate", "/api/validate", {"workflow": self.mutated()})

    def _queue(self) -> FuzzRequest:
        # Half of them stay valid, so the runner has work and the outputs, cache and history grow.
        wf = copy.deepcopy(self.rng.choice(self.cheap)) if self.rng.random() < 0.5 else self.mutated(cheap=True)
        if self.rng.random() < 0.5 and isinstance(wf, dict) and isinstance(wf.get("nodes"), dict):
            for entry in wf["nodes"].values():
                if isinstance(entry, dict) and isinstance(entry.get("inputs"), dict) and "value" in entry["inputs"]:
                    if isinstance(entry["inputs"]["value"], float):
                        entry["inputs"]["value"] = self.rng.random()  # a new value: no cache hit
        return self._post_json("queue", "/api/jobs", {"workflow": wf})

    def _huge_graph(self) -> FuzzRequest:
        n = self.huge_nodes
        nodes = {f"n{i}": _n("core.float", value="x" if i % 3 == 0 else float(i)) for i in range(n)}
        nodes["show"] = _n("core.show", value=_link("n1", "value"))
        path = self.rng.choice(["/api/validate", "/api/jobs"])
        return self._post_json("huge_graph", path, {"workflow": _wf(**nodes)})

    def _too_large(self) -> FuzzRequest:
        """Literal sizes far beyond any machine (8192 × 8192 × 256 float32 images: 192 GiB)."""
        w = self.rng.choice([8192, 8000, 4096])
        wf = _wf(c=_n("core.solid_color", width=w, height=8192, batch=256),
                 s=_n("core.save_image", images=_link("c", "images"), filename_prefix="huge"))
        return self._post_json("too_large", self.rng.choice(["/api/validate", "/api/jobs"]), {"workflow": wf})

    def _raw_body(self) -> FuzzRequest:
        rng = self.rng
        path = rng.choice(["/api/validate", "/api/jobs", "/api/upgrade", "/api/interrupt", "/api/workflows/fuzz"])
        method = "PUT" if path.startswith("/api/workflows/") else "POST"
        choice = rng.randrange(9)
        ctype = "application/json"
        if choice == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        elif choice == 1:
            body = b'{"workflow": "\xff\xfe\xfa"}'
        elif choice == 2:
            body = b"[" * 100_000 + b"]" * 100_000
        elif choice == 3:
            body = b'{"workflow": {"format": "nodegraph/1", "nodes": {"a": {"type": "core.int", "inputs": {"value": '
            body += b"9" * 5000 + b"}}}}}"
        elif choice == 4:
            body = json.dumps({"workflow": self.mutated()}).encode()[: rng.randrange(1, 200)]
        elif choice == 5:
            body, ctype = json.dumps({"workflow": self.mutated()}).encode(), rng.choice(
                ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""])
        elif choice == 6:
            body = b'{"workflow": NaN, "targets": [Infinity]}'
        elif choice == 7:
            body = json.dumps({"workflow": self.mutated(), "client_id": "\u0000" * rng.randrange(1, 80),
                               "targets": [str(rng.random())] * rng.randrange(0, 3), "front": "yes"}).encode()
        else:
            body = b""
        headers = {"Content-Type": ctype} if ctype else {}
        return FuzzRequest("raw_body", method, path, body, headers)

    def _multipart(self) -> FuzzRequest:
        rng = self.rng
        boundary = "fuzzboundary"
        good_png = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00\x90wS"
                    b"\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef\x00\x00"
                    b"\x00\x00IEND\xaeB`\x82")
        name = rng.choice([b"image", b"overwrite", b"im\x00age", b"", "bild\u00e9".encode()])
        filename = rng.choice([b"a.png", b"../../etc/passwd", b"\x00.png", b".hidden.png", b"x" * 300, b"%2e%2e/a.png"])
        header = b'Content-Disposition: form-data; name="' + name + b'"; filename="' + filename + b'"'
        if rng.random() < 0.3:
            header += b"\r\nX-Bad\x00: 1"  # a NUL byte in a part header (aiohttp: InvalidHeader)
        if rng.random() < 0.1:
            header += b"\r\nX-Long: " + b"a" * 10_000  # a part header line longer than aiohttp allows
        data = rng.choice([good_png, good_png[:30], b"GIF89a" + bytes(20), b"<svg onload=alert(1)>", b""])
        body = b"--" + boundary.encode() + b"\r\n" + header + b"\r\n\r\n" + data + b"\r\n--" + boundary.encode() + b"--\r\n"
        ctype = rng.choice([f"multipart/form-data; boundary={boundary}", "multipart/form-data",
                            "multipart/form-data; boundary=" + "b" * 80, f"multipart/form-data; boundary={boundary}x",
                            f"multipart/mixed; boundary={boundary}"])
        if rng.random() < 0.15:
            body = body[: rng.randrange(1, len(body))]
        return FuzzRequest("multipart", "POST", "/api/upload", body, {"Content-Type": ctype})

    def _read(self) -> FuzzRequest:
        rng = self.rng
        junk = rng.choice(["", "0", "-1", "99999999999999999999", "abc", "%00", "..%2f..%2fetc", "\u00e9", "x" * 300,
                           "null", "1e9", "[]"])
        path = rng.choice([
            f"/api/history?limit={junk}&offset={junk}", f"/api/jobs/{junk or 'x'}", f"/api/view?filename={junk}",
            f"/api/view?filename=a.png&subfolder={junk}&type={junk}", f"/api/models?kind={junk}",
            f"/api/workflows/{junk or 'x'}", "/api/history?limit=500", "/api/jobs", "/api/system",
            f"/api/jobs/{junk or 'x'}/requeue", f"/extensions/{junk or 'x'}/{junk or 'y'}.js"])
        method = "POST" if path.endswith("/requeue") else "GET"
        headers = {"Content-Type": "application/json"} if method == "POST" else {}
        return FuzzRequest("read", method, path, b"{}" if method == "POST" else b"", headers)

    def raw(self) -> bytes:
        """A request that breaks HTTP framing, for a plain socket (the server must answer 4xx or hang up)."""
        rng = self.rng
        body = json.dumps({"workflow": rng.choice(self.cheap)}).encode()
        kind = rng.randrange(4)
        if kind == 0:  # chunked encoding with a size that is not hex
            return (b"POST /api/validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + body + b"\r\n0\r\n\r\n")
        if kind == 1:  # a NUL byte in a request header
            return b"GET /api/system HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Evil: a\x00b\r\n\r\n"
        if kind == 2:  # a header line of 100 kB
            return b"GET /api/system HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 100_000 + b"\r\n\r\n"
        # a Content-Length larger than what is sent: the body ends early
        return (b"POST /api/validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(len(body) + 100).encode() + b"\r\nConnection: close\r\n\r\n" + body)

    # -- mutations -------------------------------------------------------------------------------
    def mutated(self, *, cheap: bool = False) -> Any:
        rng = self.rng
        pool = self.cheap if cheap or not self.shipped or rng.random() < 0.6 else self.shipped
        wf: Any = copy.deepcopy(rng.choice(pool))
        for _ in range(rng.randint(1, 3)):
            wf = self._mutate(wf)
        return wf

    def _value(self) -> Any:
        rng = self.rng
        return rng.choice([
            lambda: 10 ** rng.randint(10, 300), lambda: -(10 ** rng.randint(1, 30)), lambda: 0, lambda: -1,
            lambda: float("nan"), lambda: float("inf"), lambda: 1e308, lambda: "", lambda: "x" * rng.randint(1, 100_000),
            lambda: "\u0000\ud800", lambda: [1, [2, [3, [4]]]], lambda: {"a": 1}, lambda: {"from": "nowhere", "output": "x"},
            lambda: None, lambda: True, lambda: rng.random(), lambda: "../../../etc/passwd", lambda: 8192,
            lambda: list(range(rng.randint(0, 5000))),
        ])()

    def _mutate(self, wf: Any) -> Any:
        rng = self.rng
        nodes = wf.get("nodes") if isinstance(wf, dict) else None
        if not isinstance(nodes, dict) or not nodes:
            return wf
        nid = rng.choice(list(nodes))
        entry = nodes[nid]
        if not isinstance(entry, dict):
            return wf
        inputs = entry.get("inputs") if isinstance(entry.get("inputs"), dict) else {}
        op = rng.randrange(12)
        if op <= 3 and inputs:  # a bad value on an existing port (the commonest mistake)
            inputs[rng.choice(list(inputs))] = self._value()
        elif op == 4:
            inputs[rng.choice(["valu", "x", "", "\u0000", "images", "width"])] = self._value()
        elif op == 5:
            entry["type"] = rng.choice(["core.nope", "", "core", "core.float.x", "unclip.decoder", "CORE.FLOAT",
                                        "x" * 500, "core.solid_color"])
        elif op == 6:
            del nodes[nid]
        elif op == 7 and inputs:
            inputs[rng.choice(list(inputs))] = {"from": nid, "output": rng.choice(["value", "images", "x"])}  # a self-link
        elif op == 8:
            entry["version"] = rng.choice([0, -1, 99, "1", None, 1.5])
        elif op == 9:
            broken = rng.choice([[], "x", 1, None, {"type": 1}, {"inputs": []}])
            nodes[nid] = broken
        elif op == 10:
            wf = rng.choice([{**wf, "format": rng.choice(["nodegraph/0", "nodegraph/9", 1, None])},
                             {**wf, "nodes": list(nodes.values())}, {k: v for k, v in wf.items() if k != "format"},
                             [wf], "workflow"])
        else:
            for i in range(rng.randint(1, 200)):
                nodes[f"extra{i}"] = _n(rng.choice(["core.float", "core.show", "core.math", "core.solid_color"]),
                                        value=self._value())
        return wf
