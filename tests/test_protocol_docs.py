"""docs/protocol.md documents every message type, with examples the code accepts.

The document's ``##`` sections say which way a message goes ("Client → server: room
channel", "Client → server: user channel", "Server → client: …"); each ```json block is
checked against the dataclasses of that direction in ``meet/protocol.py``:

- client examples must parse with ``parse_room_message`` / ``parse_user_message``;
- server examples must have exactly the keys that message's ``to_json`` produces (optional
  ``None`` fields may be absent) and survive a round trip through the dataclass;
- every type in ``ROOM_CLIENT_MESSAGES``, ``USER_CLIENT_MESSAGES`` and ``SERVER_MESSAGES`` has
  at least one example;
- the error and close code tables name every code the server can send.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from meet import connection
from meet import protocol as p

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "protocol.md"

ROOM_CLIENT, USER_CLIENT, SERVER, OTHER = "room client", "user client", "server", "other"


def section_kind(heading: str) -> str:
    h = heading.lower()
    if h.startswith("client → server"):
        if "room channel" in h:
            return ROOM_CLIENT
        if "user channel" in h:
            return USER_CLIENT
        raise AssertionError(f"client section without a channel: {heading!r}")
    if h.startswith("server → client"):
        return SERVER
    return OTHER


def json_examples(text: str) -> list[tuple[str, int, Any]]:
    """Every ```json block as (section kind, line number, parsed value)."""
    examples: list[tuple[str, int, Any]] = []
    kind = OTHER
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            kind = section_kind(line[3:].strip())
        elif line.strip() == "```json":
            start = i + 1
            end = start
            while lines[end].strip() != "```":
                end += 1
            block = "\n".join(lines[start:end])
            try:
                value = json.loads(block)
            except ValueError as exc:
                raise AssertionError(f"docs/protocol.md line {start}: invalid JSON: {exc}") from None
            examples.append((kind, start, value))
            i = end
        elif line.startswith("```"):  # skip other fenced blocks (diagrams), even with ## inside
            i += 1
            while not lines[i].startswith("```"):
                i += 1
        i += 1
    return examples


@pytest.fixture(scope="module")
def doc() -> str:
    assert DOC.is_file(), "docs/protocol.md is missing"
    return DOC.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def examples(doc: str) -> list[tuple[str, int, Any]]:
    found = json_examples(doc)
    assert found, "no ```json examples in docs/protocol.md"
    return found


def of_kind(examples: list[tuple[str, int, Any]], kind: str) -> list[tuple[int, dict[str, Any]]]:
    out = []
    for k, line, value in examples:
        if k == kind:
            assert isinstance(value, dict) and isinstance(value.get("type"), str), (
                f"line {line}: a message example must be an object with a string 'type'"
            )
            out.append((line, value))
    return out


def wire_keys(cls: type[p.Message]) -> tuple[set[str], set[str]]:
    """(required, allowed) top-level keys of a server message, as ``to_json`` writes them."""
    required, allowed = {"type"}, {"type"}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = "from" if f.name == "from_" else f.name
        allowed.add(key)
        if f.default is not None or f.default is dataclasses.MISSING:
            required.add(key)
    return required, allowed


def from_wire(cls: type[p.Message], frame: dict[str, Any]) -> p.Message:
    kwargs = {("from_" if k == "from" else k): v for k, v in frame.items() if k != "type"}
    return cls(**kwargs)


# -- client examples ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "table", "parse"),
    [
        (ROOM_CLIENT, p.ROOM_CLIENT_MESSAGES, p.parse_room_message),
        (USER_CLIENT, p.USER_CLIENT_MESSAGES, p.parse_user_message),
    ],
    ids=["room", "user"],
)
def test_client_messages_are_documented_and_parse(
    examples: list[tuple[str, int, Any]], kind: str, table: dict[str, type[p.Message]], parse: Any
) -> None:
    documented: set[str] = set()
    for line, frame in of_kind(examples, kind):
        try:
            message = parse(json.dumps(frame))
        except p.ProtocolError as exc:
            raise AssertionError(f"docs/protocol.md line {line}: {exc.code}: {exc.message}") from None
        assert type(message) is table[frame["type"]]
        documented.add(frame["type"])
    missing = sorted(set(table) - documented)
    assert not missing, f"{kind} messages without a ```json example in docs/protocol.md: {missing}"


# -- server examples ----------------------------------------------------------------------


def test_server_types_are_unique() -> None:
    types = [cls.type for cls in p.SERVER_MESSAGES]
    assert len(types) == len(set(types))


def test_server_messages_are_documented_with_exact_keys(examples: list[tuple[str, int, Any]]) -> None:
    by_type = {cls.type: cls for cls in p.SERVER_MESSAGES}
    documented: set[str] = set()
    for line, frame in of_kind(examples, SERVER):
        cls = by_type.get(frame["type"])
        assert cls is not None, f"docs/protocol.md line {line}: {frame['type']!r} is not a server message"
        required, allowed = wire_keys(cls)
        keys = set(frame)
        assert required <= keys, f"line {line}: {frame['type']} lacks {sorted(required - keys)}"
        assert keys <= allowed, f"line {line}: {frame['type']} has no {sorted(keys - allowed)}"
        assert from_wire(cls, frame).to_json() == frame, f"line {line}: does not round-trip"
        documented.add(frame["type"])
    missing = sorted(set(by_type) - documented)
    assert not missing, f"server messages without a ```json example in docs/protocol.md: {missing}"


def test_every_message_type_has_a_section(doc: str) -> None:
    headings = set(re.findall(r"^### `([a-z-]+)`", doc, flags=re.MULTILINE))
    every = set(p.ROOM_CLIENT_MESSAGES) | set(p.USER_CLIENT_MESSAGES) | {c.type for c in p.SERVER_MESSAGES}
    assert every <= headings, f"no ### section for {sorted(every - headings)}"


def test_welcome_documents_the_current_mode_and_version(examples: list[tuple[str, int, Any]]) -> None:
    [welcome] = [f for _, f in of_kind(examples, SERVER) if f["type"] == "welcome"]
    assert welcome["mode"] == p.Welcome.__dataclass_fields__["mode"].default == "mesh"
    assert welcome["protocol"] == p.PROTOCOL_VERSION


# -- the checker itself must be able to fail ----------------------------------------------


def test_checker_catches_drift() -> None:
    sample = """
## Client → server: room channel
```json
{"type": "chat", "txt": "typo"}
```
## Server → client: room channel
```json
{"type": "peer-left", "peer": "x"}
```
"""
    (kind1, _, chat), (kind2, _, left) = json_examples(sample)
    assert (kind1, kind2) == (ROOM_CLIENT, SERVER)
    with pytest.raises(p.ProtocolError):
        p.parse_room_message(json.dumps(chat))
    required, allowed = wire_keys(p.PeerLeft)
    assert not required <= set(left) and not set(left) <= allowed
    assert wire_keys(p.RingAnswer) == ({"type", "ring_id", "accepted"}, {"type", "ring_id", "accepted", "user_id"})
    assert wire_keys(p.SignalFrom)[1] == {"type", "from", "data"}


# -- error and close code tables ----------------------------------------------------------


def table_codes(doc: str, heading: str) -> set[str]:
    section = doc.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `?([a-z_0-9]+)`? \|", section, flags=re.MULTILINE))


def server_error_codes() -> set[str]:
    """Codes of ProtocolError raised anywhere in meet/, plus the admission refusals."""
    codes: set[str] = set()
    for path in (ROOT / "meet").rglob("*.py"):
        codes |= set(re.findall(r'ProtocolError\(\s*"([a-z_]+)"', path.read_text(encoding="utf-8")))
    assert {"invalid_json", "unknown_type", "rate_limited", "unknown_peer", "unknown_ring"} <= codes
    # MeetErrors that reach a WebSocket: handshake and admission, and rooms.get on `ring`
    return codes | {
        "unauthorized", "cross_origin", "room_not_found", "room_ended", "room_locked", "room_full",
        "signed_out", "too_many_connections", "internal_error", "storage_full", "denied", "lobby_timeout",
        "guests_off", "wrong_room", "guest_expired",
    }


def test_error_table_lists_every_code(doc: str) -> None:
    documented = table_codes(doc, "Error codes")
    missing = sorted(server_error_codes() - documented)
    assert not missing, f"error codes missing from the table: {missing}"


def test_close_table_lists_every_code(doc: str) -> None:
    documented = {int(c) for c in table_codes(doc, "Close codes") if c.isdigit()}
    used = {v for k, v in vars(connection).items() if k.startswith("CLOSE_")}
    expected = used | {1000, 1001, 1008, 1009, 1011, 1013, 4401, 4403, 4404, 4408, 4410, 4429}
    missing = sorted(expected - documented)
    assert not missing, f"close codes missing from the table: {missing}"
