"""The admin page's server figures: relay worker rates between two samples, and the mail
backends' health checks (an SMTP check connects and says NOOP, never sends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from conftest import PASSWORD, Outbox, login, make_config, make_room, make_user
from test_mail import Collect, free_port, smtp  # noqa: F401 (smtp is a fixture)
from wsclient import join

from meet.admin import Sample, rates
from meet.clock import FakeClock
from meet.config import MailConfig
from meet.mail import ConsoleMailer, FileMailer, SmtpMailer, mail_health
from meet.server import RunningServer, open_server


class FakeRelay:
    """Stands for RelayBridge.stats(): the figures of two workers, moving as the test says."""

    def __init__(self) -> None:
        self.workers: list[dict[str, Any]] = [
            {"index": 0, "pid": 100, "restarts": 0, "rooms": 1, "participants": 3,
             "packets_forwarded": 1000, "cpu_seconds": 2.0},
            {"index": 1, "pid": 101, "restarts": 0, "rooms": 0, "participants": 0,
             "packets_forwarded": 0, "cpu_seconds": 0.5},
        ]

    async def stats(self) -> list[dict[str, Any]]:
        return [dict(worker) for worker in self.workers]


async def test_relay_workers_get_rates_between_two_samples(server: RunningServer, client: httpx.AsyncClient) -> None:
    svc = server.services
    assert svc.admin is not None
    await svc.accounts.add_user("root", "root@example.org", PASSWORD, admin=True)
    auth = {"Authorization": f"Bearer {await login(client, 'root')}"}
    relay = FakeRelay()
    svc.rooms.media.relay = relay  # type: ignore[assignment]
    now = [50.0]
    svc.admin.monotonic = lambda: now[0]

    first = (await client.get("/api/admin/server", headers=auth)).json()["relay"]["workers"]
    assert [(w["index"], w["packets_per_s"], w["cpu_percent"]) for w in first] == [(0, None, None), (1, None, None)]
    assert first[0] == {**first[0], "pid": 100, "rooms": 1, "participants": 3, "packets_forwarded": 1000}

    now[0] += 2.0
    relay.workers[0].update(packets_forwarded=3000, cpu_seconds=3.0)  # 1000 packets/s, half a core
    relay.workers[1].update(pid=102, restarts=1, packets_forwarded=10, cpu_seconds=0.1)  # restarted
    second = (await client.get("/api/admin/server", headers=auth)).json()["relay"]["workers"]
    assert [(w["packets_per_s"], w["cpu_percent"]) for w in second] == [(1000.0, 50.0), (None, None)]
    assert second[1]["restarts"] == 1


def test_rates_need_the_same_process_and_time_passing() -> None:
    before = Sample(at=10.0, pid=7, packets=100, cpu=1.0)
    assert rates(None, before) == (None, None)
    assert rates(before, Sample(at=10.0, pid=7, packets=200, cpu=1.5)) == (None, None)
    assert rates(before, Sample(at=12.0, pid=8, packets=200, cpu=1.5)) == (None, None)
    assert rates(before, Sample(at=12.0, pid=7, packets=50, cpu=1.5)) == (None, None)
    assert rates(before, Sample(at=14.0, pid=7, packets=500, cpu=2.0)) == (100.0, 25.0)


async def test_smtp_health_says_noop_and_sends_nothing(tmp_path: Path, smtp: tuple[Collect, int]) -> None:  # noqa: F811
    handler, port = smtp
    settings = MailConfig(backend="smtp", smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)
    health = await mail_health(SmtpMailer(settings))
    assert health == {"backend": "smtp", "ok": True, "detail": f"127.0.0.1:{port} answered NOOP with 250"}
    assert handler.messages == []
    closed = MailConfig(backend="smtp", smtp_host="127.0.0.1", smtp_port=free_port(), smtp_starttls=False)
    down = await mail_health(SmtpMailer(closed))
    assert down["ok"] is False and "Connection refused" in down["detail"]


async def test_file_and_console_health(tmp_path: Path) -> None:
    assert (await mail_health(FileMailer(tmp_path / "not" / "yet" / "outbox")))["ok"] is True
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    file_health = await mail_health(FileMailer(blocker / "outbox"))  # cannot be made, even by root
    assert file_health["ok"] is False and "not a writable folder" in file_health["detail"], file_health
    assert (await mail_health(ConsoleMailer()))["ok"] is True


async def test_a_live_relay_room_and_its_worker(tmp_path: Path, clock: FakeClock) -> None:
    """With the real relay worker: the room is listed live in relay mode and the worker's figures
    come from RelayBridge.stats(), with rates from the second call on."""
    rtc = {"relay": "always", "relay_workers": 1, "host_addresses": ["127.0.0.1"]}
    config = make_config(tmp_path, rtc=rtc)
    async with open_server(config, clock=clock) as server, httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        bob = await make_user(client, Outbox(config.outbox_dir), "bob")
        await server.services.accounts.add_user("root", "root@example.org", PASSWORD, admin=True)
        auth = {"Authorization": f"Bearer {await login(client, 'root')}"}
        code = await make_room(client, bob)
        async with join(server.url, code, bob.token) as (_, welcome):
            assert welcome["mode"] == "relay"
            room = (await client.get("/api/admin/rooms", headers=auth)).json()["rooms"][0]
            assert (room["code"], room["mode"], len(room["participants"])) == (code, "relay", 1)
            first = (await client.get("/api/admin/server", headers=auth)).json()
            second = (await client.get("/api/admin/server", headers=auth)).json()
    assert first["relay"]["mode"] == "always" and first["participants"] == 1
    [before], [after] = first["relay"]["workers"], second["relay"]["workers"]
    assert (before["index"], before["rooms"], before["participants"], before["packets_per_s"]) == (0, 1, 1, None)
    assert after["pid"] == before["pid"] and isinstance(after["pid"], int)
    assert after["packets_per_s"] == 0.0 and after["cpu_percent"] is not None and after["cpu_percent"] >= 0
