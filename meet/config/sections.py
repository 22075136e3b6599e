"""The configuration's sections: one frozen dataclass per TOML section, with defaults,
help text and checks (``__post_init__``), and :class:`Config`, the whole of them."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meet.errors import ConfigError

ENV_PREFIX = "MEET_"


def setting(default: Any, help: str, *, key: str | None = None, secret: bool | None = None) -> Any:
    """A dataclass field carrying its help text (and TOML key, when it differs).

    ``secret=True`` marks a value ``meet check-config`` masks; a field whose name sounds like a
    secret (key, password, token) but holds none, like a file path, says ``secret=False``.
    """
    meta = {"help": help, "key": key, "secret": secret}
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata=meta)


def _require(cond: bool, section: str, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"[{section}] {key}: {message}")


@dataclass(frozen=True)
class ServerConfig:
    """[server]: where and how the HTTP server listens."""

    host: str = setting("127.0.0.1", "Address to listen on (0.0.0.0 or :: for all interfaces).")
    port: int = setting(8080, "TCP port to listen on (0 picks a free port).")
    public_url: str = setting(
        "",
        "The URL people use to reach meet, e.g. https://meet.example.org. Used in mails and for "
        "the same-origin check. Empty: the address each client connected to (open pages by an IP "
        "address or localhost, not by another name); required with the smtp mail backend and with "
        "proxy_hops.",
    )
    tls_cert: str = setting("", "PEM certificate file; with tls_key, serve HTTPS directly.")
    tls_key: str = setting("", "PEM private key file for tls_cert.", secret=False)
    proxy_hops: int = setting(
        0,
        "Number of trusted reverse proxies in front of meet; when > 0 the client address and "
        "scheme come from X-Forwarded-For / X-Forwarded-Proto.",
    )
    graceful_timeout: float = setting(
        5.0, "Seconds to let in-flight requests finish on shutdown before they are cut."
    )
    send_timeout: float = setting(
        15.0,
        "Seconds sent data may stay unacknowledged (a stalled or vanished client) before the "
        "connection is cut (TCP_USER_TIMEOUT); also bounds how long such a client delays shutdown.",
    )

    def __post_init__(self) -> None:
        _require(0 <= self.port <= 65535, "server", "port", "must be between 0 and 65535")
        _require(
            not self.public_url or re.match(r"^https?://[^/\s]+/?$", self.public_url) is not None,
            "server",
            "public_url",
            "must look like http(s)://host[:port] with no path",
        )
        _require(
            bool(self.tls_cert) == bool(self.tls_key),
            "server",
            "tls_cert",
            "tls_cert and tls_key must be set together",
        )
        _require(self.proxy_hops >= 0, "server", "proxy_hops", "must be 0 or more")
        _require(self.graceful_timeout > 0, "server", "graceful_timeout", "must be positive")
        _require(self.send_timeout >= 1, "server", "send_timeout", "must be at least 1 second")


@dataclass(frozen=True)
class StorageConfig:
    """[storage]: where meet keeps its data."""

    data_dir: str = setting(
        "data", "Folder for the database, generated secret and mail outbox (created if missing)."
    )
    database: str = setting("meet.db", "SQLite file name, relative to data_dir unless absolute.")

    def __post_init__(self) -> None:
        _require(bool(self.data_dir), "storage", "data_dir", "must not be empty")
        _require(bool(self.database), "storage", "database", "must not be empty")


SIGNUP_MODES = ("open", "invite", "closed")
# How a meeting takes people without an account: not at all, after a host admits them from the
# lobby, or straight in ([rooms] guests and each room's ``guests`` setting).
GUEST_MODES = ("off", "lobby", "open")


@dataclass(frozen=True)
class AuthConfig:
    """[auth]: accounts, sessions and abuse limits."""

    secret_key: str = setting(
        "",
        "Secret for signing sessions and links (32+ characters). Empty: use secret_key_file, "
        "or generate one into data_dir/secret_key on first start and keep it.",
        secret=True,
    )
    secret_key_file: str = setting("", "File holding the secret key (instead of secret_key).", secret=False)
    session_days: int = setting(30, "Days a sign-in stays valid.")
    require_verification: bool = setting(
        True, "Refuse sign-in until the email address is verified."
    )
    signup: str = setting(
        "open",
        'Who may create an account: "open" (anyone), "invite" (only with a single-use invitation '
        'from `meet user invite EMAIL`) or "closed" (nobody; admins add users with `meet user add`).',
    )
    invite_days: int = setting(7, "Days an invitation link stays valid.")
    login_max_failures: int = setting(
        10,
        "Failed sign-ins allowed per account from one client address within throttle_window_s "
        "(the same account from other addresses is not affected).",
    )
    login_max_failures_per_address: int = setting(
        100,
        "Failed sign-ins allowed per client address, whatever the account, within throttle_window_s "
        "(high: everyone behind one NAT or proxy shares an address).",
    )
    login_free_failures: int = setting(
        3,
        "Failed sign-ins per account and address answered at once; each further one makes the next "
        "try wait twice as long (1 s, 2 s, 4 s, …, up to login_max_delay_s).",
    )
    login_max_delay_s: int = setting(60, "Longest wait between failed sign-ins (the growing delay's cap).")
    mail_max_per_window: int = setting(
        5, "Mails (verification, reset) allowed per address and per client within the window."
    )
    throttle_window_s: int = setting(900, "Length of the throttling window in seconds.")
    argon2_time_cost: int = setting(3, "argon2id iterations.")
    argon2_memory_kib: int = setting(65536, "argon2id memory in KiB.")
    argon2_parallelism: int = setting(4, "argon2id lanes.")

    def __post_init__(self) -> None:
        _require(
            not self.secret_key or len(self.secret_key) >= 32,
            "auth",
            "secret_key",
            "must be at least 32 characters (run `meet init` to generate one)",
        )
        _require(
            not (self.secret_key and self.secret_key_file),
            "auth",
            "secret_key_file",
            "set either secret_key or secret_key_file, not both",
        )
        _require(self.signup in SIGNUP_MODES, "auth", "signup", f"must be one of {', '.join(SIGNUP_MODES)}")
        for key in (
            "session_days",
            "invite_days",
            "login_max_failures",
            "login_max_failures_per_address",
            "login_max_delay_s",
            "mail_max_per_window",
            "throttle_window_s",
        ):
            _require(getattr(self, key) > 0, "auth", key, "must be positive")
        _require(self.login_free_failures >= 0, "auth", "login_free_failures", "must not be negative")
        _require(self.argon2_time_cost >= 1, "auth", "argon2_time_cost", "must be at least 1")
        _require(self.argon2_memory_kib >= 8, "auth", "argon2_memory_kib", "must be at least 8")
        _require(self.argon2_parallelism >= 1, "auth", "argon2_parallelism", "must be at least 1")


MAIL_BACKENDS = ("console", "file", "smtp")


@dataclass(frozen=True)
class MailConfig:
    """[mail]: how verification and reset mails are delivered."""

    backend: str = setting(
        "console", 'Delivery: "console" (print to the log), "file" (.eml files) or "smtp".'
    )
    sender: str = setting("meet <meet@localhost>", "The From: address of mails.", key="from")
    outbox: str = setting("outbox", "Folder for the file backend, relative to data_dir.")
    smtp_host: str = setting("localhost", "SMTP server host.")
    smtp_port: int = setting(587, "SMTP server port.")
    smtp_username: str = setting("", "SMTP user name (empty: no login).")
    smtp_password: str = setting("", "SMTP password.", secret=True)
    smtp_starttls: bool = setting(True, "Upgrade the SMTP connection with STARTTLS.")
    smtp_ssl: bool = setting(False, "Use implicit TLS (usually port 465) instead of STARTTLS.")
    smtp_timeout: float = setting(15.0, "Seconds before an SMTP delivery attempt gives up.")

    def __post_init__(self) -> None:
        _require(
            self.backend in MAIL_BACKENDS,
            "mail",
            "backend",
            f"must be one of {', '.join(MAIL_BACKENDS)}",
        )
        _require("@" in self.sender, "mail", "from", "must contain an email address")
        _require(0 < self.smtp_port <= 65535, "mail", "smtp_port", "must be between 1 and 65535")
        _require(
            not (self.smtp_ssl and self.smtp_starttls),
            "mail",
            "smtp_ssl",
            "smtp_ssl and smtp_starttls exclude each other",
        )
        _require(self.smtp_timeout > 0, "mail", "smtp_timeout", "must be positive")


@dataclass(frozen=True)
class IceServer:
    """One entry of ``[rtc] ice_servers`` (the browser's RTCIceServer)."""

    urls: tuple[str, ...]
    username: str = ""
    credential: str = ""

    def __post_init__(self) -> None:
        for url in self.urls:
            _require(
                re.match(r"^(stun|stuns|turn|turns):", url) is not None,
                "rtc",
                "ice_servers",
                f"url {url!r} must start with stun:, stuns:, turn: or turns:",
            )
        _require(bool(self.urls), "rtc", "ice_servers", "each entry needs at least one url")

    def as_json(self) -> dict[str, Any]:
        """The RTCIceServer dictionary a browser expects."""
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.username:
            out["username"] = self.username
            out["credential"] = self.credential
        return out


@dataclass(frozen=True)
class RtcConfig:
    """[rtc]: WebRTC: ICE servers, TURN credentials and the relay (SFU)."""

    ice_servers: tuple[IceServer, ...] = setting(
        (),
        "STUN/TURN servers as a list of tables {urls, username, credential}; "
        "empty means host candidates only (fine on a LAN).",
    )
    relay: str = setting(
        "auto",
        'When rooms use the server relay: "auto" (mesh until a join would exceed mesh_limit), '
        '"always", or "off" (never; joins beyond mesh_limit are refused as room_full).',
    )
    mesh_limit: int = setting(4, "Most participants a room holds peer-to-peer (mesh).")
    relay_workers: int = setting(
        0,
        "Relay worker processes; 0 means one per CPU core. Each participant opens on the one with "
        "the fewest participants, and a room spread over several is piped between them.",
    )
    host_addresses: tuple[str, ...] = setting(
        (),
        "IP addresses the relay gathers and announces as host candidates; empty means the "
        "machine's non-loopback addresses. Set the public IP behind 1:1 NAT.",
    )
    udp_ports: str = setting(
        "", 'UDP port range for relay media, e.g. "40000-40999" (empty: any free port).'
    )
    turn_urls: tuple[str, ...] = setting(
        (), 'TURN server URLs handed out with short-lived credentials, e.g. ["turn:turn.example.org:3478"].'
    )
    turn_secret: str = setting(
        "", "Shared secret of the TURN server (coturn static-auth-secret) for those credentials.", secret=True
    )
    turn_ttl: int = setting(3600, "Seconds the handed-out TURN credentials stay valid.")
    max_publications: int = setting(
        4,
        "Tracks one participant may publish through the relay at once: audio/video m-lines its "
        "offer sends (microphone, camera, screen, screen audio). Offers with more are refused "
        "(too_many_publications).",
    )
    offer_rate: float = setting(
        1.0,
        "Offers (renegotiations) one participant may send the relay per second, sustained; "
        "offers beyond offer_rate/offer_burst are refused (rate_limited).",
    )
    offer_burst: int = setting(10, "Offers one participant may send the relay in a burst (joining, sharing a screen).")
    video_slots: int = setting(
        9,
        "Camera videos one relay participant receives at most: its connection has this many video "
        "m-lines (plus one per screen share its page shows), filled with the tiles its page shows, "
        "largest first, whatever the size of the room. 0 turns slots off: one m-line per track of "
        "everyone else, and every join renegotiates everyone (for comparison).",
    )
    audio_slots: int = setting(
        3, "Voices one relay participant receives at most: the loudest current speakers (1 to 16)."
    )

    def __post_init__(self) -> None:
        _require(self.relay in ("auto", "always", "off"), "rtc", "relay", 'must be "auto", "always" or "off"')
        _require(1 <= self.max_publications <= 32, "rtc", "max_publications", "must be 1 to 32")
        _require(0.01 <= self.offer_rate <= 100, "rtc", "offer_rate", "must be 0.01 to 100 per second")
        _require(1 <= self.offer_burst <= 1000, "rtc", "offer_burst", "must be 1 to 1000")
        _require(2 <= self.mesh_limit <= 16, "rtc", "mesh_limit", "must be 2 to 16")
        _require(0 <= self.relay_workers <= 64, "rtc", "relay_workers", "must be 0 (one per CPU core) to 64")
        _require(0 <= self.video_slots <= 25, "rtc", "video_slots", "must be 0 (no slots) to 25")
        _require(1 <= self.audio_slots <= 16, "rtc", "audio_slots", "must be 1 to 16")
        for address in self.host_addresses:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ConfigError(f"[rtc] host_addresses: {address!r} is not an IP address") from None
        _require(
            self.udp_ports == "" or self.port_range is not None,
            "rtc",
            "udp_ports",
            'must look like "40000-40999" (1024–65535, low ≤ high)',
        )
        for url in self.turn_urls:
            _require(re.match(r"^turns?:", url) is not None, "rtc", "turn_urls", f"{url!r} must start with turn: or turns:")
        _require(
            bool(self.turn_urls) == bool(self.turn_secret), "rtc", "turn_secret", "turn_urls and turn_secret go together"
        )
        _require(60 <= self.turn_ttl <= 7 * 86400, "rtc", "turn_ttl", "must be 60 s to 7 days")

    @property
    def port_range(self) -> tuple[int, int] | None:
        """``udp_ports`` as (low, high), or None when unset or malformed."""
        match = re.fullmatch(r"(\d{4,5})-(\d{4,5})", self.udp_ports)
        if not match:
            return None
        low, high = int(match[1]), int(match[2])
        return (low, high) if 1024 <= low <= high <= 65535 else None

    @property
    def worker_count(self) -> int:
        """How many relay workers run: ``relay_workers``, or one per CPU core when it is 0."""
        return self.relay_workers or min(os.cpu_count() or 1, 64)


@dataclass(frozen=True)
class RoomsConfig:
    """[rooms]: meetings and their WebSocket connections."""

    max_participants: int = setting(
        50, "Largest room allowed, and the capacity of a room created without one."
    )
    reconnect_grace: float = setting(
        30.0, "Seconds within which rejoining continues the same stay in the call history."
    )
    ping_interval: float = setting(20.0, "Seconds between server pings on each WebSocket.")
    idle_timeout: float = setting(45.0, "Seconds of silence after which a WebSocket client is dropped.")
    ring_timeout: float = setting(30.0, "Seconds an unanswered ring lasts.")
    send_queue: int = setting(
        256, "Messages queued for one client before it counts as too slow and is dropped."
    )
    send_queue_bytes: int = setting(
        4 * 1024 * 1024,
        "Bytes of messages queued for one client before it counts as too slow and is dropped "
        "(at least 1 MiB: one signal message may be 512 KiB).",
    )
    message_rate: float = setting(20.0, "Messages per second one connection may send, sustained.")
    message_burst: int = setting(200, "Messages one connection may send in a burst.")
    max_connections_per_user: int = setting(
        16, "WebSockets (room and presence) one user may have open at once; more are refused."
    )
    max_connections_per_address: int = setting(
        64,
        "WebSockets one client address may have open at once; more are refused. Behind a "
        "reverse proxy set [server] proxy_hops, or every client shares the proxy's address.",
    )
    guests: str = setting(
        "lobby",
        'Whether new meetings take people without an account (by the meeting link, with a name): "off", '
        '"lobby" (they wait until a host admits them) or "open" (straight in). Hosts change it per meeting.',
    )
    lobby_timeout: float = setting(
        300.0, "Seconds someone waits in a meeting's lobby before the knock expires (close 4408)."
    )
    guest_ttl: float = setting(
        14400.0, "Seconds a guest pass (the token a guest joins with) stays valid for joining and rejoining."
    )
    guest_passes_per_address: int = setting(
        20, "Guest passes one client address may get per guest_window_s, over all meetings."
    )
    guest_window_s: float = setting(3600.0, "Length of the guest pass throttling window in seconds.")
    chat_retention_days: int = setting(
        0, "Days chat messages are kept; older ones are deleted by a daily job. 0: kept for good."
    )
    history_retention_days: int = setting(
        0, "Days the call history (who was in which meeting, when) is kept; older stays are deleted daily. 0: kept for good."
    )

    def __post_init__(self) -> None:
        for key in ("chat_retention_days", "history_retention_days"):
            _require(getattr(self, key) >= 0, "rooms", key, "must be 0 (keep) or a number of days")
        _require(2 <= self.max_participants <= 1000, "rooms", "max_participants", "must be 2 to 1000")
        _require(self.guests in GUEST_MODES, "rooms", "guests", f"must be one of {', '.join(GUEST_MODES)}")
        for key in ("lobby_timeout", "guest_ttl", "guest_window_s"):
            _require(getattr(self, key) > 0, "rooms", key, "must be positive")
        _require(self.guest_passes_per_address >= 1, "rooms", "guest_passes_per_address", "must be at least 1")
        for key in ("reconnect_grace", "ping_interval", "idle_timeout", "ring_timeout", "message_rate"):
            _require(getattr(self, key) > 0, "rooms", key, "must be positive")
        _require(self.idle_timeout > self.ping_interval, "rooms", "idle_timeout", "must exceed ping_interval")
        _require(self.send_queue >= 8, "rooms", "send_queue", "must be at least 8")
        _require(self.message_burst >= 1, "rooms", "message_burst", "must be at least 1")
        _require(
            self.send_queue_bytes >= 1024 * 1024, "rooms", "send_queue_bytes", "must be at least 1048576 (1 MiB)"
        )
        for key in ("max_connections_per_user", "max_connections_per_address"):
            _require(getattr(self, key) >= 1, "rooms", key, "must be at least 1")


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics]: the Prometheus endpoint ``/metrics``."""

    token: str = setting(
        "",
        "Bearer token a scraper sends (Authorization: Bearer <token>) to read /metrics; "
        "16+ characters. Empty: /metrics is off (404).",
        secret=True,
    )

    def __post_init__(self) -> None:
        _require(
            not self.token or len(self.token) >= 16, "metrics", "token", "must be at least 16 characters"
        )
        _require(
            all(33 <= ord(c) <= 126 for c in self.token),
            "metrics",
            "token",
            "must be printable ASCII without spaces (it is sent in an HTTP header)",
        )


LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class LogConfig:
    """[log]: what ``meet serve`` writes to standard error, and how."""

    format: str = setting(
        "text",
        '"text" (one readable line per event) or "json" (one JSON object per line, with a request id, '
        "for log collectors).",
    )
    level: str = setting("info", 'Least severe level written: "debug", "info", "warning" or "error".')

    def __post_init__(self) -> None:
        _require(self.format in LOG_FORMATS, "log", "format", f"must be one of {', '.join(LOG_FORMATS)}")
        _require(self.level in LOG_LEVELS, "log", "level", f"must be one of {', '.join(LOG_LEVELS)}")


SECTIONS: dict[str, type] = {
    "server": ServerConfig,
    "storage": StorageConfig,
    "auth": AuthConfig,
    "mail": MailConfig,
    "rooms": RoomsConfig,
    "rtc": RtcConfig,
    "log": LogConfig,
    "metrics": MetricsConfig,
}


@dataclass(frozen=True)
class Config:
    """The whole configuration, plus the folder relative paths are resolved against."""

    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    mail: MailConfig = field(default_factory=MailConfig)
    rooms: RoomsConfig = field(default_factory=RoomsConfig)
    rtc: RtcConfig = field(default_factory=RtcConfig)
    log: LogConfig = field(default_factory=LogConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    base_dir: Path = field(default_factory=Path.cwd)

    @property
    def data_dir(self) -> Path:
        """The data folder as an absolute path."""
        return (self.base_dir / self.storage.data_dir).resolve()

    @property
    def database_path(self) -> Path:
        """The SQLite file as an absolute path."""
        return self.data_dir / self.storage.database

    @property
    def outbox_dir(self) -> Path:
        """The file mail backend's folder as an absolute path."""
        return self.data_dir / self.mail.outbox


def toml_key(f: dataclasses.Field[Any]) -> str:
    """The TOML spelling of a field (``from`` for ``sender``)."""
    return f.metadata.get("key") or f.name


def section_fields(cls: type) -> list[dataclasses.Field[Any]]:
    """The documented fields of a section class."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]
