"""``imagebuild retention``: retire published images past a pipeline's ``retention:`` policy.

For each pipeline named (or each spec given with ``--spec``, or every spec of the pipelines
folder), and each of its publish destinations with a policy (the destination's ``retention:``,
else the pipeline's), the destination lists the published images it can prove are the pipeline's
own (:class:`..targets.retire.ImageRetiring`), the rules decide which go and why each other one
stays (:func:`..build.image_retention.judge`: never the newest delivered image, never one still
referenced, never a build's that may still be resumed), and ``--apply`` deletes those, each proven
again just before, recording every deletion as a ``retire`` event on its build's record (``build
history`` shows it). A build whose record the store no longer has (``store prune``) has its
deletion recorded on the newest delivered build's record, naming it. Without ``--apply``, nothing
is deleted: the answer is the plan.

As with gc, the spec gives what a verdict needs: the target's connection and where it publishes,
the pipeline (whose images it may touch) and its store (which builds are delivered). A store that
knows no delivered build of the pipeline while images are found is refused: a wrong or empty
store would make every image look like an unknown build's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from airflow_provider_imagebuild.cli.context import given_specs
from airflow_provider_imagebuild.cli.output import emit, handles_errors, note
from airflow_provider_imagebuild.errors import ImageBuildError, InvalidInput, TargetError


def _specs(names: tuple[str, ...], paths: tuple[str, ...]) -> list[Any]:
    """The specs to apply retention to: ``--spec`` files, else the pipelines folder's, narrowed to
    the pipelines ``names`` gives."""
    specs, folder = given_specs(paths)
    if names:
        known = {s.pipeline for s in specs}
        missing = [n for n in names if n not in known]
        if missing:
            where = "the --spec files" if paths else f"the pipelines folder {folder}"
            raise InvalidInput("PIPELINE", f"no spec of pipeline {missing[0]!r} in {where}")
        specs = [s for s in specs if s.pipeline in names]
    if not specs:
        raise InvalidInput("--spec", f"no pipeline spec given (--spec FILE, or specs in {folder})")
    return specs


def destinations(spec: Any) -> list[tuple[str, str, Any, Any]]:
    """(label, kind, policy, entry) of each publish destination: the ``publish:`` list's, else the
    target alone (entry None); the policy is the destination's ``retention:``, else the
    pipeline's (None: keep all)."""
    if not spec.publish:
        return [("target", "target", spec.retention, None)]
    return [(d.label, d.kind, d.retention or spec.retention, d) for d in spec.publish]


class _Records:
    """The pipeline's records, by build id and by the build key a target labels with."""

    def __init__(self, records: Sequence[Any], target: Any) -> None:
        self.by_id = {r.build_id: r for r in records}
        key_of = getattr(target, "build_key", None)
        self.by_key = {key_of(r): r for r in records} if callable(key_of) else {}
        self.by_key.pop("", None)

    def of(self, image: Any) -> Any:
        if image.build_id:
            return self.by_id.get(image.build_id)
        return self.by_key.get(image.build_key) if image.build_key else None


def _record_deletions(
    store: Any, done: dict[tuple[str, str], list[Any]], builds: _Records, newest: Any, label: str, actor: str
) -> list[str]:
    """One ``retire`` event per build and action on its record (the newest delivered build's,
    naming the build, when its record is gone). Returns what could not be recorded: the images
    are gone by then, so a store that refuses the write must not hide what was deleted."""
    from airflow_provider_imagebuild.errors import NotFound
    from airflow_provider_imagebuild.targets.retire import DEPRECATED

    unrecorded: list[str] = []
    for (build_id, action), rows in done.items():
        where = [v.image.where for v in rows]
        why = f"{rows[0].why} (retention of {label})"
        if action == DEPRECATED:
            why = f"deprecated, to be deleted by a later run: {why}"
        try:
            try:
                if build_id not in builds.by_id:
                    raise NotFound(build_id)
                store.record_retirement(build_id, retired=where, reason=why, actor=actor)
            except NotFound:
                store.record_retirement(newest.build_id, retired=where, actor=actor,
                                        reason=f"of build {build_id}, whose record is gone: {why}")  # fmt: skip
        except ImageBuildError as exc:
            unrecorded.append(f"{', '.join(where)} {action}, not recorded on build {build_id}: {exc}")
    return unrecorded


def retain(spec: Any, apply: bool, actor: str, target: Any = None) -> dict[str, Any]:
    """Retention of one pipeline: the command's JSON answer for it (see the module's docstring).
    ``target``: the pipeline's target where the caller has one already (its clients made), else
    one is made from the spec's settings and connection."""
    from airflow_provider_imagebuild.build.image_retention import delivered_again, judge
    from airflow_provider_imagebuild.build.status import DELIVERED, build_status
    from airflow_provider_imagebuild.hooks.store_choice import choose_store, open_choice
    from airflow_provider_imagebuild.store.base import ListFilter
    from airflow_provider_imagebuild.targets import target_for
    from airflow_provider_imagebuild.targets.leaks import utc_now
    from airflow_provider_imagebuild.targets.retire import DELETED
    from airflow_provider_imagebuild.targets.retirers import retirer_for

    now = utc_now()
    answer: dict[str, Any] = {"pipeline": spec.pipeline, "cloud": spec.cloud, "destinations": []}
    chosen = [d for d in destinations(spec) if d[2] is not None]
    if not chosen:
        return {**answer, "no_policy": True}
    if target is None:
        target = target_for(spec.cloud, spec.target, pipeline=spec.pipeline, image_type=spec.image_type)
    choice = choose_store(spec.store, spec.store_conn_id)
    store = open_choice(choice)
    records, problems = store.scan_builds(ListFilter.checked(pipeline=spec.pipeline))
    if problems:  # an unreadable record may be the newest delivered build's: judge nothing
        raise InvalidInput("store", f"{len(problems)} build record(s) of {spec.pipeline} unreadable: {problems[0]}")
    delivered = sorted((r for r in records if build_status(r, now) == DELIVERED), key=lambda r: r.delivered_at or "")
    builds = _Records(records, target)
    again = delivered_again(records)  # images a newer build delivered again, nothing having changed (#32)
    failures: list[str] = []
    for label, kind, policy, entry in chosen:
        shown: dict[str, Any] = {"destination": label, "kind": kind, "policy": policy.describe(), "images": []}
        answer["destinations"].append(shown)
        retirer = retirer_for(spec.cloud, kind, target, entry)
        if retirer is None:
            shown["unavailable"] = f"retention of {kind} destinations on {spec.cloud} is not available yet"
            continue
        images = retirer.published_images(records)
        if images and not delivered:
            raise InvalidInput(
                "store",
                f"the store {spec.pipeline} uses ({choice.chosen_by}) knows no delivered build of it, yet "
                f"{len(images)} published image(s) were found at {label}: refusing to judge them; name the "
                "pipeline's store (the spec's store: or store_conn_id, $IMAGEBUILD_STORE_CONN_ID or $IMAGEBUILD_STORE)",
            )
        verdicts = judge([(i, builds.of(i)) for i in images], now, keep_last=policy.keep_last,
                         keep_days=policy.keep_days, references=retirer.image_references(images),
                         again=again)  # fmt: skip
        done: dict[tuple[str, str], list[Any]] = {}
        for v in verdicts:
            row = {"id": v.image.id, "region": v.image.region, "name": v.image.name, "build_id": v.build_id,
                   "retire": v.retire, "why": v.why, "deleted": False}  # fmt: skip
            shown["images"].append(row)
            if not v.retire:
                continue
            row["step"] = retirer.next_step(v.image)
            if not apply:
                continue
            try:
                action = retirer.retire_image(v.image)
            except ImageBuildError as exc:
                row["error"] = str(exc)
                failures.append(f"{v.image.where}: {exc}")
                continue
            row.update(done=action, deleted=action == DELETED)
            if action:
                done.setdefault((v.build_id, action), []).append(v)
        if done:
            failures.extend(_record_deletions(store, done, builds, delivered[-1], label, actor))
    if failures:
        answer["failures"] = failures
    return answer


def _verdict_word(row: dict[str, Any]) -> str:
    if not row["retire"]:
        return "kept"
    if "error" in row:
        return "failed"
    if "done" in row:
        return row["done"] or f"not done ({row['step']})"
    return f"to {row['step']}"


@click.command("retention")
@click.argument("pipelines", nargs=-1, metavar="[PIPELINE]...")
@click.option("--spec", "spec_paths", multiple=True, metavar="FILE",
              help="A pipeline spec (repeatable; default: the pipelines folder's)")  # fmt: skip
@click.option("--apply", is_flag=True, help="Delete the images past the policy (without it, only say what would go)")
@click.option("--json", "as_json", is_flag=True, help="Every image with its verdict and why, as JSON")
@handles_errors
def retention(pipelines: tuple[str, ...], spec_paths: tuple[str, ...], apply: bool, as_json: bool) -> None:
    """Retire published images past each pipeline's retention: policy (keep_last, keep_days; per
    publish destination or for the pipeline). A dry run unless --apply: each image is listed with
    whether it goes and why the others stay. Never the newest delivered image, one still referenced,
    or another pipeline's or account's; every deletion is recorded on its build's history."""
    from airflow_provider_imagebuild.cli.context import actor
    from airflow_provider_imagebuild.cli.doctor import _stdout_to_stderr

    specs = _specs(pipelines, spec_paths)
    with _stdout_to_stderr():  # a hook reading a connection logs to stdout, which carries the answer
        result: dict[str, Any] = {"applied": apply, "pipelines": [retain(spec, apply, actor()) for spec in specs]}
    failures = [f for p in result["pipelines"] for f in p.get("failures", [])]

    def table(render: Any) -> Any:
        from rich.table import Table

        made = Table(title="Published images" + (" (retention applied)" if apply else " (dry run)"))
        for column in ("PIPELINE", "DESTINATION", "IMAGE", "WHERE", "BUILD", "VERDICT", "WHY"):
            made.add_column(column)
        for p in result["pipelines"]:
            for d in p["destinations"]:
                if "unavailable" in d:
                    made.add_row(p["pipeline"], d["destination"], "-", "-", "-", "-", d["unavailable"])
                for r in d["images"]:
                    verdict = _verdict_word(r)
                    made.add_row(p["pipeline"], d["destination"], r["name"] or r["id"], r["region"] or "-",
                                 r["build_id"], verdict, r.get("error") or r["why"])  # fmt: skip
        return made

    emit(as_json, lambda: result, table)
    if not as_json:
        rows = [r for p in result["pipelines"] for d in p["destinations"] for r in d["images"]]
        going = sum(1 for r in rows if r["retire"])
        verb = f"deleted {sum(1 for r in rows if r['deleted'])} of {going}" if apply else f"{going} would go"
        unset = [p["pipeline"] for p in result["pipelines"] if p.get("no_policy")]
        note(f"{verb}; {len(rows) - going} kept" + (f"; no retention policy: {', '.join(unset)}" if unset else ""))
    if failures:
        raise TargetError(f"{len(failures)} image(s) not deleted or not recorded: {failures[0]}")
