"""The job queue and history, persisted in SQLite (stdlib ``sqlite3``), with schema migrations.

One table holds every job; its ``status`` says whether it is queued, running or finished, and
``qpos`` orders the queue. The schema is created and upgraded by :data:`MIGRATIONS`, an ordered list
applied in transactions and recorded in ``schema_version``; a database written by a newer version
is refused rather than guessed at.

:class:`JobStore` is synchronous and must be used from one thread; :class:`AsyncJobStore` owns that
thread and gives the event loop awaitable access. Opening a store marks jobs left ``running`` by a
previous process (a crash, a kill) as ``interrupted``: they can be re-queued, their files stay.

Lists (the queue, the history) are summaries: a job's workflow can be megabytes, so only
:meth:`JobStore.get` and :meth:`JobStore.claim_next` read it; each row keeps its workflow's title
and node count beside it. A write the disk has no room for raises :class:`StoreFull` (naming the
data folder) and changes nothing.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "FINISHED",
    "MIGRATIONS",
    "AsyncJobStore",
    "JobStore",
    "Migration",
    "QueueFull",
    "SchemaTooNew",
    "StoreFull",
    "StoreLocked",
    "is_disk_full",
    "migrate",
    "schema_version",
    "summary",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

FINISHED = ("success", "failed", "cancelled", "interrupted")


class SchemaTooNew(RuntimeError):
    """The database was written by a newer nodegraph (its schema version is unknown here)."""


class StoreLocked(RuntimeError):
    """Another server process uses the same data folder."""


class QueueFull(RuntimeError):
    """The queue already holds ``max_queue`` jobs."""


class StoreFull(OSError):
    """The disk of the data folder is full: SQLite could not write (nothing was changed)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(errno.ENOSPC, f"the job database cannot be written: the disk of the data folder {folder} "
                         "is full; free space there (the server retries by itself)", str(folder))
        self.folder = folder

    def __str__(self) -> str:
        return self.strerror or "disk full"


SQLITE_FULL = 13


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or the database's size limit) is full."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "database or disk is full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class Migration:
    """One schema step: ``version`` is the version reached after running ``statements``."""

    version: int
    description: str
    statements: tuple[str, ...]


TITLE_LENGTH = 200

# Ordered. Append new steps; never edit a released one (databases in the field have run it).
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "jobs table: queue and history in one place", (
        """CREATE TABLE jobs (
               id TEXT PRIMARY KEY,
               status TEXT NOT NULL CHECK (status IN
                   ('queued', 'running', 'success', 'failed', 'cancelled', 'interrupted')),
               qpos REAL,
               created REAL NOT NULL,
               started REAL,
               finished REAL,
               client_id TEXT,
               workflow TEXT NOT NULL,
               targets TEXT,
               error TEXT,
               outputs TEXT NOT NULL DEFAULT '{}'
           )""",
        "CREATE INDEX jobs_queue ON jobs (status, qpos)",
    )),
    Migration(2, "re-queued jobs name their original; history ordered by finish time", (
        "ALTER TABLE jobs ADD COLUMN requeued_from TEXT",
        "CREATE INDEX jobs_history ON jobs (finished)",
    )),
    Migration(3, "a summary of each job's workflow (title, node count): lists never read the workflow", (
        "ALTER TABLE jobs ADD COLUMN title TEXT",
        "ALTER TABLE jobs ADD COLUMN node_count INTEGER",
        f"""UPDATE jobs SET
               title = CASE WHEN json_valid(workflow) THEN substr(coalesce(
                   CASE json_type(workflow, '$.meta.title') WHEN 'text'
                       THEN nullif(json_extract(workflow, '$.meta.title'), '') END,
                   CASE json_type(workflow, '$.meta.name') WHEN 'text'
                       THEN nullif(json_extract(workflow, '$.meta.name'), '') END), 1, {TITLE_LENGTH}) END,
               node_count = CASE WHEN json_valid(workflow) AND json_type(workflow, '$.nodes') = 'object'
                   THEN (SELECT COUNT(*) FROM json_each(workflow, '$.nodes')) ELSE 0 END""",
    )),
    Migration(4, "jobs record the worker that runs them (cluster executor)", (
        "ALTER TABLE jobs ADD COLUMN worker TEXT",
    )),
)


def summary(workflow: Any) -> tuple[str | None, int]:
    """A workflow's title (``meta.title``, else ``meta.name``; at most 200 characters) and node count."""
    if not isinstance(workflow, dict):
        return None, 0
    meta = workflow.get("meta")
    title = None
    if isinstance(meta, dict):
        title = next((t for t in (meta.get("title"), meta.get("name")) if isinstance(t, str) and t), None)
    nodes = workflow.get("nodes")
    return (title[:TITLE_LENGTH] if title else None), (len(nodes) if isinstance(nodes, dict) else 0)


def schema_version(conn: sqlite3.Connection) -> int:
    """The version recorded in ``schema_version`` (0 for a new database)."""
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the database up to the last of ``migrations``; each step is one transaction.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Returns the version reached.
    """
    current = schema_version(conn)
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise SchemaTooNew(f"the job database has schema version {current}, but this nodegraph knows versions "
                           f"up to {latest}; it was written by a newer nodegraph. Upgrade nodegraph, or start "
                           "the server with another --data-dir")
    for step in migrations:
        if step.version <= current:
            continue
        if step.version != current + 1:
            raise ValueError(f"migration versions must follow each other: {current} then {step.version}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql in step.statements:
                conn.execute(sql)
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (step.version,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        log.info("job database migrated to version %d: %s", step.version, step.description)
        current = step.version
    return current


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


class JobStore:
    """Synchronous access to the job database. Use it from one thread only."""

    SUMMARY = ("id, status, qpos, created, started, finished, client_id, targets, error, outputs, requeued_from, "
               "title, node_count, worker")
    COLUMNS = SUMMARY + ", workflow"

    def __init__(self, path: str | Path, *, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = _lock(self.path.with_name(self.path.name + ".lock"))
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA busy_timeout=5000")
            self.version = migrate(self.conn, migrations)
            self.interrupted = self._recover()
        except BaseException:
            self._lock_file.close()
            raise

    # -- plumbing --------------------------------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            # SQLite may already have rolled back (a full disk does that): only roll back what is open.
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self.conn.close()
        self._lock_file.close()

    def _job(self, row: Sequence[Any], position: int | None = None) -> dict[str, Any]:
        """A job from a row of :attr:`SUMMARY` columns (and ``workflow`` when the row has it)."""
        (job_id, status, _qpos, created, started, finished, client_id, targets, error, outputs, requeued_from,
         title, node_count, worker, *workflow) = row
        job = {
            "id": job_id, "status": status, "created": created, "started": started, "finished": finished,
            "position": position if status == "queued" else None, "client_id": client_id,
            "targets": _loads(targets), "error": _loads(error), "outputs": _loads(outputs) or {},
            "requeued_from": requeued_from, "title": title, "node_count": node_count or 0, "worker": worker,
        }
        if workflow:
            job["workflow"] = _loads(workflow[0])
        return job

    def _recover(self) -> list[str]:
        """Jobs a previous process left running were interrupted; say so."""
        with self._tx() as c:
            ids = [r[0] for r in c.execute("SELECT id FROM jobs WHERE status = 'running'")]
            c.execute("UPDATE jobs SET status = 'interrupted', qpos = NULL, finished = ?, error = ? "
                      "WHERE status = 'running'",
                      (time.time(), _dumps({"node": None, "type": None, "error_type": "Interrupted",
                                            "message": "the server stopped while this job was running; "
                                            "re-queue it to run it again", "traceback": ""})))
        if ids:
            log.warning("%d job(s) were running when the server last stopped; marked interrupted: %s",
                        len(ids), ", ".join(ids))
        return ids

    # -- queue -----------------------------------------------------------------------------------
    def add(self, job_id: str, workflow: Any, *, targets: list[str] | None = None, client_id: str | None = None,
            front: bool = False, max_queue: int | None = None, requeued_from: str | None = None) -> int:
        """Queue a job; returns its position (0 = next). Raises :class:`QueueFull`."""
        title, node_count = summary(workflow)
        text = _dumps(workflow)  # outside the transaction: it can take a while for a large workflow
        with self._tx() as c:
            n, lo, hi = c.execute("SELECT COUNT(*), MIN(qpos), MAX(qpos) FROM jobs WHERE status = 'queued'").fetchone()
            if max_queue is not None and n >= max_queue:
                raise QueueFull(f"the queue is full ({n} jobs); wait for some to finish or remove some")
            qpos = (lo - 1.0 if front else hi + 1.0) if n else 0.0
            c.execute("INSERT INTO jobs (id, status, qpos, created, client_id, workflow, targets, requeued_from, "
                      "title, node_count) VALUES (?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)",
                      (job_id, qpos, time.time(), client_id, text, _dumps(targets), requeued_from, title,
                       node_count))
        return 0 if front else n

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job with its workflow."""
        row = self.conn.execute(f"SELECT {self.COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        position = None
        if row[1] == "queued":
            position = self.conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND qpos < ?",
                                         (row[2],)).fetchone()[0]
        return self._job(row, position)

    def queued(self) -> list[dict[str, Any]]:
        """The queued jobs in order (summaries: no workflow)."""
        rows = self.conn.execute(f"SELECT {self.SUMMARY} FROM jobs WHERE status = 'queued' ORDER BY qpos").fetchall()
        return [self._job(r, i) for i, r in enumerate(rows)]

    def running(self) -> list[dict[str, Any]]:
        """The running jobs, in the order they started (several run at once on a cluster; summaries: no
        workflow)."""
        rows = self.conn.execute(f"SELECT {self.SUMMARY} FROM jobs WHERE status = 'running' "
                                 "ORDER BY started, rowid").fetchall()
        return [self._job(r) for r in rows]

    def set_worker(self, job_id: str, worker: str) -> None:
        """Record the worker that runs ``job_id`` (names joined by ``,`` when parts of it run on several)."""
        with self._tx() as c:
            c.execute("UPDATE jobs SET worker = ? WHERE id = ?", (worker, job_id))

    def counts(self) -> dict[str, int]:
        rows = dict(self.conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
        return {"queued": rows.get("queued", 0), "running": rows.get("running", 0),
                "finished": sum(rows.get(s, 0) for s in FINISHED)}

    def claim_next(self) -> dict[str, Any] | None:
        """Mark the first queued job running and return it, with its workflow (``None``: the queue is empty)."""
        with self._tx() as c:
            row = c.execute(f"SELECT {self.COLUMNS} FROM jobs WHERE status = 'queued' ORDER BY qpos LIMIT 1").fetchone()
            if row is None:
                return None
            now = time.time()
            c.execute("UPDATE jobs SET status = 'running', qpos = NULL, started = ? WHERE id = ?", (now, row[0]))
        job = self._job(row)
        job.update(status="running", started=now, position=None)
        return job

    def finish(self, job_id: str, status: str, *, error: dict[str, Any] | None = None,
               outputs: dict[str, Any] | None = None, finished: float | None = None) -> None:
        """Record a job's end (``finished``: when it ended, default now)."""
        if status not in FINISHED:
            raise ValueError(f"not a finished status: {status!r}")
        with self._tx() as c:
            c.execute("UPDATE jobs SET status = ?, qpos = NULL, finished = ?, error = ?, outputs = ? WHERE id = ?",
                      (status, finished if finished is not None else time.time(), _dumps(error),
                       _dumps(outputs or {}), job_id))

    def delete_queued(self, job_id: str) -> str:
        """Remove a queued job. Returns ``deleted``, or the job's status if it is not queued, or ``missing``."""
        with self._tx() as c:
            row = c.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return "missing"
            if row[0] != "queued":
                return row[0]
            c.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return "deleted"

    def move(self, job_id: str, position: int) -> int | None:
        """Move a queued job to ``position`` (clamped to the queue); ``None`` if it is not queued."""
        with self._tx() as c:
            ids = [r[0] for r in c.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY qpos")]
            if job_id not in ids:
                return None
            ids.remove(job_id)
            position = max(0, min(position, len(ids)))
            ids.insert(position, job_id)
            c.executemany("UPDATE jobs SET qpos = ? WHERE id = ?", [(float(i), j) for i, j in enumerate(ids)])
        return position

    # -- history ---------------------------------------------------------------------------------
    def history(self, limit: int = 50, offset: int = 0, *, workflow: bool = False) -> tuple[list[dict[str, Any]], int]:
        """Finished jobs, newest first (summaries, unless ``workflow``), and how many there are."""
        marks = ", ".join("?" * len(FINISHED))
        total = self.conn.execute(f"SELECT COUNT(*) FROM jobs WHERE status IN ({marks})", FINISHED).fetchone()[0]
        columns = self.COLUMNS if workflow else self.SUMMARY
        rows = self.conn.execute(f"SELECT {columns} FROM jobs WHERE status IN ({marks}) "
                                 "ORDER BY finished DESC, rowid DESC LIMIT ? OFFSET ?",
                                 (*FINISHED, limit, offset)).fetchall()
        return [self._job(r) for r in rows], total

    def delete_finished(self, job_id: str) -> str:
        """Forget a finished job. Returns ``deleted``, the job's status if it is not finished, or ``missing``."""
        with self._tx() as c:
            row = c.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return "missing"
            if row[0] not in FINISHED:
                return row[0]
            c.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return "deleted"


class _LockFile:
    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing releases the flock
            self.handle = None


def _lock(path: Path) -> _LockFile:
    """Hold an exclusive lock on ``path`` so two servers never share one queue."""
    handle = open(path, "a+")  # noqa: SIM115 - kept open for the life of the store
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no inter-process lock
        return _LockFile(handle)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise StoreLocked(f"another nodegraph server is using {path.parent}; stop it, or start this one with "
                          "another --data-dir") from None
    return _LockFile(handle)


class AsyncJobStore:
    """Owns one thread that holds the SQLite connection; ``await store(fn)`` runs ``fn(job_store)`` there."""

    def __init__(self, path: str | Path, *, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.path = Path(path)
        self.migrations = migrations
        self.store: JobStore | None = None
        self._pool: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        """Open (create, migrate, recover) the database in the store's thread."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nodegraph-db")
        try:
            self.store = await asyncio.get_running_loop().run_in_executor(
                pool, lambda: JobStore(self.path, migrations=self.migrations))
        except BaseException as exc:
            pool.shutdown(wait=False)
            if is_disk_full(exc):
                raise StoreFull(self.path.parent) from exc
            raise
        self._pool = pool

    async def __call__(self, fn: Callable[[JobStore], T]) -> T:
        """``fn(store)`` in the store's thread; a full disk raises :class:`StoreFull`."""
        if self.store is None or self._pool is None:
            raise RuntimeError("the job store is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, self.store)
        except (sqlite3.Error, OSError) as exc:
            if is_disk_full(exc) and not isinstance(exc, StoreFull):
                raise StoreFull(self.path.parent) from exc
            raise

    async def close(self) -> None:
        if self.store is None or self._pool is None:
            return
        store, pool = self.store, self._pool
        self.store = self._pool = None
        await asyncio.get_running_loop().run_in_executor(pool, store.close)
        pool.shutdown(wait=True)
