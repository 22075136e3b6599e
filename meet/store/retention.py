"""Retention: delete chat messages and call history older than the configured number of days.

Deleting from ``messages`` fires the ``messages_ad`` trigger, which removes each row from the
``messages_fts`` search index too, so search never finds a message that is gone. Open stays
(people still in a call) are never deleted: only stays that ended before the cut-off.
"""

from __future__ import annotations

import sqlite_utils

DAY = 86400.0
BATCH = 5000  # rows per transaction: a big first purge must not hold the write lock for long


def purge_messages(db: sqlite_utils.Database, before: float) -> int:
    """Delete chat messages created before ``before`` (Unix time); return how many."""
    return _in_batches(
        db, "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE created_at < ? LIMIT ?)", before
    )


def purge_stays(db: sqlite_utils.Database, before: float) -> int:
    """Delete call-history stays that ended before ``before``; return how many."""
    return _in_batches(
        db,
        "DELETE FROM stays WHERE id IN (SELECT id FROM stays WHERE left_at IS NOT NULL AND left_at < ? LIMIT ?)",
        before,
    )


def _in_batches(db: sqlite_utils.Database, sql: str, before: float) -> int:
    total = 0
    while True:  # the connection autocommits: each batch is its own transaction
        removed = int(db.conn.execute(sql, (before, BATCH)).rowcount)
        total += removed
        if removed < BATCH:
            return total


def purge_old(db: sqlite_utils.Database, now: float, chat_days: int, history_days: int) -> tuple[int, int]:
    """Apply both retention periods (0 keeps everything); return (messages, stays) deleted."""
    messages = purge_messages(db, now - chat_days * DAY) if chat_days else 0
    stays = purge_stays(db, now - history_days * DAY) if history_days else 0
    return messages, stays
