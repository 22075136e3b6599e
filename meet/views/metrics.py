"""``GET /metrics`` for Prometheus, and the hooks that count every HTTP request.

``[metrics] token`` empty (the default): the route answers 404 like any unknown path, so a
server does not reveal it has one. Set: a request must bear ``Authorization: Bearer <token>``
(compared in constant time), else 401. The route is left out of the OpenAPI document: it is
not part of the JSON API, it exists only when configured, and README "Metrics" documents it.

Requests are timed from Quart's ``request_started`` signal (before any ``before_request``
hook, so a request refused by one is timed too) to ``request_finished`` (the response after
every ``after_request`` hook), and labelled by the URL rule they matched.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from quart import Blueprint, Quart, Response, g, request
from quart.signals import request_finished, request_started
from quart_schema import hide
from werkzeug.exceptions import NotFound

from meet.errors import Unauthorized
from meet.metrics import CONTENT_TYPE
from meet.views.context import bearer_token, services

blueprint = Blueprint("metrics", __name__)


class MetricsUnauthorized(Unauthorized):
    """A scrape without the right token: says which scheme to use."""

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="metrics"'}


@blueprint.get("/metrics")
@hide
async def metrics() -> Response:
    """The Prometheus text exposition of this server's series."""
    token = services().config.metrics.token
    if not token:
        raise NotFound()  # off: the same answer as an unknown path
    given = (bearer_token() or "").encode()
    # Digests of equal length: the comparison reveals neither the token nor its length.
    if not hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(token.encode()).digest()):
        raise MetricsUnauthorized(
            "Send the metrics token: Authorization: Bearer <token>.", code="unauthorized"
        )
    body = await services().metrics.render()
    response = Response(body, status=200, content_type=CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response


async def _started(sender: Quart, **extra: Any) -> None:
    g.metrics_started = time.perf_counter()


async def _finished(sender: Quart, response: Response, **extra: Any) -> None:
    started = g.get("metrics_started")
    if started is None:
        return
    rule = request.url_rule.rule if request.url_rule is not None else None
    services().metrics.request_done(rule, request.method, response.status_code, time.perf_counter() - started)


@blueprint.record_once
def _connect(state: Any) -> None:
    """Time the requests of the app this blueprint is registered on (only that app's)."""
    request_started.connect(_started, state.app)
    request_finished.connect(_finished, state.app)
