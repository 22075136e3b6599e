"""What happened in meetings: call history, chat search and attendance reports."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from meet.authz import Action, Facts, check
from meet.clock import Clock
from meet.connection import UserRef
from meet.errors import BadRequest
from meet.store import Store
from meet.store import rooms as q
from meet.store.records import Room

MAX_PAGE = 100


def page_size(limit: int | None, default: int = 50) -> int:
    if limit is None:
        return default
    if not 1 <= limit <= MAX_PAGE:
        raise BadRequest(f"limit must be between 1 and {MAX_PAGE}.", code="invalid_limit", field="limit")
    return limit


def _duration(joined_at: float, left_at: float | None, now: float) -> float:
    return round((left_at if left_at is not None else now) - joined_at, 3)


class History:
    """Read-only views over stays and messages."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    async def calls(self, user: UserRef, limit: int | None, before: int | None) -> dict[str, Any]:
        """My stays, newest first; ``next_before`` continues the list."""
        size = page_size(limit)
        rows = await self.store.run(q.calls_of, user.id, size, before)
        now = self.clock.now()
        calls = [
            {
                "id": call.id,
                "room": {"code": call.code, "title": call.title, "hosted": call.host_id == user.id},
                "joined_at": call.joined_at,
                "left_at": call.left_at,
                "duration_s": _duration(call.joined_at, call.left_at, now),
            }
            for call in rows
        ]
        return {"calls": calls, "next_before": rows[-1].id if len(rows) == size else None}

    async def messages(
        self, room: Room, user: UserRef, limit: int | None, before: int | None, query: str | None
    ) -> dict[str, Any]:
        """Chat of a room, newest first, for its host and anyone who took part (and was not removed)."""
        standing = await self.store.run(q.standing, room.id, user.id, self.clock.now())
        check(Action.READ_CHAT, Facts.of(room, user.id, standing))
        if query is not None and len(query) > 200:
            raise BadRequest("Search text is limited to 200 characters.", code="invalid_query", field="q")
        size = page_size(limit)
        rows = await self.store.run(q.search_messages, room.id, size, before, query)
        return {
            "messages": [message.public() for message in rows],
            "next_before": rows[-1].id if len(rows) == size else None,
        }

    async def attendance(self, room: Room, user: UserRef) -> dict[str, Any]:
        """Host only: every participant's stays and total time."""
        check(Action.READ_ATTENDANCE, Facts.of(room, user.id))
        now = self.clock.now()
        people: dict[int, dict[str, Any]] = {}
        for stay in await self.store.run(q.attendance, room.id):
            person = people.setdefault(
                stay.user_id,
                {
                    "user": UserRef(stay.user_id, stay.username, guest=stay.user_id < 0).public(),
                    "stays": [],
                    "total_s": 0.0,
                },
            )
            duration = _duration(stay.joined_at, stay.left_at, now)
            person["stays"].append({"joined_at": stay.joined_at, "left_at": stay.left_at, "duration_s": duration})
            person["total_s"] = round(person["total_s"] + duration, 3)
        return {"room": {"code": room.code, "title": room.title}, "attendance": list(people.values())}


def attendance_csv(report: dict[str, Any]) -> str:
    """One row per stay: name, user id, joined, left, seconds, the person's total, and whether
    they were a guest (no account: the name they gave, a negative id)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["username", "user_id", "joined_at", "left_at", "duration_s", "total_s", "guest"])
    for person in report["attendance"]:
        for stay in person["stays"]:
            writer.writerow(
                [
                    _cell(person["user"]["username"]),
                    person["user"]["id"],
                    _iso(stay["joined_at"]),
                    _iso(stay["left_at"]) if stay["left_at"] is not None else "",
                    stay["duration_s"],
                    person["total_s"],
                    "yes" if person["user"].get("guest") else "no",
                ]
            )
    return out.getvalue()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _cell(text: str) -> str:
    """Keep spreadsheets from reading a name such as ``-1+1`` as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text
