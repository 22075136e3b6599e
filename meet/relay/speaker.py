"""Who is the dominant speaker of a room, from the audio levels its publishers send (RFC 6464).

Every audio packet from a browser carries its level in -dBov (0 loudest, 127 silence). A
publication counts the packets louder than :data:`SPEECH_LEVEL` (:meth:`Publication.speech`);
every :data:`INTERVAL` the worker turns that into each participant's *activity* in the interval
(the share of it that was speech, 0–1: time-based, so a muted or DTX-silent microphone sending
few packets scores 0) and feeds :class:`DominantSpeaker`.

The decision follows the idea of Jitsi's dominant-speaker identification (Volfin and Cohen):
judge speech over a window long enough that a short word, a cough or a "yes" does not count,
and ask a challenger to clearly beat the current speaker over that window, not just for an
instant. Concretely, over the last :data:`WINDOW` seconds:

- with no dominant speaker yet, the most active participant becomes it once active for at
  least :data:`THRESHOLD` of the window;
- a challenger replaces the dominant speaker when it has been active for at least
  :data:`THRESHOLD` of the window *and* by :data:`MARGIN` more than the dominant speaker.

So a single loud 200-ms word (0.2 of a 1-s window) never takes over, and when one person stops
and another starts, the change comes 0.6–0.8 s after the new voice starts. Nobody speaking keeps
the last speaker (the speaker view does not empty in a pause); a speaker who leaves is forgotten.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

SPEECH_LEVEL = 50  # -dBov: a packet at least this loud is speech (background noise is -60 or less)
INTERVAL = 0.2  # seconds between two judgements (the worker's pacer calls at least this often)
WINDOW = 1.0  # seconds of activity each judgement looks at
THRESHOLD = 0.5  # share of the window a participant must have spoken to become the speaker
MARGIN = 0.25  # and how much more than the current speaker, to replace it
PACKET_TIME = 0.02  # seconds of audio per packet (Opus at 20 ms, what browsers send)


class DominantSpeaker:
    """The dominant speaker of one room, updated with each participant's activity per interval."""

    def __init__(self) -> None:
        self.current: str | None = None
        self._history: dict[str, deque[tuple[float, float]]] = {}  # peer -> (time, seconds of speech)
        self._last: float | None = None
        self.scores: dict[str, float] = {}  # peer -> share of the last WINDOW spoken
        self.heard: dict[str, float] = {}  # peer -> when last heard speaking

    def update(self, activity: Mapping[str, float], now: float) -> str | None:
        """Record each participant's activity since the last update; the new speaker, if it changed.

        ``activity`` holds every participant who publishes audio (0–1 each); the others are
        forgotten, as by :meth:`remove`.
        """
        elapsed = INTERVAL if self._last is None else min(max(now - self._last, 0.0), WINDOW)
        self._last = now
        for peer in set(self._history) - set(activity):
            self.remove(peer)
        for peer, value in activity.items():
            history = self._history.setdefault(peer, deque())
            history.append((now, min(max(value, 0.0), 1.0) * elapsed))
            while history[0][0] <= now - WINDOW:
                history.popleft()
            if value > 0:
                self.heard[peer] = now
        self.scores = scores = {
            peer: sum(spoken for _time, spoken in history) / WINDOW for peer, history in self._history.items()
        }
        best = max(scores, key=lambda peer: (scores[peer], peer != self.current), default=None)
        if best is None or best == self.current or scores[best] < THRESHOLD:
            return None
        if self.current is not None and scores[best] < scores.get(self.current, 0.0) + MARGIN:
            return None
        self.current = best
        return best

    def loudness(self) -> dict[str, tuple[float, float]]:
        """peer → (share of the last second spoken, when last heard speaking): who fills audio slots."""
        return {peer: (score, self.heard.get(peer, float("-inf"))) for peer, score in self.scores.items()}

    def remove(self, peer: str) -> None:
        """``peer`` left: forget it (the speaker stays unset until someone speaks)."""
        self._history.pop(peer, None)
        self.scores.pop(peer, None)
        self.heard.pop(peer, None)
        if self.current == peer:
            self.current = None


def activity(speech_packets: int, elapsed: float) -> float:
    """The share of ``elapsed`` seconds that ``speech_packets`` packets of speech cover (0–1)."""
    if elapsed <= 0:
        return 0.0
    return min(1.0, speech_packets * PACKET_TIME / elapsed)
