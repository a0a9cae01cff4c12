"""Engine configuration: a TOML file of sections, overlaid by ``ENGINE_<SECTION>_<KEY>`` variables.

The file is ``$ENGINE_CONFIG`` when set, else ``engine.toml`` in the current directory when
it exists; without either the configuration is empty. The engine gives no meaning to any
section: step plugins read their own (``[fetch]``, ``[smtp]``, ...) and check it with their
own models. An environment variable wins over the file: ``ENGINE_SMTP_HOST=mail.example.com``
sets ``host`` in ``[smtp]``. Its value is read as JSON when it parses (``2525``, ``true``,
``["a", "b"]``) and as a string otherwise.

Secrets (passwords, tokens) belong in the environment, not in this file: policies name them
with ``{"secret": "NAME"}``.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ConfigError

CONFIG_ENV = "ENGINE_CONFIG"
DEFAULT_FILE = "engine.toml"


class EngineConfig:
    """The parsed configuration. ``section(name)`` is what a plugin reads.

    Example::

        config = EngineConfig.load()
        hosts = config.section("fetch").get("allowed_hosts", [])
    """

    def __init__(
        self, data: Mapping[str, Any] | None = None, path: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        self.data = dict(data or {})
        self.path = path
        self._environ = os.environ if environ is None else environ

    @classmethod
    def load(cls, path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> EngineConfig:
        """Read ``path``, else ``$ENGINE_CONFIG``, else ``./engine.toml`` if it exists."""
        env = os.environ if environ is None else environ
        explicit = path or env.get(CONFIG_ENV)
        if explicit:
            file = Path(explicit)
            if not file.is_file():
                source = f"${CONFIG_ENV}" if not path else "the config path"
                raise ConfigError(f"{file}: configuration file not found ({source} names it)")
        else:
            file = Path(DEFAULT_FILE)
            if not file.is_file():
                return cls({}, None, env)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: invalid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{file}: cannot read the configuration file: {exc.strerror}") from None
        for name, value in data.items():
            if not isinstance(value, dict):
                raise ConfigError(f"{file}: top-level key {name!r} must be a [section] of settings")
        return cls(data, file, env)

    def section(self, name: str) -> dict[str, Any]:
        """The ``[name]`` table of the file, with ``ENGINE_<NAME>_<KEY>`` variables laid over it."""
        values = dict(self.data.get(name, {}))
        prefix = f"ENGINE_{name.upper()}_"
        for key, text in self._environ.items():
            if key.startswith(prefix) and len(key) > len(prefix):
                values[key[len(prefix) :].lower()] = _env_value(text)
        return values

    def where(self, name: str) -> str:
        """Where a section comes from, for error messages: ``engine.toml [fetch]``."""
        origin = str(self.path) if self.path else "engine config"
        return f"{origin} [{name}] (or ENGINE_{name.upper()}_* variables)"


def _env_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
