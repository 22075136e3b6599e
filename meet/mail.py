"""Outgoing mail: console, file (one RFC 5322 ``.eml`` per mail) and SMTP backends.

Delivery runs in a worker thread (file and socket I/O); a failure raises
:class:`MailError`, which callers log without failing the request that caused it.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
import sys
import time
import uuid
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any, Protocol

import trio

from meet.config import Config, MailConfig

log = logging.getLogger("meet.mail")

HEALTH_TIMEOUT = 5.0  # seconds an SMTP health check may take at most


class MailError(Exception):
    """A mail could not be delivered."""


class Mailer(Protocol):
    """Anything that can deliver a message."""

    async def send(self, message: EmailMessage) -> None: ...


def build_message(sender: str, to: str, subject: str, text: str) -> EmailMessage:
    """A plain-text mail with the headers every receiving server expects."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2].strip(" >") or None)
    message.set_content(text)
    return message


class ConsoleMailer:
    """Prints each mail to standard error: enough to try meet without a mail server."""

    async def send(self, message: EmailMessage) -> None:
        # Decoded body, not the wire form: links must be copyable from a terminal.
        headers = "".join(f"{k}: {v}\n" for k, v in message.items() if k in ("From", "To", "Subject"))
        sys.stderr.write(f"----- mail -----\n{headers}\n{message.get_content()}----- end of mail -----\n")
        sys.stderr.flush()

    async def health(self) -> dict[str, Any]:
        """Always fine: nothing leaves the machine (the admin page says where mail goes)."""
        return {"backend": "console", "ok": True, "detail": "mail is written to the server's log"}


class FileMailer:
    """Writes each mail as ``<time>-<id>.eml`` into a folder, atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def send(self, message: EmailMessage) -> None:
        await trio.to_thread.run_sync(self._write, message)

    async def health(self) -> dict[str, Any]:
        """Whether the outbox (or the folder it will be made in) is writable."""
        return await trio.to_thread.run_sync(self._check)

    def _check(self) -> dict[str, Any]:
        folder = self.folder
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        ok = folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
        detail = f"outbox {self.folder}" + ("" if ok else f": {folder} is not a writable folder")
        return {"backend": "file", "ok": ok, "detail": detail}

    def _write(self, message: EmailMessage) -> None:
        try:
            # Mails hold sign-in codes and reset links: only meet's user may read them.
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Time first so a folder listing sorts mails in the order they were sent.
            name = f"{time.time_ns()}-{uuid.uuid4().hex[:12]}.eml"
            tmp = self.folder / f".{name}.tmp"
            with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
                fh.write(message.as_bytes())
            # The rename makes the mail appear whole: readers never see half a file.
            tmp.replace(self.folder / name)
        except OSError as exc:
            raise MailError(f"cannot write to outbox {self.folder}: {exc.strerror}") from exc


class SmtpMailer:
    """Delivers through an SMTP server (STARTTLS or implicit TLS, optional login)."""

    def __init__(self, settings: MailConfig) -> None:
        self.settings = settings

    async def send(self, message: EmailMessage) -> None:
        await trio.to_thread.run_sync(self._deliver, message)

    async def health(self) -> dict[str, Any]:
        """Connect (TLS as configured) and say NOOP, within a few seconds; never sends mail."""
        return await trio.to_thread.run_sync(self._check)

    def _connect(self, timeout: float) -> smtplib.SMTP:
        s = self.settings
        if s.smtp_ssl:
            return smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=timeout, context=ssl.create_default_context())
        return smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=timeout)

    def _check(self) -> dict[str, Any]:
        s = self.settings
        where = f"{s.smtp_host}:{s.smtp_port}"
        try:
            with self._connect(min(s.smtp_timeout, HEALTH_TIMEOUT)) as client:
                if s.smtp_starttls:
                    client.starttls(context=ssl.create_default_context())
                code, _ = client.noop()
        except (OSError, smtplib.SMTPException) as exc:
            return {"backend": "smtp", "ok": False, "detail": f"{where}: {exc}"}
        return {"backend": "smtp", "ok": code == 250, "detail": f"{where} answered NOOP with {code}"}

    def _deliver(self, message: EmailMessage) -> None:
        s = self.settings
        try:
            if s.smtp_ssl:
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    s.smtp_host, s.smtp_port, timeout=s.smtp_timeout, context=ssl.create_default_context()
                )
            else:
                client = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
            with client:
                if s.smtp_starttls:
                    client.starttls(context=ssl.create_default_context())
                if s.smtp_username:
                    client.login(s.smtp_username, s.smtp_password)
                client.send_message(message)
        except (OSError, smtplib.SMTPException) as exc:
            raise MailError(f"SMTP delivery to {s.smtp_host}:{s.smtp_port} failed: {exc}") from exc


class CountingMailer:
    """Tells ``count`` how each delivery of another mailer went: "sent" or "failed" (metrics)."""

    def __init__(self, inner: Mailer, count: Callable[[str], None]) -> None:
        self.inner = inner
        self.count = count

    async def send(self, message: EmailMessage) -> None:
        try:
            await self.inner.send(message)
        except Exception:
            self.count("failed")
            raise
        self.count("sent")

    async def health(self) -> dict[str, Any]:
        return await mail_health(self.inner)


async def mail_health(mailer: Mailer) -> dict[str, Any]:
    """``{backend, ok, detail}`` of a mailer with a ``health()`` check (``ok`` None without one)."""
    check = getattr(mailer, "health", None)
    if check is None:
        return {"backend": type(mailer).__name__, "ok": None, "detail": "this mailer has no health check"}
    return await check()  # type: ignore[no-any-return]


def make_mailer(config: Config) -> Mailer:
    """The backend named by ``[mail] backend``."""
    backend = config.mail.backend
    if backend == "file":
        return FileMailer(config.outbox_dir)
    if backend == "smtp":
        return SmtpMailer(config.mail)
    return ConsoleMailer()
