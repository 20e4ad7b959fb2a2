"""Errors every step raises, each mapped to a documented process exit code.

| code | meaning                                                                   |
|------|---------------------------------------------------------------------------|
| 0    | success                                                                   |
| 1    | internal error (a bug: please report it)                                  |
| 2    | usage: an option is missing, malformed or out of range                    |
| 3    | bad input data: a missing object, an unreadable or invalid table          |
| 4    | storage: the object store or file system failed or refused (after retries)|
| 5    | model: a model file or card is missing, corrupted, tampered or unusable   |
"""
from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    BAD_INPUT = 3
    STORAGE = 4
    MODEL = 5


class ComponentError(Exception):
    """An error with a one-line message that names the offending input."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, label: str | None = None) -> None:
        self.label = label
        super().__init__(message)

    def about(self, label: str) -> ComponentError:
        """Attach the name of the input this error concerns, unless one is already set."""
        if self.label is None:
            self.label = label
        return self

    def one_line(self) -> str:
        message = " ".join(str(self).split())
        return f"{self.label}: {message}" if self.label else message


class UsageError(ComponentError):
    exit_code = ExitCode.USAGE


class BadInputError(ComponentError):
    exit_code = ExitCode.BAD_INPUT


class StorageError(ComponentError):
    exit_code = ExitCode.STORAGE


class ModelError(ComponentError):
    exit_code = ExitCode.MODEL
