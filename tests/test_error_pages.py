"""Error pages for people: a 404 or 405 outside /api/ is web/templates/error.html on the site layout
(header, theme toggle, links back); under /api/ it stays the JSON error shape."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from browser import TIMEOUT_MS, run_scenario
from conftest import PASSWORD, Outbox, login, signup_verified

from meet.server import RunningServer


class Tree(HTMLParser):
    """Start tags with their attributes, the ids of their open ancestors, and the text of <h1>."""

    VOID = frozenset({"meta", "link", "br", "img", "input", "hr", "source", "path", "rect", "circle"})

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None], list[str]]] = []
        self.open: list[tuple[str, str]] = []
        self.headings: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        self.tags.append((tag, found, [i for _, i in self.open if i]))
        if tag not in self.VOID:
            self.open.append((tag, found.get("id") or ""))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs), [i for _, i in self.open if i]))

    def handle_endtag(self, tag: str) -> None:
        if any(t == tag for t, _ in self.open):  # tolerate stray end tags
            while self.open.pop()[0] != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self.open and self.open[-1][0] == "h1":
            self.headings.append(data.strip())

    def find(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a, _ in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    def ancestors(self, tag: str, **attrs: str) -> list[str]:
        """The ids around the first matching tag."""
        return next(up for t, a, up in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items()))


def parse(html: str) -> Tree:
    tree = Tree()
    tree.feed(html)
    return tree


def assert_error_page(r: httpx.Response, status: int, heading: str) -> Tree:
    """The layout (head, header with the theme toggle, skip link, main), once each, and no page script."""
    assert r.status_code == status
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.text.startswith("<!doctype html>") and "{%" not in r.text and "{{" not in r.text
    tree = parse(r.text)
    assert f"<title>{heading} · meet</title>" in r.text
    assert tree.headings == [heading]
    assert len(tree.find("script", src="/static/js/theme.js")) == 1
    assert len(tree.find("script")) == 1, "only the theme script: no page module, nothing inline"
    assert not tree.find("style") and not [a for _, a, _ in tree.tags if "style" in a]
    assert len(tree.find("link", rel="stylesheet", href="/static/css/app.css")) == 1
    assert len(tree.find("header", **{"class": "site-header"})) == 1
    assert len(tree.find("button", id="theme-toggle")) == 1
    assert len(tree.find("a", **{"class": "skip-link", "href": "#main"})) == 1
    assert len(tree.find("main", id="main")) == 1
    assert tree.find("body", **{"class": "auth"})
    assert tree.find("a", **{"class": "brand", "href": "/"})
    assert tree.find("a", href="/dashboard") and tree.find("a", href="/signin")
    return tree


async def test_unknown_page_is_a_404_on_the_layout(client: httpx.AsyncClient) -> None:
    r = await client.get("/no-such-page")
    assert_error_page(r, 404, "Page not found")
    assert "<code>/no-such-page</code>" in r.text


async def test_the_path_shown_is_escaped(client: httpx.AsyncClient) -> None:
    r = await client.get("/<script>alert(1)</script>")
    assert_error_page(r, 404, "Page not found")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text and "<script>alert" not in r.text


async def test_unknown_static_file_is_the_html_404(client: httpx.AsyncClient) -> None:
    assert_error_page(await client.get("/static/js/pages/nope.js"), 404, "Page not found")


async def test_wrong_method_on_a_page_is_a_405_on_the_layout(client: httpx.AsyncClient) -> None:
    r = await client.post("/signin", data={"login": "alice"})
    assert_error_page(r, 405, "Can’t open this page that way")
    assert "does not accept a POST request" in r.text
    assert {m.strip() for m in r.headers["allow"].split(",")} >= {"GET", "HEAD"}


async def test_api_errors_stay_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/nope")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == "not_found"
    r = await client.put("/api/auth/reset", json={})
    assert r.status_code == 405 and r.headers["content-type"] == "application/json"
    assert r.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in r.headers["allow"]


async def test_pages_still_load_their_own_script(client: httpx.AsyncClient) -> None:
    """The layout's page script became optional: the pages that have one still get it."""
    tree = parse((await client.get("/signin")).text)
    assert tree.find("script", type="module", src="/static/js/pages/signin.js")


async def test_call_end_states_keep_the_header(client: httpx.AsyncClient, outbox: Outbox) -> None:
    """'Meeting not found' (#join-error) and the other end states hide #prejoin: the header with the
    theme toggle must sit outside it, directly in the page root, so it shows in every state."""
    await signup_verified(client, outbox)
    await login(client)
    r = await client.get("/r/abc-defg-hij")
    assert r.status_code == 200
    tree = parse(r.text)
    assert len(tree.find("header", **{"class": "site-header"})) == 1
    assert tree.ancestors("header", **{"class": "site-header"}) == ["main"]
    assert tree.ancestors("button", id="theme-toggle") == ["main"]
    for state in ("join-error", "ended", "kicked"):
        assert tree.ancestors("section", id=state) == ["main"], state
    assert "Back to dashboard" in r.text


@pytest.mark.browser
async def test_error_pages_in_chromium(server: RunningServer, client: httpx.AsyncClient, outbox: Outbox) -> None:
    """In a real browser: the 404 page's theme toggle works under the CSP, and the call page's
    'Meeting not found' state shows the header with its theme toggle."""
    await signup_verified(client, outbox)
    shots = os.environ.get("MEET_SCREENSHOTS")  # a folder: save what the page looks like

    def scenario(browser: Any) -> dict[str, Any]:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        problems: list[str] = []
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)

        page.goto(server.url + "/no-such-page")
        before = page.get_attribute("html", "data-theme")
        page.click("#theme-toggle")
        after = page.get_attribute("html", "data-theme")
        if shots:
            page.screenshot(path=f"{shots}/error-404.png")

        assert page.request.post(server.url + "/api/auth/login", data={"login": "alice", "password": PASSWORD}).ok
        page.goto(server.url + "/r/zzz-zzzz-zzz")
        page.locator("#join-error").wait_for(state="visible")
        if shots:
            page.screenshot(path=f"{shots}/call-not-found.png")
        return {
            "themes": (before, after),
            "title": page.inner_text("#join-error-title"),
            "toggle_visible": page.is_visible("#theme-toggle"),
            "brand_visible": page.is_visible(".site-header .brand"),
            # the 404 itself is logged by Chromium as a failed resource load: that is expected
            "problems": [p for p in problems if "404" not in p],
        }

    result = await run_scenario(scenario)
    assert set(result["themes"]) == {"light", "dark"}, result["themes"]
    assert result["title"] == "Meeting not found"
    assert result["toggle_visible"] and result["brand_visible"]
    assert result["problems"] == []
