"""All SQLite access lives in this package: the connection owner, migrations and queries."""

from meet.store.db import Store, open_store

__all__ = ["Store", "open_store"]
