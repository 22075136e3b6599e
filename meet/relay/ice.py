"""ICE for the relay: which addresses aiortc announces, which UDP ports it binds, which servers it asks.

aioice (under aiortc) gathers a host candidate for every non-loopback interface address, binds
each on a random port, and aiortc asks Google's public STUN server when no ``iceServers`` are
given. The relay needs instead:

- **Host addresses** (``[rtc] host_addresses``). Each configured IP is *announced* as a host
  candidate. When the IP belongs to this machine (loopback included: 127.0.0.1 and ::1 work)
  the socket is bound to it. When it does not (a public IP behind 1:1 NAT, like mediasoup's
  ``announcedIp`` or Janus's ``nat_1_1_mapping``) the socket is bound to the wildcard address of
  the same family (0.0.0.0 or ::) and the configured IP is announced in its place: the NAT
  forwards ``public:port`` to ``private:port``. Peers behind other NATs are still reached through
  the peer-reflexive candidates ICE learns from their checks. Which case applies is decided
  once, by :func:`configure_ice` (an address this machine cannot bind at that moment is treated
  as announced-only, which still works for a local address, through the wildcard socket).
  Empty means aioice's normal behaviour: every non-loopback interface address, bound and
  announced as is.
- **Port range** (``[rtc] udp_ports``). Every host socket is bound to a port in ``(low, high)``,
  trying the next port while one is in use (other peer connections, other relay workers, other
  programs); when all are taken, gathering fails with :class:`PortRangeExhausted`. ``None``:
  any free port. Only the sockets that receive media from participants count: a TURN client
  socket (outbound to a configured TURN server) and aioice's mDNS resolver are not host
  candidates and keep their own ports.
- **ICE servers**: only the configured list (possibly empty). :func:`rtc_configuration` always
  passes an explicit list, and :func:`configure_ice` also empties aiortc's default so that a
  peer connection built without a configuration cannot reach the public STUN server either.

:func:`configure_ice` applies this process-wide (a relay worker calls it once at start, before
creating any ``RTCPeerConnection``; ICE connections keep the settings in force when they were
created). The aioice/aiortc internals this needs live in :mod:`meet.relay.compat.gathering`;
:func:`configure_ice` runs the relay's compatibility guard (:func:`meet.relay.compat.check`) first:
on any other aiortc/aioice version, or when an internal it relies on is gone, it raises
:class:`~meet.relay.compat.CompatibilityError` instead of silently gathering the wrong candidates.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import random
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceServer

from meet.relay import compat
from meet.relay.compat import gathering

log = logging.getLogger("meet.relay.ice")


class PortRangeExhausted(RuntimeError):
    """No UDP port of the configured range is free for a host candidate."""


@dataclass(frozen=True)
class HostBinding:
    """One host candidate per ICE component: the socket is bound to ``bind``, ``announce`` goes into SDP."""

    bind: str
    announce: str


@dataclass
class _PortRange:
    low: int
    high: int
    next: int  # where the next search starts: ports are handed out round-robin

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    def candidates(self) -> list[int]:
        start = self.next - self.low
        return [self.low + (start + i) % self.size for i in range(self.size)]


@dataclass(frozen=True)
class IceSettings:
    """What :func:`configure_ice` installed."""

    #: None: aioice's default (every non-loopback interface address, announced as bound).
    bindings: tuple[HostBinding, ...] | None
    port_range: tuple[int, int] | None
    _ports: _PortRange | None = field(default=None, repr=False, compare=False)


_settings: IceSettings | None = None


# --- public API -------------------------------------------------------------------------------


def configure_ice(host_addresses: Sequence[str], port_range: Sequence[int] | None) -> IceSettings:
    """Make every aiortc peer connection created from now on in this process use these settings.

    ``host_addresses``: IPs to announce as host candidates (see the module docstring for which
    are bound and which are announced for a 1:1 NAT); empty means the machine's non-loopback
    addresses. ``port_range``: ``(low, high)``, inclusive, or None for any port. May be called
    again to change the settings (connections already created keep theirs). Raises
    :class:`~meet.relay.compat.CompatibilityError` on an untested aioice/aiortc and ``ValueError``
    on bad input.
    """
    global _settings
    compat.check()
    bindings = resolve_host_addresses(host_addresses) if host_addresses else None
    ports = None
    if port_range is not None:
        low, high = _check_port_range(port_range)
        ports = _PortRange(low, high, random.randint(low, high))  # spread workers sharing a range
    settings = IceSettings(bindings, (ports.low, ports.high) if ports else None, ports)
    gathering.install(partial(_host_sockets, settings))
    _settings = settings
    if bindings is None:
        log.info("relay ICE: host candidates on every non-loopback interface address")
    for binding in bindings or ():
        if binding.bind == binding.announce:
            log.info("relay ICE: host candidates on %s", binding.bind)
        else:
            log.info("relay ICE: binding %s, announcing %s (1:1 NAT)", binding.bind, binding.announce)
    low_high = f"{settings.port_range[0]}-{settings.port_range[1]}" if settings.port_range else "any"
    log.info("relay ICE: UDP ports %s", low_high)
    return settings


def rtc_configuration(
    ice_servers: Sequence[Mapping[str, Any]], *, bundle_policy: str = "max-bundle"
) -> RTCConfiguration:
    """An ``RTCConfiguration`` with exactly these STUN/TURN servers (never aiortc's default).

    ``ice_servers`` are RTCIceServer dictionaries ``{"urls", "username"?, "credential"?}``, as
    ``IceServer.as_json()`` makes them; ``[]`` means host candidates only. Each URL is checked
    here (``ValueError`` when aiortc could not use it). aiortc uses only the first STUN URL and
    the first usable TURN URL (``turn:`` over udp/tcp, ``turns:`` over tcp).

    ``bundle_policy`` defaults to ``"max-bundle"``: one ICE transport, so one UDP port per host
    address, per peer connection (``"balanced"`` opens one per media kind).
    """
    servers = []
    for entry in ice_servers:
        unknown = set(entry) - {"urls", "username", "credential"}
        if unknown:
            raise ValueError(f"ice server: unknown key {min(unknown)!r}")
        urls = entry.get("urls")
        url_list = [urls] if isinstance(urls, str) else urls
        if not isinstance(url_list, list) or not url_list or not all(isinstance(u, str) for u in url_list):
            raise ValueError(f"ice server: urls must be a URL or a non-empty list of URLs, got {urls!r}")
        for url in url_list:
            try:
                gathering.check_ice_url(url)
            except ValueError as exc:
                raise ValueError(f"ice server: {url!r} is not a usable STUN/TURN URL ({exc})") from None
        servers.append(
            RTCIceServer(
                urls=list(url_list),
                username=entry.get("username") or None,
                credential=entry.get("credential") or None,
            )
        )
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy(bundle_policy))


def resolve_host_addresses(host_addresses: Sequence[str]) -> tuple[HostBinding, ...]:
    """Where each configured address is bound: itself when local, else the family's wildcard."""
    bindings = []
    for text in host_addresses:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            raise ValueError(f"host address {text!r} is not an IP address") from None
        if address.is_unspecified or address.is_multicast:
            raise ValueError(f"host address {text!r} cannot be announced (unspecified or multicast)")
        announce = str(address)
        bind = announce if _is_local(announce) else ("0.0.0.0" if address.version == 4 else "::")
        binding = HostBinding(bind, announce)
        if binding not in bindings:
            bindings.append(binding)
    return tuple(bindings)


def current_settings() -> IceSettings | None:
    """The settings installed by :func:`configure_ice`, or None."""
    return _settings


def reset_ice() -> None:
    """Undo :func:`configure_ice`: stock aioice/aiortc behaviour again (for tests)."""
    global _settings
    _settings = None
    gathering.uninstall()


def _host_sockets(
    settings: IceSettings, addresses: list[str], use_ipv4: bool, use_ipv6: bool
) -> list[tuple[socket.socket, str]]:
    """The host sockets of one ICE component, each with the address it announces."""
    if settings.bindings is not None:
        bindings = list(settings.bindings)
    else:
        bindings = [HostBinding(address, address) for address in addresses]
    bindings = [b for b in bindings if (use_ipv4 if _version(b.announce) == 4 else use_ipv6)]
    sockets: list[tuple[socket.socket, str]] = []
    try:
        for binding in bindings:
            try:
                sock = _bind_udp(binding.bind, settings._ports)
            except OSError as exc:  # as aioice: an address that went away is skipped
                log.warning("relay ICE: cannot bind %s (%s); no host candidate there", binding.bind, exc)
                continue
            sockets.append((sock, binding.announce))
    except BaseException:
        for sock, _ in sockets:
            sock.close()
        raise
    return sockets


# --- sockets ----------------------------------------------------------------------------------


def _bind_udp(host: str, ports: _PortRange | None) -> socket.socket:
    """A non-blocking UDP socket bound to ``host`` on a port of the range (any port without one)."""
    family = socket.AF_INET if _version(host) == 4 else socket.AF_INET6
    for port in ports.candidates() if ports else [0]:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # "::" must not take IPv4 ports
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, gathering.receive_buffer_size())
            sock.setblocking(False)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            if ports is not None and exc.errno == errno.EADDRINUSE:
                continue
            raise
        if ports is not None:
            ports.next = port + 1 if port < ports.high else ports.low
        return sock
    assert ports is not None
    raise PortRangeExhausted(
        f"no free UDP port on {host} in the relay's range {ports.low}-{ports.high}: all {ports.size} "
        "are in use (by other peer connections, relay workers or programs); widen [rtc] udp_ports"
    )


def _is_local(address: str) -> bool:
    """Whether this machine can bind ``address`` (an interface address, loopback included)."""
    family = socket.AF_INET if _version(address) == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((address, 0))
        except OSError:
            return False
    return True


def _version(address: str) -> int:
    return ipaddress.ip_address(address).version


def _check_port_range(port_range: Sequence[int]) -> tuple[int, int]:
    if len(port_range) != 2:
        raise ValueError(f"port range must be (low, high), got {port_range!r}")
    low, high = (int(p) for p in port_range)
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"port range {low}-{high} is not within 1-65535 with low <= high")
    return low, high
