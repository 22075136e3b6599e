"""The framework's own floor for ``bench/http.py``: a bare quart-trio app on the same Hypercorn.

One route, ``GET /api/auth/me``, answering a fixed JSON body shaped like meet's (no session,
no middleware, no logging, no metrics), served the way meet serves: ``hypercorn.trio.serve``
(the trio worker) in one process, no Server header, no access log. ``bench/http.py`` starts it
beside meet and drives both with the same client, so the ratio of the two rates is what
meet's own code costs on top of Quart and Hypercorn.

    python bench/bare_app.py --port 8001
"""

from __future__ import annotations

import os
import sys

# Its folder holds bench/http.py, which would shadow the stdlib ``http`` that Hypercorn imports.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or os.curdir) != _HERE]

import argparse
import logging

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, jsonify
from quart_trio import QuartTrio

USER = {
    "id": 1,
    "username": "bench0",
    "email": "bench0@example.org",
    "verified": True,
    "is_admin": False,
    "created_at": 1_800_000_000.0,
}

app = QuartTrio("bare")


@app.get("/api/auth/me")
async def me() -> Response:
    """What meet answers, without looking anything up."""
    return jsonify({"user": USER})


@app.get("/api/health")
async def health() -> Response:
    return jsonify({"status": "ok"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    config = Config()
    config.bind = [f"{args.host}:{args.port}"]
    config.include_server_header = False  # as meet
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 2.0
    trio.run(serve, app, config)


if __name__ == "__main__":
    main()
