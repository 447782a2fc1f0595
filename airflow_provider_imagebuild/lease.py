"""Keeping a milestone's lease alive while its action runs.

A thread heartbeats the store every third of the lease; if the store says the lease was taken
over (the worker was paused past its expiry and someone else took the build), the action is
stopped at once: a worker that lost its lease must not go on changing the build host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from airflow_provider_imagebuild.errors import Conflict, ImageBuildError
from airflow_provider_imagebuild.store import BuildStore

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(
        self,
        store: BuildStore,
        build_id: str,
        state: int,
        token: str,
        lease_seconds: int,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.build_id, self.state, self.token = store, build_id, state, token
        self.interval = max(lease_seconds / 3.0, 0.5)
        self.on_lost = on_lost
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{build_id}-{state}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.interval + 5)

    def set_metadata(self, items: Mapping[str, str], actor: str) -> None:
        """Write build metadata under this lease: the keys targets rely on (the build host) are
        accepted only from the lease holder, and refused once the lease was taken over."""
        self.store.set_metadata(self.build_id, items, actor=actor, token=self.token)

    def beat(self) -> None:
        """Heartbeat now (also called by actions on progress, e.g. every Ansible task)."""
        if self.lost:
            return
        try:
            self.store.heartbeat(self.build_id, self.state, token=self.token)
        except Conflict as exc:
            self.lost = str(exc)
            log.error("lease lost: %s", exc)
            if self.on_lost:
                self.on_lost(self.lost)
        except ImageBuildError as exc:  # store briefly unreachable: keep trying until expiry
            log.warning("heartbeat failed (will retry): %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()
            if self.lost:
                return
