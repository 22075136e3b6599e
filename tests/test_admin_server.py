"""The admin page's server figures: relay worker rates between two samples, and the mail
backends' health checks (an SMTP check connects and says NOOP, never sends)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from conftest import PASSWORD, login
from test_mail import Collect, free_port, smtp  # noqa: F401 (smtp is a fixture)

from meet.admin import Sample, rates
from meet.config import MailConfig
from meet.mail import ConsoleMailer, FileMailer, SmtpMailer, mail_health
from meet.server import RunningServer


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
