"""``/static/``: paths that try to leave web/ never return a file, sent as raw request targets.

httpx (like browsers) folds ``..`` before sending, so a test through it would ask for
``/pyproject.toml`` and prove nothing; here the bytes go over a socket exactly as written.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest
import trio

from meet.server import RunningServer
from meet.views.pages import WEB_DIR

ROOT = WEB_DIR.parent  # the repository (or site-packages/meet in a wheel): files outside web/
SECRET_FILES = {"pyproject.toml": "[build-system]", "meet.toml": "[server]"}
ABSOLUTE = quote(str(ROOT / "pyproject.toml"))  # an absolute path to a real file, e.g. /work/main/…

ESCAPES = [
    "/static/../pyproject.toml",
    "/static/js/../../pyproject.toml",
    "/static/%2e%2e/pyproject.toml",
    "/static/%2E%2E/meet.toml",
    "/static/..%2fpyproject.toml",
    "/static/%2e%2e%2fpyproject.toml",
    "/static/%2e%2e%2fmeet.toml",
    "/static/css/%2e%2e%2f%2e%2e%2fpyproject.toml",
    "/static/..%5cpyproject.toml",
    "/static/%2e%2e%5cmeet.toml",
    "/static/css%5c..%5c..%5cpyproject.toml",
    "/static/..\\pyproject.toml",
    "/static/%252e%252e/pyproject.toml",  # double-encoded
    "/static/..%00/pyproject.toml",
    "/static//etc/passwd",
    "/static/%2fetc/passwd",
    "/static/%2Fetc%2Fpasswd",
    f"/static/{ABSOLUTE}",
    f"/static/{ABSOLUTE.replace('/', '%2f')}",
    "/static/templates/../../pyproject.toml",
]


async def raw_get(server: RunningServer, target: str) -> tuple[int, bytes]:
    """GET ``target`` byte for byte on a fresh connection; (status, whole response)."""
    url = urlsplit(server.url)
    assert url.hostname is not None and url.port is not None
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(url.hostname, url.port)
        async with stream:
            request = f"GET {target} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n"
            await stream.send_all(request.encode("latin-1"))
            response = b""
            while chunk := await stream.receive_some(65536):
                response += chunk
    status_line = response.split(b"\r\n", 1)[0]
    return int(status_line.split()[1]), response


async def test_a_stylesheet_is_served(server: RunningServer) -> None:
    status, response = await raw_get(server, "/static/css/app.css")
    assert status == 200
    assert (WEB_DIR / "css" / "app.css").read_bytes()[:200] in response


@pytest.mark.parametrize("target", ESCAPES)
async def test_no_path_leaves_the_web_folder(server: RunningServer, target: str) -> None:
    status, response = await raw_get(server, target)
    assert status in (400, 404), (target, response[:300])
    assert b"root:" not in response
    for name, marker in SECRET_FILES.items():
        if (ROOT / name).is_file():
            assert marker.encode() not in response, (target, name)


async def test_templates_are_not_static_files(server: RunningServer) -> None:
    """The Jinja sources are rendered at their page's URL, not served raw."""
    status, response = await raw_get(server, "/static/templates/layout.html")
    assert status == 404 and b"{% block" not in response
