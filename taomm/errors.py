"""Errors a user can act on: the CLI prints them as one line, never a traceback."""

from __future__ import annotations


class TaommError(Exception):
    """A user-facing error; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class WorkspaceNotFoundError(TaommError):
    """A command needed a workspace path and none was found or given."""

    exit_code = 2


class ConfigError(TaommError):
    """``taomm.toml`` (or another config file) is malformed."""

    exit_code = 2


class StoreError(TaommError):
    """The feature store is missing, incompatible or was given invalid data."""
