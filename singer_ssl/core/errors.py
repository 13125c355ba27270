"""The errors every layer may raise; a stage turns them into one line naming the culprit."""

from __future__ import annotations

import errno
from collections.abc import Iterable


class ConfigError(ValueError):
    """A parameter is missing, unknown or inconsistent; the message names it and the valid choices."""


class NonFiniteError(ValueError):
    """A model gave NaN/inf embeddings or scores: nothing is written or decided from them."""


def choice_error(what: str, value: object, choices: Iterable[str]) -> ConfigError:
    """Build the standard 'unknown X' error listing the valid choices."""
    return ConfigError(f"unknown {what} {value!r}; valid choices: {', '.join(sorted(choices))}")


class DiskFullError(OSError):
    """A write failed for lack of space: ``no space left on device writing <path>`` (nothing half-written kept)."""

    def __init__(self, path: object, detail: str = "") -> None:
        super().__init__(f"no space left on device writing {path}{f' ({detail})' if detail else ''}")
        self.errno = errno.ENOSPC
