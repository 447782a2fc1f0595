"""The running milestone: one object holding the store, the build, the milestone and its lease.

Every write a milestone makes while it runs goes through its session, and each one carries the
lease token: host metadata, replay records, the outputs at ``complete``, the error at ``fail``.
A holder whose lease was taken over (the worker was paused past the lease's expiry and another
try took the build) is refused for all of them alike, so it can neither record a result nor
point the build at another host.

A thread heartbeats the store every third of the lease; if the store says the lease was taken
over, the action is stopped at once: a worker that lost its lease must not go on changing the
build host.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from airflow_provider_imagebuild.build.fingerprint import MilestoneFingerprint
from airflow_provider_imagebuild.build.record import BuildRecord, Lease
from airflow_provider_imagebuild.errors import Conflict, ImageBuildError
from airflow_provider_imagebuild.store import BuildStore

log = logging.getLogger(__name__)


class MilestoneSession:
    def __init__(
        self,
        store: BuildStore,
        build_id: str,
        lease: Lease,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.store, self.build_id, self.lease = store, build_id, lease
        self.state, self.token = lease.state, lease.token
        self.interval = max(lease.seconds / 3.0, 0.5)
        self.on_lost = on_lost
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{build_id}-{self.state}", daemon=True)

    def __enter__(self) -> MilestoneSession:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(self.interval + 5)

    @property
    def stopped(self) -> bool:
        """Whether the heartbeat was stopped because the lease was given up (a reuse ended it)."""
        return self._stop.is_set()

    # -- writes under the lease ------------------------------------------------------------------
    def set_metadata(self, items: Mapping[str, str], actor: str) -> BuildRecord:
        """Build metadata, the keys targets rely on (the build host) included."""
        return self.store.set_metadata(self.build_id, items, actor=actor, token=self.token, state=self.state)

    def record_replay(
        self, replayed: int, outputs: Mapping[str, Any], usage: Mapping[str, Any] | None = None
    ) -> BuildRecord:
        """A completed milestone applied again on a relaunched build host (``usage``: its host time)."""
        return self.store.record_replay(
            self.build_id, self.state, token=self.token, replayed=replayed, outputs=outputs, usage=usage
        )

    def reuse(self, source: str, taken: list[tuple[int, dict[str, Any], str, dict[str, str]]]) -> BuildRecord:
        """The lease's milestone and the ones after it reached by taking build ``source``'s results
        (:mod:`.reuse`); the lease ends with it, so the heartbeat stops first."""
        self._stop.set()
        return self.store.reuse(self.build_id, self.state, token=self.token, source=source, taken=taken)

    def checked_outputs(self, outputs: Mapping[str, Any]) -> dict[str, Any]:
        """Outputs as ``complete`` would store them; refused here, before anything is committed."""
        return self.store.checked_outputs(outputs)

    def complete(
        self,
        outputs: Mapping[str, Any],
        usage: Mapping[str, Any] | None = None,
        fingerprint: MilestoneFingerprint | None = None,
    ) -> BuildRecord:
        return self.store.complete(
            self.build_id,
            self.state,
            token=self.token,
            outputs=outputs,
            usage=usage,
            fingerprint=fingerprint.fingerprint if fingerprint else None,
            inputs=fingerprint.inputs if fingerprint else None,
        )

    def fail(
        self, error: str, usage: Mapping[str, Any] | None = None, fingerprint: MilestoneFingerprint | None = None
    ) -> BuildRecord:
        return self.store.fail(
            self.build_id,
            self.state,
            token=self.token,
            error=error,
            usage=usage,
            fingerprint=fingerprint.fingerprint if fingerprint else None,
            inputs=fingerprint.inputs if fingerprint else None,
        )

    # -- the lease ---------------------------------------------------------------------------------
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
