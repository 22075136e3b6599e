"""The sign-in throttle against a real server: reserved before the password check, per
(account, address) with growing delays, per address with a higher limit, and never a lockout
switch against the owner signing in from elsewhere. Time is the injected FakeClock."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from conftest import PASSWORD, Outbox, make_config, signup_verified

from meet.clock import FakeClock
from meet.server import RunningServer, open_server
from meet.throttle import Backoff, Busy, Throttle

LOGIN = "/api/auth/login"
WRONG = {"login": "alice", "password": "wrong password"}
RIGHT = {"login": "alice", "password": PASSWORD}


@pytest.fixture
async def running(tmp_path: Path, clock: FakeClock, request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    auth: dict[str, Any] = getattr(request, "param", {})
    config = make_config(tmp_path, auth=auth)
    async with open_server(config, clock=clock) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
            await signup_verified(c, Outbox(config.outbox_dir))
        yield server


def from_address(server: RunningServer, address: str = "127.0.0.1", **kwargs: Any) -> httpx.AsyncClient:
    """A client whose connections come from ``address`` (all of 127/8 is loopback)."""
    transport = httpx.AsyncHTTPTransport(local_address=address, **kwargs)
    return httpx.AsyncClient(base_url=server.url, timeout=30, transport=transport)


@pytest.mark.parametrize(
    "running",
    # No growing delay here: only the limit of 10 stands between 30 concurrent guesses and argon2;
    # a hash that takes a while (like a real one) keeps them all in flight together.
    [{"login_free_failures": 10, "argon2_time_cost": 2, "argon2_memory_kib": 16384}],
    indirect=True,
)
async def test_concurrent_guesses_cannot_pass_the_limit(running: RunningServer) -> None:
    statuses: Counter[int] = Counter()
    async with from_address(running, limits=httpx.Limits(max_connections=30)) as c:

        async def guess() -> None:
            statuses[(await c.post(LOGIN, json=WRONG)).status_code] += 1

        async with trio.open_nursery() as nursery:
            for _ in range(30):
                nursery.start_soon(guess)
    assert statuses[401] <= 10 and statuses[401] + statuses[429] == 30, statuses


async def test_the_owner_signs_in_from_elsewhere_after_ten_wrong_guesses(
    running: RunningServer, clock: FakeClock
) -> None:
    async with from_address(running, "127.0.0.1") as attacker, from_address(running, "127.0.0.2") as owner:
        failures = 0
        while failures < 10:
            r = await attacker.post(LOGIN, json=WRONG)
            if r.status_code == 429:
                clock.advance(int(r.headers["Retry-After"]))  # sit out the growing delay
                continue
            assert r.status_code == 401, r.text
            failures += 1
        r = await attacker.post(LOGIN, json=RIGHT)
        assert r.status_code == 429, "even the right password waits out the limit from that address"
        assert (await owner.post(LOGIN, json=RIGHT)).status_code == 200
        clock.advance(15 * 60 + 1)
        assert (await attacker.post(LOGIN, json=RIGHT)).status_code == 200, "the window expired"


async def test_delays_double_after_the_free_failures_up_to_the_cap(
    running: RunningServer, clock: FakeClock
) -> None:
    async with from_address(running) as c:
        for _ in range(3):
            assert (await c.post(LOGIN, json=WRONG)).status_code == 401
        waits = []
        for _ in range(6):
            assert (await c.post(LOGIN, json=WRONG)).status_code == 401
            r = await c.post(LOGIN, json=RIGHT)
            assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_requests", r.text
            waits.append(int(r.headers["Retry-After"]))
            clock.advance(waits[-1] - 0.5)
            assert (await c.post(LOGIN, json=WRONG)).status_code == 429, "not before the delay is over"
            clock.advance(0.5)
        assert waits == [1, 2, 4, 8, 16, 32]
        assert (await c.post(LOGIN, json=RIGHT)).status_code == 200, "a success forgives the failures"
        assert (await c.post(LOGIN, json=WRONG)).status_code == 401


@pytest.mark.parametrize("running", [{"login_max_failures_per_address": 5}], indirect=True)
async def test_one_address_guessing_many_accounts_is_stopped(running: RunningServer, clock: FakeClock) -> None:
    async with from_address(running, "127.0.0.1") as guesser, from_address(running, "127.0.0.3") as other:
        for i in range(5):
            r = await guesser.post(LOGIN, json={"login": f"user{i}", "password": "wrong password"})
            assert r.status_code == 401
        r = await guesser.post(LOGIN, json=RIGHT)
        assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 901
        assert (await other.post(LOGIN, json=RIGHT)).status_code == 200
        clock.advance(15 * 60 + 1)
        assert (await guesser.post(LOGIN, json=RIGHT)).status_code == 200


@pytest.mark.parametrize("running", [{"login_max_failures_per_address": 3}], indirect=True)
async def test_successful_sign_ins_do_not_count_against_the_address(running: RunningServer) -> None:
    async with from_address(running) as c:
        for _ in range(10):
            assert (await c.post(LOGIN, json=RIGHT)).status_code == 200


def test_throttle_reservations_and_backoff(clock: FakeClock) -> None:
    throttle = Throttle(4, 100, clock, backoff=Backoff(free=1, base=1.0, cap=2.0))
    first = throttle.acquire(["k"])  # the free one
    throttle.release("k", first)  # it went well: given back
    assert throttle.count("k") == 0
    throttle.acquire(["k"])
    throttle.acquire(["k"])  # the second comes at once, and makes the next wait 1 s
    with pytest.raises(Busy) as busy:
        throttle.acquire(["k", "other"])
    assert busy.value.retry_after == 1.0
    assert throttle.count("other") == 0, "a refused reservation records nothing"
    clock.advance(1)
    throttle.acquire(["k"])
    assert throttle.retry_after("k") == 2.0
    clock.advance(2)
    throttle.acquire(["k"])
    assert throttle.retry_after("k") == 97, "the hard limit: until the oldest leaves the window"
    clock.advance(97)
    assert throttle.count("k") == 2, "the two at t=0 left the window"
    assert Backoff(free=2, base=1.0, cap=60).wait(2) == 0 and Backoff(free=2, cap=60).wait(300) == 60
