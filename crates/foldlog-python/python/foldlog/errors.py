"""The exceptions foldlog raises, one class per kind of failure.

Catch ``FoldlogError`` for all of them, ``ConflictError`` for an optimistic-concurrency refusal (nothing was
written; reload and retry), or a specific class. Each carries the error's details as attributes.
"""

from __future__ import annotations

from os import PathLike


class FoldlogError(Exception):
    """Base class of every error foldlog raises."""


class ClosedError(FoldlogError):
    """The store (or the store of a subscription) was closed."""


class ConflictError(FoldlogError):
    """A check of an append failed; nothing of the batch was written."""


class WrongExpectedVersionError(ConflictError):
    """A stream was not at the version the append expected."""

    def __init__(self, message: str, stream: str, expected: int | str, actual: int | None) -> None:
        super().__init__(message)
        self.stream = stream
        """The stream."""
        self.expected = expected
        """What the append expected: a version, or "any", "no_stream", "exists"."""
        self.actual = actual
        """The stream's last version, ``None`` if it has no events."""


class ConsumerPositionError(ConflictError):
    """A consumer's new position did not advance it."""

    def __init__(self, message: str, name: str, current: int, proposed: int) -> None:
        super().__init__(message)
        self.name = name
        self.current = current
        self.proposed = proposed


class DuplicateEventIdError(ConflictError):
    """An event id was already used by a different event."""

    def __init__(self, message: str, event_id: int, position: int) -> None:
        super().__init__(message)
        self.event_id = event_id
        self.position = position


class AppendConditionError(ConflictError):
    """An event matching a conditional append's query was stored after the position the condition named."""

    def __init__(self, message: str, position: int, stream: str, event_type: str) -> None:
        super().__init__(message)
        self.position = position
        """The first matching event's position."""
        self.stream = stream
        """Its stream."""
        self.event_type = event_type
        """Its type."""


class CorruptError(FoldlogError):
    """Bytes on disk that must be valid are not (run ``foldlog verify``)."""

    def __init__(self, message: str, path: str | PathLike[str], offset: int, reason: str) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset
        self.reason = reason


class InvalidDirectoryError(FoldlogError):
    """The directory is not a foldlog store, or holds an inconsistent set of files."""

    def __init__(self, message: str, path: str | PathLike[str], reason: str) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason


class UnsupportedVersionError(FoldlogError):
    """A file was written in a format version this build does not read."""

    def __init__(self, message: str, path: str | PathLike[str], found: int, supported: int) -> None:
        super().__init__(message)
        self.path = path
        self.found = found
        self.supported = supported


class LockedError(FoldlogError):
    """Another handle (in this or another process) holds the directory's lock."""

    def __init__(self, message: str, path: str | PathLike[str]) -> None:
        super().__init__(message)
        self.path = path


class PoisonedError(FoldlogError):
    """An earlier sync failed; the store refuses writes until it is closed and reopened."""


class ReadOnlyError(FoldlogError):
    """A write on a read-only handle."""


class TooLargeError(FoldlogError, ValueError):
    """A batch does not fit in one segment (raise ``segment_size`` or split it)."""

    def __init__(self, message: str, length: int, max: int) -> None:  # noqa: A002 (the engine's name)
        super().__init__(message)
        self.length = length
        self.max = max


class InvalidArgumentError(FoldlogError, ValueError):
    """An argument is out of its range (an empty stream id, a name too long, ...)."""


class StorageError(FoldlogError, OSError):
    """An operating-system I/O call failed."""

    def __init__(self, message: str, op: str, path: str | PathLike[str], os_errno: int | None) -> None:
        super().__init__(message)
        self.op = op
        """What foldlog was doing."""
        self.path = path
        self.os_errno = os_errno
        """The OS error number, if there was one."""


__all__ = [
    "AppendConditionError",
    "ClosedError",
    "ConflictError",
    "ConsumerPositionError",
    "CorruptError",
    "DuplicateEventIdError",
    "FoldlogError",
    "InvalidArgumentError",
    "InvalidDirectoryError",
    "LockedError",
    "PoisonedError",
    "ReadOnlyError",
    "StorageError",
    "TooLargeError",
    "UnsupportedVersionError",
    "WrongExpectedVersionError",
]
