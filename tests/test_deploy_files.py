"""The deployment files, checked without a container runtime: the Dockerfile's structure (and its
health check run for real against a server), compose.yaml's services and the TURN secret meet and
coturn share, the systemd unit (``systemd-analyze verify`` when available, and its sandboxing), and
that every setting the deploy guide names exists."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import trio
import yaml

from meet import systemd
from meet.config import SECTIONS, Config, config_from_mapping, load_config, section_fields, toml_key
from meet.server import SHUTDOWN_MARGIN, RunningServer

REPO = Path(__file__).resolve().parent.parent
RELAY_WORKER_STOP = 3  # seconds meet.relay.bridge gives each worker to exit after SIGTERM
# The longest a default meet takes to stop after SIGTERM.
STOP_DEADLINE = Config().server.graceful_timeout + SHUTDOWN_MARGIN + RELAY_WORKER_STOP


# -- Dockerfile ------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), " ".join(args.split())))
    return stages


def instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in stage if instruction == name]


def dockerfile_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in instructions(stage, "ENV"):
        env.update(dict(re.findall(r"(\w+)=(\S+)", args)))
    return env


@pytest.fixture(scope="module")
def runtime() -> list[tuple[str, str]]:
    """The final stage: what the image runs."""
    return dockerfile_stages()[-1]


def test_dockerfile_is_multi_stage_from_slim_python() -> None:
    header, *stages = dockerfile_stages()
    assert len(stages) >= 2
    version = dict(re.findall(r"(\w+)=(\S+)", " ".join(instructions(header, "ARG"))))["PYTHON_VERSION"]
    assert tuple(map(int, version.split("."))) >= (3, 11)
    for stage in stages:
        assert re.fullmatch(r"python:\$\{PYTHON_VERSION\}-slim-\w+( AS \w+)?", stage[0][1]), stage[0]
    build = stages[0]
    assert any("python -m build --wheel" in run for run in instructions(build, "RUN"))
    # The runtime installs the wheel built in the first stage, into a virtual environment.
    name = build[0][1].split(" AS ")[1]
    assert any(f"--from={name}" in copy for copy in instructions(stages[-1], "COPY"))
    assert any("python -m venv /opt/meet" in run and ".whl" in run for run in instructions(stages[-1], "RUN"))


def test_dockerfile_copies_only_what_dockerignore_lets_in() -> None:
    keep = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    assert "*" in (REPO / ".dockerignore").read_text().splitlines()  # everything else stays out
    build = dockerfile_stages()[1]
    copied = {part for args in instructions(build, "COPY") for part in args.split()[:-1]}
    assert copied == keep
    assert all((REPO / path).exists() for path in keep)


def test_dockerfile_runs_meet_serve_as_a_non_root_user(runtime: list[tuple[str, str]]) -> None:
    users = instructions(runtime, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    entrypoint = json.loads(instructions(runtime, "ENTRYPOINT")[-1])
    command = json.loads(instructions(runtime, "CMD")[-1])
    assert entrypoint + command == ["meet", "serve"]


def test_dockerfile_settings_are_valid_and_match_volume_and_ports(runtime: list[tuple[str, str]]) -> None:
    env = dockerfile_env(runtime)
    config = config_from_mapping({}, env=env)  # unknown keys or bad values raise
    assert config.server.host == "0.0.0.0"
    volumes = json.loads(instructions(runtime, "VOLUME")[-1])
    assert str(config.data_dir) in volumes
    exposed = " ".join(instructions(runtime, "EXPOSE")).split()
    assert f"{config.server.port}/tcp" in exposed
    assert config.rtc.udp_ports and f"{config.rtc.udp_ports}/udp" in exposed


def healthcheck_command(runtime: list[tuple[str, str]]) -> list[str]:
    (check,) = instructions(runtime, "HEALTHCHECK")
    command = json.loads(check.partition(" CMD ")[2])
    assert isinstance(command, list)
    return [str(part) for part in command]


def test_healthcheck_uses_the_images_python(runtime: list[tuple[str, str]]) -> None:
    command = healthcheck_command(runtime)
    assert command[:2] == ["python", "-c"] and "/api/ready" in command[2]
    assert "/opt/meet/bin" in dockerfile_env(runtime)["PATH"].split(":")[0]


async def test_healthcheck_passes_on_a_ready_server_and_fails_without_one(
    runtime: list[tuple[str, str]], server: RunningServer
) -> None:
    code = healthcheck_command(runtime)[2]
    port = urlsplit(server.urls[0]).port
    assert port is not None

    async def check(port: int) -> int:
        env = {**os.environ, "MEET_SERVER__PORT": str(port)}
        done = await trio.run_process([sys.executable, "-c", code], env=env, check=False, capture_stderr=True)
        return done.returncode

    assert await check(port) == 0
    with trio.socket.socket() as sock:  # a port nothing listens on
        await sock.bind(("127.0.0.1", 0))
        assert await check(sock.getsockname()[1]) != 0


# -- compose.yaml ----------------------------------------------------------------------------------

DOTENV = {"MEET_DOMAIN": "meet.example.org", "TURN_DOMAIN": "turn.example.org", "TURN_SECRET": "s3cr3t-" * 6}


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:?message}`` and ``${VAR:-default}`` (``$$`` is a dollar)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"compose would stop: {arg}")
        return arg or ""

    return re.sub(r"\$\$|\$\{(\w+)(?:(:\?|:-)([^}]*))?\}", one, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def coturn_config(compose: dict[str, Any], env: dict[str, str]) -> dict[str, list[str]]:
    """coturn's generated turnserver.conf, mounted where its command line reads it."""
    coturn = compose["services"]["coturn"]
    (mount,) = coturn["configs"]
    path = coturn["command"][coturn["command"].index("-c") + 1]
    assert mount["target"] == path
    options: dict[str, list[str]] = defaultdict(list)
    for line in interpolate(compose["configs"][mount["source"]]["content"], env).splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.strip().partition("=")
            options[key].append(value)
    return options


def meet_config(compose: dict[str, Any], env: dict[str, str]) -> Config:
    environment = interpolate(compose["services"]["meet"]["environment"], env)
    return config_from_mapping({}, env=environment)


def test_compose_runs_meet_from_this_dockerfile_and_coturn(compose: dict[str, Any]) -> None:
    meet, coturn = compose["services"]["meet"], compose["services"]["coturn"]
    assert meet["build"] == "."
    assert coturn["image"].startswith("coturn/coturn:")
    # Host networking for both (media ports), so nothing is published.
    assert meet["network_mode"] == coturn["network_mode"] == "host"
    assert "ports" not in meet and "ports" not in coturn
    volume, _, path = meet["volumes"][0].partition(":")
    assert volume in compose["volumes"]
    assert path in json.loads(instructions(dockerfile_stages()[-1], "VOLUME")[-1])
    grace = meet["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) >= STOP_DEADLINE


def test_compose_meet_settings_are_valid(compose: dict[str, Any]) -> None:
    config = meet_config(compose, DOTENV)
    assert config.server.public_url == "https://meet.example.org"
    assert config.server.proxy_hops == 1 and config.server.host == "127.0.0.1"
    assert config.rtc.port_range is not None


def test_compose_refuses_to_start_without_the_secret(compose: dict[str, Any]) -> None:
    with pytest.raises(AssertionError, match="TURN_SECRET"):
        meet_config(compose, {**DOTENV, "TURN_SECRET": ""})


def test_compose_meet_and_coturn_share_the_turn_secret(compose: dict[str, Any]) -> None:
    config = meet_config(compose, DOTENV)
    coturn = coturn_config(compose, DOTENV)
    assert "use-auth-secret" in coturn
    assert coturn["static-auth-secret"] == [config.rtc.turn_secret] == [DOTENV["TURN_SECRET"]]
    assert "lt-cred-mech" not in coturn and "user" not in coturn
    # The URLs meet hands out point at coturn's listening port, on both transports.
    assert config.rtc.turn_urls
    port = int(coturn["listening-port"][0])
    for url in config.rtc.turn_urls:
        assert re.fullmatch(rf"turns?:{DOTENV['TURN_DOMAIN']}:{port}\?transport=(udp|tcp)", url), url
    assert coturn["realm"] == [DOTENV["TURN_DOMAIN"]]
    # coturn's relay ports and meet's relay ports share the host: they must not overlap.
    low, high = config.rtc.port_range or (0, 0)
    turn_low, turn_high = int(coturn["min-port"][0]), int(coturn["max-port"][0])
    assert high < turn_low or turn_high < low


# -- systemd unit ----------------------------------------------------------------------------------

UNIT = REPO / "contrib" / "meet.service"


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    """contrib/meet.service as {section: {key: [values]}} (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), defaultdict(list))
            continue
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current[key.strip()].append(value.strip())
    return sections


def test_unit_runs_meet_serve_and_stops_gracefully(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]
    (exec_start,) = service["ExecStart"]
    assert exec_start.split()[1:] == ["serve", "--config", "/etc/meet/meet.toml"]
    assert exec_start.split()[0].endswith("/meet")
    assert service["Restart"] == ["on-failure"]
    # SIGTERM to meet alone (it stops its relay workers), and time to do it before SIGKILL.
    assert service["KillMode"] == ["mixed"] and service["KillSignal"] == ["SIGTERM"]
    (timeout,) = service["TimeoutStopSec"]
    assert timeout.endswith("s") and int(timeout[:-1]) >= STOP_DEADLINE
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_is_sandboxed(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]
    assert service.get("DynamicUser") == ["yes"] or (service.get("User") and service["User"] != ["root"])
    expected = {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "StateDirectory": "meet",
        "CapabilityBoundingSet": "",
    }
    assert {key: service[key][-1] for key in expected} == expected
    # The relay lists interfaces (netlink) and talks to its workers over a socketpair (unix).
    (families,) = service["RestrictAddressFamilies"]
    assert set(families.split()) == {"AF_INET", "AF_INET6", "AF_UNIX", "AF_NETLINK"}


def test_unit_data_dir_is_its_state_directory(unit: dict[str, dict[str, list[str]]]) -> None:
    """The config for the unit keeps data in /var/lib/<StateDirectory>, the one writable place."""
    state = f"/var/lib/{unit['Service']['StateDirectory'][0]}"
    assert systemd.DATA_DIR == state  # what `meet init --systemd` writes
    assert f'data_dir = "{state}"' in (REPO / "docs" / "deploy.md").read_text()


MEET = Path(sys.executable).with_name("meet")  # this environment's console script


def init_systemd(tmp_path: Path) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """``meet init CONFIG --systemd UNIT`` by this environment's console script."""
    config, unit = tmp_path / "etc" / "meet.toml", tmp_path / "meet.service"
    config.parent.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEET_")}
    command = [str(MEET), "init", str(config), "--systemd", str(unit)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=env, cwd=tmp_path)
    return config, unit, result


def test_init_systemd_writes_the_contrib_unit_for_this_installation(tmp_path: Path) -> None:
    config, unit, result = init_systemd(tmp_path)
    assert result.returncode == 0, result.stderr
    # contrib/meet.service with only its program and config path changed.
    expected = UNIT.read_text().replace("/usr/local/bin/meet", str(MEET)).replace("/etc/meet/meet.toml", str(config))
    assert unit.read_text() == expected
    assert f"ExecStart={MEET} serve --config {config}\n" in expected
    # The config keeps its data in the unit's state directory, and its fresh secret.
    loaded = load_config(config, env={})
    assert loaded.data_dir == Path("/var/lib/meet")
    assert len(loaded.auth.secret_key) >= 32
    assert "systemctl daemon-reload && systemctl enable --now meet" in result.stdout
    assert f"--admin --config {config}" in result.stdout

    # Neither file is overwritten without --force, and a refused unit leaves the config alone.
    unit.write_text("mine")
    config.unlink()
    _, _, again = init_systemd(tmp_path)
    assert again.returncode == 1 and "--force" in again.stderr
    assert unit.read_text() == "mine" and not config.exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # The unit as `meet init --systemd` installs it: verify also checks that ExecStart's program exists.
    _, unit, result = init_systemd(tmp_path)
    assert result.returncode == 0, result.stderr
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    # Unknown keys and bad values are only warnings (exit status 0): none may be printed.
    assert verified.returncode == 0 and not verified.stderr.strip() and not verified.stdout.strip(), verified


# -- the deploy guide ------------------------------------------------------------------------------

GUIDE = REPO / "docs" / "deploy.md"


def known_keys() -> dict[str, set[str]]:
    return {name: {toml_key(f) for f in section_fields(cls)} for name, cls in SECTIONS.items()}


def test_guide_names_only_settings_that_exist() -> None:
    text = GUIDE.read_text()
    keys = known_keys()
    named = re.findall(r"\[(\w+)\] `?(\w+)`?", text)
    assert len(named) >= 10
    for section, key in named:
        assert key in keys.get(section, set()), f"[{section}] {key}"
    for variable in set(re.findall(r"\bMEET_(\w+?)__(\w+)", text)):
        section, key = (part.lower() for part in variable)
        assert key in keys.get(section, set()), f"MEET_{variable[0]}__{variable[1]}"


def test_guide_toml_examples_are_valid_settings() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    assert blocks
    for block in blocks:
        config_from_mapping(tomllib.loads(block), env={})  # unknown keys and bad values raise


def test_readme_links_the_guide() -> None:
    assert "(docs/deploy.md)" in (REPO / "README.md").read_text()


def test_guide_links_resolve() -> None:
    text = GUIDE.read_text()
    readme_headings = {
        re.sub(r"[^\w\- ]", "", line[2:].strip().lower()).replace(" ", "-")
        for line in (REPO / "README.md").read_text().splitlines()
        if line.startswith("## ")
    }
    for target in re.findall(r"\]\((?!https?:)([^)]+)\)", text):
        path, _, anchor = target.partition("#")
        assert (GUIDE.parent / path).exists(), target
        if path.endswith("README.md") and anchor:
            assert anchor in readme_headings, target
