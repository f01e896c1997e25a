"""Rendering run events for a terminal: tqdm progress bars (ETA, steps/s) on a TTY, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm import tqdm

from .events import (
    NodeCached,
    NodeCompleted,
    NodeFailed,
    NodeStarted,
    Progress,
    RunFinished,
    RunPlaced,
    RunStarted,
)

__all__ = ["ConsoleRenderer"]

#: A plain progress line: ``5/10 [00:01<00:01, 4.00step/s]`` (steps, elapsed<remaining, rate).
_PLAIN = "{n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]"


class ConsoleRenderer:
    """An event sink writing to a stream (stderr by default).

    On a TTY a node that reports progress gets a tqdm bar (``[3/7] dec:  48%|████▊     | 12/25
    [00:03<00:03, 4.01step/s]``) and every finished node a line; otherwise it prints plain lines, with
    progress (steps, ETA, rate) throttled to about every 10 % of a node.
    """

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.quiet = quiet
        self._total = 0
        self._done = 0
        self._started: dict[str, float] = {}
        self._last_pct: dict[str, int] = {}
        self._line_open = False
        self._bar: tqdm | None = None
        self.files: list[str] = []

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _line(self, text: str) -> None:
        self._close_bar()
        if self._line_open:
            self._write("\r\x1b[2K")
            self._line_open = False
        self._write(text + "\n")

    def _status(self, text: str) -> None:
        self._close_bar()
        self._write("\r\x1b[2K" + text)
        self._line_open = True

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __call__(self, event: Any) -> None:
        if self.quiet and not isinstance(event, NodeFailed | RunFinished):
            return
        if isinstance(event, RunStarted):
            self._total = len(event.nodes)
            self._done = 0
        elif isinstance(event, RunPlaced):
            again = " (re-run: the first worker was lost)" if event.attempt > 1 else ""
            self._line(f"on    worker {event.worker}" + (f" ({event.host})" if event.host else "") + again)
        elif isinstance(event, NodeStarted):
            self._started[event.node] = time.perf_counter()
            if self.tty:
                self._status(f"[{self._done + 1}/{self._total}] {event.node} {event.type} …")
            else:
                self._line(f"run   {event.node} ({event.type})")
        elif isinstance(event, Progress):
            self._progress(event)
        elif isinstance(event, NodeCached):
            self._done += 1
            self._collect(event.ui)
            if not self.tty:
                self._line(f"cached {event.node} ({event.type})")
        elif isinstance(event, NodeCompleted):
            self._done += 1
            self._collect(event.ui)
            text = f"done  {event.node} ({event.type}) {event.duration:.2f}s"
            if self.tty:
                self._line(f"[{self._done}/{self._total}] " + text)
            else:
                self._line(text)
        elif isinstance(event, NodeFailed):
            self._line(f"FAILED {event.node} ({event.type}): {event.error_type}: {event.message}")
            # a NodeExecutionError is the node's own message (problem + fix); other errors are bugs
            # somewhere, and their traceback is what a bug report needs
            if event.traceback and not self.quiet and event.error_type != "NodeExecutionError":
                self._line(event.traceback.rstrip())
        elif isinstance(event, RunFinished):
            self._line(f"run {event.status} in {event.duration:.2f}s "
                       f"({event.executed} executed, {event.cached} cached)")

    def _progress(self, event: Progress) -> None:
        if event.total:
            if self.tty:
                self._tty_bar(event)
                return
            pct = int(min(1.0, max(0.0, event.step / event.total)) * 10)
            if pct > self._last_pct.get(event.node, -1):
                self._last_pct[event.node] = pct
                elapsed = time.perf_counter() - self._started.get(event.node, time.perf_counter())
                meter = tqdm.format_meter(min(event.step, event.total), event.total, elapsed, unit="step",
                                          bar_format=_PLAIN)
                self._line(f"step  {event.node} {meter}")
        elif self.tty:
            self._status(f"[{self._done + 1}/{self._total}] {event.node} step {event.step}")

    def _tty_bar(self, event: Progress) -> None:
        bar = self._bar
        if bar is None or bar.desc != self._desc(event.node) or bar.total != event.total:
            if self._line_open:
                self._write("\r\x1b[2K")
                self._line_open = False
            self._close_bar()
            # mininterval 0: a progress event is already a step (at most a few a second), draw each one
            bar = self._bar = tqdm(total=event.total, desc=self._desc(event.node), unit="step", file=self.stream,
                                   leave=False, mininterval=0, dynamic_ncols=True)
            started = self._started.get(event.node)
            if started is not None:  # the node's time before its first step counts towards the rate
                bar.start_t -= time.perf_counter() - started
        bar.update(max(0, min(event.step, event.total) - bar.n))

    def _desc(self, node: str) -> str:
        return f"[{self._done + 1}/{self._total}] {node}"

    def _collect(self, ui: dict[str, Any]) -> None:
        for item in ui.get("images", []) if isinstance(ui, dict) else []:
            if isinstance(item, dict) and item.get("type") == "output":
                sub = item.get("subfolder") or ""
                self.files.append(f"{sub}/{item['filename']}" if sub else item["filename"])
