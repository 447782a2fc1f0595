"""Writing a generated project into a folder that may already hold the team's files, losing none.

``imagebuild init --force`` runs in folders people have worked in: a tuned playbook, their own
README, a Makefile that is a link to a shared one. So the writer keeps three rules:

- What is the user's stays the user's. A file already as init writes it is left alone, a missing
  one is written, and a file that differs is kept: init's version goes beside it as ``FILE.new``,
  and the caller lists those so that nothing changes without a word.
- No symbolic link below the project folder is ever written through, nor a directory made
  through one (every component is checked with ``lstat`` and opened ``O_NOFOLLOW`` relative to
  its parent's descriptor): a link could point anywhere, and init writing a Makefile into
  ``~/.bashrc`` or a playbook into another team's tree is not a thing to explain afterwards. The
  project folder itself may be a link: that one the user named.
- Everything is checked before anything is written, and each file is written to a temporary name
  in its own folder and renamed over: a refusal leaves no partial project, a failure half-way
  removes what this run had added, and a crash never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput

NEW_SUFFIX = ".new"
_LINK = "is a symbolic link: init never writes through one (remove it, or init into another folder)"
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class ProjectFile:
    """One file init writes: its path inside the project (``/``-separated) and its content."""

    relative: str
    content: bytes
    executable: bool = False

    def __post_init__(self) -> None:
        if any(part in ("", ".", "..") for part in self.relative.split("/")):
            raise ValueError(f"{self.relative!r} is not a plain path inside the project")

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.relative.split("/"))


@dataclass
class WriteReport:
    """What a run did, so that the command can say it: every path is absolute under the project."""

    written: list[Path] = field(default_factory=list)  # missing, now written
    unchanged: list[Path] = field(default_factory=list)  # already as init writes them, left alone
    beside: list[Path] = field(default_factory=list)  # FILE.new written because FILE differs


@dataclass(frozen=True)
class _Action:
    file: ProjectFile
    name: str  # the name written in the file's folder: its own, or its own + ".new"
    outcome: str  # "written", "unchanged" or "beside"


def write_project(folder: Path, files: Sequence[ProjectFile]) -> WriteReport:
    """Check every path of ``files`` under ``folder``, then write; refusals raise before any write."""
    actions = _checked(folder, files)
    return _applied(folder, actions)


def _kind(path: Path) -> str | None:
    """What is at ``path`` without following a link: None, "link", "dir", "file" or "other"."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidInput(str(path), f"cannot be examined ({exc.strerror})") from exc
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"


def _same_content(path: Path, content: bytes) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidInput(str(path), f"cannot be read ({exc.strerror})") from exc
    with os.fdopen(fd, "rb") as handle:
        return handle.read(len(content) + 1) == content  # a longer file differs: no need to read it all


def _file_problem(path: Path, kind: str | None) -> str | None:
    if kind == "link":
        return _LINK
    if kind == "dir":
        return "is a folder where init writes a file (move it away, or init into another folder)"
    if kind == "other":
        return "is not a regular file (a device, pipe or socket where init writes a file)"
    return None


def _folder_checked(path: Path, problems: dict[Path, str]) -> bool:
    """A folder of the project is missing (made later) or a real folder; anything else is refused."""
    kind = _kind(path)
    if kind == "link":
        problems.setdefault(path, _LINK)
    elif kind in ("file", "other"):
        problems.setdefault(path, "is not a folder, and init puts files in it (move it away)")
    return kind in (None, "dir")


def _checked(folder: Path, files: Sequence[ProjectFile]) -> list[_Action]:
    """Every decision, made from what is on disk before anything is written."""
    problems: dict[Path, str] = {}
    dir_ok: dict[tuple[str, ...], bool] = {}
    actions: list[_Action] = []
    for file in files:
        parents_ok = True
        for depth in range(1, len(file.parts)):
            key = file.parts[:depth]
            if key not in dir_ok:
                dir_ok[key] = _folder_checked(folder.joinpath(*key), problems)
            if not dir_ok[key]:
                parents_ok = False  # what is below a refused folder is not looked at: it may lie elsewhere
                break
        if not parents_ok:
            continue
        path = folder.joinpath(*file.parts)
        kind = _kind(path)
        if problem := _file_problem(path, kind):
            problems.setdefault(path, problem)
        elif kind is None:
            actions.append(_Action(file, file.parts[-1], "written"))
        elif _same_content(path, file.content):
            actions.append(_Action(file, file.parts[-1], "unchanged"))
        else:
            beside = path.with_name(path.name + NEW_SUFFIX)
            if problem := _file_problem(beside, _kind(beside)):
                problems.setdefault(beside, problem)
            else:
                actions.append(_Action(file, beside.name, "beside"))
    if problems:
        (path, reason), *more = problems.items()
        also = f" (and {len(more)} more path(s) refused); nothing was written" if more else "; nothing was written"
        raise InvalidInput(str(path), reason + also)
    return actions


class _Rollback:
    """What this run added (files, then folders), removed again if a later write fails."""

    def __init__(self) -> None:
        self.files: list[tuple[int, str]] = []
        self.dirs: list[tuple[int, str]] = []

    def undo(self) -> None:
        for dir_fd, name in reversed(self.files):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)
        for dir_fd, name in reversed(self.dirs):
            with contextlib.suppress(OSError):
                os.rmdir(name, dir_fd=dir_fd)


@contextlib.contextmanager
def _folders(folder: Path) -> Iterator[dict[tuple[str, ...], int]]:
    """Descriptors of the project's folders by relative parts, closed at the end; the project folder
    itself is opened as named (a link there is the user's choice), every folder below it by
    :func:`_folder_fd`."""
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    fds: dict[tuple[str, ...], int] = {(): os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)}
    finished = False
    try:
        yield fds
        finished = True
    finally:
        for fd in fds.values():
            os.close(fd)
        if created and not finished:
            with contextlib.suppress(OSError):
                folder.rmdir()


def _folder_fd(fds: dict[tuple[str, ...], int], key: tuple[str, ...], rollback: _Rollback) -> int:
    if key not in fds:
        parent = _folder_fd(fds, key[:-1], rollback)
        try:
            os.mkdir(key[-1], 0o777, dir_fd=parent)
            rollback.dirs.append((parent, key[-1]))
        except FileExistsError:
            pass
        fds[key] = os.open(key[-1], _DIR_OPEN, dir_fd=parent)  # a link put there since the check: ELOOP
    return fds[key]


def _put(dir_fd: int, name: str, file: ProjectFile) -> None:
    """Write to a fresh temporary name in the same folder, then rename over ``name`` (never followed)."""
    tmp = f".{name}.{secrets.token_hex(4)}.tmp"
    mode = 0o777 if file.executable else 0o666  # the umask applies, as for any file the user makes
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(file.content)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def _applied(folder: Path, actions: list[_Action]) -> WriteReport:
    report = WriteReport()
    path = folder
    try:
        with _folders(folder) as fds:
            rollback = _Rollback()
            try:
                for action in actions:
                    path = folder.joinpath(*action.file.parts[:-1], action.name)
                    if action.outcome == "unchanged":
                        report.unchanged.append(path)
                        continue
                    dir_fd = _folder_fd(fds, action.file.parts[:-1], rollback)
                    _put(dir_fd, action.name, action.file)
                    if action.outcome == "written":
                        rollback.files.append((dir_fd, action.name))
                        report.written.append(path)
                    else:
                        report.beside.append(path)
            except BaseException:
                rollback.undo()  # while the folders' descriptors are still open
                raise
    except OSError as exc:
        raise ImageBuildError(f"{path}: cannot be written ({exc.strerror}); what this run added is removed") from exc
    return report
