"""[log]: JSON lines with a request id (also the X-Request-Id header), the access log, and no
secret, code, token, password or cookie value in anything logged."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import PASSWORD, Outbox, make_config
from wsclient import connect, user_ws_url

from meet.clock import FakeClock
from meet.config import config_from_mapping
from meet.config.sections import LogConfig
from meet.errors import ConfigError
from meet.logs import setup_logging
from meet.server import RunningServer, open_server

NEW_PASSWORD = "another fine passphrase"
CLIENT_LOGGERS = ("httpx", "httpcore", "trio-websocket", "trio_websocket", "wsproto")


class Captured:
    """The JSON log output, and an event per access line of a WebSocket (logged when it ends)."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.ws_logged = trio.Event()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line["logger"] == "meet.access"]


class _WsSignal(logging.Handler):
    def __init__(self, event: trio.Event) -> None:
        super().__init__()
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "meet.access" and getattr(record, "method", "") == "WS":
            self.event.set()


@pytest.fixture
def captured() -> Iterator[Captured]:
    root = logging.getLogger()
    level = root.level
    out = Captured()
    handler = setup_logging(LogConfig(format="json", level="debug"), out.stream)
    # the test's own HTTP and WebSocket clients log in this process too (headers, URLs): not the server's output
    handler.addFilter(lambda record: not record.name.startswith(CLIENT_LOGGERS))
    signal = _WsSignal(out.ws_logged)
    root.addHandler(signal)
    yield out
    root.removeHandler(handler)
    root.removeHandler(signal)
    root.setLevel(level)


def _token(link: str) -> str:
    match = re.search(r"token=([^&\s]+)", link)
    assert match, link
    return match.group(1)


async def test_account_flows_log_json_with_request_ids_and_no_secrets(
    server: RunningServer, client: httpx.AsyncClient, outbox: Outbox, captured: Captured
) -> None:
    mail = "alice@example.org"
    secrets: list[str] = [PASSWORD, NEW_PASSWORD]
    ids: dict[str, str] = {}  # request id -> path, from the X-Request-Id response headers

    async def call(method: str, url: str, **kw: Any) -> httpx.Response:
        r = await client.request(method, url, **kw)
        ids[r.headers["X-Request-Id"]] = url.split("?")[0]
        return r

    r = await call("POST", "/api/auth/signup", json={"username": "alice", "email": mail, "password": PASSWORD})
    assert r.status_code == 201
    code = outbox.code(mail)
    verify_token = _token(outbox.link(mail))
    secrets += [code, verify_token]
    assert (await call("POST", "/api/auth/verify", json={"email": mail, "code": code})).status_code == 200
    assert (await call("GET", f"/verify?token={verify_token}")).status_code < 400  # the link, spent or not
    r = await call("POST", "/api/auth/login", json={"login": "alice", "password": PASSWORD})
    session = r.json()["token"]
    secrets += [session, r.cookies["meet_session"]]
    assert (await call("GET", "/api/auth/me")).status_code == 200  # the cookie rides along
    async with connect(user_ws_url(server.url), session) as ws:
        headers = {bytes(k).lower(): bytes(v).decode() for k, v in ws.conn.handshake_headers}
        assert re.fullmatch(r"[0-9a-f]{16}", headers[b"x-request-id"])
    assert (await call("POST", "/api/auth/forgot", json={"email": mail})).status_code == 202
    reset_token = _token(outbox.link(mail))
    secrets.append(reset_token)
    assert (await call("GET", f"/reset?token={reset_token}")).status_code < 400
    r = await call("POST", "/api/auth/reset", json={"token": reset_token, "password": NEW_PASSWORD})
    assert r.status_code == 200
    r = await call("POST", "/api/auth/login", json={"login": mail, "password": NEW_PASSWORD})
    secrets.append(r.json()["token"])
    # a forged id from a client with no trusted proxy in front is not taken
    r = await call("GET", "/api/health", headers={"X-Request-Id": "forged-id"})
    assert r.headers["X-Request-Id"] != "forged-id"
    with trio.fail_after(5):
        await captured.ws_logged.wait()

    output = captured.stream.getvalue()
    for secret in secrets:
        assert secret not in output
    lines = captured.lines()  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    access = {line["request_id"]: line for line in captured.access() if line["method"] != "WS"}
    assert set(ids) <= set(access)
    for rid, path in ids.items():
        line = access[rid]
        assert line["path"] == path and line["client"] == "127.0.0.1"
        assert line["user_agent"].startswith("python-httpx") and line["bytes"] > 0
    assert access[next(r for r, p in ids.items() if p == "/reset")]["status"] == 200
    ws_line = next(line for line in captured.access() if line["method"] == "WS")
    assert ws_line["path"] == "/api/ws" and ws_line["status"] == 101


async def test_lines_logged_while_handling_carry_its_request_id(
    server: RunningServer, client: httpx.AsyncClient, captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import make_user

    alice = await make_user(client, Outbox(server.services.config.outbox_dir), "alice")

    async def broken(*args: Any) -> Any:
        raise RuntimeError("the history broke")

    monkeypatch.setattr(server.services.history, "calls", broken)
    r = await client.get("/api/calls", headers=alice.auth)
    assert r.status_code == 500
    rid = r.headers["X-Request-Id"]
    errors = [line for line in captured.lines() if line["level"] == "ERROR"]
    assert len(errors) == 1 and errors[0]["request_id"] == rid  # logged inside the app's own task
    assert "RuntimeError: the history broke" in errors[0]["exception"]
    assert [line["status"] for line in captured.access() if line.get("request_id") == rid] == [500]


async def test_behind_a_trusted_proxy_id_and_address_come_from_it(
    tmp_path: Path, clock: FakeClock, captured: Captured
) -> None:
    config = make_config(tmp_path, server={"proxy_hops": 1, "public_url": "http://meet.example.org"})
    async with open_server(config, clock=clock) as running, httpx.AsyncClient(base_url=running.url) as c:
        proxied = {"X-Forwarded-For": "203.0.113.9", "X-Request-Id": "nginx-4f2a.77"}
        r = await c.get("/api/health?probe=1", headers=proxied)
        assert r.headers["X-Request-Id"] == "nginx-4f2a.77"
        r = await c.get("/api/health", headers={**proxied, "X-Request-Id": "bad id\" with quotes"})
        made = r.headers["X-Request-Id"]
        assert re.fullmatch(r"[0-9a-f]{16}", made)
    lines = {line["request_id"]: line for line in captured.access()}
    assert lines["nginx-4f2a.77"]["client"] == "203.0.113.9"
    assert lines["nginx-4f2a.77"]["path"] == "/api/health"  # without the query string
    assert made in lines


def test_text_format_and_bad_settings() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = setup_logging(LogConfig(format="text", level="warning"), stream)
    try:
        logging.getLogger("meet.test").info("quiet")
        logging.getLogger("meet.test").warning("loud")
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    assert stream.getvalue().endswith("WARNING meet.test: loud\n") and "quiet" not in stream.getvalue()
    for section in ({"format": "xml"}, {"level": "verbose"}):
        with pytest.raises(ConfigError, match=r"\[log\]"):
            config_from_mapping({"log": section}, env={})


def test_meet_serve_writes_json_lines_and_a_second_server_on_its_data_refuses(tmp_path: Path) -> None:
    """The real command: [log] from the environment, JSON lines on stderr, the data folder lock."""
    import signal
    import subprocess
    import sys

    import httpx as sync_httpx
    from test_cli import FAST_CONFIG, clean_env, free_port, wait_until_healthy

    # no relay: its worker processes write their own lines (and would cost a second of CPU here)
    (tmp_path / "meet.toml").write_text(FAST_CONFIG + '\n[rtc]\nrelay = "off"\n')
    env = clean_env(MEET_LOG__FORMAT='"json"')
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    err = tmp_path / "serve.err"
    command = [sys.executable, "-m", "meet", "serve", "--config", str(tmp_path / "meet.toml")]
    with err.open("wb") as stderr:
        proc = subprocess.Popen([*command, "--port", str(port)], cwd=tmp_path, env=env, stderr=stderr)
    try:
        wait_until_healthy(proc, url, err)
        rid = sync_httpx.get(f"{url}/api/ready?x=1", timeout=5).headers["X-Request-Id"]
        second = subprocess.run(
            [*command, "--port", str(free_port())], check=False, cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=30,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert second.returncode == 1 and "a meet server is running on" in second.stderr
    lines = [json.loads(line) for line in err.read_text().splitlines()]
    assert any(line["message"] == f"meet is listening on {url}" for line in lines)
    ready = [line for line in lines if line.get("request_id") == rid]
    assert [(line["logger"], line["path"], line["status"]) for line in ready] == [("meet.access", "/api/ready", 200)]
