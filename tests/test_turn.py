"""Short-lived TURN credentials (coturn's shared-secret scheme), down to a real coturn.

The unit tests pin the credential format against a value computed outside Python
(``printf %s 1800003600:42 | openssl dgst -sha1 -hmac s3cret-s3cret -binary | base64``).
The server tests check that ``POST /api/rooms/{code}/join`` and the ``welcome`` carry the
entry when ``[rtc] turn_urls`` is set, and only then. The last tests start Debian's
``turnserver`` on a free loopback port and perform real TURN Allocates (RFC 5766) with a
tiny STUN client over a blocking UDP socket: meet's credentials are accepted, wrong or
expired ones refused. Every wait is bounded (socket timeouts, a readiness deadline).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import random
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio
from conftest import Outbox, make_config
from wsclient import join, make_room, make_user

from meet.clock import FakeClock
from meet.config import RtcConfig
from meet.server import RunningServer, open_server
from meet.turn import IceServers, turn_password, turn_server, turn_username

SECRET = "s3cret-s3cret"
TURN_URL = "turn:127.0.0.1:3478"
STUN = {"urls": ["stun:stun.example.org:3478"]}

# -- the credential format ----------------------------------------------------------------


def test_credential_matches_an_independently_computed_hmac() -> None:
    entry = turn_server([TURN_URL], SECRET, 3600, 42, 1_800_000_000.75)
    assert entry == {
        "urls": [TURN_URL],
        "username": "1800003600:42",
        # printf %s 1800003600:42 | openssl dgst -sha1 -hmac s3cret-s3cret -binary | base64
        "credential": "NCxL9cfGjDJjRl67H8KB1txMxgg=",
    }
    assert turn_password(SECRET, "1800003600:42") == entry["credential"]


def test_username_is_expiry_then_user_id() -> None:
    now = time.time()
    expiry, user_id = turn_username(7, now, 600).split(":")
    assert (int(expiry), user_id) == (int(now) + 600, "7")


def test_ice_servers_adds_fresh_turn_credentials_per_user() -> None:
    clock = FakeClock(1_800_000_000.0)
    rtc = RtcConfig(ice_servers=(), turn_urls=(TURN_URL, "turns:t.example:5349"), turn_secret=SECRET, turn_ttl=120)
    ice = IceServers(rtc, clock)
    [entry] = ice.for_user(5)
    assert entry["urls"] == [TURN_URL, "turns:t.example:5349"]
    assert entry["username"] == "1800000120:5"
    expected = base64.b64encode(hmac.new(SECRET.encode(), b"1800000120:5", hashlib.sha1).digest()).decode()
    assert entry["credential"] == expected
    clock.advance(30)
    assert ice.for_user(5)[0]["username"] == "1800000150:5"  # minted at each call
    assert ice.for_user(6)[0]["username"] == "1800000150:6"


def test_no_turn_entry_without_turn_urls() -> None:
    ice = IceServers(RtcConfig(), FakeClock())
    assert ice.for_user(1) == []


# -- what the server hands out ------------------------------------------------------------


async def join_and_welcome(config: Any, clock: FakeClock) -> tuple[int, list[Any], list[Any]]:
    """Alice's user id, and the ice_servers of her join response and of her welcome."""
    async with open_server(config, clock=clock) as server, http_client(server) as client:
        alice = await make_user(client, Outbox(config.outbox_dir), "alice")
        code = await make_room(client, alice)
        r = await client.post(f"/api/rooms/{code}/join", headers=alice.auth)
        assert r.status_code == 200, r.text
        async with join(server.url, code, alice.token) as (_, welcome):
            return alice.id, r.json()["ice_servers"], welcome["ice_servers"]


def http_client(server: RunningServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, timeout=10, verify=False)


async def test_join_and_welcome_carry_a_turn_entry_when_configured(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, rtc={"ice_servers": [STUN], "turn_urls": [TURN_URL], "turn_secret": SECRET})
    user_id, joined, welcomed = await join_and_welcome(config, clock)
    username = f"{int(clock.now()) + 3600}:{user_id}"  # the default turn_ttl
    expected = [STUN, {"urls": [TURN_URL], "username": username, "credential": turn_password(SECRET, username)}]
    assert joined == expected
    assert welcomed == expected


async def test_join_and_welcome_have_no_turn_entry_otherwise(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(tmp_path, rtc={"ice_servers": [STUN]})
    _, joined, welcomed = await join_and_welcome(config, clock)
    assert joined == welcomed == [STUN]


# -- a tiny STUN/TURN client (RFC 5389 / RFC 5766) ----------------------------------------

MAGIC = 0x2112A442
BINDING, ALLOCATE = 0x0001, 0x0003
SUCCESS, ERROR = 0x0100, 0x0110
USERNAME, MESSAGE_INTEGRITY, ERROR_CODE = 0x0006, 0x0008, 0x0009
REALM, NONCE, XOR_RELAYED_ADDRESS, REQUESTED_TRANSPORT = 0x0014, 0x0015, 0x0016, 0x0019
UDP = b"\x11\x00\x00\x00"  # REQUESTED-TRANSPORT: protocol 17, three bytes RFFU


def _attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("!HH", kind, len(value)) + value + b"\x00" * (-len(value) % 4)


def stun_message(method: int, attributes: list[tuple[int, bytes]], key: bytes | None = None) -> bytes:
    """A request; with ``key``, signed with MESSAGE-INTEGRITY (HMAC-SHA1 up to that attribute)."""
    body = b"".join(_attribute(kind, value) for kind, value in attributes)
    txid = os.urandom(12)
    if key is None:
        return struct.pack("!HHI12s", method, len(body), MAGIC, txid) + body
    head = struct.pack("!HHI12s", method, len(body) + 24, MAGIC, txid)
    return head + body + _attribute(MESSAGE_INTEGRITY, hmac.new(key, head + body, hashlib.sha1).digest())


@dataclass
class Response:
    kind: int
    raw: bytes
    attributes: dict[int, tuple[bytes, int]] = field(default_factory=dict)  # type -> (value, offset)

    @property
    def error(self) -> int | None:
        if ERROR_CODE not in self.attributes:
            return None
        value = self.attributes[ERROR_CODE][0]
        return (value[2] & 7) * 100 + value[3]

    def text(self, kind: int) -> str:
        return self.attributes[kind][0].decode()

    def relayed(self) -> tuple[str, int]:
        value = self.attributes[XOR_RELAYED_ADDRESS][0]
        assert value[1] == 1, "expected an IPv4 relayed address"
        port = struct.unpack("!H", value[2:4])[0] ^ (MAGIC >> 16)
        address = struct.unpack("!I", value[4:8])[0] ^ MAGIC
        return socket.inet_ntoa(struct.pack("!I", address)), port

    def integrity_ok(self, key: bytes) -> bool:
        """The server signed this with the same long-term key (RFC 5389 15.4)."""
        value, offset = self.attributes[MESSAGE_INTEGRITY]
        head = self.raw[:2] + struct.pack("!H", offset + 24 - 20) + self.raw[4:20]
        return hmac.compare_digest(value, hmac.new(key, head + self.raw[20:offset], hashlib.sha1).digest())


def parse(raw: bytes) -> Response:
    kind, length, magic = struct.unpack("!HHI", raw[:8])
    assert magic == MAGIC and len(raw) == 20 + length, raw
    response = Response(kind, raw)
    offset = 20
    while offset < len(raw):
        attr, size = struct.unpack("!HH", raw[offset : offset + 4])
        response.attributes.setdefault(attr, (raw[offset + 4 : offset + 4 + size], offset))
        offset += 4 + size + (-size % 4)
    return response


def udp_socket(timeout: float = 2.0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    return sock


def exchange(sock: socket.socket, server: tuple[str, int], request: bytes) -> Response:
    sock.sendto(request, server)
    raw, _ = sock.recvfrom(2048)
    assert raw[8:20] == request[8:20], "transaction id mismatch"
    return parse(raw)


def long_term_key(username: str, realm: str, password: str) -> bytes:
    return hashlib.md5(f"{username}:{realm}:{password}".encode()).digest()


def allocate(server: tuple[str, int], username: str, password: str) -> tuple[Response, bytes]:
    """An unauthenticated Allocate (for REALM and NONCE), then the authenticated one, from the
    same client port: coturn ties the nonce to the 5-tuple (another port would get 438)."""
    with udp_socket() as sock:
        return _allocate(sock, server, username, password)


def _allocate(sock: socket.socket, server: tuple[str, int], username: str, password: str) -> tuple[Response, bytes]:
    challenge = exchange(sock, server, stun_message(ALLOCATE, [(REQUESTED_TRANSPORT, UDP)]))
    assert challenge.kind == ALLOCATE | ERROR and challenge.error == 401, challenge
    realm, nonce = challenge.text(REALM), challenge.text(NONCE)
    key = long_term_key(username, realm, password)
    attributes = [
        (REQUESTED_TRANSPORT, UDP),
        (USERNAME, username.encode()),
        (REALM, realm.encode()),
        (NONCE, nonce.encode()),
    ]
    return exchange(sock, server, stun_message(ALLOCATE, attributes, key)), key


# -- a real coturn ------------------------------------------------------------------------

REALM_NAME = "meet.test"


@dataclass
class Coturn:
    address: tuple[str, int]
    relay_ports: range
    log: Path


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(address: tuple[str, int]) -> bool:
    try:
        with udp_socket(timeout=0.2) as sock:
            return exchange(sock, address, stun_message(BINDING, [])).kind == BINDING | SUCCESS
    except OSError:  # timeout, or refused before the listener is up
        return False


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail("turnserver not found; install Debian's coturn package (see the README's test command)")
    folder = tmp_path_factory.mktemp("coturn")
    port = _free_udp_port()
    low = random.randrange(20000, 29000)  # below Linux's ephemeral range, away from `port`
    relay_ports = range(low, low + 50)
    log = folder / "turnserver.log"
    command = [
        binary,
        "-n",  # no config file: /etc/turnserver.conf stays out of it
        f"--db={folder / 'turndb'}",
        f"--pidfile={folder / 'turnserver.pid'}",
        "--use-auth-secret",
        f"--static-auth-secret={SECRET}",
        f"--realm={REALM_NAME}",
        "--listening-ip=127.0.0.1",
        f"--listening-port={port}",
        "--relay-ip=127.0.0.1",
        f"--min-port={relay_ports.start}",
        f"--max-port={relay_ports.stop - 1}",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--fingerprint",
        "--log-file=stdout",
        "--simple-log",
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        address = ("127.0.0.1", port)
        deadline = time.monotonic() + 15
        while not _ready(address):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"turnserver did not come up (exit {process.poll()}):\n{log.read_text()[-3000:]}")
        yield Coturn(address, relay_ports, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def assert_allocated(coturn: Coturn, username: str, password: str) -> None:
    response, key = allocate(coturn.address, username, password)
    assert response.kind == ALLOCATE | SUCCESS, (response.error, coturn.log.read_text()[-2000:])
    address, port = response.relayed()
    assert address == "127.0.0.1" and port in coturn.relay_ports
    assert response.integrity_ok(key)


def assert_refused(coturn: Coturn, username: str, password: str) -> None:
    response, _ = allocate(coturn.address, username, password)
    assert response.kind == ALLOCATE | ERROR, response
    # 401, not 438 (stale nonce): the nonce was fresh, the credential itself was refused.
    assert response.error == 401, response.error
    assert XOR_RELAYED_ADDRESS not in response.attributes


def test_coturn_accepts_fresh_credentials(coturn: Coturn) -> None:
    entry = turn_server([TURN_URL], SECRET, 600, 42, time.time())
    assert_allocated(coturn, entry["username"], entry["credential"])


def test_coturn_refuses_a_wrong_credential(coturn: Coturn) -> None:
    good = turn_server([TURN_URL], SECRET, 600, 43, time.time())
    assert_refused(coturn, good["username"], turn_password("not-the-secret", good["username"]))
    # A valid credential does not carry over to another user id (or another expiry).
    assert_refused(coturn, good["username"].replace(":43", ":44"), good["credential"])


def test_coturn_refuses_an_expired_credential(coturn: Coturn) -> None:
    expired = turn_server([TURN_URL], SECRET, 600, 45, time.time() - 3600)  # expired 50 minutes ago
    assert_refused(coturn, expired["username"], expired["credential"])


async def test_credentials_from_meet_allocate_on_coturn(tmp_path: Path, clock: FakeClock, coturn: Coturn) -> None:
    """End to end: what the join response and the welcome hand out works on the TURN server."""
    host, port = coturn.address
    url = f"turn:{host}:{port}?transport=udp"
    config = make_config(tmp_path, rtc={"turn_urls": [url], "turn_secret": SECRET, "turn_ttl": 120})
    _, joined, welcomed = await join_and_welcome(config, clock)
    for [entry] in (joined, welcomed):
        assert entry["urls"] == [url]
        where = urlsplit(entry["urls"][0].split("?")[0].replace("turn:", "turn://", 1))
        assert (where.hostname, where.port) == coturn.address
        with trio.fail_after(10):
            await trio.to_thread.run_sync(assert_allocated, coturn, entry["username"], entry["credential"])
