"""Configuration: one frozen dataclass per TOML section, with defaults and help text.

Every key has a default, so a missing file section means "use the defaults". Values are
checked when the dataclass is built; any problem is raised as :class:`ConfigError`, which
names the key (``[section] key``) and the file so the CLI can print one clear line.

Environment variables ``MEET_<SECTION>__<KEY>`` override the file (values are parsed as
TOML literals when they look like one, else taken as plain strings).

The package: ``sections`` (the dataclasses), ``loading`` (file, environment, secret key) and
``rendering`` (``meet check-config``, ``meet.toml``, the README table). Import from here.
"""

from meet.config.loading import config_from_mapping, load_config, load_secret_key
from meet.config.rendering import example_toml, render_toml, settings_markdown
from meet.config.sections import (
    ENV_PREFIX,
    GUEST_MODES,
    MAIL_BACKENDS,
    SECTIONS,
    SIGNUP_MODES,
    AuthConfig,
    Config,
    IceServer,
    MailConfig,
    RoomsConfig,
    RtcConfig,
    ServerConfig,
    StorageConfig,
    section_fields,
    setting,
    toml_key,
)

__all__ = [
    "ENV_PREFIX", "GUEST_MODES", "MAIL_BACKENDS", "SECTIONS", "SIGNUP_MODES", "AuthConfig", "Config", "IceServer",
    "MailConfig", "RoomsConfig", "RtcConfig", "ServerConfig", "StorageConfig", "config_from_mapping",
    "example_toml", "load_config", "load_secret_key", "render_toml", "section_fields", "setting",
    "settings_markdown", "toml_key",
]
