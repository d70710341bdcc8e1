"""The base of packtwin's user-facing errors.

A :class:`PacktwinError` means the user asked for something that cannot be done (bad config,
missing or wrong store, an output that would destroy data); its message says what and why. The
``packtwin`` CLI prints it as one line, without a traceback. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import os

# Set (to anything but 0) by `packtwin --debug`: user errors keep their traceback.
DEBUG_ENV = "PACKTWIN_DEBUG"


def debug_enabled() -> bool:
    """Whether user errors should be raised with their traceback instead of printed as a line."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


class PacktwinError(Exception):
    """A user error whose message is complete on its own (no traceback needed)."""


def one_line(exc: BaseException) -> str:
    """A user error's message on one line (a list of problems joined by ';'); OSErrors name
    their file."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        return f"{exc.strerror}: {str(exc.filename)!r}"
    lines = [ln.strip().removeprefix("- ") for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    return lines[0] + (" " + "; ".join(lines[1:]) if len(lines) > 1 else "")


class ConfigError(PacktwinError, ValueError):
    """A configuration is invalid; the message names the field, what was expected and found."""
