"""Retention: the daily job deletes chat and call history past [rooms] *_retention_days.

The database is seeded before the server starts (with a FakeClock's times); the job's first
run completes during start-up, so the state is checked right after ``open_server`` returns.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from conftest import make_config

from meet.clock import FakeClock
from meet.errors import StorageFull
from meet.server import RETENTION_INTERVAL, RETENTION_RETRY, open_server, retention_job
from meet.store import accounts as aq
from meet.store import open_store
from meet.store import rooms as rq
from meet.store.retention import DAY

NOW = 1_800_000_000.0


async def _seed(path: Path) -> None:
    """Messages and ended stays 40 and 5 days old, and one stay still open since 40 days."""
    async with open_store(path, NOW - 50 * DAY) as store:

        def seed(db) -> None:  # type: ignore[no-untyped-def]
            user = aq.add_user(db, "alice", "alice@example.org", "x", NOW - 50 * DAY, True, False)
            room = rq.create_room(db, "abc-defg-hij", "Standup", user.id, NOW - 50 * DAY, 10)
            for age, word in ((40, "ancient"), (5, "recent")):
                rq.add_message(db, room.id, user.id, "alice", f"{word} words", NOW - age * DAY)
                db.execute(
                    "INSERT INTO stays (room_id, user_id, joined_at, left_at) VALUES (?, ?, ?, ?)",
                    (room.id, user.id, NOW - age * DAY, NOW - age * DAY + 60),
                )
            db.execute(
                "INSERT INTO stays (room_id, user_id, joined_at) VALUES (?, ?, ?)", (room.id, user.id, NOW - 40 * DAY)
            )

        await store.run(seed)


def _state(db) -> dict[str, object]:  # type: ignore[no-untyped-def]
    room_id = db.execute("SELECT id FROM rooms").fetchone()[0]
    # FTS5's integrity-check fails when the index and the messages table disagree.
    db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
    return {
        "messages": sorted(r[0] for r in db.execute("SELECT text FROM messages")),
        "ancient_found": len(rq.search_messages(db, room_id, 10, None, "ancient")),
        "recent_found": len(rq.search_messages(db, room_id, 10, None, "recent")),
        # start-up closes stays a previous run left open (at "now"): such a stay is recent history
        "stay_ages": sorted(round((NOW - r[0]) / DAY) for r in db.execute("SELECT joined_at FROM stays")),
    }


async def _run(tmp_path: Path, chat: int, history: int) -> dict[str, object]:
    config = make_config(tmp_path, rooms={"chat_retention_days": chat, "history_retention_days": history})
    await _seed(config.database_path)
    with trio.fail_after(20):
        async with open_server(config, clock=FakeClock(NOW)) as running:
            return await running.services.store.run(_state)


async def test_old_rows_go_recent_stay_and_search_follows(tmp_path: Path) -> None:
    state = await _run(tmp_path, chat=30, history=30)
    assert state["messages"] == ["recent words"]
    assert state["ancient_found"] == 0 and state["recent_found"] == 1
    # the stay that ended 40 days ago is gone; the one from 5 days ago stays, and so does the
    # one that began 40 days ago but was still open (it ended just now)
    assert state["stay_ages"] == [5, 40]


async def test_zero_keeps_everything(tmp_path: Path) -> None:
    state = await _run(tmp_path, chat=0, history=0)
    assert state["messages"] == ["ancient words", "recent words"]
    assert state["ancient_found"] == 1
    assert state["stay_ages"] == [5, 40, 40]


async def test_each_setting_applies_alone(tmp_path: Path) -> None:
    state = await _run(tmp_path, chat=0, history=10)
    assert state["messages"] == ["ancient words", "recent words"] and state["stay_ages"] == [5, 40]


class _FailingOnce:
    """A store whose first call fails as on a full disk; later calls purge nothing."""

    def __init__(self) -> None:
        self.calls = 0

    async def run(self, fn: object, *args: object) -> tuple[int, int]:
        self.calls += 1
        if self.calls == 1:
            raise StorageFull()
        return 0, 0


async def test_a_failed_purge_neither_stops_start_up_nor_the_job(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = _FailingOnce()
    rooms = make_config(Path("unused"), rooms={"chat_retention_days": 30}).rooms
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(retention_job, store, FakeClock(NOW), rooms))  # type: ignore[arg-type]
        assert store.calls == 1 and "retention: the purge failed" in caplog.text
        await trio.sleep(RETENTION_RETRY + 1)  # the mock clock jumps; the retry comes after an hour, not a day
        assert store.calls == 2
        await trio.sleep(RETENTION_INTERVAL)
        assert store.calls == 3
        nursery.cancel_scope.cancel()
