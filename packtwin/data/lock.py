"""One writer per store: an advisory lock file beside it that names its holder.

The lock is ``fcntl.flock`` on ``<store>.lock``: the kernel drops it when the holder dies, so a
lock file left by a killed run (a dead pid) is stale and taken over. The file records the
holder's pid, host and start time for the refusal message of a second writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from packtwin.errors import PacktwinError


class LockedError(PacktwinError, RuntimeError):
    """Another process holds the lock."""


def lock_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_name(p.name + ".lock")


def holder(path: str | os.PathLike) -> dict:
    """What the lock file of ``path`` says about its (last) holder ({} if none)."""
    try:
        return json.loads(lock_path(path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(h: dict) -> str:
    if not h:
        return "an unknown process"
    start = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(h.get("start", 0)))
    return f"pid {h.get('pid')} on host {h.get('host')!r} (started {start}: {h.get('command', '')})"


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, command: str = "") -> Iterator[dict]:
    """Hold the write lock of ``path`` for the block; refuse at once if another process has it."""
    lp = lock_path(path)
    lp.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockedError(f"store {str(path)!r} is being written by {_describe(holder(path))}; "
                              f"wait for it to finish (lock file {str(lp)!r})") from None
        # The previous holder may have unlinked the file between our open and flock: then we
        # hold a lock on a deleted file; retry on the current one.
        try:
            same = os.fstat(fd).st_ino == os.stat(lp).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = holder(path)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "start": time.time(),
          "command": command}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    try:
        yield {"stale": stale} if stale else {}
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lp)
        os.close(fd)
