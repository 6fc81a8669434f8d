"""Errors a user can act on: the CLI prints them as one line, never a traceback."""

from __future__ import annotations

import re
from collections.abc import Mapping


class TaommError(Exception):
    """A user-facing error; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class OptionError(TaommError):
    """An error about the caller's arguments. ``message`` names them as ``{name}`` (a keyword)
    or ``{name=value}`` (a setting), substituted only for the names listed in ``options``:
    ``str()`` words them as the library's keywords (`` `lr` ``), :meth:`worded` as a caller
    spells them (the CLI: ``--lr``, ``--no-rerank``)."""

    def __init__(self, message: str, *options: str) -> None:
        super().__init__(message, *options)  # the args rebuild it (copy, a worker process's pickle)
        self.message, self.options = message, options

    def __str__(self) -> str:
        return self.worded({option: f"`{option}`" for option in self.options})

    def worded(self, flags: Mapping[str, str]) -> str:
        """The message with each option as ``flags`` spells it, by default ``--name`` (settings:
        ``--name`` for True, ``--no-name`` for False, ``--name value`` otherwise)."""
        if not self.options:
            return self.message
        names = "|".join(re.escape(option) for option in self.options)
        return re.sub(r"\{(" + names + r")\}", lambda m: flags.get(m[1], _flag(m[1])), self.message)


def _flag(option: str) -> str:
    name, _, value = option.partition("=")
    flag = "--" + name.replace("_", "-")
    if value in ("", "True"):
        return flag
    return "--no-" + flag[2:] if value == "False" else f"{flag} {value}"


class WorkspaceNotFoundError(OptionError):
    """A command needed a workspace path and none was found or given."""

    exit_code = 2


class ConfigError(TaommError):
    """``taomm.toml`` (or another config file) is malformed."""

    exit_code = 2


class IndexIntegrityError(TaommError):
    """An exported index (or its ONNX text encoder) does not match its manifest."""


class WorkspaceExistsError(OptionError, ConfigError):
    """``taomm.toml`` is already there and the caller did not ask to overwrite it."""


class StoreError(TaommError):
    """The feature store is missing, incompatible or was given invalid data."""
