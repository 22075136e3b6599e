"""Writing the configuration out: the effective TOML (``meet check-config``), the shipped
``meet.toml`` with every key documented, and the README's settings table."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from meet.config.sections import SECTIONS, Config, IceServer, section_fields, toml_key


def render_toml(config: Config, *, mask_secrets: bool = True) -> str:
    """The effective configuration as TOML, for ``meet check-config``."""
    lines: list[str] = []
    for name in SECTIONS:
        section = getattr(config, name)
        lines.append(f"[{name}]")
        for f in section_fields(type(section)):
            value = getattr(section, f.name)
            if mask_secrets and f.metadata.get("secret") and value:
                value = "********"
            lines.append(f"{toml_key(f)} = {_toml_value(value, mask_secrets)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any, mask: bool = False) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON escapes are valid TOML basic strings
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v, mask) for v in value) + "]"
    if isinstance(value, IceServer):
        parts = [f"urls = {_toml_value(value.urls)}"]
        if value.username:
            credential = '"********"' if mask else _toml_value(value.credential)
            parts += [f"username = {_toml_value(value.username)}", f"credential = {credential}"]
        return "{ " + ", ".join(parts) + " }"
    raise TypeError(type(value))


def example_toml(secret_key: str = "") -> str:
    """A complete, commented configuration file holding every key at its default.

    ``meet init`` writes it with a fresh secret; the repository's ``meet.toml`` is it with
    none (a secret is then generated into data_dir on first start).
    """
    lines = [
        "# meet configuration. Every key is optional: the value shown is the default.",
        "# Relative paths are resolved against this file's folder.",
        "# Environment variables MEET_<SECTION>__<KEY> override any key, e.g. MEET_SERVER__PORT=9000.",
        "",
    ]
    defaults = Config()
    for name, cls in SECTIONS.items():
        lines.append(f"[{name}]")
        for f in section_fields(cls):
            lines.extend(f"# {chunk}" for chunk in _wrap(f.metadata["help"]))
            value = getattr(getattr(defaults, name), f.name)
            if name == "auth" and f.name == "secret_key":
                value = secret_key
            if name == "rtc" and f.name == "ice_servers":
                lines.append('# e.g. ice_servers = [{ urls = ["stun:stun.example.org:3478"] }]')
            lines.append(f"{toml_key(f)} = {_toml_value(value)}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _wrap(text: str, width: int = 88) -> list[str]:
    return textwrap.wrap(text, width)


def settings_markdown() -> str:
    """The settings reference as Markdown tables (kept in README.md between markers)."""
    defaults = Config()
    out: list[str] = []
    for name, cls in SECTIONS.items():
        out += [f"### `[{name}]`", "", "| key | default | meaning |", "|---|---|---|"]
        for f in section_fields(cls):
            value = _toml_value(getattr(getattr(defaults, name), f.name))
            out.append(f"| `{toml_key(f)}` | `{value}` | {f.metadata['help']} |")
        out.append("")
    return "\n".join(out)
