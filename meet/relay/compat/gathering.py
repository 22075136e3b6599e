"""ICE gathering through aioice's internals (aioice 0.13.0 / aiortc 1.16.0).

aioice gathers a host candidate on every non-loopback interface address, on random ports, and
aiortc asks Google's public STUN server when no ``iceServers`` are given. :func:`install` makes
every peer connection created afterwards gather its host candidates on sockets the caller binds
(``meet.relay.ice`` decides the addresses and ports) and have no default STUN server.

What is touched (checked by :func:`meet.relay.compat.check`):

- ``aiortc.rtcicetransport.Connection``: the name ``RTCIceGatherer.__init__`` builds its
  ``aioice.Connection`` from; replaced by :class:`RelayConnection`.
- ``aioice.Connection.get_component_candidates(component, addresses, timeout)`` (called by
  ``gather_candidates`` with the interface addresses): overridden to wrap the caller's sockets;
  host candidates are built with ``aioice.candidate.candidate_foundation/candidate_priority``,
  STUN queries use ``aioice.ice.server_reflexive_candidate``; TURN still goes through the
  original method (called with no addresses). Private attributes read/extended: ``_protocols``,
  ``_transport_policy``, ``_use_ipv4``, ``_use_ipv6``; ``StunProtocol.local_candidate`` is set.
- ``aiortc.rtcicetransport.RTCIceGatherer.getDefaultIceServers``: replaced to return ``[]``.
- ``aiortc.rtcicetransport.parse_stun_turn_uri``: validates configured URLs early.
- ``aioice.turn.UDP_SOCKET_BUFFER_SIZE``: the receive buffer aioice gives its own sockets.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import aioice
import aioice.candidate
import aioice.ice
import aioice.turn
import aiortc.rtcicetransport
from aiortc import RTCIceServer

#: ``(interface addresses aioice found, use IPv4, use IPv6)`` → bound non-blocking UDP sockets,
#: each with the address its host candidate announces. The provider closes what it bound if it raises.
HostSockets = Callable[[list[str], bool, bool], list[tuple[socket.socket, str]]]

CONNECTION = "Connection"  # the name in aiortc.rtcicetransport that RTCIceGatherer instantiates

_provider: HostSockets | None = None
_original_connection: type[aioice.Connection] | None = None
_original_default_servers: Any = None


class RelayConnection(aioice.ice.Connection):
    """aioice's Connection, gathering host candidates on the sockets the provider binds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._meet_host_sockets = _provider  # the settings in force when the connection was made

    async def get_component_candidates(
        self, component: int, addresses: list[str], timeout: int = 5
    ) -> list[aioice.Candidate]:
        provider = self._meet_host_sockets
        if provider is None or self._transport_policy != aioice.ice.TransportPolicy.ALL:
            # Relay-only policy: aioice gathers no host candidates (addresses is empty).
            return await super().get_component_candidates(component, addresses, timeout)
        sockets = provider(addresses, self._use_ipv4, self._use_ipv6)
        host_protocols = await self._wrap_sockets(component, sockets)
        self._protocols += host_protocols
        candidates = [protocol.local_candidate for protocol in host_protocols]
        # aioice's method also does STUN (for its own host sockets) and TURN: do STUN for ours,
        # and let it do TURN by handing it no addresses.
        srflx, relayed = await asyncio.gather(
            self._query_stun(host_protocols, timeout),
            super().get_component_candidates(component, [], timeout),
        )
        return candidates + srflx + relayed

    async def _wrap_sockets(
        self, component: int, sockets: list[tuple[socket.socket, str]]
    ) -> list[aioice.ice.StunProtocol]:
        loop = asyncio.get_running_loop()
        protocols: list[aioice.ice.StunProtocol] = []
        try:
            for sock, announce in sockets:
                _, protocol = await loop.create_datagram_endpoint(
                    lambda: aioice.ice.StunProtocol(self), sock=sock
                )
                protocols.append(protocol)  # the protocol owns the socket from here on
                protocol.local_candidate = aioice.Candidate(
                    foundation=aioice.candidate.candidate_foundation("host", "udp", announce),
                    component=component,
                    transport="udp",
                    priority=aioice.candidate.candidate_priority(component, "host"),
                    host=announce,
                    port=sock.getsockname()[1],
                    type="host",
                )
        except BaseException:
            for sock, _ in sockets[len(protocols) :]:
                sock.close()
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
            if ":" not in protocol.local_candidate.host  # as aioice: IPv4 only
        ]
        if not tasks:
            return []
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        return [task.result()[0] for task in done if task.exception() is None]


#: What ``aiortc.rtcicetransport.Connection`` may be: stock, or ours once installed.
CONNECTION_CLASSES = (aioice.ice.Connection, RelayConnection)


def install(provider: HostSockets) -> None:
    """Peer connections created from now on gather host candidates on ``provider``'s sockets."""
    global _provider, _original_connection, _original_default_servers
    module = aiortc.rtcicetransport
    _provider = provider
    if _original_connection is None:
        _original_connection = vars(module)[CONNECTION]
        setattr(module, CONNECTION, RelayConnection)
    if _original_default_servers is None:
        _original_default_servers = module.RTCIceGatherer.__dict__["getDefaultIceServers"]
        module.RTCIceGatherer.getDefaultIceServers = classmethod(_no_default_servers)  # type: ignore[method-assign, assignment]


def uninstall() -> None:
    """Stock aioice/aiortc gathering again (connections already created keep theirs)."""
    global _provider, _original_connection, _original_default_servers
    _provider = None
    if _original_connection is not None:
        setattr(aiortc.rtcicetransport, CONNECTION, _original_connection)
        _original_connection = None
    if _original_default_servers is not None:
        aiortc.rtcicetransport.RTCIceGatherer.getDefaultIceServers = _original_default_servers  # type: ignore[method-assign]
        _original_default_servers = None


def installed() -> bool:
    """Whether aiortc builds :class:`RelayConnection` now."""
    return vars(aiortc.rtcicetransport).get(CONNECTION) is RelayConnection


def check_ice_url(url: str) -> None:
    """Raise ``ValueError`` unless aiortc can use this STUN/TURN URL."""
    aiortc.rtcicetransport.parse_stun_turn_uri(url)


def receive_buffer_size() -> int:
    """The UDP receive buffer aioice gives its own sockets (the relay's match)."""
    return int(aioice.turn.UDP_SOCKET_BUFFER_SIZE)


def _no_default_servers(cls: type) -> list[RTCIceServer]:
    return []
