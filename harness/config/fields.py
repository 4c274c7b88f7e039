"""The pieces every config schema is written with: a field with its one-line doc, and the error (and the two
checks) a validation raises, which names the dotted key and what is allowed."""

from __future__ import annotations

from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """A config value that cannot run: names the dotted key and what is allowed (exit code 2)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key


def doc(text: str, default: Any = None, *, factory: Any = None) -> Any:
    """A config field with its one-line documentation, which `bench run --help` reads from the dataclass."""
    if factory is not None:
        return field(default_factory=factory, metadata={"doc": text})
    return field(default=default, metadata={"doc": text})


def require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(key, message)


def positive_int(value: Any, key: str) -> None:
    require(
        isinstance(value, int) and not isinstance(value, bool) and value > 0,
        key,
        f"must be an integer > 0, got {value!r}",
    )
