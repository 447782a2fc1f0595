"""``imagebuild gc``: the leak collector, over the pipelines of one cloud.

Lists every resource a pipeline's target can prove is this provider's and the pipeline's (the
``ManagedBy`` tag or label, the pipeline, the build: :meth:`..targets.leaks.LeakCollecting.owned_resources`)
whose build is delivered, abandoned, unknown to the pipeline's store, or not leased for longer
than ``--older-than`` (:func:`..targets.leaks.leak_reason` says which exactly), with its age and an
estimated cost (its hourly price from the spec's ``cost:`` block over the cloud's example prices,
times its age; none where no price is known); ``--apply`` deletes them, each proven the pipeline's again just before.

Where the connection comes from: the pipelines' specs (``--spec FILE``, repeatable; without it the
specs of the pipelines folder, ``$IMAGEBUILD_PIPELINES_DIR`` else ``dags/pipelines``), of the cloud
``--cloud`` names. A spec gives all three things a verdict needs and a bare connection id does not:
the target's settings (its connection, region, account, project or folder, so the collector looks
exactly where the builds made things), the pipeline (whose tags it may touch) and the store that
knows the pipeline's builds (unknown there means unknown, not "another deployment's").
"""

from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any

import click

from airflow_provider_imagebuild.cli.context import given_specs
from airflow_provider_imagebuild.cli.output import emit, handles_errors, note, warn
from airflow_provider_imagebuild.errors import CorruptRecord, ImageBuildError, InvalidInput, StoreUnavailable
from airflow_provider_imagebuild.targets.registry import TARGETS


def _older_than(text: str) -> timedelta:
    from airflow_provider_imagebuild.spec.fields import parse_duration

    try:
        parsed = parse_duration(text)
    except ValueError as exc:
        raise InvalidInput("--older-than", str(exc)) from exc
    if not isinstance(parsed, timedelta):
        raise InvalidInput("--older-than", f"{text!r} is not a duration such as 2h, 90m or 1d")
    from airflow_provider_imagebuild.targets.leaks import check_older_than

    return check_older_than(parsed, "--older-than")


def _specs(paths: tuple[str, ...], cloud: str) -> list[Any]:
    specs, _ = given_specs(paths)
    found = [spec for spec in specs if spec.cloud == cloud]
    if not found:
        raise InvalidInput("--cloud", f"no spec of a {cloud} pipeline given (--spec FILE, or the pipelines folder)")
    return found


class BuildsOf:
    """The records of one pipeline's builds, found by the build id a resource is tagged with, else
    by the build key its labels carry (read once, from the pipeline's builds in the store)."""

    def __init__(self, store: Any, pipeline: str, target: Any) -> None:
        self.store, self.pipeline, self.target = store, pipeline, target
        self.by_id: dict[str, Any] = {}
        self.by_key: dict[str, Any] | None = None
        self.key_problem: InvalidInput | None = None  # why no resource can be judged by its key

    def of(self, resource: Any) -> Any:
        if resource.build_id:
            if resource.build_id not in self.by_id:
                self.by_id[resource.build_id] = self.store.find(resource.build_id)
            if self.by_id[resource.build_id] is not None or not resource.build_key:
                return self.by_id[resource.build_id]
        if not resource.build_key:
            return None
        if self.key_problem is not None:  # said once per resource, the store read once
            raise self.key_problem
        if self.by_key is None:
            from airflow_provider_imagebuild.store.base import ListFilter

            records, problems = self.store.scan_builds(ListFilter.checked(pipeline=self.pipeline))
            if problems:  # a record that cannot be read might be the one: judge nothing by key
                self.key_problem = InvalidInput(
                    "store", f"{len(problems)} build record(s) of {self.pipeline} unreadable: {problems[0]}"
                )
                raise self.key_problem
            self.by_key = {self.target.build_key(r): r for r in records}
        found = self.by_key.get(resource.build_key)
        if found is None and not resource.build_id and not getattr(self.target, "marks_prove_pipeline", True):
            raise InvalidInput(
                "build key",
                f"{resource.build_key[:40]} is no build's of {self.pipeline} in its store, and nothing else "
                f"proves the resource {self.pipeline}'s (another pipeline's name may read the same as a label)",
            )
        return found


def _knows_pipeline(store: Any, pipeline: str) -> bool:
    """Whether the store holds any build of ``pipeline`` (is it the pipeline's store at all)."""
    from airflow_provider_imagebuild.store.base import ListFilter

    records, problems = store.scan_builds(ListFilter.checked(pipeline=pipeline))
    return bool(records or problems)


def _priced(prices: Any) -> Any:
    """The price hook (targets.leaks.PriceOf) at a pipeline's prices (its spec's ``cost:`` block
    over the cloud's examples, build/prices.py): per hour, None where no price is known."""
    from airflow_provider_imagebuild.build.prices import price_of

    return lambda cloud, r: price_of({"kind": r.kind, "size": r.size, "gb": r.gb}, prices)


def _row(spec: Any, resource: Any) -> dict[str, Any]:
    return {"pipeline": spec.pipeline, "kind": resource.kind, "id": resource.id, "region": resource.region,
            "build_id": resource.build_id, "role": resource.role}  # fmt: skip


def _failure(exc: Exception) -> str:
    """What went wrong with one resource, as the answer shows it: one redacted line (a cloud's
    error can quote a request; a tag's value anything)."""
    from airflow_provider_imagebuild.build.ids import without_controls
    from airflow_provider_imagebuild.redact.patterns import redact_patterns

    text = str(exc) if isinstance(exc, ImageBuildError) else f"{type(exc).__name__}: {exc}"
    return redact_patterns(without_controls(" ".join(text.split())))[:1000]


def collect(specs: list[Any], older_than: timedelta, apply: bool) -> dict[str, Any]:
    """The leaks of each spec's pipeline, deleted with ``apply``: the command's JSON answer.

    One resource that cannot be judged (a ``BuildId`` tag that is no build id, an unreadable record)
    is left alone and listed in ``unjudged``; one whose delete fails keeps its row with the error:
    neither stops the judgement or the deletion of the others (anyone who can tag a resource could
    otherwise keep gc from collecting anything)."""
    from airflow_provider_imagebuild.build.prices import example_prices
    from airflow_provider_imagebuild.hooks.store_choice import choose_store, open_choice
    from airflow_provider_imagebuild.targets import target_for
    from airflow_provider_imagebuild.targets.leaks import (
        UNKNOWN,
        LeakCollecting,
        check_older_than,
        estimated_cost,
        leak_reason,
        utc_now,
    )

    check_older_than(older_than)
    now = utc_now()
    leaks: list[dict[str, Any]] = []
    unjudged: list[dict[str, Any]] = []
    kept = 0
    for spec in specs:
        target = target_for(spec.cloud, spec.target, pipeline=spec.pipeline, image_type=spec.image_type)
        if not isinstance(target, LeakCollecting):
            raise InvalidInput("--cloud", f"the {spec.cloud} target has no leak collector yet")
        choice = choose_store(spec.store, spec.store_conn_id)
        store = open_choice(choice)
        prices = spec.cost.prices(spec.cloud) if spec.cost is not None else example_prices(spec.cloud)
        keep = tuple(getattr(spec.target, "keep_checkpoints", ()) or ())
        records = BuildsOf(store, spec.pipeline, target)
        verdicts = []  # every resource judged before anything is deleted
        for resource in target.owned_resources():
            try:
                reason = leak_reason(resource, records.of(resource), now, older_than, keep)
            except Exception as exc:  # this resource's tags or record: the others are still judged
                if isinstance(exc, StoreUnavailable) and not isinstance(exc, CorruptRecord):
                    raise  # the store itself (unreachable, not a store): nothing can be judged, one line
                unjudged.append({**_row(spec, resource), "error": _failure(exc)})
                continue
            if reason is None:
                kept += 1
            else:
                verdicts.append((resource, reason))
        unknown = sum(1 for _, reason in verdicts if reason == UNKNOWN)
        if unknown and not _knows_pipeline(store, spec.pipeline):
            # A wrong, empty or missing store (a mistyped path, this machine's fallback file, a new
            # store after a move) would make every build unknown: gc would delete the host and
            # checkpoints of each failed build waiting to be resumed.
            raise InvalidInput(
                "store",
                f"the store {spec.pipeline} uses ({choice.chosen_by}) knows no build of it, yet {unknown} of its "
                "resources carry build tags: refusing to take them all for leaks; name the pipeline's store "
                "(the spec's store: or store_conn_id, $IMAGEBUILD_STORE_CONN_ID or $IMAGEBUILD_STORE)",
            )
        for resource, reason in verdicts:
            age = resource.age(now)
            deleted, error, code = False, None, None
            if apply:
                try:
                    deleted = target.delete_resource(resource)
                except Exception as exc:  # the cloud refused this one: the next ones are still deleted
                    error, code = _failure(exc), exc.exit_code if isinstance(exc, ImageBuildError) else 1
            leaks.append({
                **_row(spec, resource), "reason": reason,
                "age_s": None if age == timedelta.max else round(age.total_seconds()),
                "estimated_cost": estimated_cost(spec.cloud, resource, age, _priced(prices)),
                "currency": prices.currency, "deleted": deleted, "error": error, "exit_code": code,
            })  # fmt: skip
    return {"cloud": specs[0].cloud, "older_than_s": older_than.total_seconds(), "applied": apply,
            "pipelines": [s.pipeline for s in specs], "leaks": leaks, "kept": kept, "unjudged": unjudged,
            "failed": sum(1 for r in leaks if r["error"]) + len(unjudged)}  # fmt: skip


def exit_code(result: dict[str, Any]) -> int:
    """0, or why the run is not clean: a failed delete's own code (the cloud's: 6), else 1 when a
    resource could not be judged (left alone: someone should look at its tags or record)."""
    failed = [r["exit_code"] for r in result["leaks"] if r["error"]]
    if failed:
        return int(failed[0])
    return 1 if result["unjudged"] else 0


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "?"
    hours = seconds / 3600
    return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"


@click.command("gc")
@click.option("--cloud", required=True, type=click.Choice(list(TARGETS)), help="The cloud to collect on")
@click.option("--spec", "spec_paths", multiple=True, metavar="FILE",
              help="A pipeline spec of that cloud (repeatable; default: the pipelines folder's)")  # fmt: skip
@click.option("--older-than", default="2h", show_default=True, help="Age and idleness past which a resource is a leak")
@click.option("--apply", is_flag=True, help="Delete the leaks (without it, only list them)")
@click.option("--json", "as_json", is_flag=True, help="The leaks, their reasons, ages and costs, as JSON")
@handles_errors
def gc(cloud: str, spec_paths: tuple[str, ...], older_than: str, apply: bool, as_json: bool) -> None:
    """List (or with --apply delete) the cloud resources of CLOUD's pipelines that no build will use
    again: of builds delivered, abandoned, unknown to the store, or not leased for longer than
    --older-than (at least 10m; then only what the record does not hold). Published images are
    retention's, never gc's; another account's, project's or pipeline's resources are never listed.
    A resource that cannot be judged (a BuildId tag that is no build id) is left alone, and a delete
    the cloud refuses is reported; the others are still collected, and the exit code is then 6 (a
    delete failed) or 1 (something could not be judged)."""
    from airflow_provider_imagebuild.cli.doctor import _stdout_to_stderr

    threshold = _older_than(older_than)
    with _stdout_to_stderr():  # a hook reading a connection logs to stdout, which carries the answer
        result = collect(_specs(spec_paths, cloud), threshold, apply)
    rows = result["leaks"]

    def table(render: Any) -> Any:
        from rich.table import Table

        made = Table(title=f"Leaks on {cloud} (older than {older_than})")
        for column in ("PIPELINE", "KIND", "ID", "REGION", "BUILD", "REASON", "AGE", "COST", "DELETED"):
            made.add_column(column)
        for r in rows:
            cost = "?" if r["estimated_cost"] is None else f"{r['estimated_cost']:.4f} {r['currency']}"
            made.add_row(r["pipeline"], r["kind"], r["id"], r["region"], r["build_id"] or "-", r["reason"],
                         _age(r["age_s"]), cost, "yes" if r["deleted"] else "no")  # fmt: skip
        return made

    emit(as_json, lambda: result, table)
    if not as_json:
        done = sum(1 for r in rows if r["deleted"])
        verb = f"deleted {done} of" if apply else "found"
        note(f"{verb} {len(rows)} leaked resource(s); {result['kept']} of the pipelines' own kept")
        for r in rows:
            if r["error"]:
                warn(f"{r['kind']} {r['id']} ({r['region']}) not deleted: {r['error']}")
        for r in result["unjudged"]:
            warn(f"{r['kind']} {r['id']} ({r['region']}) left alone, not judged: {r['error']}")
    code = exit_code(result)
    if code:
        sys.exit(code)
