"""The HTML pages: each is its own Jinja template on the one layout (web/templates/layout.html)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest
from conftest import Outbox, login, signup_verified

SIGNED_OUT = ["signin", "signup", "forgot", "reset", "verify", "verify-done"]


class Tags(HTMLParser):
    """The start tags of a document, with their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]


def parse(html: str) -> Tags:
    tags = Tags()
    tags.feed(html)
    return tags


def assert_layout(r: httpx.Response, page: str) -> Tags:
    """The layout's head and header, each once, and the page's own ES module."""
    assert r.status_code == 200, page
    assert r.headers["content-type"].startswith("text/html"), page
    assert r.headers["cache-control"] == "no-cache"
    assert r.text.startswith("<!doctype html>") and "{%" not in r.text and "{{" not in r.text
    tags = parse(r.text)
    assert len(tags.find("script", src="/static/js/theme.js")) == 1, page
    assert len(tags.find("link", rel="stylesheet", href="/static/css/app.css")) == 1, page
    assert len(tags.find("script", type="module", src=f"/static/js/pages/{page}.js")) == 1, page
    assert len(tags.find("script")) == 2, "no other (inline) script: the CSP allows only 'self'"
    assert not tags.find("style") and not [a for _, a in tags.tags if "style" in a], page
    assert len(tags.find("button", id="theme-toggle")) == 1, page
    assert len(tags.find("a", **{"class": "brand"})) == 1, page
    assert len(tags.find("a", **{"class": "skip-link"})) == 1, page
    assert len([a for _, a in tags.tags if a.get("id") == "main"]) == 1, page
    assert re.search(r"<title>[^<·]+ · meet</title>", r.text), page
    return tags


@pytest.mark.parametrize("page", SIGNED_OUT)
async def test_signed_out_pages_render_on_the_layout(client: httpx.AsyncClient, page: str) -> None:
    tags = assert_layout(await client.get(f"/{page}"), page)
    assert tags.find("body", **{"class": "auth"}) and tags.find("main", id="main", **{"class": "auth-main"})
    assert tags.find("a", **{"class": "brand", "href": "/signin"})
    assert tags.find("footer", **{"class": "site-footer"})


async def test_signed_in_pages_render_on_the_layout(client: httpx.AsyncClient, outbox: Outbox) -> None:
    await signup_verified(client, outbox)
    await login(client)
    dashboard = assert_layout(await client.get("/dashboard"), "dashboard")
    assert dashboard.find("body", **{"class": "app"}) and dashboard.find("header", **{"class": "topbar"})
    assert dashboard.find("a", **{"class": "brand", "href": "/dashboard"})
    call = assert_layout(await client.get("/r/abc-defg-hij"), "call")
    assert call.find("body", **{"class": "call-page"})
    assert call.find("link", rel="stylesheet", href="/static/css/call.css")
    assert call.find("meta", name="viewport", content="width=device-width, initial-scale=1, viewport-fit=cover")
    assert call.find("a", **{"class": "brand", "href": "/dashboard"})


async def test_page_forms_keep_the_ids_their_scripts_use(client: httpx.AsyncClient) -> None:
    """Spot checks of what web/js/pages/*.js look up."""
    expected = {
        "signin": ["signin-form", "signin-login", "signin-password", "signin-notice", "signup-link"],
        "signup": ["signup-form", "signup-username", "signup-email", "signup-password"],
        "forgot": ["forgot-form", "forgot-email"],
        "reset": ["reset-form", "reset-password"],
        "verify": ["verify-form", "verify-email", "verify-code", "resend-form", "resend-email"],
        "verify-done": ["verify-done-ok", "verify-done-invalid"],
    }
    for page, ids in expected.items():
        found = {a.get("id") for _, a in parse((await client.get(f"/{page}")).text).tags}
        assert set(ids) <= found, (page, set(ids) - found)
