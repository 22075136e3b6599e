"""The ``meet`` command: argument parsing only; the work happens in the modules it calls."""

from __future__ import annotations

import argparse
import dataclasses
import getpass
import os
import secrets
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from meet import __version__
from meet.config import Config, example_toml, load_config, render_toml
from meet.errors import ConfigError, MeetError, StoreError

DEFAULT_CONFIG = "meet.toml"


def _config_path(arg: str | None) -> Path | None:
    """--config, else $MEET_CONFIG, else ./meet.toml when present, else embedded defaults."""
    chosen = arg or os.environ.get("MEET_CONFIG")
    if chosen:
        return Path(chosen)
    return Path(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).is_file() else None


def _load(args: argparse.Namespace) -> Config:
    config = load_config(_config_path(args.config))
    overrides = {k: v for k in ("host", "port") if (v := getattr(args, k, None)) is not None}
    if overrides:
        try:
            config = dataclasses.replace(config, server=dataclasses.replace(config.server, **overrides))
        except ConfigError as exc:
            raise ConfigError(f"command line: {exc}") from None
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    from meet.logs import setup_logging
    from meet.server import serve

    config = _load(args)
    setup_logging(config.log)
    # Relay worker processes read their level and format from the environment they inherit.
    os.environ.setdefault("MEET_RELAY_LOG", config.log.level)
    os.environ.setdefault("MEET_RELAY_LOG_FORMAT", config.log.format)
    trio.run(serve, config)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        raise ConfigError(f"{path} already exists (use --force to overwrite)")
    text = example_toml(secrets.token_urlsafe(48))
    if args.systemd:
        from meet import systemd

        systemd.check_unit_path(Path(args.systemd), args.force)
        text = systemd.systemd_config(text)
    # Created 0600 from the start: the file holds the secret key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(0o600)  # O_CREAT's mode does not apply to an existing file (--force)
    print(f"wrote {path}")
    if args.systemd:
        steps = systemd.write_unit(Path(args.systemd), path)
        print(f"wrote {args.systemd}; then, as root:", *(f"  {step}" for step in steps), sep="\n")
    # A fresh server has no account that may administer it: only the command line makes the first.
    print(
        "Create the first administrator (the password is asked for):",
        f"  meet user add NAME EMAIL --admin --config {path}",
        "then sign in and open /admin to manage users, rooms and the server.",
        sep="\n",
    )
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    print(render_toml(_load(args)), end="")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from meet.backup import backup

    result = backup(_load(args), Path(args.path))
    print(f"wrote {result.path} (schema {result.schema}): {', '.join(sorted(result.files))}")
    for note in result.notes:
        print(note, file=sys.stderr)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from meet.backup import restore

    for note in restore(_load(args), Path(args.path), force=args.force):
        print(note)
    return 0


@asynccontextmanager
async def _accounts(config: Config) -> AsyncIterator[Any]:
    from meet.clock import SystemClock
    from meet.server import build_services
    from meet.store import open_store

    clock = SystemClock()
    async with open_store(config.database_path, clock.now()) as store:
        yield build_services(config, store, clock, None).accounts


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Repeat password: "):
        raise MeetError("The passwords differ.")
    return first


def _run_accounts(args: argparse.Namespace, action: Callable[[Any], Awaitable[None]]) -> int:
    config = _load(args)

    async def main() -> None:
        async with _accounts(config) as accounts:
            await action(accounts)

    trio.run(main)
    return 0


def cmd_user_add(args: argparse.Namespace) -> int:
    password = _read_password(args)

    async def action(accounts: Any) -> None:
        user = await accounts.add_user(args.username, args.email, password, admin=args.admin)
        print(f"added user {user.username} <{user.email}> (id {user.id}{', admin' if user.is_admin else ''})")

    return _run_accounts(args, action)


def cmd_user_list(args: argparse.Namespace) -> int:
    from meet.store import accounts as q

    async def action(accounts: Any) -> None:
        users = await accounts.store.run(q.list_users)
        print(f"{'id':>5}  {'username':<32}  {'email':<40}  verified  admin")
        for user in users:
            print(
                f"{user.id:>5}  {user.username:<32}  {user.email:<40}  "
                f"{'yes' if user.verified else 'no':<8}  {'yes' if user.is_admin else 'no'}"
            )

    return _run_accounts(args, action)


def cmd_user_set_password(args: argparse.Namespace) -> int:
    password = _read_password(args)

    async def action(accounts: Any) -> None:
        user = await accounts.set_password(args.login, password)
        print(f"password changed for {user.username}; their sessions were signed out")

    return _run_accounts(args, action)


def cmd_user_delete(args: argparse.Namespace) -> int:
    from meet.store import accounts as q

    async def action(accounts: Any) -> None:
        await accounts.store.run(q.delete_user, args.login)
        print(f"deleted user {args.login}")

    return _run_accounts(args, action)


def _link_base(config: Config) -> str:
    """Where people reach the server, for links made outside a request: ``public_url``, else
    the listen address (a wildcard listen address means this machine: localhost)."""
    if config.server.public_url:
        return config.server.public_url.rstrip("/")
    scheme = "https" if config.server.tls_cert else "http"
    host = config.server.host
    host = "localhost" if host in ("0.0.0.0", "::", "") else f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{config.server.port}"


def cmd_user_invite(args: argparse.Namespace) -> int:
    config = _load(args)
    send = config.mail.backend != "console" and not args.no_mail

    async def action(accounts: Any) -> None:
        link = await accounts.invite(args.email, _link_base(config), send=send)
        print(link)
        note = f"mailed to {args.email}" if send else "not mailed: pass the link on yourself"
        mode = config.auth.signup
        hint = "" if mode == "invite" else f'; [auth] signup is "{mode}", so the link only helps with "invite"'
        print(f"single use, valid {config.auth.invite_days} days, for {args.email} only; {note}{hint}", file=sys.stderr)
        if not config.server.public_url:
            print("note: [server] public_url is not set; the link uses the listen address", file=sys.stderr)

    return _run_accounts(args, action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meet", description="A self-hosted video meeting server.")
    parser.add_argument("--version", action="version", version=f"meet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", "-c", help="config file (default: $MEET_CONFIG or ./meet.toml)")
        return p

    serve = with_config(sub.add_parser("serve", help="run the server"))
    serve.add_argument("--host", help="override [server] host")
    serve.add_argument("--port", type=int, help="override [server] port")
    serve.set_defaults(func=cmd_serve)

    init = sub.add_parser("init", help="write a commented config with a fresh secret")
    init.add_argument("path", nargs="?", default=DEFAULT_CONFIG)
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument(
        "--systemd",
        nargs="?",
        const="/etc/systemd/system/meet.service",
        metavar="UNIT",
        help="also write the systemd unit (default: %(const)s) running this meet with this config, "
        'which then keeps its data in /var/lib/meet',
    )
    init.set_defaults(func=cmd_init)

    check = with_config(sub.add_parser("check-config", help="validate and print the effective config"))
    check.set_defaults(func=cmd_check_config)

    user = sub.add_parser("user", help="manage accounts").add_subparsers(dest="user_command", required=True)
    add = with_config(user.add_parser("add", help="add a verified user (password from prompt or stdin)"))
    add.add_argument("username")
    add.add_argument("email")
    add.add_argument("--admin", action="store_true", help="make the user an administrator")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.set_defaults(func=cmd_user_add)
    with_config(user.add_parser("list", help="list users")).set_defaults(func=cmd_user_list)
    setpw = with_config(user.add_parser("set-password", help="set a user's password"))
    setpw.add_argument("login", help="username or email")
    setpw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    setpw.set_defaults(func=cmd_user_set_password)
    invite = with_config(user.add_parser("invite", help="print (and mail) a single-use sign-up invitation link"))
    invite.add_argument("email", help="the address the invitation is for (sign-up must use it)")
    invite.add_argument("--no-mail", action="store_true", help="only print the link, even when mail is configured")
    invite.set_defaults(func=cmd_user_invite)
    delete = with_config(user.add_parser("delete", help="delete a user"))
    delete.add_argument("login", help="username or email")
    delete.set_defaults(func=cmd_user_delete)

    backup = with_config(sub.add_parser("backup", help="copy the database and secret key while the server runs"))
    backup.add_argument("path", help="the backup folder to create (must not exist)")
    backup.set_defaults(func=cmd_backup)
    restore = with_config(sub.add_parser("restore", help="put a backup back (the server must be stopped)"))
    restore.add_argument("path", help="a folder written by meet backup")
    restore.add_argument("--force", action="store_true", help="replace a database that holds data (it is kept aside)")
    restore.set_defaults(func=cmd_restore)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script and ``python -m meet``."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"meet: config error: {exc}", file=sys.stderr)
        return 2
    except StoreError as exc:
        print(f"meet: database error: {exc}", file=sys.stderr)
        return 1
    except MeetError as exc:
        print(f"meet: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
