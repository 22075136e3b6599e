"""The HTML pages and static files under ``web/``.

Pages are static files; they talk to the JSON API from ES modules. The server only decides
redirects that depend on the session (``/``, ``/dashboard``) and handles the one-click
verification link.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from quart import Blueprint, Response, redirect, request, send_from_directory
from werkzeug.wrappers.response import Response as WerkzeugResponse

from meet.views.context import current_session, services

blueprint = Blueprint("pages", __name__)


def find_web_dir() -> Path:
    """``meet/web`` in an installed wheel, else the repository's ``web/``."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "web", package.parent / "web"):
        if (candidate / "signin.html").is_file():
            return candidate
    raise RuntimeError("meet's web/ folder is missing from this installation")


WEB_DIR = find_web_dir()
PAGES = ("signin", "signup", "forgot", "reset", "verify-done")


async def _page(name: str) -> Response:
    response = await send_from_directory(WEB_DIR, f"{name}.html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@blueprint.get("/")
async def index() -> WerkzeugResponse:
    """Signed-in people go to their dashboard, everyone else to sign in."""
    target = "/dashboard" if await current_session() else "/signin"
    return redirect(target)


@blueprint.get("/dashboard")
async def dashboard() -> Response | WerkzeugResponse:
    if await current_session() is None:
        return redirect("/signin?next=/dashboard")
    return await _page("dashboard")


@blueprint.get("/r/<code>")
async def call(code: str) -> Response | WerkzeugResponse:
    """The shareable meeting link; signed-out visitors sign in and come back."""
    if await current_session() is None:
        return redirect(f"/signin?next=/r/{quote(code[:32])}")
    return await _page("call")


@blueprint.get("/verify")
async def verify() -> Response | WerkzeugResponse:
    """With ``?token=`` (the mail's link) verify at once; without, the code-entry page."""
    token = request.args.get("token")
    if token is None:
        return await _page("verify")
    user = await services().accounts.verify_link(token[:512])
    return redirect(f"/verify-done?status={'ok' if user else 'invalid'}")


def _static_page(name: str) -> None:
    async def view() -> Response:
        return await _page(name)

    blueprint.add_url_rule(f"/{name}", f"page_{name}", view, methods=["GET"])


for _name in PAGES:
    _static_page(_name)


@blueprint.get("/static/<path:path>")
async def static(path: str) -> Response:
    """CSS, ES modules and images; ``send_from_directory`` refuses paths outside web/."""
    response = await send_from_directory(WEB_DIR, path)
    response.headers["Cache-Control"] = "no-cache"
    return response
