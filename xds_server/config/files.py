"""What may be a config file: a regular file, reached through links that resolve. Anything else named like
one (a dangling or looping link, a directory, a FIFO) is a problem to report, never a file to skip: a
skipped tenant file would be taken for a tenant removed, and opening a FIFO would block the reload for good."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class UnreadableFile(Exception):
    """A config file that is there but cannot be read as one; the message says why."""


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _why(path: str | Path, err: OSError) -> str:
    if err.errno == errno.ENOENT and os.path.islink(path):
        return f"a symbolic link to {os.readlink(path)}, which does not exist"
    if err.errno == errno.ELOOP:
        return "a symbolic link loop (it resolves to itself)"
    return f"cannot read: {err.strerror or err}"


def directory_problem(path: str | Path, missing: str, what: str) -> str | None:
    """What is wrong with `path` as a directory, or None if it is one. `missing`: the words for nothing there;
    `what`: what the directory is, for anything else there (a file given where a folder goes is said to be a
    file: "does not exist" sent its author looking for a typo in a name that was right)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as err:
        return _why(path, err) if os.path.islink(path) else missing
    except OSError as err:
        return _why(path, err)
    if stat.S_ISDIR(mode):
        return None
    return f"is {'a file' if stat.S_ISREG(mode) else _kind(mode)}, not {what}"


def regular_stat(path: str) -> os.stat_result | None:
    """The file's stat; None if nothing is there (not even a link): deleted. UnreadableFile otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError as err:
        if os.path.islink(path):
            raise UnreadableFile(_why(path, err)) from None
        return None
    except OSError as err:
        raise UnreadableFile(_why(path, err)) from None
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableFile(f"not a regular file ({_kind(st.st_mode)})")
    return st


def read_regular(path: Path) -> bytes:
    """The file's bytes. Opened without blocking and checked before a byte is read, so a FIFO with no
    writer is refused at once instead of holding the reload's thread (and every later reload) forever."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise UnreadableFile(_why(path, err)) from None
    # Checked on the raw fd, before os.fdopen: fdopen refuses a directory itself (IsADirectoryError, which
    # named no file) and leaves the fd open, one leaked per reload while the directory stays there.
    try:
        mode = os.fstat(fd).st_mode
    except OSError as err:
        os.close(fd)
        raise UnreadableFile(_why(path, err)) from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise UnreadableFile(f"not a regular file ({_kind(mode)})")
    try:
        f = os.fdopen(fd, "rb")
    except OSError as err:
        os.close(fd)
        raise UnreadableFile(_why(path, err)) from None
    with f:
        try:
            return f.read()
        except OSError as err:
            raise UnreadableFile(_why(path, err)) from None
