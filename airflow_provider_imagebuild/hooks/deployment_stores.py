"""Every store the deployment's pipelines record builds in, for the parts that read all builds: the
Image builds pages and their JSON API.

A spec may name its own store, so one store is not enough: a build recorded in a spec's store
would never show in the list, and its task's "Image build" link would find nothing. The specs are
the ones the DAG files load: ``$IMAGEBUILD_PIPELINES_DIR``, else the ``pipelines`` folder of
Airflow's dags folder (where the shipped DAG file and ``imagebuild init`` put them). Each spec's
store is chosen in the one order (:mod:`.store_choice`); the deployment's own store (the order
without a spec) is always read, first. Stores are de-duplicated by URL (two specs, or a spec and a
connection, naming the same store are read once), opened once, and the list is made again when a
spec file or the deployment's settings change (at most every :data:`RECHECK_S` seconds, so that a
connection created in Airflow is seen).
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import ImageBuildError, NotFound, StoreUnavailable
from airflow_provider_imagebuild.hooks.build_state import airflow_redactor
from airflow_provider_imagebuild.hooks.store_choice import (
    DEFAULT_CONN_ID,
    STORE_CONN_ENV,
    STORE_ENV,
    StoreChoice,
    choose_store,
    chosen_url,
    connection_exists,
    open_choice,
)
from airflow_provider_imagebuild.redact.patterns import redact_patterns
from airflow_provider_imagebuild.spec.pipeline import PIPELINES_ENV, load_specs, spec_files
from airflow_provider_imagebuild.store import BuildStore, ListFilter
from airflow_provider_imagebuild.store.url import shown_url

RECHECK_S = 60.0
log = logging.getLogger(__name__)


def specs_folder() -> Path:
    """Where the deployment's DAG files load their specs from."""
    named = os.environ.get(PIPELINES_ENV)
    if named:
        return Path(named)
    from airflow.sdk.configuration import conf

    return Path(str(conf.get("core", "dags_folder"))) / "pipelines"


def store_label(choice: StoreChoice, url: str) -> str:
    """How a build's store is shown: the connection that names it, else its URL without userinfo
    and query (region, endpoint: :func:`..store.url.shown_url`), anything secret-looking redacted."""
    if choice.conn_id:
        return f"connection {choice.conn_id}"
    return redact_patterns(shown_url(url))


@dataclass
class PlacedStore:
    """One store of the deployment: its URL (the de-duplication key), its label and the pipelines
    whose specs chose it (empty for the deployment's own store when no spec chose it)."""

    url: str
    label: str
    choice: StoreChoice
    pipelines: list[str]
    store: BuildStore | None = None
    problem: str | None = None  # why it cannot be opened (logged; not told to API clients)


def deployment_choices(folder: Path) -> list[tuple[str | None, StoreChoice]]:
    """(pipeline, its store) for the deployment's own store first (no pipeline), then each loadable
    spec's, in the specs' order."""
    exists = functools.cache(connection_exists)  # imagebuild_default looked up once, not once per spec
    choices: list[tuple[str | None, StoreChoice]] = [(None, choose_store(exists=exists))]
    loaded, errors = load_specs(spec_files(folder)) if folder.is_dir() else ([], [])
    for exc in errors:
        log.warning("Image builds: spec not read for its store: %s", exc)
    choices.extend((spec.pipeline, choose_store(spec.store, spec.store_conn_id, exists=exists)) for _, spec in loaded)
    return choices


def _signature(folder: Path) -> tuple[Any, ...]:
    """What the list of stores depends on: the spec files, the deployment's settings, and the time
    (in steps of RECHECK_S: a connection created in Airflow's database is seen within a minute)."""
    files = tuple((p.name, p.stat().st_mtime_ns) for p in spec_files(folder)) if folder.is_dir() else ()
    env = tuple(os.environ.get(name) for name in (STORE_CONN_ENV, STORE_ENV, "AIRFLOW_HOME",
                                                  f"AIRFLOW_CONN_{DEFAULT_CONN_ID.upper()}"))  # fmt: skip
    return str(folder), files, env, int(time.monotonic() // RECHECK_S)


class DeploymentStores:
    """The deployment's stores read as one: a listing reads them all, a build is read from and
    changed in the store it lives in. Kept open between requests of the API server; what each build
    lives in is remembered from the last listing or look-up (:meth:`where`)."""

    def __init__(self, folder: Path | None = None) -> None:
        self._folder = folder  # the specs' folder; None: the deployment's (:func:`specs_folder`), looked up each time
        self._lock = threading.Lock()
        self._signature: tuple[Any, ...] | None = None
        self._placed: list[PlacedStore] = []
        self._open: dict[str, BuildStore] = {}  # by URL, kept across re-reads of the specs
        self._where: dict[str, PlacedStore] = {}  # build id -> its store
        self.unreadable: list[str] = []  # the labels of the stores the last listing could not read

    def stores(self) -> list[PlacedStore]:
        folder = self._folder if self._folder is not None else specs_folder()
        signature = _signature(folder)
        with self._lock:
            if signature != self._signature:
                self._placed = self._place(deployment_choices(folder))
                self._signature = signature
            return list(self._placed)

    def _place(self, choices: list[tuple[str | None, StoreChoice]]) -> list[PlacedStore]:
        placed: dict[str, PlacedStore] = {}
        for pipeline, choice in choices:
            try:
                url = chosen_url(choice)
            except Exception as exc:  # a connection Airflow does not know: that store only
                key = f"connection {choice.conn_id}"
                placed.setdefault(key, PlacedStore(key, key, choice, [], problem=f"{type(exc).__name__}: {exc}"))
                if pipeline:
                    placed[key].pipelines.append(pipeline)
                continue
            store, problem = self._open.get(url), None
            if store is None:
                try:
                    store = self._open[url] = open_choice(choice, airflow_redactor())
                except Exception as exc:  # this store only: the others are still read
                    problem = f"{type(exc).__name__}: {exc}"
            key = store.url if store is not None else url  # as the backend names it: sqlite:/// and :////
            entry = placed.get(key)
            if entry is None:
                entry = placed[key] = PlacedStore(key, store_label(choice, url), choice, [], store, problem)
            if pipeline:
                entry.pipelines.append(pipeline)
        return list(placed.values())

    def scan_builds(self, flt: ListFilter | None = None) -> tuple[list[BuildRecord], list[str]]:
        """Every build of every store, newest change first, and the labels of the stores that cannot
        be read now (also in :attr:`unreadable`; the reason goes to the log). A build id found in two
        stores is listed from the first (the one :meth:`get` reads). Every store unreadable:
        :class:`StoreUnavailable`, as for one store."""
        found: dict[str, tuple[BuildRecord, PlacedStore]] = {}
        unreadable: list[str] = []
        places = self.stores()
        for place in places:
            try:
                if place.store is None:
                    raise StoreUnavailable(place.problem or "cannot be opened")
                records, problems = place.store.scan_builds(flt)
            except StoreUnavailable as exc:
                log.warning("Image builds: store %s cannot be read: %s", place.label, exc)
                unreadable.append(place.label)
                continue
            for problem in problems:
                log.warning("Image builds: store %s: %s (not listed)", place.label, problem)
            for rec in records:
                if rec.build_id in found:
                    log.warning("Image builds: build %s is in %s too (listed from %s)", rec.build_id, place.label,
                                found[rec.build_id][1].label)  # fmt: skip
                    continue
                found[rec.build_id] = (rec, place)
        self.unreadable = unreadable
        if places and len(unreadable) == len(places):
            raise StoreUnavailable(f"no store of the deployment can be read: {', '.join(unreadable)}")
        self._where.update((build_id, place) for build_id, (_, place) in found.items())
        ordered = sorted(found.values(), key=lambda item: item[0].updated_at, reverse=True)
        return [rec for rec, _ in ordered], unreadable

    def locate(self, build_id: str) -> tuple[BuildRecord, PlacedStore]:
        """The build and the store it lives in (the first store holding it). Not found anywhere:
        :class:`NotFound`; not in the stores that could be read while another could not:
        :class:`StoreUnavailable` (it may be there)."""
        failure: ImageBuildError | None = None
        for place in self.stores():
            try:
                if place.store is None:
                    raise StoreUnavailable(place.problem or "cannot be opened")
                rec = place.store.get(build_id)
            except NotFound:
                continue
            except StoreUnavailable as exc:
                log.warning("Image builds: store %s cannot be read: %s", place.label, exc)
                failure = exc
                continue
            self._where[build_id] = place
            return rec, place
        if failure is not None:
            raise failure
        raise NotFound(f"build {build_id} not found in any store of the deployment")

    def where(self, build_id: str) -> str | None:
        """The label of the store the build lives in, as the last listing or look-up found it."""
        place = self._where.get(build_id)
        return place.label if place else None

    def store_of(self, build_id: str) -> BuildStore:
        """The store the build lives in, for a change (looked up again: it must be there now)."""
        _, place = self.locate(build_id)
        assert place.store is not None
        return place.store

    # -- the reads and changes the pages and the API make, on the build's own store -------------
    def get(self, build_id: str) -> BuildRecord:
        return self.locate(build_id)[0]

    def reset(self, build_id: str, **kwargs: Any) -> BuildRecord:
        return self.store_of(build_id).reset(build_id, **kwargs)

    def skip(self, build_id: str, state: int, **kwargs: Any) -> BuildRecord:
        return self.store_of(build_id).skip(build_id, state, **kwargs)

    def set_metadata(self, build_id: str, values: dict[str, str], **kwargs: Any) -> BuildRecord:
        return self.store_of(build_id).set_metadata(build_id, values, **kwargs)

    def note_clear(self, build_id: str, state: int, **kwargs: Any) -> Any:
        return self.store_of(build_id).note_clear(build_id, state, **kwargs)
