"""Small SQL helpers shared by the query modules: one IMMEDIATE transaction, rows as dicts or records.

The query modules (``store.accounts``, ``store.rooms``) are plain sync functions taking the
``sqlite_utils.Database``; call them through ``Store.run``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlite_utils

T = TypeVar("T")

Row = dict[str, Any]


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT, rolled back on any exception."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")


def fetch_one(db: sqlite_utils.Database, sql: str, params: tuple[Any, ...] = ()) -> Row | None:
    """The first row of a query as a dict of column name to value, or None."""
    cursor = db.execute(sql, params)
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([c[0] for c in cursor.description], row))


def fetch_all(db: sqlite_utils.Database, sql: str, params: tuple[Any, ...] = ()) -> list[Row]:
    """Every row of a query as dicts of column name to value."""
    cursor = db.execute(sql, params)
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def one_as(record: Callable[..., T], db: sqlite_utils.Database, sql: str, params: tuple[Any, ...] = ()) -> T | None:
    """The first row built into ``record`` (its fields named like the selected columns), or None."""
    row = fetch_one(db, sql, params)
    return None if row is None else record(**row)


def all_as(record: Callable[..., T], db: sqlite_utils.Database, sql: str, params: tuple[Any, ...] = ()) -> list[T]:
    """Every row built into ``record``."""
    return [record(**row) for row in fetch_all(db, sql, params)]
