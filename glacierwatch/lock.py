"""One process at a time per work folder / stage output: an advisory lock file naming its holder.

``with stage_lock(folder):`` takes ``folder/.glacierwatch.lock`` (``with stage_lock(file):`` for a
single output file takes ``.<name>.lock`` beside it). A second process either stops at once with
:class:`LockHeldError` naming the holder (pid, host, start time, command) or, with ``wait_s`` > 0,
waits up to that many seconds for it to finish.

The lock is an ``flock`` on the file, so the kernel releases it when the holder exits or is killed:
a lock file left by a dead process is stale by construction, and the next process takes it over
(it logs whose it was). The file's JSON content only names the holder for the message. Locks are
re-entrant within one process (``glacierwatch run`` calls stages that each take the lock), and
advisory: only glacierwatch processes honour them. On file systems without ``flock`` (some network
mounts) the lock is skipped with a warning rather than blocking the work.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from glacierwatch.errors import InputError
from glacierwatch.io import ensure_dir

log = logging.getLogger(__name__)

LOCK_NAME = ".glacierwatch.lock"

#: Locks this process holds: lock file path -> [file descriptor, depth] (re-entrancy).
_HELD: dict[str, list[int]] = {}
_HELD_LOCK = threading.Lock()


class LockHeldError(InputError):
    """Another process holds the lock of a work folder or stage output."""


def lock_file_for(target: str | os.PathLike[str]) -> Path:
    """The lock file of a folder (``folder/.glacierwatch.lock``) or of an output file
    (``.<name>.lock`` beside it; the file need not exist yet: a name with a suffix is a file)."""
    path = Path(target)
    if path.is_dir() or (not path.exists() and not path.suffix):
        return path / LOCK_NAME
    return path.with_name(f".{path.name}.lock")


def _holder_text(info: dict[str, Any]) -> str:
    if not info:
        return "another process"
    return (f"pid {info.get('pid')} on {info.get('host')} since {info.get('started')}"
            + (f" ({info['command']})" if info.get("command") else ""))


def _read_info(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _try_lock(path: Path) -> int | None:
    """Open and flock ``path``; the fd when this process now holds it, None when another does."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        # the holder we waited for may have unlinked the file after we opened it: then our lock is on
        # a file nobody else sees; take the one at the path instead
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def stage_lock(target: str | os.PathLike[str], *, wait_s: float = 0.0, poll_s: float = 0.2,
               command: str | None = None) -> Iterator[Path]:
    """Hold the lock of ``target`` (a work folder, a stage's state folder, or an output file).

    ``wait_s``: seconds to wait for a holder to finish (0: stop at once with LockHeldError naming
    the holder). Yields the lock file path; the file is removed on release.
    """
    path = lock_file_for(target)
    ensure_dir(path.parent)
    key = os.path.realpath(path)
    with _HELD_LOCK:
        if key in _HELD:
            _HELD[key][1] += 1
            held_here = True
        else:
            held_here = False
    if held_here:
        try:
            yield path
        finally:
            with _HELD_LOCK:
                _HELD[key][1] -= 1
        return

    deadline = time.monotonic() + max(0.0, wait_s)
    announced = False
    while True:
        try:
            fd = _try_lock(path)
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                log.warning("%s: this file system has no file locks; running without one", path.parent)
                yield path
                return
            raise InputError(f"cannot create the lock file {path}: {exc.strerror or exc}") from exc
        if fd is not None:
            break
        holder = _holder_text(_read_info(path))
        if time.monotonic() >= deadline:
            if wait_s > 0:
                raise LockHeldError(f"{path.parent} is still in use by {holder} after waiting {wait_s:g} s")
            raise LockHeldError(f"{path.parent} is in use by {holder}; wait for it to finish "
                                "(or set lock_wait_s to wait)")
        if not announced:
            log.info("%s is in use by %s; waiting up to %g s", path.parent, holder, wait_s)
            announced = True
        time.sleep(poll_s)

    try:
        previous = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except ValueError:
        previous = {}
    if isinstance(previous, dict) and previous.get("pid"):
        # a clean release removes the file, so a holder named in the file we now hold died (killed)
        log.warning("%s: taking over the stale lock of %s (no longer running)", path.parent, _holder_text(previous))
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:200]}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    with _HELD_LOCK:
        _HELD[key] = [fd, 1]
    try:
        yield path
    finally:
        with _HELD_LOCK:
            _HELD[key][1] -= 1
            last = _HELD[key][1] == 0
            if last:
                del _HELD[key]
        if last:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # unlink while still locked: a waiter then re-opens the path
            os.close(fd)


def lock_holder(target: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Who holds the lock of ``target`` now (pid, host, started, command), or None if nobody does."""
    path = lock_file_for(target)
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_info(path) or {}
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
