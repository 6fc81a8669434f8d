"""The single-writer lock of a feature store folder (:mod:`taomm.datasets.store`).

One writer at a time: a writer holds :class:`StoreLock`, an exclusive ``flock`` on
``STORE/writer.lock`` (which records its pid); a second writer is refused at once with
one line. The OS drops the lock when the process ends, however it ends, so a killed
writer leaves no stale lock. Readers never take it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from taomm.errors import StoreError

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, writers are not guarded
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "writer.lock"

# Lock descriptors held by this process: a forked child closes its copies, so that a child
# outliving the writer (a DataLoader worker) does not keep the store locked.
_HELD_LOCKS: set[int] = set()


def _close_inherited_locks() -> None:
    for fd in _HELD_LOCKS:
        with contextlib.suppress(OSError):
            os.close(fd)  # the child's descriptor only: the parent's lock stays
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited_locks)


class StoreLock:
    """The single-writer lock of a store folder (see the module docstring): taken at
    construction, without waiting; :meth:`release` (or the end of the process) frees it.
    Locks are per open file, so a second writer in the same process is refused too."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None
        if fcntl is None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            who = "another writer of this process" if holder == str(os.getpid()) else "another process"
            raise StoreError(f"store {self.path.resolve()} is being written by {who} (pid {holder}); wait for it "
                             "to finish or write to another store") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd
        _HELD_LOCKS.add(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            _HELD_LOCKS.discard(fd)
            os.close(fd)  # closing the only descriptor of the open file frees the flock

    def __enter__(self) -> StoreLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
