"""JSON-file backend: one readable file per build, for shell jobs and small teams.

A write holds an exclusive ``flock`` on the build's lock file across read and write, writes a
temporary file, fsyncs it, renames it over the record and fsyncs the directory: a reader sees
the old record or the new one, never half of one, even if the writer is killed. A record that
does not parse is reported and never overwritten; the temporary file a killed writer left is
removed by the next write of that build. A full or read-only disk is "store unusable" (exit 5)
with the system's reason. A folder that does not exist is created by the first write (or ``store
init``); a listing of it is refused naming the path, never answered as "0 builds".
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.errors import CorruptRecord, NotFound, StoreUnavailable
from airflow_provider_imagebuild.store import codec, index
from airflow_provider_imagebuild.store.base import DELETE, BuildStore, Doc, ListFilter, Mutation, T

# Temporary files are ``.<build id>+<random>.tmp``: build ids cannot contain '+', so the files of
# one build are told apart from those of a build whose id merely starts the same way.
_TMP_SEP = "+"
log = logging.getLogger(__name__)


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise StoreUnavailable(f"{what}: {exc.strerror or exc}") from exc


def _stamp(path: Path) -> str:
    """What changes whenever the file is replaced: its modification time and size."""
    found = path.stat()
    return f"{found.st_mtime_ns}:{found.st_size}"


class JsonFileStore(BuildStore):
    def __init__(self, directory: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(directory)
        self.url = f"file://{self.root}"
        self.builds = self.root / "builds"
        self.locks = self.root / "locks"
        self.items_read = 0  # records read by listings (the index spares the others)

    def _path(self, build_id: str) -> Path:
        return self.builds / f"{build_id}.json"

    def init(self) -> str:
        existed = self.builds.is_dir()
        self._prepare()
        return f"JSON store {'ready' if existed else 'created'} at {self.root}"

    def _check_root(self) -> bool:
        """Whether the store's folder exists; a path that is not a folder is refused."""
        for folder in (self.root, self.builds):
            if folder.exists() and not folder.is_dir():
                raise StoreUnavailable(f"JSON store {self.root}: {folder} is not a directory")
        return self.builds.is_dir()

    def _absent(self) -> str:
        """Why a reader finds nothing: the store was never created here (a mistyped path, or
        ``store init`` not run yet). Said rather than answered as "0 builds"."""
        missing = self.builds if self.root.is_dir() else self.root
        return f"JSON store {self.root}: the folder {missing} does not exist (imagebuild store init creates it)"

    def _prepare(self) -> None:
        self._check_root()
        with _os_errors(f"cannot prepare JSON store {self.root}"):
            self.builds.mkdir(parents=True, exist_ok=True)
            self.locks.mkdir(parents=True, exist_ok=True)

    def _load(self, path: Path, build_id: str) -> Doc | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {path}: {exc.strerror or exc}") from exc
        return codec.loads(data, f"build {build_id}: {path} (left untouched for inspection)")

    def _read(self, build_id: str) -> tuple[Doc, Any] | None:
        if not self._check_root():  # still "not found": a task registers its build, which creates it
            raise NotFound(f"build {build_id} not found: {self._absent()}")
        doc = self._load(self._path(build_id), build_id)
        return None if doc is None else (doc, doc.get("version"))

    def _write(self, build_id: str, doc: Doc, expected: Any | None) -> None:  # pragma: no cover
        raise NotImplementedError("JsonFileStore writes inside _apply's lock")

    @contextlib.contextmanager
    def _locked(self, build_id: str) -> Iterator[None]:
        self._prepare()
        with _os_errors(f"cannot lock build {build_id} in JSON store {self.root}"):
            fd = os.open(self.locks / f"{build_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _apply(self, build_id: str, fn: Mutation[T]) -> T:
        with self._locked(build_id):
            self._remove_stale_temporaries(build_id)
            path = self._path(build_id)
            new_doc, result = fn(self._load(path, build_id))
            if new_doc is DELETE:  # under the build's lock: no one changed it since the read
                with _os_errors(f"cannot delete build {build_id} from JSON store {self.root}"):
                    path.unlink(missing_ok=True)
                self._index_update(build_id, None)
            elif new_doc is not None:
                with _os_errors(f"cannot write build {build_id} to JSON store {self.root}"):
                    self._replace(path, build_id, new_doc)
                self._index_update(build_id, index.entry(new_doc, _stamp(path)))
        return result

    def _remove_stale_temporaries(self, build_id: str) -> None:
        """What a writer killed between write and rename left; only this build's, under its lock."""
        for stale in self.builds.glob(f".{build_id}{_TMP_SEP}*.tmp"):
            with contextlib.suppress(OSError):
                stale.unlink()

    def _replace(self, path: Path, build_id: str, doc: Doc) -> None:
        data = codec.dumps(doc, pretty=True)
        fd, tmp = tempfile.mkstemp(dir=self.builds, prefix=f".{build_id}{_TMP_SEP}", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
            dir_fd = os.open(self.builds, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @property
    def index_path(self) -> Path:
        return self.root / f"{index.INDEX_NAME}.json"

    def _index_update(self, build_id: str, found: dict[str, Any] | None) -> None:
        """Record (or drop) the build's entry, under the index's own lock. Best effort: a failure
        leaves the entry stale, which only makes listings read that record (see :mod:`.index`)."""
        try:
            with self._locked(index.INDEX_NAME):
                current = self._index_read()
                if found is None:
                    current.pop(build_id, None)
                else:
                    current[build_id] = found
                self._replace(self.index_path, index.INDEX_NAME, current)
        except (OSError, StoreUnavailable) as exc:
            log.warning("JSON store %s: index not updated for %s: %s", self.root, build_id, exc)

    def _index_read(self) -> dict[str, Any]:
        try:
            found = codec.loads(self.index_path.read_bytes(), f"{self.index_path}")
        except (FileNotFoundError, CorruptRecord):
            return {}
        return found if isinstance(found, dict) else {}

    def _scan(self, flt: ListFilter) -> Iterator[tuple[str, Doc | CorruptRecord]]:
        if not self._check_root():
            raise StoreUnavailable(self._absent())
        known = self._index_read() if index.filtering(flt) else {}
        for path in sorted(self.builds.glob("*.json")):
            try:
                if index.skippable(known.get(path.stem), _stamp(path), flt):
                    continue
            except FileNotFoundError:  # removed since the listing
                continue
            self.items_read += 1
            try:
                doc = self._load(path, path.stem)
            except CorruptRecord as exc:
                yield path.stem, exc
                continue
            if doc is not None:
                yield path.stem, doc
