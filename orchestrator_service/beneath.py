"""Files beneath the workspace, opened without following any symlink on the way.

``openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`` where the kernel has it (Linux 5.6+),
otherwise a walk from the workspace's descriptor, one ``O_NOFOLLOW`` component at a time:
either way a folder swapped for a link mid-scan leads nowhere, because no path is resolved
twice. A file with more than one hard link is refused unless allowed: a link inside the
workspace to a file outside it looks like any other file. Errors name the path relative to
the workspace, never the workspace's own location.
"""

from __future__ import annotations

import ctypes
import errno
import fnmatch
import os
import platform
import re
import stat
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path, PurePosixPath

__all__ = ["NotBeneath", "Workspace", "glob_regex", "list_beneath", "open_beneath", "open_workspace",
           "stat_beneath"]

_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "armv7l": 437, "ppc64le": 437, "s390x": 437}
RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH = 0x02, 0x04, 0x08


class NotBeneath(PermissionError):
    """The path leaves the workspace, crosses a symlink, or is a hard link when those are
    not allowed."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_openat2_works: bool | None = None
_OPENAT2 = _SYS_OPENAT2.get(platform.machine())  # the syscall's number here, if known


def _openat2(dir_fd: int, rel: str, flags: int) -> int | None:
    """An fd, or None when the kernel has no openat2 (then the caller walks)."""
    global _openat2_works
    number = _OPENAT2
    libc = _libc()
    if _openat2_works is False or number is None or libc is None:
        return None
    how = _how(flags)
    fd = libc.syscall(number, dir_fd, rel.encode(), ctypes.byref(how), ctypes.sizeof(how))
    if fd >= 0:
        _openat2_works = True
        return int(fd)
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM) and _openat2_works is None:
        _openat2_works = False  # no openat2 here (or a seccomp filter says no): walk instead
        return None
    raise OSError(err, os.strerror(err))


@lru_cache(maxsize=8)
def _how(flags: int) -> _OpenHow:
    """openat2's argument for these flags (built once: it is read, never written)."""
    return _OpenHow(flags | os.O_CLOEXEC, 0,
                    RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)


def _walk(dir_fd: int, rel: str, flags: int) -> int:
    parts = [p for p in PurePosixPath(rel).parts if p not in ("", ".")]
    current = os.dup(dir_fd)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                          dir_fd=current)
            os.close(current)
            current = nxt
        if not parts:
            return os.dup(current)
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current)
    finally:
        os.close(current)


#: The workspace: its path, or a descriptor open on its folder (held by whoever opens many
#: files beneath it, so each costs no open and close of the workspace itself).
Workspace = Path | int


def open_beneath(workspace: Workspace, rel: str, flags: int = os.O_RDONLY,
                 allow_hardlinks: bool = False) -> int:
    """A descriptor of ``rel`` beneath ``workspace``; NotBeneath if the path would leave it
    or cross a symlink, or names a file with several hard links (unless allowed)."""
    return open_beneath_stat(workspace, rel, flags, allow_hardlinks)[0]


def open_beneath_stat(workspace: Workspace, rel: str, flags: int = os.O_RDONLY,
                      allow_hardlinks: bool = False) -> tuple[int, os.stat_result]:
    """open_beneath, with the descriptor's stat (taken anyway for the hard-link check)."""
    if rel.startswith("/") or ".." in rel.split("/"):  # the kernel refuses it too; say why
        raise NotBeneath(errno.EXDEV, f"{rel}: not inside the workspace")
    borrowed = isinstance(workspace, int)  # the caller's descriptor: it closes it
    top = workspace if isinstance(workspace, int) else open_workspace(workspace)
    try:
        try:
            fd = _openat2(top, rel, flags)
            if fd is None:
                fd = _walk(top, rel, flags)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.EXDEV, errno.ENOTDIR):
                raise NotBeneath(exc.errno, f"{rel}: not inside the workspace (a symlink on "
                                            "the way)") from None
            raise OSError(exc.errno, f"{rel}: {exc.strerror}") from None
    finally:
        if not borrowed:
            os.close(top)
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and not allow_hardlinks:
        os.close(fd)
        raise NotBeneath(errno.EMLINK, f"{rel}: has {st.st_nlink} hard links (it may be a file "
                                       "from outside the workspace; --allow-hardlinks)")
    return fd, st


def open_workspace(workspace: Path) -> int:
    """A descriptor of the workspace's folder, for ``open_beneath``'s workspace."""
    return os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def stat_beneath(workspace: Workspace, rel: str, allow_hardlinks: bool = False) -> os.stat_result:
    fd, st = open_beneath_stat(workspace, rel, os.O_PATH, allow_hardlinks)
    os.close(fd)
    return st


def _part_regex(part: str) -> str:
    out, i = [], 0
    while i < len(part):
        c = part[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = part.find("]", i + 2 if part[i + 1:i + 2] in ("!", "]") else i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = part[i + 1:end]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append("[" + body.replace("\\", "\\\\").replace("[", "\\[") + "]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


@lru_cache(maxsize=256)
def glob_regex(pattern: str) -> re.Pattern[str]:
    """A pathlib-style glob (``*`` within a name, ``**`` any folders) as a regex over
    relative POSIX paths."""
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    out = ""
    for n, part in enumerate(parts):
        last = n == len(parts) - 1
        if part == "**":
            out += ".*" if last else "(?:[^/]+/)*"
        else:
            out += _part_regex(part) + ("" if last else "/")
    return re.compile(out + r"\Z", re.DOTALL)


def list_beneath(workspace: Path, root: str, include: Sequence[str],
                 exclude: Sequence[str]) -> list[str]:
    """Regular files under ``root`` (relative to the workspace) matching an include glob and
    no exclude pattern, as workspace-relative paths, sorted. The walk holds descriptors and
    follows no symlink: a folder swapped for a link is not entered."""
    top = open_beneath(workspace, root, os.O_RDONLY | os.O_DIRECTORY)
    includes = [glob_regex(p) for p in include]
    base = PurePosixPath(root)
    found = []
    try:
        for folder, _dirs, files, dir_fd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
            for name in files:
                rel = PurePosixPath(folder, name).as_posix()
                rel = rel[2:] if rel.startswith("./") else rel
                if not any(r.match(rel) for r in includes):
                    continue
                if any(fnmatch.fnmatch(rel, ex) for ex in exclude):
                    continue
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.append((base / rel).as_posix() if root not in ("", ".") else rel)
    finally:
        os.close(top)
    return sorted(found)
