"""The README's set-up commands, CI's script and the declared test dependencies agree.

CI (``.ci/run``) reads the two commands from README.md's "Set up" section and runs them in a
fresh virtual environment; these tests check what it reads, and that every package the tests
import is installed by ``pip install -e '.[test]'`` (not merely present on this machine).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
TEST_COMMAND_END = "unshare -n sh -c 'ip link set lo up && exec .venv/bin/python -m pytest'"


def setup_commands() -> list[str]:
    """The ```sh blocks of README.md's "Set up" section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Set up\n", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"^```sh\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)]


def test_readme_set_up_is_two_commands_in_a_virtual_environment() -> None:
    server, tests = setup_commands()
    assert "\n" not in server and "\n" not in tests
    assert server.startswith("python3 -m venv .venv && ")
    assert server.endswith(" && .venv/bin/meet serve --config meet.toml")
    assert tests.startswith("apt-get update && apt-get install -y chromium coturn iproute2 util-linux ")
    assert " && python3 -m venv .venv && .venv/bin/pip install -e '.[test]' && " in tests
    assert tests.endswith(TEST_COMMAND_END)


def test_ci_runs_exactly_the_readme_commands() -> None:
    printed = subprocess.run(
        ["bash", str(ROOT / ".ci" / "run"), "--print"], capture_output=True, text=True, check=True, timeout=30
    )
    server, tests = setup_commands()
    assert printed.stdout.splitlines() == [tests, server]
    script = (ROOT / ".ci" / "run").read_text()
    assert script.count("rm -rf .venv") == 2, "each command runs in a fresh virtual environment"


def test_every_package_the_tests_import_is_declared() -> None:
    """Third-party imports of tests/ are installed by meet[test], directly or as a dependency."""
    installed = _requirement_closure()
    providers = importlib.metadata.packages_distributions()
    local = {p.stem for p in (ROOT / "tests").glob("*.py")} | {"meet"}
    missing = {}
    for module in sorted(_imported_modules(ROOT / "tests") - local - set(sys.stdlib_module_names)):
        distributions = {canonicalize_name(d) for d in providers.get(module, [module])}
        if not distributions & installed:
            missing[module] = sorted(distributions)
    assert not missing, f"imported by tests/ but not installed by pip install -e '.[test]': {missing}"


def _imported_modules(folder: Path) -> set[str]:
    names: set[str] = set()
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module.split(".")[0])
    return names


def _requirement_closure() -> set[str]:
    """Distributions ``pip install -e '.[test]'`` installs, from pyproject.toml and installed metadata."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pending = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    seen: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.distribution(requirement.name).requires or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            dependency = Requirement(text)
            extras = [""] + sorted(requirement.extras)
            if dependency.marker is None or any(dependency.marker.evaluate({"extra": e}) for e in extras):
                pending.append(dependency)
    return seen
