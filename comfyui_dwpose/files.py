"""Writing outputs safely: never half a file under its final name, never over an input,
one process at a time per output, and every OS error as one line naming the path.

Every writer of the package (maps, JSON, npz, videos, model exports) goes through here.
A file is written under a temporary name unique to the process (`.NAME.<pid>-<hex>.partial`,
same folder) and renamed into place only once complete, so a name that exists holds a
whole file. Writers of one output stem hold its advisory lock (`locked`, files in a
hidden `.dwpose-locks` folder beside the outputs), so a second run waits for the first
instead of interleaving with it. What a killed run leaves behind is a partial: never
renamed into place, and removed by the next run that holds the lock (`clean_partials`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

LOCKS = ".dwpose-locks"
# The output side is broken for every file after these, not just for one: stop the batch.
FATAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


class OutputError(Exception):
    """An output that cannot, or must not, be written. The message names the path."""

    def __init__(self, message: str, errno: int | None = None):
        super().__init__(message)
        self.errno = errno

    @property
    def fatal(self) -> bool:
        """Whether later outputs to the same place would fail too (disk full, read-only)."""
        return self.errno in FATAL_ERRNOS


class OutputBusy(OutputError):
    """Another process holds the output's lock (it is writing the same output now)."""


def partial_name(path: str | os.PathLike) -> Path:
    """A temporary name for `path` in its folder, unique to this process and call."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")


def commit(partial: Path, path: Path) -> None:
    """Rename a finished partial into place (a folder replaces the folder it renames onto)."""
    if partial.is_dir() and path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    os.replace(partial, path)


def remove(paths: Iterable[Path]) -> None:
    """Delete files and folders that may or may not exist."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary name to write `path` under; it replaces `path` when the block
    ends without an error and is deleted otherwise. An OS error (permissions, disk full,
    `path` is a folder) becomes an `OutputError` naming `path`."""
    with replacing_together([path]) as [partial]:
        yield partial


@contextlib.contextmanager
def replacing_together(paths: Iterable[str | os.PathLike]) -> Iterator[list[Path]]:
    """`replacing` for outputs that belong together (a map and its JSON): none is renamed
    into place unless all were written. An OS error names the file it came from, or all."""
    paths = [Path(p) for p in paths]
    partials = [partial_name(p) for p in paths]
    try:
        yield partials
        for partial, path in zip(partials, paths):
            commit(partial, path)
    except OSError as exc:
        named = {str(partial): path for partial, path in zip(partials, paths)}
        where = named.get(str(exc.filename)) or ", ".join(map(str, paths))
        raise OutputError(describe(where, exc), exc.errno) from exc
    finally:
        remove(partials)


def write_text(path: str | os.PathLike, text: str) -> None:
    """`path` holds `text`, whole, or is left as it was."""
    with replacing(path) as partial:
        partial.write_text(text, encoding="utf-8")


def describe(path: Path | str, exc: OSError) -> str:
    """One line: which path, and what the OS said."""
    return f"cannot write {path}: {reason(exc)}"


def reason(exc: OSError) -> str:
    """What the OS said, with what to do when the disk is full."""
    text = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        text += " (free some space, or write elsewhere)"
    return text


def check_folder(folder: str | os.PathLike) -> None:
    """`OutputError` unless `folder` is, or can be made, a folder this process can write
    into; creates nothing. Run before any work, so that a read-only or misnamed output is
    reported at once."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write into {folder}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write into {folder}: {reason(exc)}", exc.errno) from exc


def make_folder(folder: str | os.PathLike) -> Path:
    """Create the output folder if needed (`OutputError` when it cannot be)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise OutputError(
            f"cannot write into {folder}: it is a file, not a folder", exc.errno
        ) from exc
    except OSError as exc:
        raise OutputError(f"cannot write into {folder}: {reason(exc)}", exc.errno) from exc
    return folder


def lock_path(path: Path) -> Path:
    """The advisory lock file of output `path`: `.dwpose-locks/NAME.lock` in its folder
    (kept: removing a lock file others may wait on is unsafe; the folder can go whenever
    no dwpose run is writing there)."""
    return path.parent / LOCKS / f"{path.name}.lock"


@contextlib.contextmanager
def locked(
    path: str | os.PathLike, timeout: float = -1, on_wait: Callable[[], None] | None = None
) -> Iterator[None]:
    """Hold the lock of output `path` (a file or a stem) for the block.

    Other processes (and other locks in this one) on the same path wait: forever
    (timeout -1), or `timeout` seconds before `OutputBusy` (0: at once). `on_wait` is
    called when it has to wait. The OS releases the lock of a process that dies.
    """
    from filelock import FileLock, Timeout  # here: `import comfyui_dwpose` stays light

    path = Path(path)
    lock_file = lock_path(path)
    try:
        lock_file.parent.mkdir(exist_ok=True)
        lock = FileLock(lock_file)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if timeout == 0:
                raise OutputBusy(f"{path}: another process is writing it now") from None
            if on_wait is not None:
                on_wait()
            lock.acquire(timeout=timeout)
    except Timeout:
        raise OutputBusy(f"{path}: another process is writing it now") from None
    except OSError as exc:
        raise OutputError(describe(lock_file, exc), exc.errno) from exc
    try:
        yield
    finally:
        lock.release()


def clean_partials(path: Path) -> None:
    """Remove partials of `path` that dead runs left (call while holding its lock)."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+-[0-9a-f]+\.)?partial(\.\w+)?")
    if path.parent.is_dir():
        remove(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))


def refuse_inputs(outputs: Iterable[Path], inputs: Iterable[Path], hint: str = "") -> None:
    """`OutputError` when a planned output is one of the inputs: the same file (also
    through links) or the same resolved path. Checked before any work, so nothing of an
    input is ever replaced."""
    inputs = [Path(p) for p in inputs]
    stats = {}
    for p in inputs:
        with contextlib.suppress(OSError):
            stats[_key(p.stat())] = p
    resolved = {p.resolve(): p for p in inputs}
    for output in map(Path, outputs):
        source = resolved.get(output.resolve())
        if source is None:
            try:
                source = stats.get(_key(output.stat()))
            except OSError:
                continue
        if source is not None:
            raise OutputError(f"{output} would replace the input {source}{hint}")


def _key(stat: os.stat_result) -> tuple[int, int]:
    return stat.st_dev, stat.st_ino
