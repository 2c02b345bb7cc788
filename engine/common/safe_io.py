"""Reading and writing the user's files without hanging, exhausting memory or tearing them.

Rules every read and write in finetune-tui follows:
- a file we read is a regular file (a FIFO blocks forever, /dev/zero never ends) and we
  read at most a stated number of bytes;
- a file we write appears whole or not at all (written beside it, then renamed);
- a file we write or append to is never reached through a symbolic link, and is a regular
  file (a link planted in a run folder must not redirect our writes to the user's files);
- text that cannot be decoded or parsed is the user's input error, said in one line.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import struct
from pathlib import Path

from .errors import InputError

KIB = 1024
MIB = 1024 * KIB
PRESET_LIMIT = 1 * MIB  # a preset is a few hundred bytes
CONFIG_LIMIT = 16 * MIB  # config.json / tokenizer_config.json (chat templates can be large)
SMALL_LIMIT = 64 * KIB  # run.pid, markers, summary fields
HEADER_LIMIT = 100 * MIB  # safetensors caps its JSON header at 100 MB


class UnreadableFile(InputError):
    """A file that is not a regular file, too large, or not text."""


def check_regular_file(path: Path, what: str = "file") -> os.stat_result:
    """stat() a path and refuse anything but a regular file (no FIFO, device, socket)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UnreadableFile(f"{path}: {what} not found") from None
    except OSError as exc:
        raise UnreadableFile(f"{path}: cannot read {what}: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise UnreadableFile(f"{path}: is a directory, expected a {what}")
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableFile(f"{path}: not a regular file (a pipe or device); expected a {what}")
    return info


def read_bytes(path: Path, limit: int, what: str = "file") -> bytes:
    """At most `limit` bytes of a regular file; larger files are refused, not truncated."""
    with open_regular(path, what, mode="rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise UnreadableFile(f"{path}: {what} is larger than {limit // KIB:,} KiB")
    return data


def read_text(path: Path, limit: int, what: str = "file") -> str:
    """UTF-8 text (a byte-order mark is tolerated) of a bounded regular file."""
    data = read_bytes(path, limit, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnreadableFile(
            f"{path}: {what} is not UTF-8 text (bad byte at offset {exc.start})"
        ) from None


def read_json(path: Path, limit: int, what: str = "JSON file"):
    """A parsed JSON document; malformed, too deep or too large is one InputError line."""
    text = read_text(path, limit, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UnreadableFile(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None
    except ValueError:  # an integer past Python's 4,300-digit conversion limit
        raise UnreadableFile(f"{path}: a number too long to read (over 4,300 digits)") from None
    except RecursionError:
        raise UnreadableFile(f"{path}: JSON nested too deeply") from None


def open_regular(path: Path, what: str = "file", mode: str = "r"):
    """Open a regular file (datasets, metrics, anything bounded): never a FIFO or device."""
    path = Path(path)
    check_regular_file(path, what)
    try:
        # O_NONBLOCK: if the path was swapped for a FIFO after the check, open does not block.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UnreadableFile(f"{path}: cannot read {what}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnreadableFile(f"{path}: not a regular file; expected a {what}")
    if "b" in mode:
        return os.fdopen(fd, "rb")
    return os.fdopen(fd, "r", encoding="utf-8-sig", errors="strict", newline="")


def safetensors_problem(file: Path) -> str | None:
    """What is wrong with a safetensors file's header, or None when it is intact."""
    try:
        safetensors_header(file)
    except InputError as exc:
        return str(exc).removeprefix(f"{file}: ")
    return None


def safetensors_header(file: Path) -> dict:
    """The JSON header (tensor name -> dtype, shape, offsets), read once and checked: the
    8-byte length and the header it announces intact, every tensor inside the file."""
    with open_regular(file, "safetensors file", mode="rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        raw = handle.read(8)
        if len(raw) < 8:
            raise InputError(f"{file}: truncated safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length > min(HEADER_LIMIT, size - 8):
            raise InputError(f"{file}: corrupt safetensors header")
        try:
            header = json.loads(handle.read(length))
        except (ValueError, RecursionError):
            raise InputError(f"{file}: corrupt safetensors header") from None
    if not isinstance(header, dict):
        raise InputError(f"{file}: corrupt safetensors header")
    ends = [
        v["data_offsets"][1] for v in header.values() if isinstance(v, dict) and "data_offsets" in v
    ]
    if ends and 8 + length + max(ends) > size:
        raise InputError(f"{file}: truncated safetensors file")
    return header


def encoding_problem(text: str) -> str | None:
    """Why this text cannot be written as UTF-8 (a lone surrogate from a JSON escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a character that cannot be saved at position {exc.start} (lone surrogate)"
    return None


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename: a reader or a crash never sees half a file.

    The temporary file is created exclusively (a link planted under its name is not
    followed) and the rename replaces a link at `path` instead of writing through it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = _create_exclusive(tmp, 0o666)
    except FileExistsError:  # left by a crashed process of the same pid: ours to remove
        tmp.unlink()
        fd = _create_exclusive(tmp, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_exclusive(path: Path, text: str) -> None:
    """Create `path` with `text`; FileExistsError if anything (a link too) has that name."""
    with os.fdopen(_create_exclusive(Path(path), 0o644), "w", encoding="utf-8") as file:
        file.write(text)


def _create_exclusive(path: Path, mode: int) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


class UnsafeTarget(InputError):
    """A path we would write through is a symbolic link, a pipe, a device or a folder."""


def entry_problem(path: Path) -> str | None:
    """Why `path` is not a plain file or a real folder (links are not followed), or None."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be examined: {exc.strerror}"
    if stat.S_ISLNK(info.st_mode):
        return "is a symbolic link"
    if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
        return "is a pipe, socket or device"
    return None


def open_append(path: Path, what: str = "file", readable: bool = False) -> int:
    """A descriptor appending to a regular file, created if absent; a link is not followed.

    O_NONBLOCK keeps a FIFO planted there from blocking the open; the flag is cleared
    again on the regular file we accept. `readable` lets a caller look at what is there
    (the registry mends a torn last line).
    """
    path = Path(path)
    flags = (
        (os.O_RDWR if readable else os.O_WRONLY)
        | os.O_CREAT
        | os.O_APPEND
        | os.O_NOFOLLOW
        | os.O_NONBLOCK
        | os.O_CLOEXEC
    )
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafeTarget(f"{path}: {what} is a symbolic link; not written through") from None
        if exc.errno in (errno.ENXIO, errno.EISDIR):
            raise UnsafeTarget(f"{path}: {what} is not a regular file; not written") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeTarget(f"{path}: {what} is not a regular file; not written")
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd
