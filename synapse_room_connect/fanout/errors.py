"""The fan-out client's one error type, and how a failed nio response reads in it."""

from __future__ import annotations

from typing import Any


class FanoutError(Exception):
    """The fan-out could not be done; the message says why."""


def error_text(response: Any) -> str:
    """A nio error response as ``status: message``, for a ``FanoutError`` or a log line."""
    status = getattr(response, "status_code", None)
    message = getattr(response, "message", None) or repr(response)
    return f"{status}: {message}" if status else str(message)
