"""streamdiff.Error and its subclasses, one per sd_status."""

from __future__ import annotations

import enum

from ._lib import lib


class Status(enum.IntEnum):
    """The C API's sd_status values."""

    OK = 0
    INVALID_ARGUMENT = 1
    INVALID_HANDLE = 2
    IO = 3
    UNSUPPORTED = 4
    OUT_OF_MEMORY = 5
    NOT_READY = 6
    CLOSED = 7
    INTERNAL = 8

    @property
    def description(self) -> str:
        """The library's name for it: "invalid argument", "io", ... (sd_status_name)."""
        name: bytes = lib.sd_status_name(int(self))
        return name.decode()


class Error(Exception):
    """A failure reported by libstreamdiff (or found by this package before calling it).

    ``status`` is the :class:`Status`; ``str(error)`` the message, which names the file, value
    or handle at fault. Each status has its own subclass, so ``except streamdiff.IoError`` works
    as well as checking ``error.status``.
    """

    status: Status = Status.INTERNAL

    def __init__(self, message: str, status: Status | None = None) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class InvalidArgument(Error, ValueError):
    status = Status.INVALID_ARGUMENT


class InvalidHandle(Error):
    status = Status.INVALID_HANDLE


class IoError(Error, OSError):
    status = Status.IO


class Unsupported(Error):
    status = Status.UNSUPPORTED


class OutOfMemory(Error, MemoryError):
    status = Status.OUT_OF_MEMORY


class NotReady(Error):
    status = Status.NOT_READY


class Closed(Error):
    status = Status.CLOSED


class InternalError(Error):
    status = Status.INTERNAL


_BY_STATUS: dict[Status, type[Error]] = {
    cls.status: cls
    for cls in (InvalidArgument, InvalidHandle, IoError, Unsupported, OutOfMemory, NotReady,
                Closed, InternalError)
}


def error_of(status: int) -> Error:
    """The exception for a failed call's status, with this thread's sd_last_error() message."""
    message = lib.sd_last_error().decode(errors="replace")
    try:
        kind = Status(status)
    except ValueError:
        return InternalError(f"unknown status {status}: {message}")
    return _BY_STATUS[kind](message)


def check(status: int) -> None:
    """Raises the matching Error unless status is SD_OK."""
    if status != Status.OK:
        raise error_of(status)
