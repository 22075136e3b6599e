"""Reading the configuration: TOML file, ``MEET_<SECTION>__<KEY>`` environment overrides,
checked values, and the server's secret key."""

from __future__ import annotations

import os
import secrets
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meet.config.sections import ENV_PREFIX, SECTIONS, Config, IceServer, section_fields, toml_key
from meet.errors import ConfigError


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Check a TOML value against a field's annotated type; tuples come from lists."""
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if kind == tuple[IceServer, ...]:
        return tuple(_ice_server(item, where) for item in _as_list(value, where))
    if kind == tuple[str, ...]:
        items = _as_list(value, where)
        if not all(isinstance(item, str) for item in items):
            raise ConfigError(f"{where}: expected a list of strings")
        return tuple(items)
    raise TypeError(f"unsupported setting type {kind}")  # a programming error, not bad input


def _as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list, got {value!r}")
    return value


def _ice_server(item: Any, where: str) -> IceServer:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: each entry must be a table {{urls, username, credential}}")
    unknown = set(item) - {"urls", "username", "credential"}
    if unknown:
        raise ConfigError(f"{where}: unknown key {min(unknown)!r} in an ice server")
    urls = item.get("urls")
    urls_list = [urls] if isinstance(urls, str) else urls
    if not isinstance(urls_list, list) or not all(isinstance(u, str) for u in urls_list):
        raise ConfigError(f"{where}: urls must be a string or a list of strings")
    for key in ("username", "credential"):
        if not isinstance(item.get(key, ""), str):
            raise ConfigError(f"{where}: {key} must be a string")
    return IceServer(tuple(urls_list), item.get("username", ""), item.get("credential", ""))


@dataclass(frozen=True)
class EnvValue:
    """A value from ``MEET_<SECTION>__<KEY>``: typed once its setting's type is known."""

    variable: str
    raw: str

    def parse(self, kind: Any) -> Any:
        try:
            value = tomllib.loads(f"v = {self.raw}")["v"]
        except tomllib.TOMLDecodeError:
            return self.raw  # a bare word or path; for other types the check names the variable
        if kind is str and not isinstance(value, str):
            return self.raw  # a password of digits stays a string
        return value


def _build_section(name: str, cls: type, values: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    by_key = {toml_key(f): f for f in section_fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        where = f"[{name}] {key}"
        if isinstance(value, EnvValue):
            where = f"{value.variable}: {where}"
        f = by_key.get(key)
        if f is None:
            raise ConfigError(f"{where}: unknown key")
        if isinstance(value, EnvValue):
            value = value.parse(hints[f.name])
        kwargs[f.name] = _coerce(value, hints[f.name], where)
    return cls(**kwargs)


def _env_overrides(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Collect ``MEET_SECTION__KEY=value`` variables into a nested mapping."""
    out: dict[str, dict[str, Any]] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].partition("__")
        section, key = section.lower(), key.lower()
        if section not in SECTIONS:
            raise ConfigError(f"{name}: unknown section [{section}]")
        out.setdefault(section, {})[key] = EnvValue(name, raw)
    return out


def config_from_mapping(
    data: Mapping[str, Any], *, base_dir: Path | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Build a :class:`Config` from parsed TOML plus environment overrides."""
    merged: dict[str, dict[str, Any]] = {}
    for name, values in data.items():
        if name not in SECTIONS:
            raise ConfigError(f"[{name}]: unknown section")
        if not isinstance(values, dict):
            raise ConfigError(f"[{name}]: must be a table")
        merged[name] = dict(values)
    for name, values in _env_overrides(env or {}).items():
        merged.setdefault(name, {}).update(values)
    sections = {n: _build_section(n, cls, merged.get(n, {})) for n, cls in SECTIONS.items()}
    return Config(**sections, base_dir=(base_dir or Path.cwd()).resolve())


def load_config(path: Path | None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (or only defaults and environment when None) into a :class:`Config`.

    Relative paths in the file are resolved against the file's folder.
    """
    env = os.environ if env is None else env
    if path is None:
        return config_from_mapping({}, env=env)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return config_from_mapping(data, base_dir=path.parent, env=env)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_secret_key(config: Config) -> bytes:
    """The signing secret: configured, read from a file, or generated once and kept."""
    auth = config.auth
    if auth.secret_key:
        return auth.secret_key.encode()
    if auth.secret_key_file:
        path = config.base_dir / auth.secret_key_file
        try:
            key = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"[auth] secret_key_file: cannot read {path} ({exc.strerror})") from None
        if len(key) < 32:
            raise ConfigError(f"[auth] secret_key_file: {path} must hold at least 32 characters")
        return key.encode()
    path = config.data_dir / "secret_key"
    config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        # O_EXCL: two processes starting at once must not overwrite each other's key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_generated_secret(path)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(48) + "\n")
    return _read_generated_secret(path)


def _read_generated_secret(path: Path) -> bytes:
    key = path.read_text().strip()
    if len(key) < 32:
        # E.g. a crash between creating and writing it: never sign with an empty key.
        raise ConfigError(f"[auth] secret_key: {path} is empty or too short; delete it to generate a new one")
    return key.encode()
