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
created). Everything here that touches aioice's or aiortc's internals is checked by
:func:`check_compatibility` first, against the versions it was written for (:data:`TESTED_VERSIONS`):
on any other version, or when an internal it relies on is gone, it raises
:class:`IceCompatibilityError` instead of silently gathering the wrong candidates.

Internals used (aioice 0.13.0 / aiortc 1.16.0):

- ``aiortc.rtcicetransport.Connection``: the name ``RTCIceGatherer.__init__`` builds its
  ``aioice.Connection`` from; replaced by a subclass.
- ``aioice.Connection.get_component_candidates(component, addresses, timeout)`` (called by
  ``gather_candidates`` with the interface addresses): overridden to bind host sockets itself;
  host candidates are built with ``aioice.candidate.candidate_foundation/candidate_priority``,
  STUN queries use ``aioice.ice.server_reflexive_candidate``; TURN still goes through the original
  method (called with no addresses). Private attributes read/extended: ``_protocols``,
  ``_transport_policy``, ``_use_ipv4``, ``_use_ipv6``; ``StunProtocol.local_candidate`` is set.
- ``aiortc.rtcicetransport.RTCIceGatherer.getDefaultIceServers``: replaced to return ``[]``.
- ``aiortc.rtcicetransport.parse_stun_turn_uri``: validates configured URLs early.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import ipaddress
import logging
import random
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aioice
import aioice.candidate
import aioice.ice
import aioice.turn
import aiortc
import aiortc.rtcicetransport
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCBundlePolicy

log = logging.getLogger("meet.relay.ice")

#: The versions whose internals this module was written against and tested with.
TESTED_VERSIONS = {"aioice": "0.13.0", "aiortc": "1.16.0"}


class IceCompatibilityError(RuntimeError):
    """The installed aioice/aiortc is not the one this module's patches were written for."""


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
_CONNECTION = "Connection"  # the name in aiortc.rtcicetransport that RTCIceGatherer instantiates
_original_connection: type[aioice.Connection] | None = None
_original_default_servers: Any = None


# --- public API -------------------------------------------------------------------------------


def configure_ice(host_addresses: Sequence[str], port_range: Sequence[int] | None) -> IceSettings:
    """Make every aiortc peer connection created from now on in this process use these settings.

    ``host_addresses``: IPs to announce as host candidates (see the module docstring for which
    are bound and which are announced for a 1:1 NAT); empty means the machine's non-loopback
    addresses. ``port_range``: ``(low, high)``, inclusive, or None for any port. May be called
    again to change the settings (connections already created keep theirs). Raises
    :class:`IceCompatibilityError` on an untested aioice/aiortc and ``ValueError`` on bad input.
    """
    global _settings
    check_compatibility()
    bindings = resolve_host_addresses(host_addresses) if host_addresses else None
    ports = None
    if port_range is not None:
        low, high = _check_port_range(port_range)
        ports = _PortRange(low, high, random.randint(low, high))  # spread workers sharing a range
    settings = IceSettings(bindings, (ports.low, ports.high) if ports else None, ports)
    _install()
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
                aiortc.rtcicetransport.parse_stun_turn_uri(url)
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
    global _settings, _original_connection, _original_default_servers
    _settings = None
    if _original_connection is not None:
        setattr(aiortc.rtcicetransport, _CONNECTION, _original_connection)
        _original_connection = None
    if _original_default_servers is not None:
        aiortc.rtcicetransport.RTCIceGatherer.getDefaultIceServers = _original_default_servers  # type: ignore[method-assign]
        _original_default_servers = None


def check_compatibility() -> None:
    """Raise :class:`IceCompatibilityError` unless every internal this module relies on is as expected."""
    problems = []
    for name, module in (("aioice", aioice), ("aiortc", aiortc)):
        installed = getattr(module, "__version__", "unknown")
        if installed != TESTED_VERSIONS[name]:
            problems.append(
                f"{name} {installed} is installed, but this was written for {TESTED_VERSIONS[name]}"
            )

    base = aioice.ice.Connection
    method = getattr(base, "get_component_candidates", None)
    if method is None:
        problems.append("aioice.ice.Connection.get_component_candidates is missing")
    elif list(inspect.signature(method).parameters) != ["self", "component", "addresses", "timeout"]:
        problems.append("aioice.ice.Connection.get_component_candidates has a new signature")
    gather = getattr(base, "gather_candidates", None)
    if gather is None or "get_component_candidates" not in _names_used(gather):
        problems.append("aioice.ice.Connection.gather_candidates no longer calls get_component_candidates")
    if not issubclass(_RelayConnection, base):
        problems.append("aioice.ice.Connection is not the class this module subclasses")
    for name in ("StunProtocol", "TransportPolicy", "server_reflexive_candidate"):
        if not hasattr(aioice.ice, name):
            problems.append(f"aioice.ice.{name} is missing")
    for name in ("candidate_foundation", "candidate_priority"):
        if not hasattr(aioice.candidate, name):
            problems.append(f"aioice.candidate.{name} is missing")
    if not hasattr(aioice.turn, "UDP_SOCKET_BUFFER_SIZE"):
        problems.append("aioice.turn.UDP_SOCKET_BUFFER_SIZE is missing")
    if method is not None and hasattr(aioice.ice, "TransportPolicy"):
        try:
            probe = base(ice_controlling=False)
        except Exception as exc:  # noqa: BLE001 - reported below, loudly
            problems.append(f"aioice.ice.Connection() failed: {exc!r}")
        else:
            for attribute in (
                "_protocols",
                "_transport_policy",
                "_use_ipv4",
                "_use_ipv6",
                "stun_server",
                "turn_server",
            ):
                if not hasattr(probe, attribute):
                    problems.append(f"aioice.ice.Connection instances lack {attribute}")

    ice_module = aiortc.rtcicetransport
    if vars(ice_module).get(_CONNECTION) not in (base, _RelayConnection):
        problems.append("aiortc.rtcicetransport.Connection is not aioice's Connection")
    gatherer = getattr(ice_module, "RTCIceGatherer", None)
    if gatherer is None or "Connection" not in _names_used(gatherer.__init__):
        problems.append("aiortc's RTCIceGatherer no longer builds aiortc.rtcicetransport.Connection")
    if gatherer is None or not hasattr(gatherer, "getDefaultIceServers"):
        problems.append("aiortc's RTCIceGatherer.getDefaultIceServers is missing")
    if not hasattr(ice_module, "parse_stun_turn_uri"):
        problems.append("aiortc.rtcicetransport.parse_stun_turn_uri is missing")

    if problems:
        raise IceCompatibilityError(
            "meet.relay.ice patches aioice/aiortc internals and cannot vouch for the installed versions: "
            + "; ".join(problems)
            + f". Install aioice=={TESTED_VERSIONS['aioice']} and aiortc=={TESTED_VERSIONS['aiortc']}, "
            "or re-check meet/relay/ice.py against the new versions and update TESTED_VERSIONS."
        )


def _names_used(function: Any) -> set[str]:
    """The global and attribute names a function's code (and its nested code) refers to."""
    names: set[str] = set()
    stack = [function.__code__]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(const for const in code.co_consts if inspect.iscode(const))
    return names


# --- the patch --------------------------------------------------------------------------------


class _RelayConnection(aioice.ice.Connection):
    """aioice's Connection, gathering host candidates as :func:`configure_ice` says."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._meet_settings = _settings

    async def get_component_candidates(
        self, component: int, addresses: list[str], timeout: int = 5
    ) -> list[aioice.Candidate]:
        settings = self._meet_settings
        if settings is None or self._transport_policy != aioice.ice.TransportPolicy.ALL:
            # Relay-only policy: aioice gathers no host candidates (addresses is empty).
            return await super().get_component_candidates(component, addresses, timeout)

        if settings.bindings is not None:
            bindings = list(settings.bindings)
        else:
            bindings = [HostBinding(address, address) for address in addresses]
        bindings = [b for b in bindings if (self._use_ipv4 if _version(b.announce) == 4 else self._use_ipv6)]

        host_protocols = await self._bind_host_candidates(component, bindings, settings._ports)
        self._protocols += host_protocols
        candidates = [protocol.local_candidate for protocol in host_protocols]

        # aioice's method also does STUN (for its own host sockets) and TURN: do STUN for ours,
        # and let it do TURN by handing it no addresses.
        srflx, relayed = await asyncio.gather(
            self._query_stun(host_protocols, timeout),
            super().get_component_candidates(component, [], timeout),
        )
        return candidates + srflx + relayed

    async def _bind_host_candidates(
        self, component: int, bindings: list[HostBinding], ports: _PortRange | None
    ) -> list[aioice.ice.StunProtocol]:
        loop = asyncio.get_running_loop()
        protocols: list[aioice.ice.StunProtocol] = []
        try:
            for binding in bindings:
                try:
                    sock = _bind_udp(binding.bind, ports)
                except OSError as exc:  # as aioice: an address that went away is skipped
                    log.warning("relay ICE: cannot bind %s (%s); no host candidate there", binding.bind, exc)
                    continue
                try:
                    _, protocol = await loop.create_datagram_endpoint(
                        lambda: aioice.ice.StunProtocol(self), sock=sock
                    )
                except BaseException:
                    sock.close()
                    raise
                port = sock.getsockname()[1]
                protocol.local_candidate = aioice.Candidate(
                    foundation=aioice.candidate.candidate_foundation("host", "udp", binding.announce),
                    component=component,
                    transport="udp",
                    priority=aioice.candidate.candidate_priority(component, "host"),
                    host=binding.announce,
                    port=port,
                    type="host",
                )
                protocols.append(protocol)
        except BaseException:
            for protocol in protocols:
                await protocol.close()
            raise
        return protocols

    async def _query_stun(
        self, protocols: list[aioice.ice.StunProtocol], timeout: int
    ) -> list[aioice.Candidate]:
        if not self.stun_server:
            return []
        stun_server = self.stun_server
        tasks = [
            asyncio.create_task(aioice.ice.server_reflexive_candidate(protocol, stun_server))
            for protocol in protocols
            if _version(protocol.local_candidate.host) == 4  # as aioice: IPv4 only
        ]
        if not tasks:
            return []
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        return [task.result()[0] for task in done if task.exception() is None]


def _install() -> None:
    global _original_connection, _original_default_servers
    module = aiortc.rtcicetransport
    if _original_connection is None:
        _original_connection = vars(module)[_CONNECTION]
        setattr(module, _CONNECTION, _RelayConnection)
    if _original_default_servers is None:
        _original_default_servers = module.RTCIceGatherer.__dict__["getDefaultIceServers"]
        module.RTCIceGatherer.getDefaultIceServers = classmethod(_no_default_servers)  # type: ignore[method-assign, assignment]


def _no_default_servers(cls: type) -> list[RTCIceServer]:
    return []


# --- sockets ----------------------------------------------------------------------------------


def _bind_udp(host: str, ports: _PortRange | None) -> socket.socket:
    """A non-blocking UDP socket bound to ``host`` on a port of the range (any port without one)."""
    family = socket.AF_INET if _version(host) == 4 else socket.AF_INET6
    for port in ports.candidates() if ports else [0]:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)  # "::" must not take IPv4 ports
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE)
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
