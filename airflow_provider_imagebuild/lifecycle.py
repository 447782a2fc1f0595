"""Abandoning a build: give it up for good in the store, then delete what it holds in its target.

One procedure for every entry point (``imagebuild build abandon``, the API's and the build page's
Abandon, the watchdog's ``on_failure.abandon_after``):

1. the store marks the build abandoned (``BuildStore.abandon``: refused while a worker holds its
   lease; from then on every ``begin`` is refused), so that no milestone launches a host again
   while its resources go;
2. each thing the record says the build holds (:func:`~.build.holdings.holdings`) is deleted
   through the target's own clean-up methods, the ones publish and the seal use, which act only on
   what they prove is the build's: the build host with ``Target.cleanup`` (as publish removes it),
   checkpoint and staged images with ``Target.discard`` (as the seal deletes checkpoints);
3. the store records what was deleted (no longer held) and what was not, with why
   (``BuildStore.record_release``), as an event next to the abandon's actor and reason.

What could not be deleted stays listed as held (the build's page, ``build show``, ``store prune``
keep it): no spec to reach the target (the abandon is still recorded), a cloud's error, an
instance Packer kept for debugging (not one the target launched: a person deletes it), or an image
the target still owns after its clean-up. An image the target neither deleted nor still proves its
own is gone (or was never the build's): released, and said so. Abandoning again (with ``--spec``)
retries what is left.

Whoever abandons, the pipeline's ``notify`` recipients hear ``abandoned`` (sent whatever its ``on``
lists: what the build held is deleted, which nobody may learn by chance), once, when the build is
newly abandoned: with who and why (the abandon's event as the store recorded it, redacted), what was
deleted and what is still held (:func:`tell_abandoned`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_imagebuild.build.holdings import Holding, holdings
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import InvalidInput

if TYPE_CHECKING:
    from airflow_provider_imagebuild.spec.notify import NotifySpec
    from airflow_provider_imagebuild.spec.pipeline import PipelineSpec
    from airflow_provider_imagebuild.store.base import BuildStore
    from airflow_provider_imagebuild.targets.base import Target

log = logging.getLogger(__name__)


@dataclass
class Abandoned:
    """What an abandon did: the record after it, whether this call abandoned it (False: it was
    already), what was deleted, what was not found as the build's (gone already, or named in the
    record but not provably its own: left alone, held no more) and what is still held (with why)."""

    build: BuildRecord
    changed: bool
    released: list[Holding] = field(default_factory=list)
    still_held: list[tuple[Holding, str]] = field(default_factory=list)
    not_found: list[Holding] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)  # the kinds of recipient told (tell_abandoned)

    def summary(self, why: str) -> str:
        """``why``, what was deleted and what is still held, in one line (a notification's text)."""
        deleted = ", ".join(str(h) for h in self.released) or "nothing"
        held = "; ".join(f"{h}: {reason}" for h, reason in self.still_held)
        return f"{why}; deleted {deleted}" + (f"; still held: {held}" if held else "")

    def to_public(self) -> dict[str, Any]:
        return {
            "build_id": self.build.build_id,
            "build_status": self.build.to_public()["build_status"],
            "abandoned_at": self.build.abandoned_at,
            "newly_abandoned": self.changed,
            "deleted": [h.to_public() for h in self.released],
            "not_found": [h.to_public() for h in self.not_found],
            "still_held": [{**h.to_public(), "why": why} for h, why in self.still_held],
            "notified": list(self.notified),
        }


def abandon_build(
    store: BuildStore, build_id: str, *, reason: str, actor: str, target: Target | None, no_target_why: str = ""
) -> Abandoned:
    """Abandon ``build_id`` and delete what it holds through ``target`` (None: nothing can be
    deleted; ``no_target_why`` says why, for the event). See the module's docstring."""
    rec, changed = store.abandon(build_id, reason=reason, actor=actor)
    held = holdings(rec)
    if not held:
        return Abandoned(rec, changed)
    released: list[Holding] = []
    gone: list[Holding] = []
    kept: list[tuple[Holding, str]] = []
    for holding in held:
        if target is None:
            kept.append((holding, no_target_why or "no spec to reach the build's target"))
            continue
        outcome, why = _release(target, rec, holding)
        if outcome == DELETED:
            released.append(holding)
        elif outcome == NOT_FOUND:
            gone.append(holding)
        else:
            kept.append((holding, why))
    rec = store.record_release(
        build_id,
        released=[h.id for h in released],
        not_found=[h.id for h in gone],
        still_held=[f"{h}: {why}" for h, why in kept],
        actor=actor,
    )
    return Abandoned(rec, changed, released, kept, gone)


DELETED, NOT_FOUND, HELD = "deleted", "not found", "held"


def _release(target: Target, build: BuildRecord, holding: Holding) -> tuple[str, str]:
    """Delete one holding through the target: :data:`DELETED`, :data:`NOT_FOUND` (gone, or not
    provably the build's: left alone) or :data:`HELD` with why. A target's error is reported, not
    raised: the other holdings are still tried."""
    from airflow_provider_imagebuild.targets.base import Host

    try:
        if holding.kind == "packer_instance":
            return HELD, "an instance Packer kept for debugging is not one the target launched: delete it by hand"
        if holding.kind == "host":
            host = Host.from_metadata(build.metadata)
            if host is None:
                return NOT_FOUND, ""
            target.cleanup(build, host)  # only a host the target proves is the build's
            if target.alive(build, host):
                return HELD, "the target could not remove it (still there after its clean-up)"
            return DELETED, ""
        deleted = target.discard(build, [holding.id])  # only an image the target proves is the build's
        if holding.id in deleted or str(Path(holding.id).resolve()) in deleted:
            return DELETED, ""
        if target.owns_image(build, holding.id):
            return HELD, f"the {target.name} target did not delete it"
        log.info("%s of build %s is gone or not provably its own; left alone", holding, build.build_id)
        return NOT_FOUND, ""
    except Exception as exc:  # a cloud's error: said, and the image stays listed as held
        return HELD, f"{type(exc).__name__}: {exc}"[:500]


def spec_for(build: BuildRecord, spec_file: str | None, folder: Path | None) -> tuple[PipelineSpec | None, str]:
    """The spec that reaches ``build``'s target: ``spec_file`` (``--spec``), else the spec of the
    build's pipeline in ``folder`` (the deployment's specs). ``(None, why)`` when there is none; a
    given spec of another pipeline or cloud is refused (:class:`InvalidInput`)."""
    from airflow_provider_imagebuild.spec.pipeline import load_spec, load_specs, spec_files

    if spec_file is not None:
        spec = load_spec(spec_file)
        if (spec.pipeline, spec.cloud) != (build.pipeline, build.cloud):
            raise InvalidInput(
                "--spec",
                f"{spec_file} is pipeline {spec.pipeline} on {spec.cloud}; build {build.build_id} is "
                f"pipeline {build.pipeline} on {build.cloud}",
            )
        return spec, ""
    if folder is None or not folder.is_dir():
        return None, "no spec given (--spec) and no specs folder to find the pipeline's in"
    loaded, _ = load_specs(spec_files(folder))
    for _path, spec in loaded:
        if (spec.pipeline, spec.cloud) == (build.pipeline, build.cloud):
            return spec, ""
    return None, f"no spec of pipeline {build.pipeline} on {build.cloud} in {folder}"


def target_of(spec: PipelineSpec) -> Target:
    """The build target a spec's settings make (clients from its Airflow connections)."""
    from airflow_provider_imagebuild.targets import target_for

    settings: Any = spec.target  # each cloud's target takes its own model of the spec's target:
    return target_for(spec.cloud, settings, pipeline=spec.pipeline, image_type=spec.image_type)


def tell_abandoned(
    notify: NotifySpec | None, done: Abandoned, why: str = "", warn: Callable[[str], None] | None = None
) -> list[str]:
    """Send ``abandoned`` about ``done``'s build to ``notify``'s recipients when this abandon made
    it abandoned (a retry of what was left is not news); the kinds told, also kept in ``done``.
    ``why``: the watchdog's reason; by default the abandon's event (who and why, as recorded)."""
    from datetime import datetime, timezone

    from airflow_provider_imagebuild.links import build_page
    from airflow_provider_imagebuild.notify import Notice, send

    if notify is None or not done.changed:
        return []
    rec = done.build
    if not why:
        why = next((e.detail for e in reversed(rec.events) if e.kind == "abandon"), "abandoned")
    notice = Notice(event="abandoned", build_id=rec.build_id, pipeline=rec.pipeline, cloud=rec.cloud,
                    image_type=rec.image_type, milestone=rec.current_state,
                    milestone_name=rec.title(rec.current_state), status=rec.status, attempt=None,
                    error=done.summary(why), build_page=build_page(rec.build_id, _airflow_address()),
                    at=datetime.now(timezone.utc).isoformat())  # fmt: skip
    done.notified = send(notify, notice, warn=warn)
    return done.notified


def _airflow_address() -> str:
    """Airflow's address for the build page's link; none where no Airflow is configured (a shell)."""
    try:
        from airflow_provider_imagebuild.operators.links import airflow_address

        return airflow_address()
    except Exception:  # no Airflow configuration here: the link is the page's path
        return ""


def abandon_and_tell(
    store: BuildStore, rec: BuildRecord, *, reason: str, actor: str, spec_file: str | None, folder: Path | None
) -> Abandoned:
    """A person's abandon (the CLI's, the API's and the build page's): the build's spec found as
    :func:`spec_for` finds it, its target reached, the build abandoned and the spec's ``notify``
    recipients told."""
    spec, why = spec_for(rec, spec_file, folder)
    target: Target | None = None
    if spec is not None:
        try:
            target = target_of(spec)
        except Exception as exc:  # a connection missing: abandoned all the same, nothing deleted
            why = f"the {spec.cloud} target could not be reached: {type(exc).__name__}: {exc}"[:500]
    done = abandon_build(store, rec.build_id, reason=reason, actor=actor, target=target, no_target_why=why)
    tell_abandoned(spec.notify if spec is not None else None, done, warn=log.warning)
    return done


TargetFinder = Callable[[BuildRecord], tuple["Target | None", str]]


def target_finder(spec_file: str | None, folder: Path | None) -> TargetFinder:
    """How an entry point finds a build's target: through :func:`spec_for`. A target that cannot
    be made (a missing connection) is no target, with why: the abandon is still recorded."""

    def find(build: BuildRecord) -> tuple[Target | None, str]:
        spec, why = spec_for(build, spec_file, folder)
        if spec is None:
            return None, why
        try:
            return target_of(spec), ""
        except Exception as exc:  # a connection missing: recorded as why nothing was deleted
            return None, f"the {spec.cloud} target could not be reached: {type(exc).__name__}: {exc}"[:500]

    return find
