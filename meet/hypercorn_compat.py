"""A guard for a Hypercorn 0.18 fault meet cannot avoid from the ASGI side.

HTTP/2 (TLS with ALPN, or cleartext with prior knowledge): when the app answers before a
request body has fully arrived (a 413 for a large body), Hypercorn forgets the stream, and the
DATA frames still on their way reach ``self.streams[event.stream_id]`` in
``H2Protocol._handle_events``: the KeyError escapes the connection task and stops the whole
server. The guard acknowledges and drops DATA for streams that are gone, as Hypercorn already
does for their END_STREAM.
"""

from __future__ import annotations

from typing import Any

import h2.events
from hypercorn.protocol.h2 import H2Protocol

_original = H2Protocol._handle_events


async def _handle_events(self: H2Protocol, events: list[h2.events.Event]) -> None:
    # One event at a time: the app may close a stream while an earlier event is handled.
    dropped = False
    for event in events:
        if isinstance(event, h2.events.DataReceived) and event.stream_id not in self.streams:
            # Give the flow-control window back, or the client stalls on its other streams.
            self.connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            dropped = True
            continue
        await _original(self, [event])
    if dropped:
        await self._flush()


def install() -> None:
    """Put the guard in place (idempotent); refuse to run on a Hypercorn it was not written for."""
    if not callable(getattr(H2Protocol, "_handle_events", None)) or not hasattr(H2Protocol, "_flush"):
        raise RuntimeError("meet's HTTP/2 guard does not fit this Hypercorn: install hypercorn 0.18")
    patched: Any = _handle_events
    H2Protocol._handle_events = patched  # type: ignore[method-assign]
