"""Typed configs loaded from YAML (pydantic), with errors that name the bad key.

Each part defines its config as a pydantic model deriving from :class:`Config`; presets are
YAML files in ``ctsgan/configs/`` (``<model>_<preset>.yaml``) that users can copy and edit.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

C = TypeVar("C", bound="Config")
E = TypeVar("E", bound=StrEnum)

CONFIG_DIR = Path(__file__).parent / "configs"


def parse_choice(enum_cls: type[E], value: str, what: str) -> E:
    """``value`` as a member of ``enum_cls``; a bad value raises ValueError naming ``what`` and
    listing the valid ones (the one parser for every named choice: loss, format, regime, ...)."""
    try:
        return enum_cls(value)
    except ValueError:
        raise ValueError(f"{what} must be one of {[m.value for m in enum_cls]}, got {value!r}") from None


class ConfigError(ValueError):
    """A config value is missing, unknown or invalid; the message names the key."""


class Config(BaseModel):
    """Base for all configs: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], source: str = "<dict>") -> C:
        """Validate ``data``; a bad value raises :class:`ConfigError` naming ``source`` and the key."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            lines = []
            for err in e.errors():
                key = ".".join(str(p) for p in err["loc"]) or "<root>"
                lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
            raise ConfigError(f"invalid config {source}:\n" + "\n".join(lines)) from None

    @classmethod
    def from_yaml(cls: type[C], path: str | Path) -> C:
        """Load and validate a YAML file."""
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
        return cls.from_dict(data, source=str(path))

    def to_yaml(self) -> str:
        """The resolved config as YAML (what a run dir keeps next to its checkpoints)."""
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def resolve_config(cls: type[C], preset_or_path: str, prefix: str) -> C:
    """A preset name (``ctsgan/configs/<prefix>_<name>.yaml``) or a YAML path -> validated config."""
    p = Path(preset_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise ConfigError(f"config file {p} does not exist")
        return cls.from_yaml(p)
    preset = CONFIG_DIR / f"{prefix}_{preset_or_path}.yaml"
    if not preset.exists():
        known = sorted(q.stem[len(prefix) + 1 :] for q in CONFIG_DIR.glob(f"{prefix}_*.yaml"))
        raise ConfigError(f"unknown preset {preset_or_path!r} for {prefix}; known presets: {known} (or a YAML path)")
    return cls.from_yaml(preset)
