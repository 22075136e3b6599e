"""Liveness and readiness probes for process supervisors and load balancers."""

from __future__ import annotations

import sqlite3

from quart import Blueprint, Response, jsonify

from meet.errors import StoreError
from meet.store.db import schema_version
from meet.store.migrations import LATEST
from meet.views.context import services

blueprint = Blueprint("health", __name__, url_prefix="/api")


@blueprint.get("/health")
async def health() -> Response:
    """The process is alive and serving."""
    return jsonify({"status": "ok"})


@blueprint.get("/ready")
async def ready() -> Response:
    """The database answers and its schema is current: 200, else 503."""
    try:
        version = await services().store.run(schema_version)
    except (sqlite3.Error, StoreError) as exc:
        response = jsonify({"status": "unavailable", "reason": f"database: {exc}"})
        response.status_code = 503
        return response
    if version != LATEST:
        response = jsonify({"status": "unavailable", "reason": f"schema {version}, expected {LATEST}"})
        response.status_code = 503
        return response
    return jsonify({"status": "ready", "schema": version})
