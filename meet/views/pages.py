"""The HTML pages and static files under ``web/``.

Pages are Jinja templates in ``web/templates/``: one layout (head, theme, the page's ES module) and
one template per page, rendered without per-request data — the pages talk to the JSON API from
their ES modules. The server only decides redirects that depend on the session (``/``,
``/dashboard``) and handles the one-click verification link.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, redirect, render_template, request, send_from_directory
from werkzeug.exceptions import NotFound
from werkzeug.wrappers.response import Response as WerkzeugResponse

from meet.views.context import current_session, services


def find_web_dir() -> Path:
    """``meet/web`` in an installed wheel, else the repository's ``web/``."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "web", package.parent / "web"):
        if (candidate / "templates" / "layout.html").is_file():
            return candidate
    raise RuntimeError("meet's web/ folder is missing from this installation")


WEB_DIR = find_web_dir()
blueprint = Blueprint("pages", __name__, template_folder=str(WEB_DIR / "templates"))
PAGES = ("signin", "signup", "forgot", "reset", "verify-done")


async def _page(name: str) -> Response:
    """``web/templates/<name>.html``; ``page`` names its script, ``/static/js/pages/<name>.js``."""
    response = Response(await render_template(f"{name}.html", page=name), mimetype="text/html")
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
    """The shareable meeting link: signed-out visitors see the meeting and may join as a guest
    (or sign in and come back)."""
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


STATIC_FOLDERS = frozenset({"css", "js", "img"})  # not templates/: those are rendered at their URL


# merge_slashes=False: `/static//etc/passwd` is a 404 like any other bad path, not a redirect.
@blueprint.get("/static/<path:path>", merge_slashes=False)
async def static(path: str) -> Response:
    """CSS, ES modules and images; ``send_from_directory`` refuses paths outside web/."""
    if path.split("/", 1)[0] not in STATIC_FOLDERS:
        raise NotFound()
    response = await send_from_directory(WEB_DIR, path)
    response.headers["Cache-Control"] = "no-cache"
    return response
