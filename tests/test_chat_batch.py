"""Chat's group commit (meet.store.group): concurrent messages share a transaction, each is
echoed only once stored, broadcasts follow the order of the ids, a failing batch fails each
message as it would have failed alone, and stopping the writer loses nothing.

Batches are made deterministic by holding the database thread (a query that waits on an
event) while the messages arrive; transactions are counted through SQLite's trace hook.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from conftest import Outbox, User, make_room, make_user
from wsclient import WS, join

from meet.clock import FakeClock
from meet.config import Config
from meet.server import RunningServer, open_server
from meet.store import Store, open_store
from meet.store.group import GroupCommit

NOW = 1_800_000_000.0


class Transactions:
    """SQLite's trace hook: how many ``INSERT INTO table`` statements each transaction ran
    (for a table without triggers: SQLite traces a trigger's statements under the text of
    the statement that fired it)."""

    def __init__(self, table: str) -> None:
        self.insert = f"INSERT INTO {table.upper()} "
        self.committed: list[int] = []
        self._rows: int | None = None  # inside BEGIN … COMMIT/ROLLBACK

    def __call__(self, sql: str) -> None:
        head = sql.lstrip().upper()
        if head.startswith("BEGIN"):
            self._rows = 0
        elif head.startswith(self.insert):
            if self._rows is None:
                self.committed.append(1)  # autocommit: a transaction of its own
            else:
                self._rows += 1
        elif head.startswith(("COMMIT", "ROLLBACK")):
            rows, self._rows = self._rows, None
            if rows and head.startswith("COMMIT"):
                self.committed.append(rows)


@contextmanager
def database_calls(store: Store) -> Iterator[list[float]]:
    """Every call to the database thread (``Store.observe``, the metrics hook) in the block:
    each writes chat in one transaction, where only chat is written."""
    calls: list[float] = []
    before = store.observe
    store.observe = calls.append
    try:
        yield calls
    finally:
        store.observe = before


@asynccontextmanager
async def database_held(store: Store) -> AsyncIterator[None]:
    """Keep the database thread busy until the block ends (queries queue up meanwhile)."""
    entered, release = threading.Event(), threading.Event()

    def hold(db: Any) -> None:
        entered.set()
        release.wait(10)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(store.run, hold)
        await trio.to_thread.run_sync(entered.wait, 10)
        try:
            yield
        finally:
            release.set()


async def until_waiting(log: GroupCommit[Any], count: int) -> None:
    """Until ``count`` rows wait to be written (the frames carrying them have arrived)."""
    with trio.fail_after(5):
        while log.waiting < count:
            await trio.testing.wait_all_tasks_blocked(0.005)


# -- a real server and WebSocket clients ---------------------------------------------------


async def chats(ws: WS, count: int) -> list[tuple[int, str]]:
    """The next ``count`` chat broadcasts a member receives, as (id, text)."""
    got = []
    for _ in range(count):
        message = (await ws.until("chat"))["message"]
        got.append((message["id"], message["text"]))
    return got


async def test_concurrent_chats_share_transactions_keep_order_and_survive_a_restart(
    config: Config, clock: FakeClock
) -> None:
    async with open_server(config, clock=clock) as server, \
            httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        outbox = Outbox(config.outbox_dir)
        alice, bob, carol = [await make_user(client, outbox, name) for name in ("alice", "bob", "carol")]
        rooms = {await make_room(client, alice): (alice, alice, bob, bob), await make_room(client, alice): (alice, carol, carol)}
        store = server.services.store
        async with AsyncExitStack() as stack:
            members = {
                code: [(await stack.enter_async_context(join(server.url, code, user.token)))[0] for user in people]
                for code, people in rooms.items()
            }
            sent: dict[str, list[str]] = {code: [] for code in rooms}
            calls = stack.enter_context(database_calls(store))
            for round_ in range(3):
                async with database_held(store):
                    for code, sockets in members.items():
                        for i, ws in enumerate(sockets):
                            sent[code].append(f"round {round_} from {i}")
                            await ws.send({"type": "chat", "text": sent[code][-1]})
                    await until_waiting(server.services.rooms.chat_log, 7)
            seen = {code: [await chats(ws, len(sent[code])) for ws in sockets] for code, sockets in members.items()}
        # Each round: the hold, the first message at once, the 6 others together.
        assert len(calls) == 3 * 3, calls
        for code, views in seen.items():
            first = views[0]
            assert all(view == first for view in views), views  # every member, the same order
            assert [i for i, _ in first] == sorted(i for i, _ in first), first  # the ids' order
            assert sorted(text for _, text in first) == sorted(sent[code])
    async with open_server(config, clock=clock) as server, \
            httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        for code, views in seen.items():
            r = await client.get(f"/api/rooms/{code}/messages", params={"limit": 100}, headers=alice.auth)
            assert r.status_code == 200, r.text
            stored = [(m["id"], m["text"]) for m in reversed(r.json()["messages"])]
            assert stored == views[0]  # every acknowledged message, after the restart


async def test_a_full_disk_fails_each_message_of_a_batch_as_alone(
    server: RunningServer, client: httpx.AsyncClient, alice: User, bob: User
) -> None:
    code = await make_room(client, alice)
    store = server.services.store
    async with join(server.url, code, alice.token) as (a, _), join(server.url, code, bob.token) as (b, _), \
            join(server.url, code, bob.token) as (b2, _):
        for ws in (a, a, b):
            await ws.until("peer-joined")

        def cap(db: Any) -> None:  # SQLITE_FULL as on a full disk (see test_storage_full)
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {pages}")

        await store.run(cap)
        acked = 0
        while True:  # until the database is full (free space in its pages taken)
            await a.send({"type": "chat", "text": "x" * 2000})
            frame = await a.recv()
            if frame["type"] == "error":
                assert frame["code"] == "storage_full", frame
                break
            acked += 1
        for ws in (b, b2):
            await chats(ws, acked)
        with database_calls(store) as calls:
            async with database_held(store):
                for ws in (a, b, b2):
                    await ws.send({"type": "chat", "text": "x" * 2000})
                await until_waiting(server.services.rooms.chat_log, 3)
            for ws in (a, b, b2):  # each sender told as before, the socket open, nothing broadcast
                await ws.expect_error("storage_full")
            for ws in (a, b, b2):
                await ws.assert_idle()
        # The hold, the first message at once, the other two together, then each alone.
        assert len(calls) == 5, calls

        await store.run(lambda db: db.execute("PRAGMA max_page_count = 1073741823"))
        await b.send({"type": "chat", "text": "after"})
        for ws in (a, b, b2):
            assert (await ws.expect("chat"))["message"]["text"] == "after"
    r = await client.get(f"/api/rooms/{code}/messages", headers=alice.auth)
    assert [m["text"] for m in r.json()["messages"]] == ["after"] + ["x" * 2000] * acked


# -- the mechanism on its own, on a scratch table --------------------------------------------


def insert(db: Any, value: str) -> int:
    cursor = db.execute("INSERT INTO scratch (value) VALUES (?)", (value,))
    return int(cursor.lastrowid)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with open_store(tmp_path / "meet.db", NOW) as store:
        await store.run(lambda db: db.execute(
            "CREATE TABLE scratch (id INTEGER PRIMARY KEY, value TEXT NOT NULL CHECK (value != 'bad'))"
        ))
        yield store


def stored(db: Any) -> list[tuple[int, str]]:
    return [tuple(row) for row in db.execute("SELECT id, value FROM scratch ORDER BY id")]


async def test_batches_are_bounded_and_run_callbacks_in_id_order(store: Store) -> None:
    log = GroupCommit(store, insert, limit=3)
    traced = Transactions("scratch")
    store.db.conn.set_trace_callback(traced)
    told: list[int] = []
    results: dict[str, int] = {}

    async def add(value: str) -> None:
        results[value] = await log.add(value, then=told.append)

    async with trio.open_nursery() as nursery:
        await nursery.start(log.run)
        async with database_held(store):
            for i in range(7):
                nursery.start_soon(add, f"v{i}")
            await until_waiting(log, 7)
        with trio.fail_after(5):
            while len(results) < 7:
                await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert sorted(traced.committed) == [1, 3, 3]  # no more than 3 a transaction
    assert told == sorted(told) == sorted(results.values())
    assert sorted(await store.run(stored)) == sorted((i, v) for v, i in results.items())


async def test_a_bad_row_fails_alone_and_the_writer_goes_on(store: Store) -> None:
    log = GroupCommit(store, insert)
    outcomes: dict[str, Any] = {}

    async def add(value: str) -> None:
        try:
            outcomes[value] = await log.add(value)
        except sqlite3.IntegrityError as exc:
            outcomes[value] = exc

    async with trio.open_nursery() as nursery:
        await nursery.start(log.run)
        async with database_held(store):
            for value in ("first", "one", "bad", "two"):
                nursery.start_soon(add, value)
            await until_waiting(log, 4)
        with trio.fail_after(5):
            while len(outcomes) < 4:
                await trio.testing.wait_all_tasks_blocked()
        assert isinstance(outcomes.pop("bad"), sqlite3.IntegrityError)
        assert sorted(v for _, v in await store.run(stored)) == ["first", "one", "two"]
        assert await log.add("next") == 4  # the writer still runs
        nursery.cancel_scope.cancel()


async def test_a_lone_row_waits_for_no_timer(store: Store, autojump_clock: trio.testing.MockClock) -> None:
    log = GroupCommit(store, insert)
    async with trio.open_nursery() as nursery:
        await nursery.start(log.run)
        started = trio.current_time()
        assert await log.add("alone") == 1
        assert trio.current_time() == started  # any sleep would have moved the autojump clock
        nursery.cancel_scope.cancel()


async def test_stopping_the_writer_writes_what_waits_then_goes_inline(store: Store) -> None:
    log = GroupCommit(store, insert)
    results: list[int] = []

    async def add(value: str) -> None:
        results.append(await log.add(value))

    async with trio.open_nursery() as callers, trio.open_nursery() as writer:
        await writer.start(log.run)
        async with database_held(store):
            for value in ("a", "b", "c"):
                callers.start_soon(add, value)
            await until_waiting(log, 3)
            writer.cancel_scope.cancel()  # the server shutting down
    assert sorted(results) == [1, 2, 3]
    assert await log.add("later") == 4  # no writer now: written inline
    assert sorted(v for _, v in await store.run(stored)) == ["a", "b", "c", "later"]


async def test_a_caller_gone_before_its_row_is_taken_leaves_nothing(store: Store) -> None:
    log = GroupCommit(store, insert)
    async with trio.open_nursery() as nursery:
        await nursery.start(log.run)
        async with database_held(store):
            nursery.start_soon(log.add, "taken")
            await until_waiting(log, 1)
            nursery.start_soon(log.add, "kept")
            with trio.move_on_after(0):
                await log.add("left")  # cancelled while queued
            await until_waiting(log, 2)
        with trio.fail_after(5):
            while log.waiting:
                await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert [v for _, v in await store.run(stored)] == ["taken", "kept"]
