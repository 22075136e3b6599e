"""The ``meet`` command, run as a real process (``python -m meet``) in a temporary folder."""

from __future__ import annotations

import io
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import argon2
import httpx
import pytest

from meet import __version__
from meet.cli import main
from meet.store.migrations import LATEST

PASSWORD = "correct horse battery"
FAST_CONFIG = """\
[storage]
data_dir = "data"

[auth]
argon2_time_cost = 1
argon2_memory_kib = 64
argon2_parallelism = 1

[mail]
backend = "file"
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEET_")}
    env.update(extra)
    return env


def meet(
    cwd: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "meet", *args],
        check=False,
        cwd=cwd,
        env=env or clean_env(),
        input=input if input is not None else "",
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "fast.toml"
    path.write_text(FAST_CONFIG)
    return path


def user_table(cwd: Path, config: Path) -> dict[str, list[str]]:
    """``meet user list`` parsed into {username: [id, email, verified, admin]}."""
    result = meet(cwd, "user", "list", "--config", str(config))
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["id", "username", "email", "verified", "admin"]
    table = {}
    for line in lines:
        uid, name, mail, verified, admin = line.split()
        table[name] = [uid, mail, verified, admin]
    return table


def usernames(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [r[0] for r in conn.execute("SELECT username FROM users ORDER BY id")]
    finally:
        conn.close()


def password_hash(db: Path, username: str) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(
            conn.execute("SELECT password_hash FROM users WHERE username = ?", (username,)).fetchone()[0]
        )
    finally:
        conn.close()


# -- simple commands -----------------------------------------------------------------------


def test_version(tmp_path: Path) -> None:
    result = meet(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"meet {__version__}"


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = meet(tmp_path)
    assert result.returncode == 2
    assert "usage: meet" in result.stderr


def test_init_writes_a_config_with_a_fresh_secret(tmp_path: Path) -> None:
    result = meet(tmp_path, "init")
    assert result.returncode == 0, result.stderr
    written = tmp_path / "meet.toml"
    assert "wrote meet.toml" in result.stdout
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    text = written.read_text()
    secret = tomllib.loads(text)["auth"]["secret_key"]
    assert len(secret) >= 32

    checked = meet(tmp_path, "check-config", "--config", str(written))
    assert checked.returncode == 0, checked.stderr
    assert secret not in checked.stdout
    assert tomllib.loads(checked.stdout)["auth"]["secret_key"] == "********"

    # No overwrite without --force: the file and its secret stay as they were.
    again = meet(tmp_path, "init")
    assert again.returncode == 2
    assert "already exists" in again.stderr and "--force" in again.stderr
    assert written.read_text() == text

    forced = meet(tmp_path, "init", "--force")
    assert forced.returncode == 0, forced.stderr
    new_secret = tomllib.loads(written.read_text())["auth"]["secret_key"]
    assert len(new_secret) >= 32 and new_secret != secret


def test_init_to_a_path(tmp_path: Path) -> None:
    result = meet(tmp_path, "init", "conf.toml")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "conf.toml").is_file()
    assert not (tmp_path / "meet.toml").exists()


def test_check_config_prints_the_effective_values(tmp_path: Path, config_file: Path) -> None:
    result = meet(
        tmp_path, "check-config", "--config", str(config_file), env=clean_env(MEET_SERVER__PORT="9001")
    )
    assert result.returncode == 0, result.stderr
    shown = tomllib.loads(result.stdout)
    assert shown["server"]["port"] == 9001
    assert shown["auth"]["argon2_time_cost"] == 1
    assert shown["mail"]["backend"] == "file"


def test_check_config_finds_meet_toml_and_meet_config(tmp_path: Path) -> None:
    (tmp_path / "meet.toml").write_text("[server]\nport = 7001\n")
    (tmp_path / "other.toml").write_text("[server]\nport = 7002\n")
    here = meet(tmp_path, "check-config")
    assert here.returncode == 0, here.stderr
    assert tomllib.loads(here.stdout)["server"]["port"] == 7001
    chosen = meet(tmp_path, "check-config", env=clean_env(MEET_CONFIG="other.toml"))
    assert chosen.returncode == 0, chosen.stderr
    assert tomllib.loads(chosen.stdout)["server"]["port"] == 7002


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[server]\nport = 70000\n", "[server] port"),
        ("[mail]\nbackend = 'pigeon'\n", "[mail] backend"),
        ("[auth]\nsecret_key = 'short'\n", "[auth] secret_key"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_check_config_on_a_bad_file(tmp_path: Path, text: str, where: str) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    result = meet(tmp_path, "check-config", "--config", str(bad))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert where in lines[0]
    assert str(bad) in lines[0]


def test_bad_command_line_port(tmp_path: Path, config_file: Path) -> None:
    result = meet(tmp_path, "serve", "--config", str(config_file), "--port", "70000")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "meet: config error: command line: [server] port: must be between 0 and 65535"
    ]


# -- user management -----------------------------------------------------------------------


def test_user_commands(tmp_path: Path, config_file: Path) -> None:
    cfg = ["--config", str(config_file)]
    db = tmp_path / "data" / "meet.db"

    added = meet(
        tmp_path,
        "user",
        "add",
        "alice",
        "alice@example.org",
        "--admin",
        "--password-stdin",
        *cfg,
        input=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert "added user alice <alice@example.org> (id 1, admin)" in added.stdout
    assert argon2.PasswordHasher().verify(password_hash(db, "alice"), PASSWORD)

    assert user_table(tmp_path, config_file) == {"alice": ["1", "alice@example.org", "yes", "yes"]}

    duplicate = meet(
        tmp_path, "user", "add", "Alice", "other@example.org", "--password-stdin", *cfg, input=PASSWORD + "\n"
    )
    assert duplicate.returncode == 1
    assert duplicate.stderr.strip() == "meet: That username is taken."
    assert usernames(db) == ["alice"]

    old_hash = password_hash(db, "alice")
    changed = meet(
        tmp_path, "user", "set-password", "alice", "--password-stdin", *cfg, input="a brand new password\n"
    )
    assert changed.returncode == 0, changed.stderr
    assert "password changed for alice" in changed.stdout
    new_hash = password_hash(db, "alice")
    assert new_hash != old_hash
    assert argon2.PasswordHasher().verify(new_hash, "a brand new password")

    deleted = meet(tmp_path, "user", "delete", "alice", *cfg)
    assert deleted.returncode == 0, deleted.stderr
    assert "deleted user alice" in deleted.stdout
    assert usernames(db) == []

    missing = meet(tmp_path, "user", "delete", "alice", *cfg)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "meet: No user 'alice'."
    assert "Traceback" not in duplicate.stderr + missing.stderr


@pytest.fixture
def in_process(tmp_path: Path, config_file: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., int]:
    """``meet.cli.main`` in this process (faster than a subprocess) with a given stdin."""
    for name in list(os.environ):
        if name.startswith("MEET_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def run(*args: str, stdin: str = "") -> int:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        return main([*args, "--config", str(config_file)])

    return run


def test_user_add_edge_cases(
    tmp_path: Path, in_process: Callable[..., int], capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "data" / "meet.db"
    # Without --password-stdin, a stdin that is not a terminal is read (scripts, pipes).
    assert in_process("user", "add", "bob", "bob@example.org", stdin=PASSWORD + "\n") == 0
    assert "added user bob <bob@example.org> (id 1)" in capsys.readouterr().out
    assert argon2.PasswordHasher().verify(password_hash(db, "bob"), PASSWORD)

    assert (
        in_process("user", "add", "carol", "BOB@example.org", "--password-stdin", stdin=PASSWORD + "\n") == 1
    )
    assert capsys.readouterr().err.strip() == "meet: That email address is already registered."
    assert in_process("user", "add", "dave", "dave@example.org", "--password-stdin", stdin="short\n") == 1
    assert "Passwords are 8" in capsys.readouterr().err
    assert in_process("user", "add", "x", "x@example.org", "--password-stdin", stdin=PASSWORD + "\n") == 1
    assert "Usernames are 3" in capsys.readouterr().err
    assert in_process("user", "add", "erin", "not-an-address", "--password-stdin", stdin=PASSWORD + "\n") == 1
    assert "email address" in capsys.readouterr().err
    assert usernames(db) == ["bob"]

    assert in_process("user", "set-password", "zoe", "--password-stdin", stdin=PASSWORD + "\n") == 1
    assert capsys.readouterr().err.strip() == "meet: No user 'zoe'."

    # Deleting by email works too, and takes the user's sessions with it.
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO sessions (user_id, token_hash, created_at, expires_at) VALUES (1, 't', 0, 1)")
    conn.commit()
    conn.close()
    assert in_process("user", "delete", "BOB@example.org") == 0
    assert usernames(db) == []
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (0,)
    conn.close()


# -- serve ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 15.0) -> None:
    """Poll the real process's health endpoint (every 50 ms, bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"meet serve exited with {proc.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"meet serve did not become healthy within {timeout} s:\n{log.read_text()}")
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_signs_in_and_shuts_down_on_signal(tmp_path: Path, config_file: Path, signum: int) -> None:
    added = meet(
        tmp_path,
        "user",
        "add",
        "alice",
        "alice@example.org",
        "--password-stdin",
        "--config",
        str(config_file),
        input=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "meet", "serve", "--config", str(config_file), "--port", str(port)],
            cwd=tmp_path,
            env=clean_env(),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        wait_until_healthy(proc, url, err)
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/api/ready").json() == {"status": "ready", "schema": LATEST}
            wrong = client.post("/api/auth/login", json={"login": "alice", "password": "wrong password"})
            assert wrong.status_code == 401
            signed_in = client.post("/api/auth/login", json={"login": "alice", "password": PASSWORD})
            assert signed_in.status_code == 200, signed_in.text
            token = signed_in.json()["token"]
            me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200
            assert me.json()["user"]["username"] == "alice"

        proc.send_signal(signum)
        assert proc.wait(timeout=10) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    log = err.read_text()
    assert f"listening on {url}" in log
    assert f"received {signal.Signals(signum).name}, shutting down" in log
    assert "Traceback" not in log
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/health", timeout=2)
    # The database was closed cleanly: the WAL is checkpointed away and the file is sound.
    db = tmp_path / "data" / "meet.db"
    assert not Path(f"{db}-wal").exists()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (1,)
    finally:
        conn.close()
