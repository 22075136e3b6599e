"""Configuration loading: defaults, the shipped meet.toml, validation errors, environment
overrides, path resolution and the signing secret."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from meet.config import (
    SECTIONS,
    Config,
    IceServer,
    config_from_mapping,
    example_toml,
    load_config,
    load_secret_key,
    render_toml,
    section_fields,
    toml_key,
)
from meet.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
SHIPPED_TOML = REPO / "meet.toml"
README = REPO / "README.md"

ALL_KEYS = [(name, toml_key(f)) for name, cls in SECTIONS.items() for f in section_fields(cls)]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def sections_of(config: Config) -> dict[str, object]:
    return {name: getattr(config, name) for name in SECTIONS}


# -- defaults and the shipped file ---------------------------------------------------------


def test_defaults() -> None:
    config = Config()
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.server.public_url == ""
    assert config.server.graceful_timeout == 5.0
    assert config.storage.data_dir == "data"
    assert config.storage.database == "meet.db"
    assert config.auth.secret_key == ""
    assert config.auth.require_verification is True
    assert config.auth.session_days == 30
    assert config.mail.backend == "console"
    assert config.mail.sender == "meet <meet@localhost>"
    assert config.mail.smtp_starttls is True and config.mail.smtp_ssl is False
    assert config.rtc.ice_servers == ()


def test_no_file_and_no_env_gives_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(None, env={})
    assert sections_of(config) == sections_of(Config())
    assert config.base_dir == tmp_path.resolve()
    assert config.data_dir == tmp_path.resolve() / "data"
    assert config.database_path == tmp_path.resolve() / "data" / "meet.db"
    assert config.outbox_dir == tmp_path.resolve() / "data" / "outbox"


def test_every_section_field_has_help_and_a_unique_key() -> None:
    for name, cls in SECTIONS.items():
        fields = section_fields(cls)
        assert fields, f"[{name}] has no settings"
        assert len(fields) == len(dataclasses.fields(cls)), f"[{name}] has a field without help"
        keys = [toml_key(f) for f in fields]
        assert len(keys) == len(set(keys)), f"[{name}] has duplicate keys"
        assert all(f.metadata["help"].strip() for f in fields)


def test_shipped_meet_toml_holds_every_key() -> None:
    data = tomllib.loads(SHIPPED_TOML.read_text())
    missing = [f"[{name}] {key}" for name, key in ALL_KEYS if key not in data.get(name, {})]
    assert not missing, f"meet.toml lacks: {', '.join(missing)}"
    assert set(data) == set(SECTIONS)


def test_every_setting_is_documented_in_readme() -> None:
    """README.md must carry a settings table: each ``[section]`` and each key as `key`."""
    text = README.read_text()
    missing = [f"[{name}]" for name in SECTIONS if f"[{name}]" not in text]
    missing += [f"[{name}] {key}" for name, key in ALL_KEYS if f"`{key}`" not in text]
    assert not missing, f"README.md does not document: {', '.join(missing)}"


def test_shipped_meet_toml_equals_the_embedded_defaults() -> None:
    config = load_config(SHIPPED_TOML, env={})
    assert sections_of(config) == sections_of(Config())
    assert config.base_dir == REPO


def test_shipped_meet_toml_is_the_generated_example() -> None:
    # meet.toml is example_toml() without a secret; regenerate it when a help text changes.
    assert SHIPPED_TOML.read_text() == example_toml()


def test_example_toml_round_trips() -> None:
    config = config_from_mapping(tomllib.loads(example_toml()), env={})
    assert sections_of(config) == sections_of(Config())
    secret = "s3cr3t-" * 6
    with_secret = config_from_mapping(tomllib.loads(example_toml(secret)), env={})
    assert with_secret.auth.secret_key == secret
    assert dataclasses.replace(with_secret.auth, secret_key="") == Config().auth
    # Every key appears, each followed by its help text as a comment.
    text = example_toml()
    for name, cls in SECTIONS.items():
        assert f"[{name}]" in text
        for f in section_fields(cls):
            assert f"\n{toml_key(f)} = " in text


def test_render_toml_round_trips_unmasked() -> None:
    data = {
        "server": {
            "host": "::",
            "port": 9000,
            "public_url": "https://meet.example.org",
            "proxy_hops": 2,
            "graceful_timeout": 2.5,
        },
        "storage": {"data_dir": "/var/lib/meet", "database": "x.db"},
        "auth": {"secret_key": "k" * 40, "require_verification": False, "session_days": 7},
        "mail": {
            "backend": "smtp",
            "from": 'Meet "HQ" <meet@example.org>',
            "smtp_password": 'pa"ss\\word',
            "smtp_starttls": False,
            "smtp_ssl": True,
            "smtp_timeout": 3,
        },
        "rtc": {"ice_servers": [{"urls": ["stun:stun.example.org:3478", "turn:turn.example.org"]}]},
    }
    config = config_from_mapping(data, env={})
    again = config_from_mapping(tomllib.loads(render_toml(config, mask_secrets=False)), env={})
    assert sections_of(again) == sections_of(config)


def test_render_toml_masks_secrets() -> None:
    config = config_from_mapping(
        {
            "auth": {"secret_key": "A" * 40},
            "mail": {"smtp_password": "hunter2hunter2"},
            "rtc": {
                "ice_servers": [{"urls": "turn:turn.example.org", "username": "u", "credential": "turnpw"}]
            },
        },
        env={},
    )
    text = render_toml(config)
    assert "A" * 40 not in text
    assert "hunter2hunter2" not in text
    assert "turnpw" not in text
    parsed = tomllib.loads(text)
    assert parsed["auth"]["secret_key"] == "********"
    assert parsed["mail"]["smtp_password"] == "********"
    assert parsed["rtc"]["ice_servers"] == [
        {"urls": ["turn:turn.example.org"], "username": "u", "credential": "********"}
    ]
    # Empty secrets stay empty (nothing to hide, and "unset" stays visible).
    assert tomllib.loads(render_toml(Config()))["auth"]["secret_key"] == ""
    unmasked = render_toml(config, mask_secrets=False)
    assert "A" * 40 in unmasked and "hunter2hunter2" in unmasked


SECRET_WORDS = ("secret", "password", "passwd", "key", "token", "credential")


def test_every_secret_sounding_setting_says_whether_it_is_secret() -> None:
    """A new key named like a secret must be marked: secret=True (masked) or secret=False (a path)."""
    unmarked = [
        f"[{name}] {toml_key(f)}"
        for name, cls in SECTIONS.items()
        for f in section_fields(cls)
        if any(word in f.name.lower() for word in SECRET_WORDS) and f.metadata.get("secret") is None
    ]
    assert unmarked == []


def _secret_value(f: dataclasses.Field[Any]) -> str:
    return f"S3cret-{f.name}-" + "x" * 32


def test_check_config_masks_every_secret_setting(tmp_path: Path) -> None:
    """Every field marked secret, set to a value, never appears in check-config's output."""
    values: dict[str, dict[str, Any]] = {}
    for name, cls in SECTIONS.items():
        for f in section_fields(cls):
            if f.metadata.get("secret"):
                values.setdefault(name, {})[toml_key(f)] = _secret_value(f)
    assert {"auth", "mail", "rtc"} <= set(values)  # secret_key, smtp_password, turn_secret at least
    values.setdefault("rtc", {})["turn_urls"] = ["turn:turn.example.org"]
    lines = []
    for name, table in values.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in table.items()]
    path = write(tmp_path / "meet.toml", "\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "meet", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("MEET_")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for table in values.values():
        for value in table.values():
            if isinstance(value, str) and value.startswith("S3cret-"):
                assert value not in result.stdout
    assert result.stdout.count('"********"') >= 3


def test_ice_servers_load_as_browser_dictionaries(tmp_path: Path) -> None:
    path = write(
        tmp_path / "meet.toml",
        '[rtc]\nice_servers = [{ urls = "stun:stun.example.org" },'
        ' { urls = ["turn:t.example.org", "turns:t.example.org"], username = "u", credential = "c" }]\n',
    )
    servers = load_config(path, env={}).rtc.ice_servers
    assert servers == (
        IceServer(("stun:stun.example.org",)),
        IceServer(("turn:t.example.org", "turns:t.example.org"), "u", "c"),
    )
    assert [s.as_json() for s in servers] == [
        {"urls": ["stun:stun.example.org"]},
        {"urls": ["turn:t.example.org", "turns:t.example.org"], "username": "u", "credential": "c"},
    ]


# -- errors name the key and the file ------------------------------------------------------

BAD_FILES = [
    pytest.param("[pigeons]\ncount = 1\n", "[pigeons]", id="unknown-section"),
    pytest.param("server = 1\n", "[server]", id="section-not-a-table"),
    pytest.param("[server]\nprot = 8080\n", "[server] prot", id="unknown-key"),
    pytest.param("[mail]\nsender = 'a@b.c'\n", "[mail] sender", id="python-name-instead-of-key"),
    pytest.param('[server]\nport = "8080"\n', "[server] port", id="string-for-int"),
    pytest.param("[auth]\nrequire_verification = 1\n", "[auth] require_verification", id="int-for-bool"),
    pytest.param("[server]\nport = true\n", "[server] port", id="bool-for-int"),
    pytest.param("[server]\ngraceful_timeout = false\n", "[server] graceful_timeout", id="bool-for-float"),
    pytest.param("[server]\nhost = 1\n", "[server] host", id="int-for-string"),
    pytest.param("[server]\nport = 70000\n", "[server] port", id="port-too-big"),
    pytest.param("[server]\nport = -1\n", "[server] port", id="port-negative"),
    pytest.param("[auth]\nsecret_key = 'short'\n", "[auth] secret_key", id="short-secret"),
    pytest.param(
        f"[auth]\nsecret_key = '{'x' * 32}'\nsecret_key_file = 'k'\n",
        "[auth] secret_key_file",
        id="secret-and-secret-file",
    ),
    pytest.param("[auth]\nsession_days = 0\n", "[auth] session_days", id="zero-session-days"),
    pytest.param("[mail]\nbackend = 'pigeon'\n", "[mail] backend", id="bad-backend"),
    pytest.param("[mail]\nfrom = 'nobody'\n", "[mail] from", id="from-without-address"),
    pytest.param("[mail]\nsmtp_ssl = true\n", "[mail] smtp_ssl", id="ssl-and-starttls"),
    pytest.param("[server]\ntls_cert = 'cert.pem'\n", "[server] tls_cert", id="cert-without-key"),
    pytest.param("[server]\ntls_key = 'key.pem'\n", "[server] tls_cert", id="key-without-cert"),
    pytest.param(
        "[rtc]\nice_servers = [{ urls = ['http://stun.example.org'] }]\n",
        "[rtc] ice_servers",
        id="bad-ice-url",
    ),
    pytest.param("[rtc]\nice_servers = [{ urls = [] }]\n", "[rtc] ice_servers", id="ice-without-urls"),
    pytest.param("[rtc]\nice_servers = ['stun:x']\n", "[rtc] ice_servers", id="ice-not-a-table"),
    pytest.param(
        "[rtc]\nice_servers = [{ urls = 'stun:x', password = 'p' }]\n",
        "[rtc] ice_servers",
        id="ice-unknown-key",
    ),
    pytest.param("[rtc]\nice_servers = { urls = 'stun:x' }\n", "[rtc] ice_servers", id="ice-not-a-list"),
    pytest.param(
        "[server]\npublic_url = 'meet.example.org'\n", "[server] public_url", id="public-url-no-scheme"
    ),
    pytest.param(
        "[server]\npublic_url = 'https://meet.example.org/app'\n", "[server] public_url", id="public-url-path"
    ),
    pytest.param("[storage]\ndata_dir = ''\n", "[storage] data_dir", id="empty-data-dir"),
]


@pytest.mark.parametrize(("text", "where"), BAD_FILES)
def test_bad_file_names_key_and_file(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path / "conf" / "meet.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert str(path) in message
    assert where in message
    assert "\n" not in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "meet.toml", "[server\nport = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="no such file") as info:
        load_config(path, env={})
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("port", "ok"), [(0, True), (1, True), (65535, True), (65536, False), (-1, False)])
def test_port_bounds(port: int, ok: bool) -> None:
    data = {"server": {"port": port}}
    if ok:
        assert config_from_mapping(data, env={}).server.port == port
    else:
        with pytest.raises(ConfigError, match=r"\[server\] port"):
            config_from_mapping(data, env={})


@pytest.mark.parametrize(
    "url",
    ["http://localhost:8080", "https://meet.example.org", "https://meet.example.org/", "http://[::1]:80"],
)
def test_good_public_urls(url: str) -> None:
    assert config_from_mapping({"server": {"public_url": url}}, env={}).server.public_url == url


def test_integer_is_accepted_for_float() -> None:
    config = config_from_mapping({"server": {"graceful_timeout": 2}}, env={})
    assert config.server.graceful_timeout == 2.0
    assert isinstance(config.server.graceful_timeout, float)


# -- environment overrides -----------------------------------------------------------------


def test_env_overrides(tmp_path: Path) -> None:
    path = write(tmp_path / "meet.toml", "[server]\nport = 1234\n[mail]\nbackend = 'smtp'\n")
    env = {
        "MEET_SERVER__PORT": "9001",
        "MEET_MAIL__BACKEND": "file",  # a bare word: taken as a string
        "MEET_AUTH__REQUIRE_VERIFICATION": "false",
        "MEET_MAIL__FROM": '"Meet <meet@example.org>"',  # the TOML key, quoted
        "MEET_RTC__ICE_SERVERS": '[{ urls = "stun:stun.example.org" }]',
        "MEET_CONFIG": "/somewhere/else.toml",  # no "__": not a setting
        "PATH": "/usr/bin",
    }
    config = load_config(path, env=env)
    assert config.server.port == 9001
    assert config.mail.backend == "file"
    assert config.auth.require_verification is False
    assert config.mail.sender == "Meet <meet@example.org>"
    assert config.rtc.ice_servers == (IceServer(("stun:stun.example.org",)),)
    # Untouched keys keep the file's or the default values.
    assert config.server.host == "127.0.0.1"
    assert load_config(path, env={}).server.port == 1234


def test_env_overrides_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(None, env={"MEET_SERVER__PORT": "9002"}).server.port == 9002


def test_env_is_read_from_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "meet.toml", "")
    monkeypatch.setenv("MEET_SERVER__PORT", "9003")
    assert load_config(path).server.port == 9003


def test_unknown_env_section_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "meet.toml", "")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"MEET_PIGEON__PORT": "1"})
    assert "MEET_PIGEON__PORT" in str(info.value)
    assert "[pigeon]" in str(info.value)


def test_unknown_env_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "meet.toml", "")
    with pytest.raises(ConfigError, match=r"\[server\] prot: unknown key"):
        load_config(path, env={"MEET_SERVER__PROT": "1"})


def test_bad_env_value_names_the_key(tmp_path: Path) -> None:
    path = write(tmp_path / "meet.toml", "")
    with pytest.raises(ConfigError, match=r"\[server\] port") as info:
        load_config(path, env={"MEET_SERVER__PORT": "eighty"})
    assert str(path) in str(info.value)


# -- paths ---------------------------------------------------------------------------------


def test_relative_data_dir_resolves_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "etc" / "meet"
    path = write(folder / "meet.toml", "[storage]\ndata_dir = 'var'\n[mail]\noutbox = 'mails'\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(Path(os.path.relpath(path, elsewhere)), env={})
    assert config.data_dir == folder.resolve() / "var"
    assert config.database_path == folder.resolve() / "var" / "meet.db"
    assert config.outbox_dir == folder.resolve() / "var" / "mails"


def test_absolute_paths_stay_absolute(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = tmp_path / "db" / "x.db"
    path = write(tmp_path / "conf" / "meet.toml", f"[storage]\ndata_dir = '{data}'\ndatabase = '{db}'\n")
    config = load_config(path, env={})
    assert config.data_dir == data.resolve()
    assert config.database_path == db


# -- the signing secret --------------------------------------------------------------------


def test_secret_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    config = config_from_mapping({"storage": {"data_dir": "data"}}, base_dir=tmp_path, env={})
    key_file = tmp_path / "data" / "secret_key"
    assert not key_file.exists()
    first = load_secret_key(config)
    assert len(first) >= 32
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip().encode() == first
    assert load_secret_key(config) == first
    # A fresh data folder gets a different secret.
    other = config_from_mapping({"storage": {"data_dir": "other"}}, base_dir=tmp_path, env={})
    assert load_secret_key(other) != first


def test_configured_secret_key_wins_and_writes_nothing(tmp_path: Path) -> None:
    secret = "z" * 40
    config = config_from_mapping({"auth": {"secret_key": secret}}, base_dir=tmp_path, env={})
    assert load_secret_key(config) == secret.encode()
    assert not (tmp_path / "data").exists()


def test_secret_key_file_is_read(tmp_path: Path) -> None:
    secret = "f" * 33
    write(tmp_path / "conf" / "secret.txt", secret + "\n")
    path = write(tmp_path / "conf" / "meet.toml", "[auth]\nsecret_key_file = 'secret.txt'\n")
    config = load_config(path, env={})
    assert load_secret_key(config) == secret.encode()
    assert not (tmp_path / "conf" / "data" / "secret_key").exists()


def test_secret_key_file_problems_name_the_key(tmp_path: Path) -> None:
    short = config_from_mapping({"auth": {"secret_key_file": "short"}}, base_dir=tmp_path, env={})
    write(tmp_path / "short", "tooshort\n")
    with pytest.raises(ConfigError, match=r"\[auth\] secret_key_file.*at least 32"):
        load_secret_key(short)
    missing = config_from_mapping({"auth": {"secret_key_file": "absent"}}, base_dir=tmp_path, env={})
    with pytest.raises(ConfigError, match=r"\[auth\] secret_key_file: cannot read") as info:
        load_secret_key(missing)
    assert str(tmp_path / "absent") in str(info.value)


def test_env_text_settings_stay_text() -> None:
    from meet.config import config_from_mapping

    config = config_from_mapping(
        {}, env={"MEET_MAIL__SMTP_PASSWORD": "123456", "MEET_MAIL__SMTP_USERNAME": "true"}
    )
    assert (config.mail.smtp_password, config.mail.smtp_username) == ("123456", "true")
    with pytest.raises(ConfigError, match=r"MEET_SERVER__PORT: \[server\] port: expected an integer"):
        config_from_mapping({}, env={"MEET_SERVER__PORT": "eighty"})


def test_empty_generated_secret_is_refused(tmp_path: Path) -> None:
    from meet.config import config_from_mapping, load_secret_key

    config = config_from_mapping({"storage": {"data_dir": "data"}}, base_dir=tmp_path, env={})
    config.data_dir.mkdir(parents=True)
    (config.data_dir / "secret_key").write_text("")
    with pytest.raises(ConfigError, match="empty or too short"):
        load_secret_key(config)


def test_render_toml_unmasked_keeps_credentials_and_escapes_text() -> None:
    from meet.config import config_from_mapping, render_toml

    config = config_from_mapping(
        {
            "rtc": {"ice_servers": [{"urls": "turn:t.example", "username": "u", "credential": "c\"x"}]},
            "mail": {"smtp_password": "line1\nline2"},
        },
        env={},
    )
    text = render_toml(config, mask_secrets=False)
    parsed = tomllib.loads(text)
    assert parsed["rtc"]["ice_servers"][0]["credential"] == 'c"x'
    assert parsed["mail"]["smtp_password"] == "line1\nline2"
    assert "c\\\"x" not in render_toml(config) and "********" in render_toml(config)
