"""SQLite backend: the embedded default.

Each change runs inside ``BEGIN IMMEDIATE``, which takes SQLite's write lock before the read, so
read-modify-write is serialised across threads and processes. WAL mode keeps readers from
blocking the writer. ``synchronous=NORMAL`` (the default) keeps every commit across a killed
process and never corrupts the file; only an OS crash or power loss can drop the last commits,
which at worst re-runs a milestone. ``?synchronous=full`` fsyncs every commit for that case too,
at roughly half the write rate (see docs/benchmarks). The file is created on the first write,
never by a read.

A read never writes: it opens the file without setting the journal mode or creating the tables, so
a database without the store's table reads as "no builds" and stays byte-identical. A database
that holds other tables and not the store's (a spec or ``--store`` naming Airflow's own
``airflow.db``) is refused, naming the path, by reads and writes alike: the store's table is never
created among another application's.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.errors import CorruptRecord, StoreUnavailable
from airflow_provider_imagebuild.store import codec
from airflow_provider_imagebuild.store.base import DELETE, BuildStore, Doc, ListFilter, Mutation, T

SCHEMA = """
CREATE TABLE IF NOT EXISTS builds (
    build_id   TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    pipeline   TEXT NOT NULL,
    cloud      TEXT NOT NULL,
    status     TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    doc        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS builds_updated ON builds (updated_at);
CREATE INDEX IF NOT EXISTS builds_pipeline ON builds (pipeline, status);
"""
BUSY_TIMEOUT_S = 30.0
SQLITE_HEADER_BYTES = 100  # every SQLite database file starts with a header this long
OUR_COLUMNS = frozenset({"build_id", "version", "pipeline", "cloud", "status", "updated_at", "doc"})


def _decode(build_id: str, text: str) -> Doc:
    return codec.loads(text, f"build {build_id}: stored document")


class SQLiteStore(BuildStore):
    def __init__(self, path: str | Path, synchronous: str = "normal", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = Path(path)
        self.synchronous = "FULL" if synchronous.lower() == "full" else "NORMAL"
        self.url = f"sqlite:///{self.path}"
        self._local = threading.local()

    # -- connections ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        """This thread's connection for writing: WAL mode and the store's table made (in a new or
        empty database, or one that has the table: never among another application's tables)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        self._check_file()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                self._ours(conn)
            except StoreUnavailable:
                conn.close()
                raise
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}{self._disk_hint()}") from exc
        self._local.conn = conn
        self._local.pid = os.getpid()
        return conn

    def _ours(self, conn: sqlite3.Connection) -> bool:
        """Whether the database holds the store's table (False: it holds no table at all, a new or
        empty file). One that holds other tables and not ours, or a ``builds`` table of another
        shape, is refused naming the path: it is some other application's database."""
        tables = [str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        if "builds" in tables:
            columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(builds)")}
            if columns >= OUR_COLUMNS:
                return True
        elif not tables:
            return False
        shown = ", ".join(sorted(tables)[:3]) + (", ..." if len(tables) > 3 else "")
        raise StoreUnavailable(
            f"SQLite store {self.path} is not an imagebuild state store: it holds other tables ({shown}) and "
            "not the store's builds table; left untouched (name the store's own file, not another application's "
            "database)"
        )

    def _disk_hint(self) -> str:
        """Why SQLite's terse error happened, when the disk says so (SQLite's own message for a
        read-only mount is "unable to open database file")."""
        try:
            fs = os.statvfs(self.path.parent)
        except OSError:
            return ""
        if fs.f_flag & os.ST_RDONLY:
            return " (Read-only file system)"
        if fs.f_bavail == 0:
            return " (No space left on device)"
        return ""

    def _check_file(self) -> None:
        """Refuse a path that holds a directory, naming it (SQLite's own message for it is
        "unable to open database file"), or a file shorter than SQLite's 100-byte header, which
        SQLite would silently turn into a new, empty database (a longer file that is not a
        database SQLite refuses itself, without writing to it).

        The path is only ``stat``-ed, never opened: POSIX releases every lock a process holds on
        a file when it closes *any* descriptor of that file, so opening and closing the database
        here, while another thread's connection of this process holds SQLite's locks (a
        milestone's heartbeat thread opens its own connection mid-run), silently dropped those
        locks, let another process write at the same time, and corrupted the database
        ("database disk image is malformed")."""
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc.strerror or exc}") from exc
        if stat.S_ISDIR(found.st_mode):
            raise StoreUnavailable(f"SQLite store {self.path} is a directory, not a database file")
        if 0 < found.st_size < SQLITE_HEADER_BYTES:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: file is not a database")

    def _reader(self) -> sqlite3.Connection | None:
        """A connection for reading, or None when there is nothing to read: no database file, or
        one without the store's table. Reads never create: no file, no table, no journal mode
        (this thread's writing connection serves when it has one)."""
        if not self.path.exists():
            return None
        pid = os.getpid()
        if getattr(self._local, "pid", None) == pid and getattr(self._local, "conn", None) is not None:
            return self._local.conn
        conn: sqlite3.Connection | None = getattr(self._local, "reader", None)
        if conn is not None and getattr(self._local, "reader_pid", None) == pid:
            return conn
        self._check_file()
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                found = self._ours(conn)
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
        if not found:  # an empty database: no builds (asked again next time: a writer may make the table)
            conn.close()
            return None
        self._local.reader, self._local.reader_pid = conn, pid
        return conn

    def close(self) -> None:
        pid = os.getpid()
        for name, owner in (("conn", "pid"), ("reader", "reader_pid")):
            conn = getattr(self._local, name, None)
            if conn is not None and getattr(self._local, owner, None) == pid:
                conn.close()
        self._local = threading.local()

    # -- primitives ----------------------------------------------------------------------------
    def init(self) -> str:
        existed = self.path.exists()
        conn = self._connect()
        conn.execute("SELECT count(*) FROM builds").fetchone()
        return f"SQLite store {'ready' if existed else 'created'} at {self.path}"

    def _read(self, build_id: str) -> tuple[Doc, Any] | None:
        conn = self._reader()
        if conn is None:
            return None
        try:
            row = conn.execute("SELECT doc, version FROM builds WHERE build_id = ?", (build_id,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc
        return None if row is None else (_decode(build_id, row[0]), row[1])

    def _write(self, build_id: str, doc: Doc, expected: Any | None) -> None:  # pragma: no cover
        raise NotImplementedError("SQLiteStore writes inside _apply's transaction")

    def _apply(self, build_id: str, fn: Mutation[T]) -> T:
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {self.path} is locked or unusable: {exc}") from exc
        try:
            self._after_begin(conn)
            row = conn.execute("SELECT doc FROM builds WHERE build_id = ?", (build_id,)).fetchone()
            new_doc, result = fn(None if row is None else _decode(build_id, row[0]))
            if new_doc is DELETE:  # in this transaction: no one changed it since the read
                conn.execute("DELETE FROM builds WHERE build_id = ?", (build_id,))
                self._before_commit(conn)
            elif new_doc is not None:
                conn.execute(
                    "INSERT INTO builds (build_id, version, pipeline, cloud, status, updated_at, doc) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (build_id) DO UPDATE SET "
                    "version = excluded.version, status = excluded.status, "
                    "updated_at = excluded.updated_at, doc = excluded.doc",
                    (
                        build_id,
                        new_doc["version"],
                        new_doc["pipeline"],
                        new_doc["cloud"],
                        new_doc["status"],
                        new_doc["updated_at"],
                        codec.dumps(new_doc).decode(),
                    ),
                )
                self._before_commit(conn)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(conn)
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}{self._disk_hint()}") from exc
        except BaseException:
            self._rollback(conn)
            raise
        return result

    @staticmethod
    def _rollback(conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")

    def _after_begin(self, conn: sqlite3.Connection) -> None:
        """Hook for the S3-mirrored variant: runs first in every write transaction."""

    def _before_commit(self, conn: sqlite3.Connection) -> None:
        """Hook for the S3-mirrored variant: runs inside the write transaction, after the change."""

    def _scan(self, flt: ListFilter) -> Iterator[tuple[str, Doc | CorruptRecord]]:
        conn = self._reader()
        if conn is None:
            return
        clauses, args = [], []
        for column, value in (("status", flt.status), ("cloud", flt.cloud), ("pipeline", flt.pipeline)):
            if value:
                clauses.append(f"{column} = ?")
                args.append(value)
        if flt.updated_before:
            clauses.append("updated_at < ?")
            args.append(flt.updated_before)
        if flt.updated_after:
            clauses.append("updated_at > ?")
            args.append(flt.updated_after)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        try:
            rows = conn.execute(f"SELECT build_id, doc FROM builds{where}", args).fetchall()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {self.path}: {exc}") from exc
        for build_id, text in rows:
            try:
                yield build_id, _decode(build_id, text)
            except CorruptRecord as exc:
                yield build_id, exc
