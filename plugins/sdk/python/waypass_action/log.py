"""Log lines kept by the host with the login's correlation id (bounded per call)."""

from wit_world.imports import log as _wit

__all__ = ["Level", "debug", "error", "info", "trace", "warn", "write"]

Level = _wit.Level
"""Severity of a log line: ``Level.TRACE`` … ``Level.ERROR``."""


def write(level: Level, message: str) -> None:
    """Records ``message`` at ``level``."""
    _wit.log(level, str(message))


def trace(message: str) -> None:
    """Records ``message`` at trace level."""
    write(Level.TRACE, message)


def debug(message: str) -> None:
    """Records ``message`` at debug level."""
    write(Level.DEBUG, message)


def info(message: str) -> None:
    """Records ``message`` at info level."""
    write(Level.INFO, message)


def warn(message: str) -> None:
    """Records ``message`` at warn level."""
    write(Level.WARN, message)


def error(message: str) -> None:
    """Records ``message`` at error level."""
    write(Level.ERROR, message)
