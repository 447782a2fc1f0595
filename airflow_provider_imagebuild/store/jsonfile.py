"""JSON-file backend: one readable file per build, for shell jobs and small teams.

A write holds an exclusive ``flock`` on the build's lock file across read and write, writes a
temporary file, fsyncs it, renames it over the record and fsyncs the directory: a reader sees
the old record or the new one, never half of one, even if the writer is killed. A record that
does not parse is reported and never overwritten.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.errors import StoreUnavailable
from airflow_provider_imagebuild.store import codec
from airflow_provider_imagebuild.store.base import BuildStore, Doc, ListFilter, Mutation, T


class JsonFileStore(BuildStore):
    def __init__(self, directory: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.root = Path(directory)
        self.url = f"file://{self.root}"
        self.builds = self.root / "builds"
        self.locks = self.root / "locks"

    def _path(self, build_id: str) -> Path:
        return self.builds / f"{build_id}.json"

    def init(self) -> str:
        existed = self.builds.is_dir()
        self._prepare()
        return f"JSON store {'ready' if existed else 'created'} at {self.root}"

    def _prepare(self) -> None:
        try:
            self.builds.mkdir(parents=True, exist_ok=True)
            self.locks.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot prepare JSON store {self.root}: {exc}") from exc

    def _load(self, path: Path, build_id: str) -> Doc | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {path}: {exc}") from exc
        return codec.loads(data, f"build {build_id}: {path} (left untouched for inspection)")

    def _read(self, build_id: str) -> tuple[Doc, Any] | None:
        doc = self._load(self._path(build_id), build_id)
        return None if doc is None else (doc, doc.get("version"))

    def _write(self, build_id: str, doc: Doc, expected: Any | None) -> None:  # pragma: no cover
        raise NotImplementedError("JsonFileStore writes inside _apply's lock")

    @contextlib.contextmanager
    def _locked(self, build_id: str) -> Iterator[None]:
        self._prepare()
        fd = os.open(self.locks / f"{build_id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def _apply(self, build_id: str, fn: Mutation[T]) -> T:
        with self._locked(build_id):
            path = self._path(build_id)
            new_doc, result = fn(self._load(path, build_id))
            if new_doc is not None:
                self._replace(path, new_doc)
        return result

    def _replace(self, path: Path, doc: Doc) -> None:
        data = codec.dumps(doc, pretty=True)
        fd, tmp = tempfile.mkstemp(dir=self.builds, prefix=f".{path.stem}.", suffix=".tmp")
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

    def _scan(self, flt: ListFilter) -> Iterator[Doc]:
        if not self.builds.is_dir():
            return
        for path in sorted(self.builds.glob("*.json")):
            doc = self._load(path, path.stem)
            if doc is not None:
                yield doc
