"""``meet init --systemd``: the systemd unit for this installation, and a config that fits it.

The unit is ``contrib/meet.service`` (shipped in the wheel as ``meet/contrib/meet.service``) with
its two installation-specific paths replaced: the ``meet`` program that runs now and the config
file just written. Everything else, sandboxing included, is the file in the repository, so what
the tests check is what gets installed. The unit makes ``/var/lib/meet`` (``StateDirectory=meet``)
the only writable place, so the config written with it keeps its data there.
"""

from __future__ import annotations

import grp
import os
import shutil
import sys
from pathlib import Path

from meet.errors import MeetError

UNIT_NAME = "meet.service"
DEFAULT_UNIT_PATH = f"/etc/systemd/system/{UNIT_NAME}"
DATA_DIR = "/var/lib/meet"  # StateDirectory=meet
SERVICE_USER = "meet"
# The paths contrib/meet.service is written for.
TEMPLATE_PROGRAM = "/usr/local/bin/meet"
TEMPLATE_CONFIG = "/etc/meet/meet.toml"


def unit_template() -> str:
    """``contrib/meet.service``: inside an installed wheel, else in the repository."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "contrib" / UNIT_NAME, package.parent / "contrib" / UNIT_NAME):
        if candidate.is_file():
            return candidate.read_text()
    raise MeetError(f"contrib/{UNIT_NAME} is missing from this installation")


def meet_program() -> Path:
    """The ``meet`` command of this installation (not resolved: a symlink such as pipx's stays)."""
    started = Path(sys.argv[0])
    candidates = [started] if started.name == "meet" else []
    found = shutil.which("meet")
    candidates += [Path(sys.executable).with_name("meet")] + ([Path(found)] if found else [])
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return Path(os.path.abspath(candidate))
    raise MeetError("cannot find the meet command of this installation (run `meet init`, not `python -m meet`)")


def render_unit(program: Path, config: Path) -> str:
    """The unit with this installation's program and config path."""
    for path in (program, config):
        if not path.is_absolute() or any(c.isspace() or c in "\"'\\%$" for c in str(path)):
            raise MeetError(f"{path}: the unit needs an absolute path without spaces, quotes, % or $")
    text = unit_template().replace(TEMPLATE_PROGRAM, str(program)).replace(TEMPLATE_CONFIG, str(config))
    if f"ExecStart={program} serve --config {config}\n" not in text:
        raise MeetError(f"contrib/{UNIT_NAME} has no ExecStart={TEMPLATE_PROGRAM} serve --config {TEMPLATE_CONFIG}")
    return text


def systemd_config(text: str) -> str:
    """A config from ``example_toml`` keeping its data in the unit's state directory."""
    default = '\ndata_dir = "data"\n'
    if text.count(default) != 1:
        raise MeetError("cannot find [storage] data_dir in the generated config")
    return text.replace(default, f'\ndata_dir = "{DATA_DIR}"\n')


def check_unit_path(unit: Path, force: bool) -> None:
    """Refuse to overwrite a unit unless forced (checked before anything is written)."""
    if unit.exists() and not force:
        raise MeetError(f"{unit} already exists (use --force to overwrite)")


def write_unit(unit: Path, config: Path) -> list[str]:
    """Write the unit for ``config``; share the config with the service's group when it exists.

    Returns what is left to do, as shell commands.
    """
    program = meet_program()
    text = render_unit(program, config.resolve())
    try:
        unit.write_text(text)
        unit.chmod(0o644)
    except OSError as exc:
        raise MeetError(f"cannot write {unit} ({exc.strerror})") from None
    steps = []
    if program.is_relative_to("/home") or program.is_relative_to("/root"):
        print(f"warning: {program} is under /home or /root, which the unit hides (ProtectHome=yes)", file=sys.stderr)
    try:
        group = grp.getgrnam(SERVICE_USER).gr_gid
    except KeyError:
        steps.append(f"useradd --system --home-dir {DATA_DIR} --shell /usr/sbin/nologin {SERVICE_USER}")
        steps.append(f"chgrp {SERVICE_USER} {config} && chmod 0640 {config}")
    else:
        try:
            os.chown(config, -1, group)  # the service reads it; only root writes it
            config.chmod(0o640)
        except OSError as exc:
            raise MeetError(f"cannot give {config} to group {SERVICE_USER} ({exc.strerror})") from None
    steps.append(f"systemctl daemon-reload && systemctl enable --now {unit.stem}")
    steps.append(f"sudo -u {SERVICE_USER} {program} user add USERNAME EMAIL --admin --config {config.resolve()}")
    return steps
