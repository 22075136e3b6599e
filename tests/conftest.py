"""Shared fixtures: a real Hypercorn server on a loopback port, SQLite in a temp dir,
the file mail backend, a fake clock, and an HTTP client."""

from __future__ import annotations

import email
import email.policy
import re
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from meet.clock import FakeClock
from meet.config import Config, config_from_mapping
from meet.server import RunningServer, open_server

PASSWORD = "correct horse battery"


def make_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """Test settings: port 0, fast argon2, file mail; ``sections`` override per test."""
    data: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": 0, "graceful_timeout": 1.0},
        "storage": {"data_dir": str(tmp_path / "data")},
        "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 64, "argon2_parallelism": 1},
        "mail": {"backend": "file"},
        # Mesh only unless a test asks for the relay: a relay worker process per test server
        # would cost a second of CPU each.
        "rtc": {"relay": "off", "mesh_limit": 16},
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_from_mapping(data, base_dir=tmp_path, env={})


@dataclass
class Outbox:
    """Reads the file mail backend's folder."""

    folder: Path

    def messages(self) -> list[email.message.EmailMessage]:
        if not self.folder.is_dir():
            return []
        files = sorted(p for p in self.folder.iterdir() if p.suffix == ".eml")
        return [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)  # type: ignore[misc]
            for p in files
        ]

    def last(self, to: str) -> email.message.EmailMessage:
        mails = [m for m in self.messages() if m["To"] == to]
        assert mails, f"no mail to {to}"
        return mails[-1]

    def code(self, to: str) -> str:
        match = re.search(r"code is (\d{6})", self.last(to).get_content())
        assert match
        return match.group(1)

    def link(self, to: str) -> str:
        match = re.search(r"(http://\S+)", self.last(to).get_content())
        assert match
        return match.group(1)


@pytest.fixture
def clock() -> FakeClock:
    import time

    return FakeClock(time.time())


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return make_config(tmp_path)


@pytest.fixture
async def server(config: Config, clock: FakeClock) -> AsyncIterator[RunningServer]:
    async with open_server(config, clock=clock) as running:
        yield running


@pytest.fixture
def outbox(config: Config) -> Outbox:
    return Outbox(config.outbox_dir)


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    # verify=False: plain http on loopback, and building an SSL context costs ~40 ms per client.
    async with httpx.AsyncClient(base_url=server.url, timeout=10, verify=False) as c:
        yield c


@pytest.fixture
def new_client(server: RunningServer) -> Callable[[], httpx.AsyncClient]:
    """Make more independent clients (own cookie jars); close them with ``async with``."""
    return lambda: httpx.AsyncClient(base_url=server.url, timeout=10, verify=False)


async def signup_verified(
    client: httpx.AsyncClient, outbox: Outbox, username: str = "alice", mail: str = "alice@example.org"
) -> dict[str, Any]:
    """Sign up and verify with the mailed code; returns the user."""
    r = await client.post("/api/auth/signup", json={"username": username, "email": mail, "password": PASSWORD})
    assert r.status_code == 201, r.text
    r = await client.post("/api/auth/verify", json={"email": mail, "code": outbox.code(mail)})
    assert r.status_code == 200, r.text
    return r.json()["user"]  # type: ignore[no-any-return]


async def login(client: httpx.AsyncClient, login: str = "alice", password: str = PASSWORD) -> str:
    r = await client.post("/api/auth/login", json={"login": login, "password": password})
    assert r.status_code == 200, r.text
    return r.json()["token"]  # type: ignore[no-any-return]


@dataclass
class User:
    """A signed-in test user and their bearer token."""

    id: int
    username: str
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_user(client: httpx.AsyncClient, outbox: Outbox, name: str) -> User:
    user = await signup_verified(client, outbox, name, f"{name}@example.org")
    return User(user["id"], name, await login(client, name))


async def make_room(client: httpx.AsyncClient, host: User, **body: Any) -> str:
    r = await client.post("/api/rooms", json={"title": "Standup", **body}, headers=host.auth)
    assert r.status_code == 201, r.text
    return r.json()["room"]["code"]  # type: ignore[no-any-return]


@pytest.fixture
async def alice(client: httpx.AsyncClient, outbox: Outbox) -> User:
    return await make_user(client, outbox, "alice")


@pytest.fixture
async def bob(client: httpx.AsyncClient, outbox: Outbox) -> User:
    return await make_user(client, outbox, "bob")


@pytest.fixture
async def carol(client: httpx.AsyncClient, outbox: Outbox) -> User:
    return await make_user(client, outbox, "carol")


async def run_cli(tmp_path: Path, *args: str, stdin: bytes = b"") -> None:
    """``meet`` in another process, on the server's database file."""
    config = tmp_path / "cli.toml"
    config.write_text(
        '[storage]\ndata_dir = "data"\n\n[auth]\nargon2_time_cost = 1\nargon2_memory_kib = 64\nargon2_parallelism = 1\n'
    )
    done = await trio.run_process(
        [sys.executable, "-m", "meet", *args, "--config", str(config)],
        stdin=stdin, capture_stdout=True, capture_stderr=True, check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
