"""Malformed requests are answered 4xx naming the problem, never 500: broken multipart, framing, encodings."""

from __future__ import annotations

import asyncio
import gzip

import pytest
from test_server_helpers import trivial

pytest_plugins = ["test_server_helpers"]  # its fixtures: server, start, web_dir
pytestmark = pytest.mark.asyncio

PNG = bytes.fromhex("89504e470d0a1a0a")


def multipart(part_headers: bytes, body: bytes = PNG, boundary: bytes = b"b0undary") -> tuple[bytes, dict]:
    data = (b"--" + boundary + b"\r\n" + part_headers + b"\r\n\r\n" + body + b"\r\n--" + boundary + b"--\r\n")
    return data, {"Content-Type": "multipart/form-data; boundary=" + boundary.decode()}


@pytest.mark.parametrize(("part_headers", "boundary", "named"), [
    (b'Content-Disposition: form-data; name="image"; filename="a\x00.png"', b"b0undary", "header"),
    (b'Content-Disposition: form-data; name="image"\r\nX-Bad\x00: 1', b"b0undary", "header"),
    (b"Content-Disposition form-data no colon", b"b0undary", "header"),
    (b'Content-Disposition: form-data; name="image"', b"x" * 71, "boundary"),
])
async def test_a_broken_multipart_upload_is_400_naming_the_problem(server, part_headers, boundary, named):
    data, headers = multipart(part_headers, boundary=boundary)
    res = await server.client.post("/api/upload", data=data, headers=headers)
    body = await res.json()
    assert res.status == 400, body
    assert body["error"] in ("invalid_multipart", "invalid_request") and named in body["message"].lower()


async def test_a_multipart_body_with_the_wrong_boundary_is_400(server):
    data, _ = multipart(b'Content-Disposition: form-data; name="image"')
    res = await server.client.post("/api/upload", data=data,
                                   headers={"Content-Type": "multipart/form-data; boundary=other"})
    assert res.status == 400 and "boundary" in (await res.json())["message"]


async def test_a_body_whose_content_encoding_does_not_decode_is_400(server):
    for encoding, body in (("gzip", b"not gzip at all"), ("deflate", b"\x00\x01garbage"),
                           ("br", b"\xff\xff\xff")):
        res = await server.client.post("/api/validate", data=body, headers={
            "Content-Type": "application/json", "Content-Encoding": encoding, "Connection": "close"})
        answer = await res.text()  # JSON from our middleware, or aiohttp's own 400 for an unknown encoding
        assert res.status == 400 and "encoding" in answer.lower(), (encoding, answer)
    good = gzip.compress(b'{"workflow": ' + str(trivial()).replace("'", '"').encode() + b"}")
    res = await server.client.post("/api/validate", data=good, headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip", "Connection": "close"})
    assert res.status == 200, await res.text()


async def _raw(server, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(server.client.host, server.client.port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    return answer


async def test_broken_http_framing_is_400(server):
    for request in (
        b"POST /api/validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
        b"GET /api/system HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bad: a\x00b\r\n\r\n",
        b"GET /api/system HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: 1\r\n\r\n",
    ):
        answer = await _raw(server, request)
        assert answer.split(b"\r\n", 1)[0].split(b" ")[1] == b"400", answer[:200]


async def test_json_python_refuses_to_read_is_400_not_500(server):
    for body in (b'{"workflow": {"nodes": {"a": {"inputs": {"value": ' + b"9" * 5000 + b"}}}}}",  # > 4,300 digits
                 b"[" * 100_000 + b"]" * 100_000, b'{"workflow": "\xff\xfe"}'):
        for path in ("/api/validate", "/api/jobs", "/api/interrupt"):
            res = await server.client.post(path, data=body, headers={"Content-Type": "application/json"})
            answer = await res.json()
            assert res.status == 400 and answer["error"] == "invalid_json", (path, answer)
