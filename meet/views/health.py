"""Liveness and readiness probes for process supervisors and load balancers."""

from __future__ import annotations

import sqlite3

from quart import Blueprint, Response, jsonify

from meet.errors import StorageFull, StoreError
from meet.store.db import schema_version
from meet.store.migrations import LATEST
from meet.views.context import services

blueprint = Blueprint("health", __name__, url_prefix="/api")


def _unavailable(reason: str) -> Response:
    response = jsonify({"status": "unavailable", "reason": reason})
    response.status_code = 503
    return response


@blueprint.get("/health")
async def health() -> Response:
    """The process is alive and serving."""
    return jsonify({"status": "ok"})


@blueprint.get("/ready")
async def ready() -> Response:
    """The database answers, its schema is current and it accepts writes: 200, else 503.

    While writes fail for a full disk, each probe tries one harmless write, so readiness
    comes back on its own once space is freed.
    """
    store = services().store
    try:
        version = await store.run(schema_version)
        if store.full:
            await store.probe_write()
    except StorageFull:
        return _unavailable(f"storage_full: the disk holding the database {store.path} is full; free space")
    except (sqlite3.Error, StoreError) as exc:
        return _unavailable(f"database: {exc}")
    if version != LATEST:
        return _unavailable(f"schema {version}, expected {LATEST}")
    return jsonify({"status": "ready", "schema": version})
