"""The Image builds JSON API, mounted on Airflow's API server at ``/imagebuild``.

Airflow does not authenticate plugin apps: every route here resolves the caller through Airflow's
own ``get_user`` (the bearer token from ``POST /auth/token``, or the UI's session cookie) and asks
Airflow's auth manager before it answers. Reading a build needs read access to its pipeline's
DAG; resetting, redoing or skipping needs what editing and triggering that DAG needs. Build state
comes from the stores, never from Airflow's metadata database: the deployment's own and every one
the deployment's specs name (hooks/deployment_stores.py), each chosen in the one order tasks use;
a build is changed in the store it lives in.

- ``GET /imagebuild/api/builds`` (``pipeline``, ``cloud``, ``status``, ``build_status``, ``state``,
  ``limit``, ``offset``): ``{"builds": [...], "total", "limit", "offset"}``, newest change first;
  each build carries ``status`` (its current milestone's) and ``build_status`` (the build's:
  registered, running, waiting, failed, delivered, abandoned) and ``store`` (the store it lives
  in: a connection's name, or the store URL without its parameters); ``unreadable_stores`` names
  the stores that could not be read (their builds are missing from the page);
- ``GET /imagebuild/api/builds/{build_id}``: the record, as ``imagebuild build show --json``;
- ``POST /imagebuild/api/builds/{build_id}/reset`` ``{"to": N, "reason": "..."}``;
- ``POST /imagebuild/api/builds/{build_id}/redo`` ``{"from": N, "reason": "..."}``: reset, then a
  run of the pipeline's DAG with the same ``build_id``;
- ``POST /imagebuild/api/builds/{build_id}/skip`` ``{"state": N, "reason": "..."}``;
- ``POST /imagebuild/api/builds/{build_id}/allow`` ``{"milestone": N, "attempts": K, "reason": "..."}``:
  grant milestone N K more attempts past its cap across runs (``imagebuild build allow``; the
  build's ``moves.allow`` says when the next begin would be refused for it);
- ``POST /imagebuild/api/builds/{build_id}/abandon`` ``{"reason": "..."}``: give the build up for
  good (its build_status reads abandoned, every later begin is refused) and delete what it holds
  through its target, reached with its pipeline's spec in the deployment's specs folder; the
  record, with ``abandon``: what was deleted, not found, and is still held (with why).

Errors: 401 without a token; 404 for a build that does not exist and, with the same answer, for
one whose DAG the caller may not read; 403 for an action on a build the caller can read but may
not act on; 400 or 422 for bad input (a missing or empty reason); 409 when a rule of the build
refuses (a live lease); 503 when no store can be used. An error never says where a store is
(a build's ``store`` label does, for those who may read the build): the store's own messages
(which name its files, buckets and tables) go to the API server's log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_imagebuild.build.provenance import reuse_view
from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.build.values import MAX_MAX_ATTEMPTS
from airflow_provider_imagebuild.hooks.prices import deployment_prices
from airflow_provider_imagebuild.links import dag_id_of
from airflow_provider_imagebuild.plugin import access
from airflow_provider_imagebuild.plugin.access import (
    User,
    actionable,
    actor_of,
    readable,
    store,
    store_errors,
    with_stores,
)
from airflow_provider_imagebuild.plugin.views import builds_page, moves_view
from airflow_provider_imagebuild.store import ListFilter

MAX_PAGE = 500


def list_page(
    user: Any,
    pipeline: str | None = None,
    cloud: str | None = None,
    status: str | None = None,
    state: int | None = None,
    limit: int = 50,
    offset: int = 0,
    build_status: str | None = None,
) -> dict[str, Any]:
    """A page of the builds the caller may read (the JSON list and the HTML list); ``status`` is the
    current milestone's, ``build_status`` the build's (build/status.py)."""
    from airflow_provider_imagebuild.build.status import build_status as status_of
    from airflow_provider_imagebuild.build.status import check_build_status

    with store_errors():
        wanted = check_build_status(build_status, "build_status") if build_status else None
        flt = ListFilter.checked(status=status, cloud=cloud, pipeline=pipeline)
        everything, _problems = store().scan_builds()  # the ETAs go by every build of a pipeline
    records = [r for r in everything if flt.matches(vars(r))]
    if wanted is not None:
        records = [r for r in records if status_of(r) == wanted]
    readable = lambda dag_id: access.may(user, dag_id, act=False)  # noqa: E731
    page = builds_page(
        records, readable, state=state, limit=limit, offset=offset, history=everything, prices_of=deployment_prices()
    )
    return with_stores(page)


def json_only(request: Request) -> None:
    """Actions take JSON bodies only. The pages call them with Airflow's session cookie; a form
    on another site can post with that cookie too, but cannot send ``application/json`` without
    a CORS preflight this app never grants, so it is refused here before anything is read."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HTTPException(415, "actions take a JSON body (Content-Type: application/json)")


JSON_ONLY = [Depends(json_only)]


class Reason(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    reason: str = Field(min_length=1, max_length=2000, description="Why; recorded in the build's events")


# Milestone codes are strict integers: JSON's true would otherwise be milestone 1, "45" would be 45.
Code = Annotated[int, Field(strict=True)]


class ResetBody(Reason):
    to: Code = Field(ge=1, le=100, description="The milestone to run again (it and later ones are un-completed)")


class RedoBody(Reason):
    from_: Code = Field(alias="from", ge=1, le=100, description="The milestone to redo the build from")


class SkipBody(Reason):
    state: Code = Field(ge=1, le=100, description="The build's next milestone, stepped over on purpose")


class AllowBody(Reason):
    milestone: Code = Field(ge=1, le=100, description="The milestone granted more attempts")
    attempts: Annotated[int, Field(strict=True)] = Field(
        ge=1, le=MAX_MAX_ATTEMPTS, description="How many more attempts it may begin, across runs"
    )


def create_app() -> FastAPI:
    app = FastAPI(
        title="Image builds",
        description=__doc__,
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_body(request: Request, exc: RequestValidationError) -> Response:
        """422 naming each bad field and why, without echoing what was sent (FastAPI's own answer
        quotes every input: a lone surrogate in a reason cannot be encoded, which made it a 500)."""
        import json

        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return Response(json.dumps({"detail": errors}), status_code=422, media_type="application/json")

    @app.get("/api/builds")
    def list_builds(
        user: User,
        pipeline: str | None = None,
        cloud: str | None = None,
        status: str | None = None,
        state: int | None = Query(default=None, ge=0, le=100),
        limit: int = Query(default=50, ge=1, le=MAX_PAGE),
        offset: int = Query(default=0, ge=0),
        build_status: str | None = Query(
            default=None, description="registered, running, waiting, failed, delivered or abandoned"
        ),
    ) -> dict[str, Any]:
        return list_page(user, pipeline, cloud, status, state, limit, offset, build_status)

    @app.get("/api/builds/{build_id}")
    def show_build(build_id: str, user: User) -> dict[str, Any]:
        rec = readable(user, build_id)
        return {
            **rec.to_public(),
            "reuse": reuse_view(rec),  # what it took from an earlier build (#32); attempts carry reused_from
            "dag_id": dag_id_of(rec),
            "store": store().where(rec.build_id),
            "may_act": access.may(user, dag_id_of(rec), act=True),
            **next_moves(rec),
        }

    @app.get("/api/builds/{build_id}/sbom", response_model=None)
    def build_sbom(build_id: str, user: User) -> Any:
        """The build image's bill of materials (CycloneDX JSON) as the seal wrote it, proven first
        (sbom/stored.py: its name, the recorded SHA-256, CycloneDX); 404 when it has none or the file
        is on another worker's disk, 409 when the record points at a file that is not it."""
        from fastapi import Response

        from airflow_provider_imagebuild.errors import InvalidInput, NotFound
        from airflow_provider_imagebuild.sbom.stored import read_sbom

        rec = readable(user, build_id)
        try:
            _, text = read_sbom(rec)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        except InvalidInput as exc:
            raise HTTPException(409, str(exc)) from None
        return Response(text, media_type="application/vnd.cyclonedx+json", headers={"Cache-Control": "no-store"})

    def action(change: Callable[[Any, BuildRecord], BuildRecord]) -> Callable[..., dict[str, Any]]:
        """Authorize, apply, answer with the record."""

        def run(build_id: str, user: Any) -> dict[str, Any]:
            rec = actionable(user, build_id)
            with store_errors(build_id):
                return change(user, rec).to_public()

        return run

    @app.post("/api/builds/{build_id}/reset", dependencies=JSON_ONLY)
    def reset_build(build_id: str, body: ResetBody, user: User) -> dict[str, Any]:
        def reset(u: Any, r: BuildRecord) -> BuildRecord:
            return store().reset(r.build_id, to=body.to, reason=body.reason, actor=actor_of(u))

        return action(reset)(build_id, user)

    @app.post("/api/builds/{build_id}/skip", dependencies=JSON_ONLY)
    def skip_milestone(build_id: str, body: SkipBody, user: User) -> dict[str, Any]:
        return action(lambda u, r: store().skip(r.build_id, body.state, reason=body.reason, actor=actor_of(u)))(
            build_id, user
        )

    @app.post("/api/builds/{build_id}/allow", dependencies=JSON_ONLY)
    def allow_attempts(build_id: str, body: AllowBody, user: User) -> dict[str, Any]:
        def allow(u: Any, r: BuildRecord) -> BuildRecord:  # authorized like reset: a person's decision
            return store().store_of(r.build_id).allow(r.build_id, body.milestone, attempts=body.attempts,
                                                      reason=body.reason, actor=actor_of(u))  # fmt: skip

        return action(allow)(build_id, user)

    @app.post("/api/builds/{build_id}/abandon", dependencies=JSON_ONLY)
    def abandon_build(build_id: str, body: Reason, user: User) -> dict[str, Any]:
        from airflow_provider_imagebuild.hooks.deployment_stores import specs_folder
        from airflow_provider_imagebuild.lifecycle import abandon_and_tell

        rec = actionable(user, build_id)  # authorized like reset: edit and trigger rights on its DAG
        with store_errors(build_id):  # the spec's notify recipients hear of it, as of the watchdog's
            done = abandon_and_tell(store().store_of(rec.build_id), rec, reason=body.reason, actor=actor_of(user),
                                    spec_file=None, folder=specs_folder())  # fmt: skip
        return {**done.build.to_public(), "abandon": done.to_public()}

    @app.post("/api/builds/{build_id}/redo", dependencies=JSON_ONLY)
    def redo_build(build_id: str, body: RedoBody, user: User) -> dict[str, Any]:
        rec = actionable(user, build_id)
        dag_id = dag_id_of(rec)
        from airflow.models.dag import DagModel

        if DagModel.get_dagmodel(dag_id) is None:
            raise HTTPException(404, f"DAG {dag_id} of build {build_id} is not known to Airflow")
        with store_errors():  # 409 when the build could not run from there: the store's own rule
            reason = f"redo from {body.from_}: {body.reason}"
            rec = store().reset(build_id, to=body.from_, reason=reason, actor=actor_of(user))
        run_id = trigger(dag_id, build_id, user.get_name())
        return {**rec.to_public(), "dag_id": dag_id, "dag_run_id": run_id}

    from airflow_provider_imagebuild.plugin.pages import add_pages

    add_pages(app)
    return app


def next_moves(rec: BuildRecord) -> dict[str, Any]:
    """What a build's page offers, for API clients too: ``moves`` (the milestones a reset or a redo
    may go back to, each with what it does and the failed or current one as the default, the skip
    the store would accept, what clearing the failed task does, and why nothing may move while a
    milestone runs) and, for a running build, its ``eta`` from the pipeline's other builds."""
    from datetime import datetime, timezone

    from airflow_provider_imagebuild.build.record import format_ts
    from airflow_provider_imagebuild.build.stats import eta, milestone_medians
    from airflow_provider_imagebuild.plugin.titles import titles_for

    now = datetime.now(timezone.utc)
    with store_errors():
        same, _ = store().scan_builds(ListFilter(pipeline=rec.pipeline))
    expected = eta(rec, milestone_medians(same), now)
    titles = titles_for(rec)
    return {"moves": moves_view(rec, now, titles), "eta": format_ts(expected) if expected else None}


def trigger(dag_id: str, build_id: str, user_name: str) -> str:
    """A run of the build's DAG with its build id, as the Trigger button makes one."""
    from airflow.api.common.trigger_dag import trigger_dag
    from airflow.utils.types import DagRunTriggeredByType

    run = trigger_dag(
        dag_id,
        triggered_by=DagRunTriggeredByType.UI,
        triggering_user_name=user_name,
        conf={"build_id": build_id},
    )
    if run is None:
        raise HTTPException(409, f"DAG {dag_id} could not be triggered")
    return str(run.run_id)
