"""Group commit: rows written by concurrent callers share one transaction.

Chat is durable before it is echoed (an acknowledged message is stored), but a transaction
and a database-thread round trip per message make every message wait for the one before it.
:class:`GroupCommit` has one writer task take whatever rows are waiting, up to ``limit``,
and write them in ONE transaction; each caller waits until its own row is committed. Under
no load a lone row is written at once (no timer): batches form only from the rows that
arrive while the previous transaction is running.

After the commit the writer calls each row's ``then`` callback in the order the rows were
written, before any caller resumes: the callbacks (chat's broadcast) see the rows in id
order, which waking the callers would not give (trio runs woken tasks in no fixed order).

A batch that fails is tried again row by row, so each caller gets exactly the outcome its
row would have had alone (a full disk: :class:`~meet.errors.StorageFull` for each; one bad
row: an error for that row only), and the writer goes on.

The writer runs in the server's root nursery (:meth:`GroupCommit.run`). When it is stopped,
it writes what is still waiting before returning, and later calls write inline, one
transaction each, as they did before group commit existed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import outcome
import sqlite_utils
import trio

from meet.store.db import Store
from meet.store.sql import transaction

R = TypeVar("R")

# Rows per transaction: one commit stays short (a chat row with its search index entry is
# tens of microseconds) and a burst is still written in a few commits.
BATCH_LIMIT = 64


@dataclass(eq=False)
class _Row(Generic[R]):
    """One caller's row: its arguments, its callback, and once written, its outcome."""

    args: tuple[Any, ...]
    then: Callable[[R], None] | None
    done: trio.Event = field(default_factory=trio.Event)
    result: outcome.Outcome[R] | None = None
    taken: bool = False  # the writer has it: it will be written even if the caller leaves
    abandoned: bool = False  # the caller left before the writer took it: skip it


class GroupCommit(Generic[R]):
    """Writes ``write(db, *args)`` rows for concurrent callers, many per transaction."""

    def __init__(
        self, store: Store, write: Callable[..., R], *, limit: int = BATCH_LIMIT
    ) -> None:
        if limit < 1:
            raise ValueError("a batch holds at least one row")
        self.store = store
        self.write = write
        self.limit = limit
        self._queue: deque[_Row[R]] = deque()
        self._batch: list[_Row[R]] = []  # taken, being written
        self._wake = trio.Event()
        self._running = False

    @property
    def waiting(self) -> int:
        """Rows added and not written yet (queued or in the transaction being run)."""
        queued = sum(1 for row in self._queue if not row.abandoned)
        return queued + sum(1 for row in self._batch if row.result is None)

    async def add(self, *args: Any, then: Callable[[R], None] | None = None) -> R:
        """Write one row and return what ``write`` returned once it is committed.

        ``then(result)`` runs right after the commit, in the order the rows were written;
        an exception from it is raised here. A caller cancelled before the writer took its
        row leaves nothing written; after that the row is written (and ``then`` called)
        regardless, as a query already running in the database thread would be.
        """
        row = _Row(args, then)
        if not self._running:  # no writer (not started, or stopped at shutdown): inline
            await self._commit([row])
            return self._unwrap(row)
        self._queue.append(row)
        self._wake.set()
        try:
            await row.done.wait()
        except BaseException:
            if not row.taken:
                row.abandoned = True
            raise
        return self._unwrap(row)

    @staticmethod
    def _unwrap(row: _Row[R]) -> R:
        assert row.result is not None, "a row is finished before its caller resumes"
        return row.result.unwrap()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The writer, until cancelled; then it writes what is still waiting and returns."""
        self._running = True
        task_status.started()
        try:
            while True:
                while not self._queue:
                    self._wake = trio.Event()
                    await self._wake.wait()
                self._batch = self._take()
                await self._commit(self._batch)
                self._batch = []
        finally:
            self._running = False
            with trio.CancelScope(shield=True):
                await self._flush()

    def _take(self) -> list[_Row[R]]:
        batch: list[_Row[R]] = []
        while self._queue and len(batch) < self.limit:
            row = self._queue.popleft()
            if not row.abandoned:
                row.taken = True
                batch.append(row)
        return batch

    async def _flush(self) -> None:
        """Write the rows left over: a batch cut off before its transaction ran, then the queue."""
        self._queue.extendleft(reversed([row for row in self._batch if row.result is None]))
        self._batch = []
        while self._queue:
            await self._commit(self._take())

    async def _commit(self, batch: list[_Row[R]]) -> None:
        """Write ``batch`` in one transaction; if that fails, each row in its own."""
        if not batch:
            return
        together = await self._attempt(batch)
        if isinstance(together, outcome.Value):
            for row, value in zip(batch, together.value):
                self._finish(row, outcome.Value(value))
        elif len(batch) == 1:
            self._finish(batch[0], _only(together))
        else:
            for row in batch:  # the same outcome each row would have had alone
                self._finish(row, _only(await self._attempt([row])))

    async def _attempt(self, rows: list[_Row[R]]) -> outcome.Outcome[list[R]]:
        """One transaction for ``rows``: the results, or the error (which is the callers', not the writer's)."""
        try:
            return outcome.Value(await self.store.run(self._write_all, [row.args for row in rows]))
        except Exception as exc:  # noqa: BLE001 - handed to the callers, as Store.run would raise it to them
            return outcome.Error(exc)

    def _write_all(self, db: sqlite_utils.Database, rows: list[tuple[Any, ...]]) -> list[R]:
        """In the database thread: every row, one transaction."""
        with transaction(db):
            return [self.write(db, *args) for args in rows]

    @staticmethod
    def _finish(row: _Row[R], result: outcome.Outcome[R]) -> None:
        if isinstance(result, outcome.Value) and row.then is not None:
            try:
                row.then(result.value)
            except Exception as exc:  # noqa: BLE001 - raised to that caller, as before group commit
                result = outcome.Error(exc)
        row.result = result
        row.done.set()


def _only(result: outcome.Outcome[list[R]]) -> outcome.Outcome[R]:
    """The outcome of a one-row transaction as that row's."""
    if isinstance(result, outcome.Value):
        return outcome.Value(result.value[0])
    assert isinstance(result, outcome.Error)
    return outcome.Error(result.error)
