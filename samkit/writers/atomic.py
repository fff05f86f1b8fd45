"""Atomic file writing: a reader never sees a half-written file, and a failed write leaves no file behind.

The data goes to a hidden temporary file in the target's folder (``.<name>.<random>.tmp``), is flushed to the disk
(``fsync``) and then renamed over the target, after which the folder itself is synced where the platform allows it.
The file is created with mode ``0o666`` less the process umask, exactly like a file made by ``open(path, "w")``; a
file that is replaced gets the mode a new file would get, not the old file's.

A write that fails for a reason a user has to fix (a folder that cannot be written to, a file sitting where a folder
is needed, a read-only file system, a full disk) raises :class:`OutputError`, whose message names the path that was
asked for and says what is wrong; the low-level error is kept as its ``__cause__``.
"""

from __future__ import annotations

import errno as _errno
import os
import secrets
from pathlib import Path

#: Tries at a free temporary name before giving up (each name has 48 random bits, so one try almost always does).
_NAME_TRIES = 100
#: How much of the target's name goes into the temporary name (keeps it under the usual 255-byte name limit).
_NAME_KEEP = 200


class OutputError(OSError):
    """An output file could not be written; the message names the file and says why in plain words.

    A subclass of :class:`OSError`, so ``except OSError`` keeps catching it. ``errno`` is that of the underlying
    error (``None`` when there is none), ``path`` the file that was asked for, and ``__cause__`` the original error.
    """

    def __init__(self, message: str, path: str | Path | None = None, errno: int | None = None):
        super().__init__(message)
        self.errno = errno
        self.path = None if path is None else Path(path)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, renamed into place.

    Missing folders are created. The file's mode is ``0o666`` less the umask, as for ``open(path, "w")``.

    Raises:
        OutputError: The file cannot be written (permissions, a file where a folder is needed, a read-only file
            system, a full disk, ...). Nothing is left at ``path`` or next to it; an old file there is untouched.
        TypeError: ``data`` is not bytes-like.
    """
    path = Path(path)
    folder = path.parent
    stage = "folder"
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        stage = "create"
        fd, tmp = _create_temporary(path)
        stage = "write"
        try:
            f = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            raise
        with f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        stage = "replace"
        os.replace(tmp, path)
        tmp = None
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError) and not isinstance(e, OutputError):
            raise OutputError(f"cannot write {path}: {_reason(path, e, stage, tmp)}", path, e.errno) from e
        raise
    _sync_folder(folder)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """UTF-8 text version of :func:`atomic_write_bytes`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def make_dirs(folder: str | Path) -> Path:
    """Create ``folder`` (and its parents) for outputs; returns it.

    Raises:
        OutputError: It cannot be created (a file in the way, permissions, a read-only file system...); the message
            names the folder and says why.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        probe = folder / "_"  # _reason() describes the folder a file would go in
        raise OutputError(f"cannot create the output folder {folder}: {_reason(probe, e, 'folder', None)}", folder,
                          e.errno) from e
    return folder


def _create_temporary(path: Path) -> tuple[int, str]:
    """Create and open a new hidden file next to ``path``; returns its descriptor and name."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(_NAME_TRIES):
        tmp = os.path.join(path.parent, f".{path.name[:_NAME_KEEP]}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(_errno.EEXIST, "no free temporary file name")


def _sync_folder(folder: Path) -> None:
    """Flush the folder's entry of a renamed file to the disk; skipped where a folder cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _reason(path: Path, e: OSError, stage: str, tmp: str | None) -> str:
    """What is wrong, in plain words, naming only paths the user knows (never the temporary file)."""
    blocker = _file_in_the_way(path.parent)
    if blocker is not None:
        return f"{blocker} exists and is a file, not a folder"
    code = e.errno
    if stage == "replace" and (code == _errno.EISDIR or os.path.isdir(path)):
        return f"{path} is a folder"
    if code in (_errno.EACCES, _errno.EPERM):
        if stage == "replace":
            return f"permission denied replacing {path}"
        return f"permission denied on folder {_existing_folder(path.parent)}"
    if code == _errno.EROFS:
        return f"{_existing_folder(path.parent)} is on a read-only file system"
    if code == _errno.ENOSPC:
        return f"no space left on the disk holding {_existing_folder(path.parent)}"
    if code == getattr(_errno, "EDQUOT", None):
        return f"disk quota exceeded on the disk holding {_existing_folder(path.parent)}"
    if code == _errno.ENAMETOOLONG:
        return "the file name is too long"
    if code == _errno.ENOENT and stage == "folder":
        return f"{path.parent} cannot be created"
    text = e.strerror or (e.args[0] if e.args and isinstance(e.args[0], str) else "")
    if not text or (tmp is not None and os.path.basename(tmp) in text):
        return type(e).__name__
    return text[:1].lower() + text[1:]


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest of ``folder`` and its parents that exists as something other than a folder, if any."""
    for p in (folder, *folder.parents):
        if os.path.isdir(p):
            return None
        if os.path.lexists(p):
            return p
    return None


def _existing_folder(folder: Path) -> Path:
    """``folder`` or, when it does not exist yet, its nearest existing parent (where the missing part was refused)."""
    for p in (folder, *folder.parents):
        if os.path.isdir(p):
            return p
    return folder
