"""SRTP protect and unprotect without pylibsrtp's per-call wrapper (pylibsrtp 1.0.0).

``Session.protect`` and ``unprotect`` run the same few steps on every packet: a type check,
a new ``int *`` from cffi, a copy into the session's 1500-byte buffer, the libsrtp call, the
result copied out. A relay protects each packet once per subscriber and unprotects each one it
receives, so that allocation and the wrapper's frames are paid tens of thousands of times a
second. :func:`protector` and :func:`unprotector` bind one ``int *`` per function and call
libsrtp on the session's own buffer: the same bytes out, the same errors (``ValueError`` for a
packet that does not fit, :class:`pylibsrtp.Error` for what libsrtp refuses), about a third
less time per packet.

Only the session's ``_cdata``, ``_buffer`` and ``_srtp`` fields, the ``_binding`` module and
``_srtp_assert`` are touched; :func:`problems` verifies them against the pinned version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pylibsrtp
from pylibsrtp import _binding

#: The pylibsrtp version the fields below were read from (pyproject.toml pins the same).
PINNED = "1.0.0"
_SESSION_FIELDS = ("_cdata", "_buffer", "_srtp")
_LIBRARY = ("srtp_protect", "srtp_unprotect", "srtp_err_status_ok")
_ffi: Any = _binding.ffi
_lib: Any = _binding.lib
_TRAILER: int = getattr(pylibsrtp, "SRTP_MAX_TRAILER_LEN", 144)  # room libsrtp may add to a packet
Process = Callable[[bytes], bytes]
_PROTECTORS = "_meet_protect"  # the functions bound to a session, made once (see protector)


def protector(session: Any) -> Process:
    """``session.protect``, bound once to ``session`` (a :class:`pylibsrtp.Session`)."""
    return _bound(session)[0]


def unprotector(session: Any) -> Process:
    """``session.unprotect``, bound once to ``session``."""
    return _bound(session)[1]


def _bound(session: Any) -> tuple[Process, Process]:
    bound: tuple[Process, Process] | None = getattr(session, _PROTECTORS, None)
    if bound is None:
        bound = (
            _processor(session, _lib.srtp_protect, _TRAILER),
            _processor(session, _lib.srtp_unprotect, 0),
        )
        setattr(session, _PROTECTORS, bound)
    return bound


def _processor(session: Any, function: Any, trailer: int) -> Process:
    """What ``Session.__process`` does for ``function``, with its ``int *`` made once."""
    cdata = session._cdata
    buffer = session._buffer
    srtp = session._srtp[0]  # the libsrtp session: fixed for the Session's life
    capacity = len(cdata) - trailer
    length = _ffi.new("int *")
    ok = _lib.srtp_err_status_ok
    check: Callable[[int], None] = pylibsrtp._srtp_assert

    def process(data: bytes) -> bytes:
        size = len(data)
        if size > capacity:
            raise ValueError("packet is too long")
        length[0] = size
        buffer[0:size] = data
        status = function(srtp, cdata, length)
        if status != ok:
            check(status)  # raises pylibsrtp.Error with libsrtp's message
        return buffer[0 : length[0]]  # type: ignore[no-any-return]

    return process


def problems() -> list[str]:
    """What :func:`protector`/:func:`unprotector` rely on that the installed pylibsrtp lacks."""
    found: list[str] = []
    if getattr(pylibsrtp, "__version__", None) != PINNED:
        found.append(
            f"pylibsrtp {getattr(pylibsrtp, '__version__', '?')} is installed, this was written for {PINNED}"
        )
    found += [f"pylibsrtp._binding.lib.{name} is missing" for name in _LIBRARY if not hasattr(_lib, name)]
    if not callable(getattr(pylibsrtp, "_srtp_assert", None)):
        found.append("pylibsrtp._srtp_assert is missing")
    try:
        session = pylibsrtp.Session()
    except Exception as exc:  # noqa: BLE001 - any surprise here is exactly what we report
        return [*found, f"making a pylibsrtp.Session failed: {exc!r}"]
    found += [
        f"pylibsrtp.Session instances lack {name}" for name in _SESSION_FIELDS if not hasattr(session, name)
    ]
    return found
