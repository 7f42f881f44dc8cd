"""Reading the configuration: the YAML file, then ``MLOPS_*`` environment overrides, then validation.

``MLOPS_CONFIG`` names the file (default ``configs/bank_marketing.yaml``); ``MLOPS_ROOT`` the folder relative
paths are resolved against (default: the repository holding this package). Any key can be overridden as
``MLOPS_<SECTION>__<KEY>`` (double underscore between levels), read by pydantic-settings' environment source:
a list or mapping is written as YAML flow (``[a, b]``, ``{a: 1}``); anything else is a plain value that the
field's type parses (``MLOPS_TRAINING__SEARCH__MAX_TRIALS=5`` is an integer, ``Churn: who to keep`` text).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import EnvSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

from mlops.core.config.settings import PACKAGE_ROOT, Settings

DEFAULT_CONFIG = Path("configs/bank_marketing.yaml")
ENV_PREFIX = "MLOPS_"
NESTED_DELIMITER = "__"
# Environment variables with the prefix that are not configuration keys: the file, the root, and the
# test harness's own namespace (MLOPS_TEST_*, e.g. MLOPS_TEST_FAIL_ON_SKIP set by `make test`).
# The Docker engine `python -m mlops images` starts keeps its store and socket where these say (container_engine).
RESERVED_ENV = {"MLOPS_CONFIG", "MLOPS_ROOT", "MLOPS_DOCKER_DATA_ROOT", "MLOPS_DOCKER_RUN_DIR"}
RESERVED_PREFIX = "MLOPS_TEST_"
# The configuration's sections: what the first key of an override may name (root and source_file are set by load)
SECTIONS = frozenset(Settings.model_fields) - {"root", "source_file"}


class ConfigError(ValueError):
    """The configuration file or an override is invalid; the message names the key."""


class EnvironmentOverrides(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (tests pass their own), lists and mappings
    read as YAML flow rather than JSON, so that overrides are written as in the file."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(
            Settings,  # type: ignore[arg-type]  # a plain model: only its fields and config are read
            case_sensitive=False,
            env_prefix=ENV_PREFIX,
            env_nested_delimiter=NESTED_DELIMITER,
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, False, False, None)

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        return yaml.safe_load(value)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, mappings merged key by key; an empty mapping clears (``MLOPS_DATASET__EXCLUDED={}``)."""
    out = dict(base)
    for key, value in extra.items():
        if value and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def unknown_sections(environ: Mapping[str, str]) -> list[str]:
    """``MLOPS_*`` variables whose first key is no section of the configuration (a typo, not an override)."""
    unknown = []
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in RESERVED_ENV or upper.startswith(RESERVED_PREFIX):
            continue
        section = upper[len(ENV_PREFIX) :].split(NESTED_DELIMITER)[0].lower()
        if section not in SECTIONS:
            unknown.append(name)
    return sorted(unknown)


def config_path(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    root = Path(env.get("MLOPS_ROOT", PACKAGE_ROOT))
    chosen = Path(path or env.get("MLOPS_CONFIG") or DEFAULT_CONFIG).expanduser()
    return chosen if chosen.is_absolute() else root / chosen


def load(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Read the configuration file, apply environment overrides, validate, and return the settings."""
    env = dict(os.environ if environ is None else environ)
    file = config_path(path, env)
    if not file.is_file():
        raise ConfigError(f"configuration file not found: {file} (set MLOPS_CONFIG to a YAML file)")
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{file}: the top level must be a mapping")
    typos = unknown_sections(env)
    if typos:
        known = ", ".join(sorted(SECTIONS))
        raise ConfigError(f"{', '.join(typos)}: no such section of the configuration (sections: {known})")
    try:
        overrides = EnvironmentOverrides(env)()
    except (ValueError, yaml.YAMLError) as exc:  # an override that does not parse, e.g. an unclosed [list
        raise ConfigError(f"environment override: {exc}") from exc
    merged = merge(raw, overrides)
    merged["root"] = Path(env.get("MLOPS_ROOT", PACKAGE_ROOT)).resolve()
    merged["source_file"] = file
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"{file}: {problems}") from exc
