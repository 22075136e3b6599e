"""The wheel, as a self-hoster gets it: built with ``python -m build`` (sdist, then the wheel from
the sdist), installed apart from the editable checkout, and run: ``meet --version`` and
``meet serve`` answering health, a page and its static files from the installed copy.

The build runs without network (``--no-isolation``: the test extra installs ``build`` and
hatchling). The install is ``pip install --no-deps --target DIR``: meet's code, templates and
web assets come from DIR (asserted). Its dependencies come from this environment, but only those
the wheel declares (and theirs): they are linked into a folder of their own and Python runs
without site-packages (``-S``), so an import of an undeclared package fails here as it would after
``pipx install``. One build and one install per module (~3 s); one server (~2 s).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from meet import __version__

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Installed:
    """The built wheel and the folder it was installed into."""

    wheel: Path
    target: Path
    deps: Path

    @property
    def python(self) -> list[str]:
        """This interpreter without site-packages: only the paths of :meth:`env`."""
        return [sys.executable, "-S"]

    @property
    def meet_command(self) -> list[str]:
        """The installed console script, run by that interpreter."""
        return [*self.python, str(self.target / "bin" / "meet")]

    def env(self) -> dict[str, str]:
        """The installed copy first on the path, then its declared dependencies; no MEET_*."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEET_")}
        env["PYTHONPATH"] = os.pathsep.join([str(self.target), str(self.deps)])
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env


def declared_dependencies(wheel: Path) -> set[str]:
    """The distributions the wheel requires, and theirs, as installed here (markers evaluated)."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    todo = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Requires-Dist:")]
    seen: set[str] = set()
    while todo:
        requirement = Requirement(todo.pop())
        name = canonicalize_name(requirement.name)
        if name in seen or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo.extend(importlib.metadata.distribution(name).requires or [])
    return seen


def link_distributions(names: set[str], folder: Path) -> None:
    """Symlink each distribution's top-level files and packages (as installed here) into folder."""
    for name in names:
        dist = importlib.metadata.distribution(name)
        for top in {f.parts[0] for f in dist.files or () if f.parts[0] != ".."}:
            link = folder / top
            if not link.exists():
                link.symlink_to(Path(str(dist.locate_file(top))))


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """``python -m build`` from the checkout, then the wheel installed into a folder of its own."""
    dist = tmp_path_factory.mktemp("dist")
    built = run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(REPO)], cwd=dist)
    assert built.returncode == 0, built.stdout + built.stderr
    wheels = list(dist.glob("meet-*.whl"))
    assert len(wheels) == 1 and list(dist.glob("meet-*.tar.gz")), sorted(p.name for p in dist.iterdir())
    target = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--target", str(target)]
    done = run([*pip, "--disable-pip-version-check", "--no-index", str(wheels[0])], cwd=dist)
    assert done.returncode == 0, done.stdout + done.stderr
    deps = tmp_path_factory.mktemp("deps")
    link_distributions(declared_dependencies(wheels[0]), deps)
    return Installed(wheels[0], target, deps)


def test_wheel_holds_the_web_assets_and_templates(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    # Every file of the checkout's web/ (templates, CSS, ES modules, images) is in the wheel.
    web = {f"meet/web/{p.relative_to(REPO / 'web').as_posix()}" for p in (REPO / "web").rglob("*") if p.is_file()}
    assert web and web <= names, sorted(web - names)[:10]
    assert "meet/web/templates/layout.html" in names
    assert "meet/relay/worker.py" in names
    assert "meet/contrib/meet.service" in names  # meet init --systemd
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "meet = meet.cli:main" in zipfile.ZipFile(installed.wheel).read(entry_points).decode()


def test_installed_copy_is_the_one_imported(installed: Installed, tmp_path: Path) -> None:
    code = "import meet, meet.views.pages as p; print(meet.__file__); print(p.WEB_DIR)"
    result = run([*installed.python, "-c", code], cwd=tmp_path, env=installed.env())
    assert result.returncode == 0, result.stderr
    module, web = (Path(line) for line in result.stdout.splitlines())
    assert module.is_relative_to(installed.target), module
    assert web == installed.target / "meet" / "web"


def test_version_from_the_console_script(installed: Installed, tmp_path: Path) -> None:
    result = run([*installed.meet_command, "--version"], cwd=tmp_path, env=installed.env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"meet {__version__}"


def test_init_systemd_from_the_wheel(installed: Installed, tmp_path: Path) -> None:
    """The unit comes from the wheel's copy of contrib/meet.service and runs the installed meet."""
    config, unit = tmp_path / "meet.toml", tmp_path / "meet.service"
    command = [*installed.meet_command, "init", str(config), "--systemd", str(unit)]
    result = run(command, cwd=tmp_path, env=installed.env())
    assert result.returncode == 0, result.stderr
    program = installed.target / "bin" / "meet"
    assert f"ExecStart={program} serve --config {config}\n" in unit.read_text()
    assert unit.read_text() == (installed.target / "meet" / "contrib" / "meet.service").read_text().replace(
        "/usr/local/bin/meet", str(program)
    ).replace("/etc/meet/meet.toml", str(config))


CONFIG = """\
[server]
host = "127.0.0.1"
port = 0
graceful_timeout = 1.0

[storage]
data_dir = "data"

[mail]
backend = "file"

[rtc]
relay = "off"
"""


@pytest.fixture
def served(installed: Installed, tmp_path: Path) -> Iterator[str]:
    """``meet serve`` of the installed console script on a free loopback port; yields its URL."""
    config = tmp_path / "meet.toml"
    config.write_text(CONFIG)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*installed.meet_command, "serve", "--config", str(config)],
            cwd=tmp_path,
            env=installed.env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield wait_for_url(proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert "Traceback" not in log.read_text()


def wait_for_url(proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> str:
    """The URL meet logs once it listens (port 0: the kernel picked it), polled every 50 ms."""
    deadline = time.monotonic() + timeout
    while True:
        match = re.search(r"listening on (http://[^\s\"]+)", log.read_text())
        if match:
            return match.group(1)
        if proc.poll() is not None:
            pytest.fail(f"meet serve exited with {proc.returncode}:\n{log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"meet serve did not listen within {timeout} s:\n{log.read_text()}")
        time.sleep(0.05)


def test_serve_from_the_wheel(installed: Installed, served: str) -> None:
    web = installed.target / "meet" / "web"
    with httpx.Client(base_url=served, timeout=10) as client:
        assert client.get("/api/health").status_code == 200
        assert client.get("/api/ready").status_code == 200
        page = client.get("/signin")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        # The page's stylesheet, scripts and icon, served from the installed copy.
        assets = set(re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text))
        assert {"/static/css/app.css", "/static/js/pages/signin.js"} <= assets, assets
        for url in sorted(assets):
            response = client.get(url)
            assert response.status_code == 200, url
            assert response.content == (web / url.removeprefix("/static/")).read_bytes(), url
