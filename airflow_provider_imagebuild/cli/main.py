"""``imagebuild``: the state store and its builds from a shell, a Concourse task or a cron job.

Exit codes are a contract: 0 ok, 2 invalid input, 3 conflict (lease held, out of order, already
completed, stale token), 4 not found, 5 store unreachable or unusable. ``build should-run`` adds
two answers of its own: 10 the milestone needs no work (completed or skipped), 11 the milestone is
an approval waiting for a person's decision (``build approve`` / ``build reject``, or Airflow's
respond page). Errors are one line on stderr naming the field and the reason; set
``IMAGEBUILD_DEBUG=1`` for a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from airflow_provider_imagebuild.build.catalog import parse_code, parse_plan
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.build.values import parse_pairs
from airflow_provider_imagebuild.cli.concourse import concourse_group, milestone_group
from airflow_provider_imagebuild.cli.context import actor as _actor
from airflow_provider_imagebuild.cli.context import command_choice as _choice
from airflow_provider_imagebuild.cli.context import command_store as _store
from airflow_provider_imagebuild.cli.doctor import doctor
from airflow_provider_imagebuild.cli.gc import gc
from airflow_provider_imagebuild.cli.init import ansible_callback_path, init
from airflow_provider_imagebuild.cli.output import (
    RedactingGroup,
    emit,
    fail,
    handles_errors,
    note,
    print_json,
    warn,
)
from airflow_provider_imagebuild.cli.retention import retention
from airflow_provider_imagebuild.cli.sbom import build_sbom
from airflow_provider_imagebuild.cli.spec import spec_group
from airflow_provider_imagebuild.cli.times import shown_time
from airflow_provider_imagebuild.errors import Conflict, InvalidInput
from airflow_provider_imagebuild.hooks.store_choice import NAMED_URL, chosen_url
from airflow_provider_imagebuild.redact.patterns import redact_patterns
from airflow_provider_imagebuild.store import (
    DEFAULT_LEASE_SECONDS,
    ListFilter,
    parse_store_url,
)

SPECS_HELP = (
    "Read every store the specs in this folder name, and the deployment's own, as the Image builds "
    "pages do (each build says which store it lives in); not with --store or --conn-id."
)


def _scan(
    ctx: click.Context, flt: ListFilter, specs: str | None
) -> tuple[list[BuildRecord], list[str], dict[str, Any]]:
    """The builds a listing reads: the one store of the command, or with ``--specs`` every store the
    deployment's specs name (:class:`..hooks.deployment_stores.DeploymentStores`, what the UI reads).
    Returns the records, the problems to warn of, and what to add to a JSON answer about stores."""
    if specs is None:
        records, corrupt = _store(ctx).scan_builds(flt)
        return records, [str(problem) for problem in corrupt], {}
    from pathlib import Path

    from airflow_provider_imagebuild.hooks.deployment_stores import DeploymentStores

    root = ctx.find_root().obj
    if root.get("url") or root.get("conn_id"):
        raise InvalidInput("--specs", "reads the stores the specs name: give it without --store or --conn-id")
    folder = Path(specs)
    if not folder.is_dir():
        raise InvalidInput("--specs", f"{specs!r} is not a folder of pipeline specs")
    stores = DeploymentStores(folder)
    records, unreadable = stores.scan_builds(flt)
    where = {rec.build_id: stores.where(rec.build_id) or "" for rec in records}
    problems = [f"store {label} cannot be read" for label in unreadable]
    read = [place.label for place in stores.stores() if place.label not in unreadable]
    return records, problems, {"where": where, "stores": read, "unreadable_stores": unreadable}


def _code(text: str, field: str = "MILESTONE") -> int:
    return parse_code(text, field)


def _titles(items: tuple[str, ...]) -> dict[int, str]:
    """``--title 42='License check'`` pairs: milestone code to title."""
    titles: dict[int, str] = {}
    for item in items:
        code, sep, title = item.partition("=")
        if not sep:
            raise InvalidInput("--title", f"expected MILESTONE=TITLE such as 42='License check', got {item[:40]!r}")
        titles[_code(code, "--title")] = title
    return titles


@click.group(cls=RedactingGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--store",
    "store_url",
    metavar="URL",
    help="Store URL. Without --store or --conn-id, the order a task follows: $IMAGEBUILD_STORE_CONN_ID, "
    "$IMAGEBUILD_STORE, the imagebuild_default connection, else SQLite under $AIRFLOW_HOME/imagebuild "
    "(`imagebuild store url` says which one and why).",
)
@click.option(
    "--conn-id",
    "conn_id",
    metavar="ID",
    help="An imagebuild_state Airflow connection holding the store (from AIRFLOW_CONN_<ID> or a secrets "
    "backend); not with --store.",
)
@click.version_option(package_name="airflow-provider-imagebuild")
@click.pass_context
def cli(ctx: click.Context, store_url: str | None, conn_id: str | None) -> None:
    """Resumable image builds: inspect and drive the build state store, check pipeline specs."""
    if store_url and conn_id:
        fail("--store and --conn-id: give one store, not both (--store URL or --conn-id ID)", InvalidInput.exit_code)
    ctx.obj = {"url": store_url, "conn_id": conn_id, "store": None, "choice": None}


@cli.group()
def store() -> None:
    """Prepare and inspect the state store."""


@store.command("init")
@click.option("--json", "as_json", is_flag=True, help='Print what was done as JSON ({"initialized": true, ...})')
@click.pass_context
@handles_errors
def store_init(ctx: click.Context, as_json: bool) -> None:
    """Create what the store needs (schema, directory, table, bucket); safe to repeat."""
    done = _store(ctx).init()
    if as_json:
        print_json({"initialized": True, "detail": done})
    else:
        click.echo(done)


@store.command("prune")
@click.option("--older-than", required=True, help="Builds not changed for this long (90d, 12h)")
@click.option(
    "--keep-last", type=click.IntRange(min=0), default=0, help="Keep N newest delivered or failed per pipeline"
)
@click.option("--pipeline", default=None)
@click.option("--archive", default=None, metavar="URL", help="file:///FOLDER or s3://BUCKET/PREFIX, written first")
@click.option("--dry-run", is_flag=True, help="Say what would go; change nothing")
@click.option("--json", "as_json", is_flag=True, help="What was (or would be) removed, kept and archived, as JSON")
@click.pass_context
@handles_errors
def store_prune(
    ctx: click.Context,
    older_than: str,
    keep_last: int,
    pipeline: str | None,
    archive: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Remove the records of delivered builds, of abandoned builds whose abandon deleted what they
    held, and of failed builds that hold nothing any more (no
    build host, Packer instance, checkpoint or staged image recorded as existing), after writing
    each to the archive if given (<pipeline>/<build id>/v<version>-<updated_at>.json, never
    overwriting). A failed build still holding something is kept and listed ("still holds ...:
    abandon it first"), and so is a pipeline's newest delivered build that built while it holds
    checkpoint images (the next build may start from them: reuse). Never removed: a build in
    progress, leased, or completed but not delivered, and a record that cannot be read (reported).
    Each delete is conditional on the version read: a build a concurrent writer resumed or changed
    meanwhile stays."""
    from datetime import datetime, timezone

    from airflow_provider_imagebuild.build.record import format_ts
    from airflow_provider_imagebuild.build.report import parse_since
    from airflow_provider_imagebuild.build.retention import finished, kept_for_reuse, retention_verdict
    from airflow_provider_imagebuild.store.archive import open_archive

    cutoff = format_ts(parse_since(older_than, datetime.now(timezone.utc)))
    keeper = open_archive(archive) if archive else None
    store = _store(ctx)
    records, problems = store.scan_builds(ListFilter.checked(pipeline=pipeline))
    newest: dict[str, list[str]] = {}  # the newest finished builds of each pipeline, kept
    for rec in sorted((r for r in records if finished(r)), key=lambda r: r.updated_at, reverse=True):
        newest.setdefault(rec.pipeline, []).append(rec.build_id)
    kept = {b for ids in newest.values() for b in ids[:keep_last]}
    for_reuse = kept_for_reuse(records)  # the checkpoints a pipeline's next build may start from (#32)
    candidates, holding = [], []
    for rec in sorted(records, key=lambda r: r.updated_at):
        if not rec.updated_at < cutoff or rec.build_id in kept:
            continue
        verdict = for_reuse.get(rec.build_id) or retention_verdict(rec)
        if verdict.removable:
            candidates.append(rec)
        elif verdict.holds:
            holding.append((rec.build_id, verdict))
    removed, changed, archived = [], [], []
    for rec in candidates:
        if dry_run:
            removed.append(rec.build_id)
            continue
        if keeper is not None:
            archived.append(keeper.put(rec))
        if store.prune(rec.build_id, updated_before=cutoff) is None:
            changed.append(rec.build_id)  # resumed or changed since the listing: kept
        else:
            removed.append(rec.build_id)
    result = {"dry_run": dry_run, "removed": removed, "kept_changed": changed, "archived": archived,
              "kept_newest": sorted(kept), "older_than": cutoff,
              "kept_holding": [{"build_id": b, "holds": [h.to_public() for h in v.holds], "reason": v.reason}
                               for b, v in holding],
              "problems": [str(p) for p in problems]}  # fmt: skip
    if as_json:
        print_json(result)
    else:
        verb = "would remove" if dry_run else "removed"
        where = f", archived to {archive}" if keeper and not dry_run else ""
        meanwhile = f"; {len(changed)} changed meanwhile and kept" if changed else ""
        click.echo(f"{verb} {len(removed)} build(s) not changed since {shown_time(cutoff)}{where}{meanwhile}")
        for build_id, verdict in holding:
            click.echo(f"kept {build_id}: {verdict.reason}")
    for problem in problems:
        warn(f"{problem} (left alone)")


@store.command("url")
@click.option("--json", "as_json", is_flag=True, help="The URL, the connection and the rule that chose them as JSON")
@click.pass_context
@handles_errors
def store_url_cmd(ctx: click.Context, as_json: bool) -> None:
    """Print the store URL in use (validated; anything secret-looking in it redacted), then the rule
    that chose it: --store, --conn-id, $IMAGEBUILD_STORE_CONN_ID, $IMAGEBUILD_STORE, the
    imagebuild_default connection or this machine's SQLite file, in that order."""
    choice = _choice(ctx)
    url = chosen_url(choice)
    parse_store_url(url, "--store" if choice.rule == NAMED_URL else "store")
    shown = {"url": redact_patterns(url), "conn_id": choice.conn_id, "chosen_by": choice.chosen_by, "rule": choice.rule}
    if as_json:
        print_json(shown)
    else:
        click.echo(shown["url"])
        click.echo(f"chosen by {choice.chosen_by}")


@cli.group()
def build() -> None:
    """Create, advance and inspect builds."""


@build.command("create")
@click.argument("build_id")
@click.option("--pipeline", required=True)
@click.option("--cloud", required=True, help="aws, azure, gcp, openstack, vsphere or local")
@click.option("--image-type", required=True)
@click.option("--os", "os_name", default="", help="Operating system, e.g. rhel-8.10")
@click.option(
    "--milestones",
    "--states",
    "states",
    default=None,
    help="The plan: comma-separated milestone codes (default: 0,5,...,100)",
)
@click.option("--meta", multiple=True, metavar="K=V", help="Build metadata (repeatable)")
@click.option(
    "--title",
    "titles",
    multiple=True,
    metavar="MILESTONE=TITLE",
    help="The title of a custom milestone of --milestones, shown everywhere (42='License check'; repeatable)",
)
@click.option(
    "--max-attempts",
    type=int,
    default=None,
    help="Attempts each milestone gets across every run before begin is refused (default 10); set when the "
    "build is registered: creating it again with another number is refused (grant more with build allow)",
)
@click.option("--json", "as_json", is_flag=True, help="Print the build's record as JSON")
@click.pass_context
@handles_errors
def build_create(
    ctx: click.Context,
    build_id: str,
    pipeline: str,
    cloud: str,
    image_type: str,
    os_name: str,
    states: str | None,
    meta: tuple[str, ...],
    titles: tuple[str, ...],
    max_attempts: int | None,
    as_json: bool,
) -> None:
    """Register a build (milestone 0). Repeating it with identical parameters is a no-op."""
    plan = parse_plan(states) if states else None
    rec = _store(ctx).create_build(
        build_id,
        pipeline=pipeline,
        cloud=cloud,
        image_type=image_type,
        os=os_name,
        plan=plan,
        metadata=parse_pairs(meta, "meta"),
        owner=_actor(),
        titles=_titles(titles),
        max_attempts=max_attempts,
    )
    if as_json:
        print_json(rec.to_public())
    else:
        click.echo(f"build {rec.build_id} registered: plan {','.join(map(str, rec.plan))}")


MILESTONE_HELP = "the milestone's code (42)"


@build.command("begin")
@click.argument("build_id")
@click.argument("milestone")
@click.option("--owner", required=True, help="Who works on the milestone (shown to others)")
@click.option("--lease-seconds", type=int, default=DEFAULT_LEASE_SECONDS, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the lease (token, id, owner, attempt, expiry) as JSON")
@click.pass_context
@handles_errors
def build_begin(
    ctx: click.Context, build_id: str, milestone: str, owner: str, lease_seconds: int, as_json: bool
) -> None:
    """Start MILESTONE; prints the lease token that heartbeat, complete, fail and set-meta need."""
    from airflow_provider_imagebuild.build.record import lease_id_of

    code = _code(milestone)
    lease = _store(ctx).begin(build_id, code, owner=owner, lease_seconds=lease_seconds)
    if as_json:
        print_json({"build_id": build_id, "milestone": code, "token": lease.token, "lease_id": lease_id_of(lease.token),
                    "owner": lease.owner, "attempt": lease.attempt, "expires_at": lease.expires_at})  # fmt: skip
    else:
        click.echo(lease.token)


@build.command("should-run")
@click.argument("build_id")
@click.argument("milestone")
@click.option("--owner", default=None, help="The owner that would begin it (its own live lease resumes)")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict (run, done or held) and why as JSON")
@click.pass_context
@handles_errors
def build_should_run(ctx: click.Context, build_id: str, milestone: str, owner: str | None, as_json: bool) -> None:
    """Whether a step should do MILESTONE's work now, for shell and Concourse steps: exit 0 run it,
    10 already completed (or skipped: nothing to do), 11 an approval waiting for a person's
    decision (`imagebuild build approve|reject`), 3 another live lease holds the build (or an
    earlier milestone is not done), 2 invalid input, 4 no such build."""
    from datetime import datetime, timezone

    from airflow_provider_imagebuild.build.approval import awaiting_approval
    from airflow_provider_imagebuild.build.rules import DONE, readiness

    code = _code(milestone)
    rec = _store(ctx).get(build_id)
    verdict, why = readiness(rec, code, datetime.now(timezone.utc), owner)
    asked = awaiting_approval(rec, code) if verdict is None else None
    if asked is not None:
        verdict = AWAITING_APPROVAL
        why = (f"milestone {rec.label(code)} of build {build_id} waits for an approval since {shown_time(asked)}: "
               f"imagebuild build approve|reject {build_id} {code} --reason TEXT")  # fmt: skip
    if as_json:
        print_json({"build_id": build_id, "milestone": code, "verdict": verdict or "run", "why": why})
    if verdict not in (None, DONE, AWAITING_APPROVAL):
        raise Conflict(why)
    if not as_json:
        click.echo(why)
    if verdict == DONE:
        raise SystemExit(ALREADY_DONE)
    if verdict == AWAITING_APPROVAL:
        raise SystemExit(WAITING_FOR_APPROVAL)


ALREADY_DONE = 10  # should-run: the milestone needs no work
WAITING_FOR_APPROVAL = 11  # should-run: an approval milestone waits for a person's decision
AWAITING_APPROVAL = "awaiting_approval"


def _decide(ctx: click.Context, build_id: str, milestone: str, reason: str, as_json: bool, approve: bool) -> None:
    """``build approve`` and ``build reject``: the decision recorded as the milestone's attempt in the
    name of whoever runs the command (store access authorizes it, as for ``build reset``)."""
    from airflow_provider_imagebuild.approvals import decide

    code = _code(milestone)
    if not reason.strip():
        raise InvalidInput("--reason", "must say why (it is recorded with the decision)")
    rec = decide(_store(ctx), build_id, code, approve=approve, decided_by=_actor(), comment=reason)
    if approve:
        _changed(as_json, rec, f"milestone {rec.label(code)} of {build_id} approved: next milestone {_next(rec)}")
    else:
        _changed(as_json, rec, f"milestone {rec.label(code)} of {build_id} rejected; the build stopped at {code}")


@build.command("heartbeat")
@click.argument("build_id")
@click.argument("milestone")
@click.option("--token", required=True, help="The lease token `begin` printed for MILESTONE")
@click.option("--json", "as_json", is_flag=True, help="Print the lease's id and new expiry as JSON")
@click.pass_context
@handles_errors
def build_heartbeat(ctx: click.Context, build_id: str, milestone: str, token: str, as_json: bool) -> None:
    """Extend the lease of a running MILESTONE."""
    from airflow_provider_imagebuild.build.record import lease_id_of

    code = _code(milestone)
    lease = _store(ctx).heartbeat(build_id, code, token=token)
    if as_json:
        print_json({"build_id": build_id, "milestone": code, "lease_id": lease_id_of(lease.token),
                    "expires_at": lease.expires_at})  # fmt: skip
    else:
        click.echo(f"lease extended until {shown_time(lease.expires_at)}")


def _changed(as_json: bool, rec: BuildRecord, line: str) -> None:
    """The answer of a command that changed a build: its record (``--json``) or one line."""
    if as_json:
        print_json(rec.to_public())
    else:
        click.echo(line)


JSON_RECORD = "Print the build's record after the change as JSON (as build show --json)"


@build.command("complete")
@click.argument("build_id")
@click.argument("milestone")
@click.option("--token", required=True, help="The lease token `begin` printed for MILESTONE")
@click.option("--output", multiple=True, metavar="K=V", help="Milestone output (repeatable)")
@click.option("--json", "as_json", is_flag=True, help=JSON_RECORD)
@click.pass_context
@handles_errors
def build_complete(
    ctx: click.Context, build_id: str, milestone: str, token: str, output: tuple[str, ...], as_json: bool
) -> None:
    """Record MILESTONE as reached, with its outputs."""
    code = _code(milestone)
    rec = _store(ctx).complete(build_id, code, token=token, outputs=parse_pairs(output, "output"))
    delivered = " - build delivered" if rec.delivered else ""
    _changed(as_json, rec, f"milestone {rec.label(code)} of {build_id} completed{delivered}")


@build.command("set-meta")
@click.argument("build_id")
@click.argument("milestone")
@click.argument("items", nargs=-1, required=True, metavar="KEY=VALUE...")
@click.option("--token", required=True, help="The lease token `begin` printed for MILESTONE")
@click.option("--json", "as_json", is_flag=True, help=JSON_RECORD)
@click.pass_context
@handles_errors
def build_set_meta(
    ctx: click.Context, build_id: str, milestone: str, items: tuple[str, ...], token: str, as_json: bool
) -> None:
    """Record build metadata under the lease of MILESTONE (a shell or Concourse step that launched
    its own build host records it here). Refused (exit 3) once the lease was taken over or has
    ended."""
    code = _code(milestone)
    pairs = parse_pairs(items, "meta")
    rec = _store(ctx).set_metadata(build_id, pairs, actor=_actor(), token=token, state=code)
    _changed(as_json, rec, f"metadata of {build_id} set: {', '.join(sorted(pairs))}")


@build.command("fail")
@click.argument("build_id")
@click.argument("milestone")
@click.option("--token", required=True, help="The lease token `begin` printed for MILESTONE")
@click.option("--error", "message", required=True, help="What failed (recorded, secrets redacted)")
@click.option("--json", "as_json", is_flag=True, help=JSON_RECORD)
@click.pass_context
@handles_errors
def build_fail(ctx: click.Context, build_id: str, milestone: str, token: str, message: str, as_json: bool) -> None:
    """Record a failed attempt at MILESTONE; the build stays at it."""
    code = _code(milestone)
    rec = _store(ctx).fail(build_id, code, token=token, error=message)
    _changed(as_json, rec, f"milestone {rec.label(code)} of {build_id} failed; the build stays at {code}")


@build.command("reset")
@click.argument("build_id")
@click.argument("milestone", required=False)
@click.option("--to", "to", default=None, metavar="MILESTONE", help="The same as MILESTONE (the older form, kept)")
@click.option("--reason", required=True, help="Why (recorded in the build's events)")
@click.option("--json", "as_json", is_flag=True, help=JSON_RECORD)
@click.pass_context
@handles_errors
def build_reset(
    ctx: click.Context, build_id: str, milestone: str | None, to: str | None, reason: str, as_json: bool
) -> None:
    """Send a build back so that MILESTONE and everything after it run again:
    `imagebuild build reset BUILD_ID 45 --reason TEXT` (`--to 45` is the same)."""
    code = _milestone_or_to(milestone, to)
    # The store refuses a reset the build could not run from (host released, checkpoints deleted).
    rec = _store(ctx).reset(build_id, to=code, reason=reason, actor=_actor())
    _changed(as_json, rec, f"build {build_id} reset: next milestone {_next(rec)}")


def _milestone_or_to(milestone: str | None, to: str | None) -> int:
    """MILESTONE, or ``--to``: one form like every command's, the older one still accepted."""
    if milestone is None and to is None:
        raise InvalidInput("MILESTONE", "give the milestone to run again: reset BUILD_ID MILESTONE --reason TEXT")
    if milestone is not None and to is not None and _code(milestone) != _code(to, "--to"):
        raise InvalidInput("--to", f"names milestone {to} but MILESTONE is {milestone}: give one of them")
    return _code(milestone) if milestone is not None else _code(str(to), "--to")


def _next(rec: BuildRecord) -> str:
    return "none (delivered)" if rec.next_state is None else rec.label(rec.next_state)


@build.command("skip")
@click.argument("build_id")
@click.argument("milestone")
@click.option("--reason", required=True, help="Why the milestone is stepped over (recorded)")
@click.option("--json", "as_json", is_flag=True, help=JSON_RECORD)
@click.pass_context
@handles_errors
def build_skip(ctx: click.Context, build_id: str, milestone: str, reason: str, as_json: bool) -> None:
    """Step over MILESTONE, the build's next one, on purpose: it counts as done for the plan's
    order and is shown as skipped, with the reason and who decided. (Airflow's "Mark success"
    records nothing in the build.) Seal and publish, and what the pipeline marks `skippable:
    false`, cannot be skipped."""
    code = _code(milestone)
    rec = _store(ctx).skip(build_id, code, reason=reason, actor=_actor())
    _changed(as_json, rec, f"milestone {rec.label(code)} of {build_id} skipped: next milestone {_next(rec)}")


@build.command("allow")
@click.argument("build_id")
@click.argument("milestone")
@click.option("--attempts", type=int, required=True, help="How many more attempts MILESTONE gets (10 unused at most)")
@click.option("--reason", required=True, help="Why (recorded in the build's events)")
@click.option("--json", "as_json", is_flag=True, help=JSON_RECORD)
@click.pass_context
@handles_errors
def build_allow(ctx: click.Context, build_id: str, milestone: str, attempts: int, reason: str, as_json: bool) -> None:
    """Grant MILESTONE more attempts past its cap (max_attempts across every run): `imagebuild build
    allow BUILD_ID 45 --attempts 3 --reason TEXT`. A reset counts afresh too."""
    code = _code(milestone)
    rec = _store(ctx).allow(build_id, code, attempts=attempts, reason=reason, actor=_actor())
    limit = rec.attempt_limit(code)
    _changed(as_json, rec, f"milestone {rec.label(code)} of {build_id} may now begin up to attempt {limit}")


@build.command("approve")
@click.argument("build_id")
@click.argument("milestone")
@click.option("--reason", required=True, help="Why you approve (recorded with the decision)")
@click.option("--json", "as_json", is_flag=True, help=JSON_RECORD)
@click.pass_context
@handles_errors
def build_approve(ctx: click.Context, build_id: str, milestone: str, reason: str, as_json: bool) -> None:
    """Approve the approval MILESTONE the build waits at (`build should-run` exits 11 there): the
    build goes on. Refused (exit 3) when it does not wait for that approval."""
    _decide(ctx, build_id, milestone, reason, as_json, approve=True)


@build.command("reject")
@click.argument("build_id")
@click.argument("milestone")
@click.option("--reason", required=True, help="Why you reject (the build's reason: shown on its page)")
@click.option("--json", "as_json", is_flag=True, help=JSON_RECORD)
@click.pass_context
@handles_errors
def build_reject(ctx: click.Context, build_id: str, milestone: str, reason: str, as_json: bool) -> None:
    """Reject the approval MILESTONE the build waits at: the build fails there with the reason (not
    retried; clearing its task or re-running its step asks again). Refused (exit 3) when it does
    not wait for that approval."""
    _decide(ctx, build_id, milestone, reason, as_json, approve=False)


@build.command("abandon")
@click.argument("build_id")
@click.option("--reason", required=True, help="Why the build is given up (recorded in the build's events)")
@click.option(
    "--spec",
    "spec_file",
    default=None,
    metavar="FILE",
    help="The build's pipeline spec, to reach its target (default: its pipeline's spec in the specs folder)",
)
@click.option(
    "--json", "as_json", is_flag=True, help="What was deleted and what is still held, with the build_status, as JSON"
)
@click.pass_context
@handles_errors
def build_abandon(ctx: click.Context, build_id: str, reason: str, spec_file: str | None, as_json: bool) -> None:
    """Give a build up for good: delete what it holds (build host, checkpoint and staged images the
    target proves are its own), record the abandon with who and why, and refuse every later begin
    (exit 3). Without a spec nothing is deleted: the abandon is recorded and what is still held is
    listed. Abandoning again (with --spec) retries what is left. The spec's notify recipients hear
    of it (abandoned), once."""
    from airflow_provider_imagebuild.lifecycle import abandon_and_tell

    store = _store(ctx)
    rec = store.get(build_id)
    folder = _specs_folder() if spec_file is None else None
    done = abandon_and_tell(store, rec, reason=reason, actor=_actor(), spec_file=spec_file, folder=folder)
    if as_json:
        print_json(done.to_public())
        return
    state = "abandoned" if done.changed else "already abandoned"
    click.echo(f"build {build_id} {state}; no milestone of it begins again")
    for holding in done.released:
        click.echo(f"deleted {holding}")
    for holding, reason_held in done.still_held:
        click.echo(f"still held: {holding}: {reason_held}")
    if done.notified:
        click.echo(f"told: {', '.join(done.notified)}")


def _specs_folder() -> Path | None:
    """The deployment's specs folder (where the DAG files load specs from), if it can be told."""
    from airflow_provider_imagebuild.hooks.deployment_stores import specs_folder

    try:
        return specs_folder()
    except Exception:  # no Airflow configuration here: abandon without a spec
        return None


@build.command("show")
@click.argument("build_id")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="The build's record as JSON (with its build_status and, while running, its eta)",
)
@click.pass_context
@handles_errors
def build_show(ctx: click.Context, build_id: str, as_json: bool) -> None:
    """Show a build's milestones, status, attempts and outputs."""
    from datetime import datetime, timezone

    from airflow_provider_imagebuild.build.approval import waiting_at
    from airflow_provider_imagebuild.build.provenance import reuse_view
    from airflow_provider_imagebuild.build.record import format_ts
    from airflow_provider_imagebuild.build.stats import eta, milestone_medians

    store = _store(ctx)
    rec = store.get(build_id)
    expected = None
    if rec.lease is not None:  # running: estimate from the pipeline's delivered builds
        history, _ = store.scan_builds(ListFilter.checked(pipeline=rec.pipeline, status="completed"))
        expected = eta(rec, milestone_medians(history), datetime.now(timezone.utc))
    waiting = waiting_at(rec)  # an approval milestone that asked and was not decided yet
    shown = {
        **rec.to_public(),
        "reuse": reuse_view(rec),  # what it took from an earlier build (#32), None: nothing
        "eta": format_ts(expected) if expected else None,
        "awaiting_approval": {"milestone": waiting[0], "since": waiting[1]} if waiting else None,
    }
    emit(as_json, lambda: shown, lambda render: render.build_table(rec))
    if expected is not None and not as_json:
        note(f"expected to be delivered at {shown_time(format_ts(expected))} (from the pipeline's earlier builds)")
    if waiting is not None and not as_json:
        note(
            f"waits for an approval at {rec.label(waiting[0])} since {shown_time(waiting[1])}: respond on its task's "
            f"Required Action tab in Airflow, or imagebuild build approve|reject {build_id} {waiting[0]} --reason TEXT"
        )


@build.command("history")
@click.argument("build_id")
@click.option("--json", "as_json", is_flag=True, help="Every attempt and event as a JSON list")
@click.pass_context
@handles_errors
def build_history(ctx: click.Context, build_id: str, as_json: bool) -> None:
    """Every attempt and event of a build, oldest first."""
    from airflow_provider_imagebuild.build.provenance import reuse_headline

    store = _store(ctx)
    rows = store.history(build_id)
    reused = any(row.get("kind") == "reused" for row in rows)  # then what it reused heads the table
    headline = reuse_headline(store.get(build_id)) if reused and not as_json else None
    emit(as_json, lambda: rows, lambda render: render.history_table(build_id, rows, headline))


@build.command("diff")
@click.argument("before")
@click.argument("after")
@click.option(
    "--repo",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The git checkout whose history holds the playbooks and templates (default: the current folder's), "
    "to count the lines a changed file gained and lost",
)
@click.option("--json", "as_json", is_flag=True, help="Per milestone, its fingerprints and each changed input")
@click.pass_context
@handles_errors
def build_diff(ctx: click.Context, before: str, after: str, repo: Path | None, as_json: bool) -> None:
    """What changed from build BEFORE to build AFTER, milestone by milestone: the files (with the
    lines added and removed where git has both versions), variables, source image, tool versions
    and watched values each milestone was made from."""
    from airflow_provider_imagebuild.build.changes import build_diff as diff_builds
    from airflow_provider_imagebuild.cli.diff import diff_public, diff_table
    from airflow_provider_imagebuild.sbom import changes as _packages  # noqa: F401 - adds the package changes

    store = _store(ctx)
    old, new = store.get(before), store.get(after)
    if old.pipeline != new.pipeline:
        raise InvalidInput("AFTER", f"build {after} is of pipeline {new.pipeline}, build {before} of {old.pipeline}")
    diffs = diff_builds(old, new)
    where = repo or Path.cwd()
    shown = (before, after, diffs, where)
    emit(as_json, lambda: diff_public(*shown), lambda render: diff_table(*shown))


@build.command("list")
@click.option(
    "--status",
    default=None,
    metavar="BUILD_STATUS",
    help="Builds whose build status is this: registered, running, waiting, failed, delivered or abandoned",
)
@click.option("--cloud", default=None)
@click.option("--pipeline", default=None)
@click.option("--updated-before", default=None, metavar="ISO8601")
@click.option("--updated-after", default=None, metavar="ISO8601")
@click.option("--milestone", default=None, metavar="MILESTONE", help="Builds whose current milestone is MILESTONE")
@click.option("--state", "state_alias", default=None, hidden=True)  # the older name of --milestone
@click.option("--image-type", default=None)
@click.option("--since", default=None, help="Builds created in the last N days (30d) or hours (12h)")
@click.option("--specs", default=None, metavar="FOLDER", help=SPECS_HELP)
@click.option(
    "--json", "as_json", is_flag=True, help="The builds as a JSON list (one summary each, with its build_status)"
)
@click.pass_context
@handles_errors
def build_list(
    ctx: click.Context,
    status: str | None,
    cloud: str | None,
    pipeline: str | None,
    updated_before: str | None,
    updated_after: str | None,
    milestone: str | None,
    state_alias: str | None,
    image_type: str | None,
    since: str | None,
    specs: str | None,
    as_json: bool,
) -> None:
    """List builds, newest change first. A record that cannot be read is reported on stderr and
    left untouched; the others are listed."""
    from datetime import datetime, timezone

    from airflow_provider_imagebuild.build.record import parse_ts
    from airflow_provider_imagebuild.build.report import parse_since
    from airflow_provider_imagebuild.build.status import build_status, check_build_status, milestone_status_of

    wanted = check_build_status(status) if status is not None else None
    flt = ListFilter.checked(
        status=milestone_status_of(wanted) if wanted else None,  # the store's status index first
        cloud=cloud,
        pipeline=pipeline,
        updated_before=updated_before,
        updated_after=updated_after,
    )
    wanted_code = milestone if milestone is not None else state_alias
    code = _code(wanted_code, "--milestone") if wanted_code is not None else None
    start = parse_since(since, datetime.now(timezone.utc)) if since else None
    records, problems, stores = _scan(ctx, flt, specs)
    records = [
        r
        for r in records
        if (code is None or r.current_state == code)
        and (image_type is None or r.image_type == image_type)
        and (start is None or parse_ts(r.created_at) >= start)
        and (wanted is None or build_status(r) == wanted)
    ]
    where = stores.get("where")

    def summaries() -> list[dict[str, Any]]:
        return [_summary(r) | ({"store": where[r.build_id]} if where else {}) for r in records]

    emit(as_json, summaries, lambda render: render.list_table(records))
    if where and not as_json:
        note(f"read: {', '.join(stores['stores']) or 'no store'} (`--json` says which store each build lives in)")
    for problem in problems:
        warn(f"{problem} (not listed)")


@cli.command("report")
@click.option("--pipeline", default=None)
@click.option("--cloud", default=None)
@click.option(
    "--since", default="30d", show_default=True, help="Builds created in the last N days (30d) or hours (12h)"
)
@click.option("--specs", default=None, metavar="FOLDER", help=SPECS_HELP)
@click.option(
    "--json", "as_json", is_flag=True, help="The report as JSON (with build_status: how many builds have each)"
)
@click.pass_context
@handles_errors
def report(
    ctx: click.Context, pipeline: str | None, cloud: str | None, since: str, specs: str | None, as_json: bool
) -> None:
    """Success rate, deliveries per day, p50/p90 per milestone, the milestones that fail most with
    their top error lines, retries spent and the time resumes saved; what the builds cost, what
    failures cost and what resumes saved, priced with each pipeline's spec's cost: block (in --specs
    FOLDER, else $IMAGEBUILD_PIPELINES_DIR) over its cloud's example prices."""
    import os
    from datetime import datetime, timezone
    from pathlib import Path

    from airflow_provider_imagebuild.build.report import build_report, parse_since
    from airflow_provider_imagebuild.hooks.prices import prices_of
    from airflow_provider_imagebuild.spec.pipeline import PIPELINES_ENV

    now = datetime.now(timezone.utc)
    start = parse_since(since, now)
    flt = ListFilter.checked(cloud=cloud, pipeline=pipeline)
    records, problems, stores = _scan(ctx, flt, specs)
    folder = specs or os.environ.get(PIPELINES_ENV)
    result = build_report(records, since=start, now=now, prices_of=prices_of(Path(folder) if folder else None))
    if stores:
        result |= {"stores": stores["stores"], "unreadable_stores": stores["unreadable_stores"]}
    emit(as_json, lambda: result, lambda render: render.report_table(result))
    if stores and not as_json:
        note(f"read: {', '.join(stores['stores']) or 'no store'}")
    for problem in problems:
        warn(f"{problem} (not counted)")


LIST_FIELDS = (
    "build_id",
    "pipeline",
    "cloud",
    "image_type",
    "os",
    "current_state",
    "status",
    "build_status",
    "delivered",
    "completed",
    "updated_at",
)


def _summary(rec: BuildRecord) -> dict[str, Any]:
    public = rec.to_public()
    return {k: public[k] for k in LIST_FIELDS}


cli.add_command(spec_group)
cli.add_command(concourse_group)
cli.add_command(milestone_group)
cli.add_command(init)
cli.add_command(ansible_callback_path)
cli.add_command(doctor)
cli.add_command(gc)
cli.add_command(retention)
build.add_command(build_sbom)


def main() -> None:
    cli(prog_name="imagebuild")


if __name__ == "__main__":
    main()
