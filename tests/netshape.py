"""A network path of its own for one browser, which a test can shape with `tc`.

The browser tests run in a loopback-only namespace (`unshare -n`), where traffic between two
addresses of the namespace always goes over `lo`: shaping one browser's traffic there would
shape everyone's. So the shaped browser runs in a second network namespace, joined to the
tests' namespace by a veth pair:

    tests' namespace (server, relay, other browsers)        shaped namespace (one Chromium)
    <outer> 10.99.N.1/24  <───────── veth ─────────>  <inner> 10.99.N.2/24

The server listens on 10.99.N.1 (the other browsers reach it there too, over `lo`) and the relay
announces it as its host candidate (`[rtc] host_addresses`). The shaped Chromium is started
through a wrapper script (`ip netns exec <ns> chromium "$@"`; Playwright talks to it over pipes,
which cross namespaces). `tc qdisc … root tbf` on <outer> shapes what leaves the tests'
namespace towards that browser: its downlink (`netem` is not available on these kernels; `tbf`
and `htb` are). Everything is removed on exit, even after a failure.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from browser import CHROMIUM

TIMEOUT = 10  # s per ip/tc command
DOWNLINK = "rate 400kbit burst 16kbit latency 50ms"  # the weak link


def _run(*command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), check=check, capture_output=True, text=True, timeout=TIMEOUT)


def require_netshape() -> None:
    """Skip (with the reason) where namespaces cannot be made; fail outside a loopback-only
    namespace, so that a test never adds links and addresses to a real machine's network."""
    if os.geteuid() != 0:
        pytest.skip("shaping a browser's network needs root (ip netns, veth, tc)")
    missing = [tool for tool in ("ip", "tc") if not shutil.which(tool)]
    if missing:
        pytest.skip(f"shaping a browser's network needs {' and '.join(missing)} (iproute2)")
    names = {name for _, name in socket.if_nameindex()}
    if names != {"lo"}:
        pytest.fail(
            f"interfaces {sorted(names)}: run the browser tests in a loopback-only namespace (README)"
        )


@dataclass
class ShapedPath:
    """One browser's own network path (see the module docstring)."""

    namespace: str
    outer: str  # veth end in the tests' namespace: its egress is the shaped browser's downlink
    inner: str  # veth end in the shaped namespace
    server_address: str  # on `outer`: where the server listens and the relay announces itself
    browser_address: str  # on `inner`
    chromium: str  # executable for Playwright: Chromium inside the shaped namespace
    shaped_now: bool = field(default=False)

    def shape(self, spec: str = DOWNLINK) -> None:
        """Shape the downlink with a token bucket (`tc … tbf <spec>`)."""
        _run("tc", "qdisc", "replace", "dev", self.outer, "root", "tbf", *spec.split())
        self.shaped_now = True

    def unshape(self) -> None:
        """Remove the shaping (back to the veth's default queue)."""
        if self.shaped_now:
            _run("tc", "qdisc", "del", "dev", self.outer, "root", check=False)
            self.shaped_now = False

    @contextlib.contextmanager
    def uplink_shaped(self, spec: str) -> Iterator[None]:
        """The shaped browser's uplink (the inner end's egress) shaped for the block."""
        inside = ("ip", "netns", "exec", self.namespace, "tc", "qdisc")
        _run(*inside, "replace", "dev", self.inner, "root", "tbf", *spec.split())
        try:
            yield
        finally:
            _run(*inside, "del", "dev", self.inner, "root", check=False)

    @contextlib.contextmanager
    def shaped(self, spec: str = DOWNLINK) -> Iterator[None]:
        """The downlink shaped for the duration of the block."""
        self.shape(spec)
        try:
            yield
        finally:
            self.unshape()

    def stats(self) -> dict[str, int | str]:
        """The outer end's root qdisc now: its kind ("tbf" while shaped) and counters
        (`tc -s qdisc show`: sent_bytes, sent_packets, dropped, overlimits)."""
        text = _run("tc", "-s", "qdisc", "show", "dev", self.outer).stdout
        kind = re.search(r"qdisc (\S+)", text)
        counters = re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+), overlimits (\d+)", text)
        out: dict[str, int | str] = {"kind": kind.group(1) if kind else ""}
        names = ("sent_bytes", "sent_packets", "dropped", "overlimits")
        out.update(zip(names, (int(n) for n in counters.groups())) if counters else {})
        return out


def _wrapper(folder: Path, namespace: str) -> str:
    script = folder / f"chromium-in-{namespace}"
    script.write_text(f'#!/bin/sh\nexec ip netns exec {namespace} {CHROMIUM} "$@"\n')
    script.chmod(0o755)
    return str(script)


def _teardown(namespace: str, outer: str) -> None:
    """Remove the namespace and the veth pair; end processes left inside the namespace (a
    Chromium the test started and that did not exit)."""
    pids = _run("ip", "netns", "pids", namespace, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), 9)
    _run("ip", "link", "del", outer, check=False)  # also removes the inner end
    _run("ip", "netns", "del", namespace, check=False)


@contextlib.contextmanager
def shaped_path(folder: Path, subnet: int = 77) -> Iterator[ShapedPath]:
    """Make the namespace, the veth pair (10.99.<subnet>.1 outside, .2 inside) and the Chromium
    wrapper in ``folder``; remove them all on exit."""
    require_netshape()
    tag = f"{os.getpid()}"
    namespace, outer, inner = f"meetshape{tag}", f"vsh{tag}o", f"vsh{tag}i"
    server_address, browser_address = f"10.99.{subnet}.1", f"10.99.{subnet}.2"
    commands = [
        ("ip", "netns", "add", namespace),
        ("ip", "link", "add", outer, "type", "veth", "peer", "name", inner),
        ("ip", "link", "set", inner, "netns", namespace),
        ("ip", "addr", "add", f"{server_address}/24", "dev", outer),
        ("ip", "link", "set", outer, "up"),
        ("ip", "-n", namespace, "addr", "add", f"{browser_address}/24", "dev", inner),
        ("ip", "-n", namespace, "link", "set", inner, "up"),
        ("ip", "-n", namespace, "link", "set", "lo", "up"),
    ]
    try:
        for command in commands:
            result = _run(*command, check=False)
            if result.returncode:
                pytest.fail(f"{' '.join(command)} failed: {result.stderr.strip()}")
        yield ShapedPath(
            namespace, outer, inner, server_address, browser_address, _wrapper(folder, namespace)
        )
    finally:
        _teardown(namespace, outer)
