"""Mail backends: SMTP against a local aiosmtpd server, file outbox, console."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import PASSWORD, Outbox, make_config

from meet.clock import FakeClock
from meet.mail import ConsoleMailer, FileMailer, MailError, SmtpMailer, build_message
from meet.server import open_server


class Collect:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"meet", b"s3cret")
    return AuthResult(success=ok)


@pytest.fixture
def smtp() -> Iterator[tuple[Collect, int]]:
    handler = Collect()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        authenticator=_authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


async def test_signup_mail_goes_through_smtp_with_login(
    tmp_path: Path, clock: FakeClock, smtp: tuple[Collect, int]
) -> None:
    handler, port = smtp
    config = make_config(
        tmp_path,
        server={"public_url": "http://meet.example.org"},  # required with smtp
        mail={
            "backend": "smtp",
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_starttls": False,
            "smtp_username": "meet",
            "smtp_password": "s3cret",
            "from": "meet <noreply@meet.example>",
        },
    )
    async with open_server(config, clock=clock) as running, httpx.AsyncClient(base_url=running.url) as c:
        r = await c.post(
            "/api/auth/signup", json={"username": "sam", "email": "sam@example.org", "password": PASSWORD}
        )
        assert r.status_code == 201
    assert len(handler.messages) == 1
    mail = handler.messages[0]
    assert mail["To"] == "sam@example.org"
    assert mail["From"] == "meet <noreply@meet.example>"
    assert "verification code is" in mail.get_content()


async def test_smtp_failures_raise_mail_error(tmp_path: Path, smtp: tuple[Collect, int]) -> None:
    _, port = smtp
    base = make_config(tmp_path).mail
    message = build_message("meet <a@b.example>", "x@example.org", "hi", "body")
    bad_login = SmtpMailer(
        type(base)(backend="smtp", smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,
                   smtp_username="meet", smtp_password="wrong", smtp_timeout=1.0)
    )
    with pytest.raises(MailError, match="SMTP delivery"):
        await bad_login.send(message)
    no_tls = SmtpMailer(type(base)(backend="smtp", smtp_host="127.0.0.1", smtp_port=port))
    with pytest.raises(MailError):
        await no_tls.send(message)  # the server offers no STARTTLS: never send in the clear


async def test_signup_still_succeeds_when_mail_cannot_be_sent(tmp_path: Path, clock: FakeClock) -> None:
    config = make_config(
        tmp_path,
        server={"public_url": "http://meet.example.org"},  # required with smtp
        mail={"backend": "smtp", "smtp_host": "127.0.0.1", "smtp_port": free_port(), "smtp_starttls": False,
              "smtp_timeout": 2.0},
    )
    async with open_server(config, clock=clock) as running, httpx.AsyncClient(base_url=running.url) as c:
        r = await c.post(
            "/api/auth/signup", json={"username": "sam", "email": "sam@example.org", "password": PASSWORD}
        )
        assert r.status_code == 201, "the account exists; the person can ask for the code again"
        r = await c.post("/api/auth/verify/resend", json={"email": "sam@example.org"})
        assert r.status_code == 202


async def test_file_backend_writes_whole_rfc5322_files(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    await FileMailer(folder).send(build_message("meet <a@b.example>", "x@example.org", "Subject ✓", "héllo\n"))
    files = list(folder.iterdir())
    assert len(files) == 1 and files[0].suffix == ".eml"
    mail = Outbox(folder).last("x@example.org")
    assert mail["Subject"] == "Subject ✓" and mail.get_content() == "héllo\n"
    assert mail["Message-ID"] and mail["Date"]


async def test_console_backend_prints_decoded_mail(capsys: pytest.CaptureFixture[str]) -> None:
    long_link = "http://127.0.0.1:8080/verify?token=" + "x" * 120
    await ConsoleMailer().send(build_message("meet <a@b.example>", "x@example.org", "Code", long_link + "\n"))
    err = capsys.readouterr().err
    assert "To: x@example.org" in err
    assert long_link in err, "links must be printed whole, not quoted-printable"
