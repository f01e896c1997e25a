"""Browser tests: the real editor (web/) served by the real `nodegraph serve`, in headless Chromium.

Chromium is Debian's (/usr/bin/chromium, installed by `make test`; another binary with
NODEGRAPH_CHROMIUM), driven by Playwright's Python package, which never downloads a browser here.
Each test gets a fresh browser context (empty localStorage) on one server started for the module,
with the packs of tests/browser/packs (a gated progress node, a failing node, a front-end extension),
a model folder with a tiny random unCLIP checkpoint (`tiny-karlo`) for the real text-to-image nodes,
and its own data, input and output folders under pytest's tmp dir. Pages run under the editor's real
Content-Security-Policy (no eval). Tests wait on DOM state and on the editor's own state (window.app),
never on time. Screenshots go to tests/browser/artifacts/ (ignored by git); the run lists them.
"""

from __future__ import annotations

import pytest

from .harness import (
    CHROMIUM_ARGS,
    SCREENSHOTS,
    TIMEOUT_MS,
    Editor,
    Server,
    chromium_path,
    start_server,
    stop_server,
)


def pytest_terminal_summary(terminalreporter):
    if SCREENSHOTS:
        terminalreporter.write_sep("-", "browser test screenshots")
        for path in SCREENSHOTS:
            terminalreporter.write_line(str(path))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory):
    """The test servers' first model folder (searched before the shipped models); empty until needed."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_karlo(models_dir) -> str:
    """`tiny-karlo` in the model folder: a tiny random unCLIP checkpoint in the Karlo layout.

    The unCLIP nodes load it by name like a shipped model; a text-to-image run on it takes a second
    or two on CPU (what the editor shows does not depend on the images being any good). Built on
    first use only: importing torch and diffusers is the slow part.
    """
    from nodes.unclip.models.tiny import build_tiny_karlo

    build_tiny_karlo(models_dir / "tiny-karlo", seed=0)
    return "tiny-karlo"


@pytest.fixture(scope="module")
def server(tmp_path_factory, models_dir):  # module scope: closed before other files run (no Playwright loop left over)
    srv = start_server(tmp_path_factory.mktemp("server"), models_dir=models_dir)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_editor(browser, request):
    """open_editor(server, query="") -> Editor on a fresh context; fails the test on page errors.

    `before_load(page)` runs before the page opens (e.g. to stand in for a route with page.route);
    the editor is awaited until its body says `data-ready=<ready>` ("true", or "error" for a failed start).
    """
    contexts = []
    errors: list[str] = []

    def _open(srv: Server, query: str = "", *, before_load=None, ready: str = "true") -> Editor:
        ctx = browser.new_context(viewport={"width": 1400, "height": 860}, accept_downloads=True)
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
        page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        if before_load is not None:
            before_load(page)
        page.goto(srv.url + query)
        page.wait_for_selector(f"body[data-ready={ready}]")
        return Editor(page, srv)

    yield _open
    for ctx in contexts:
        ctx.close()
    expected = getattr(request.node, "expected_console_errors", ())
    unexpected = [e for e in errors if not any(x in e for x in expected)]
    assert not unexpected, "errors in the page:\n" + "\n".join(unexpected)


@pytest.fixture
def editor(open_editor, server) -> Editor:
    return open_editor(server)
