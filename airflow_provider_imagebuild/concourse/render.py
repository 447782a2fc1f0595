"""A Concourse pipeline from a pipeline spec: ``imagebuild concourse render SPEC``.

Decided: **one job per pipeline run, one task step per milestone**, in plan order, with
``serial: true``. A Concourse job's build is the unit an operator re-runs; a run of the pipeline
is one image build, and re-running the job with the same build id is the resume (every milestone
already reached is skipped by its step in about a second). One job per phase would let a person
re-run "configuration" alone, but Concourse passes nothing between jobs except resources, the
milestones would need an artificial resource version per phase, and the store already refuses
out-of-order milestones, so phases as jobs add wiring and no safety.

Each milestone's step (a ``task`` on the provider's image, with the repository holding the spec
as its ``source`` input):

1. ``imagebuild build should-run BUILD_ID MILESTONE``: 10 (already completed) ends the step green;
   3 (another live lease holds the build) and the other errors fail it; 4 (no such build) is
   fine only for milestone 0, which registers the build;
2. ``imagebuild milestone run SPEC MILESTONE --build-id BUILD_ID``: the very task the Airflow DAG runs
   (:mod:`.run`): begin, heartbeats while the action runs, the action itself (Packer,
   ansible-playbook through the target, the command), complete with outputs, or fail with the
   error; SIGTERM from an abort or a timeout stops the tool and records the failure;
   An approval milestone's step (``action: approval``) records the request and waits, polling the
   store, until a person runs ``imagebuild build approve BUILD_ID MILESTONE --reason TEXT`` (the step
   goes green and the job goes on) or ``imagebuild build reject`` (the step fails with the reason),
   or until the spec's ``timeout``; meanwhile ``should-run`` answers 11 (waiting for approval), which
   the gate lets through to the same wait. Re-running the job after a rejection asks again;
3. ``on_failure``, ``on_error`` and ``on_abort``: a ``put`` to the ``build-state`` resource with
   ``action: fail`` and the lease token the step left in its ``lease`` output. If the step already
   recorded its failure the lease is over and the put says so and succeeds; if the container died
   first, this records it, instead of waiting for the lease to expire.

``attempts`` is the milestone's retries + 1, ``timeout`` its execution timeout. Credentials appear
only as ``((var))`` placeholders resolved by Concourse's credential manager: the store URL, and
each Airflow connection the spec names, given to the step as the ``AIRFLOW_CONN_<ID>`` variable
the provider reads, exactly as in an Airflow deployment. The build id is ``((build_id))``; left
empty (``-v build_id=``), it is ``<pipeline>-<UTC date>``, so a nightly run re-triggered the same
day resumes the same build.

What a spec may put into the rendered config: values only, as structured YAML (the header is fixed
text: no file name, no spec text), and never a ``((`` (or the older ``{{``). Concourse fills a
``((var))`` anywhere in a pipeline from the team's credential manager, so a spec that could write
one (``store: s3://bkt/((team_secret))?endpoint_url=https://collector.example``) would hand a team
secret to whatever its text reaches. The free-text values (the store URL, the spec's file name and
folder) are refused naming the field; every other spec value is held to a name pattern by the spec
itself, and a last walk over the finished config (:func:`check_interpolation`) refuses any var
that is not one of the renderer's own.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from airflow_provider_imagebuild.build.ids import control_character
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.plan import PipelinePlan, Step, plan_from_spec
from airflow_provider_imagebuild.spec.pipeline import PipelineSpec
from airflow_provider_imagebuild.targets.registry import TARGET_ACTIONS

RESOURCE_TYPE = "imagebuild-state"
STATE_RESOURCE = "build-state"
SOURCE = "source"
LEASE_DIR = "lease"
IMAGE = {"type": "registry-image", "source": {"repository": "((imagebuild_image))", "tag": "((imagebuild_tag))"}}
# The vars the renderer writes itself (and ``connection_<id>``, one per connection the spec names).
OWN_VARS = frozenset(
    {"build_id", "imagebuild_image", "imagebuild_tag", "source_uri", "source_branch", "source_key", "imagebuild_store"}
)
_OWN_VAR_RE = re.compile(r"\(\((?P<name>[a-z0-9_]+)\)\)", re.ASCII)
INTERPOLATION = ("((", "{{")  # Concourse's vars, and the old fly templating


def spec_text(value: str, field: str) -> str:
    """A spec-derived text that reaches the rendered config: refused (naming ``field``) when
    Concourse would interpolate it or when it holds a line break or another control character."""
    for opener in INTERPOLATION:
        if opener in value:
            raise InvalidInput(
                field,
                f"must not contain {opener!r}: Concourse would fill it from the team's credential manager",
            )
    bad = control_character(value) or next((ascii(c)[1:-1] for c in value if c in "\t\n"), None)
    if bad:
        raise InvalidInput(field, f"must not contain control characters (found {bad})")
    return value


def check_interpolation(config: Any, where: str = "pipeline") -> None:
    """Every ``((`` in the finished config is a whole value the renderer wrote: one of
    :data:`OWN_VARS` or a ``connection_<id>``. Keys and values both; the field is the config path."""
    if isinstance(config, dict):
        for key, value in config.items():
            check_interpolation(key, f"{where} (a key)")
            check_interpolation(value, f"{where}.{key}")
    elif isinstance(config, list):
        for i, value in enumerate(config):
            check_interpolation(value, f"{where}[{i}]")
    elif isinstance(config, str) and any(opener in config for opener in INTERPOLATION):
        own = _OWN_VAR_RE.fullmatch(config)
        if own is None or not (own["name"] in OWN_VARS or own["name"].startswith("connection_")):
            raise InvalidInput(where, "holds a Concourse var the renderer did not write; refused")


def connection_ids(spec: PipelineSpec) -> list[str]:
    """The Airflow connections a spec's steps read: the target's (when a milestone uses the
    target), each publish destination's, each notification recipient's, and the store's."""
    found: list[str] = []
    settings: list[dict[str, Any]] = []
    if any(m.action in TARGET_ACTIONS for m in spec.milestones.values()):
        target = spec.target.model_dump()
        if spec.cloud != "aws":  # the AWS and local targets share one settings model
            target.pop("aws_conn_id", None)
        settings.append(target)
    for destination in spec.publish:
        for chosen in (destination.glance, destination.vsphere_library):
            if chosen is not None:
                settings.append(chosen.model_dump())
    if spec.notify is not None:  # the steps send the spec's notifications themselves
        for recipient in spec.notify.to:
            told = recipient.slack or recipient.sns or recipient.email or recipient.webhook
            if told is not None:
                settings.append(told.model_dump())
    settings.append({"store_conn_id": spec.store_conn_id})
    for values in settings:
        for key in sorted(values):
            if key.endswith("_conn_id") and isinstance(values[key], str) and values[key] not in found:
                found.append(values[key])
    return found


def var_name(conn_id: str) -> str:
    return "connection_" + re.sub(r"[^A-Za-z0-9_]", "_", conn_id)


def step_script(spec: PipelineSpec, step: Step, spec_file: str) -> str:
    """The POSIX shell a milestone's task runs (see the module's docstring); the spec's file name is
    quoted for the shell (a file called ``$(...).yaml`` is a name, not a command). A spec whose store is
    an Airflow connection (``store_conn_id``) has no gate: ``imagebuild build`` reads store URLs,
    and the milestone's own run skips what is reached anyway."""
    code, pipeline = step.code, spec.pipeline
    run_spec, engine = shlex.quote(spec_file), shlex.quote(f"concourse/{pipeline}")
    register_ok = "0|4) ;;  # 4: no such build yet; this step registers it" if code == 0 else "0) ;;"
    if step.action == "approval":  # 11: it waits for a decision already; the step waits with it
        register_ok = "0|11) ;;  # 11: waiting for imagebuild build approve|reject; the step waits for it"
    gate = f"""set +e
imagebuild build should-run "$build_id" {code}
rc=$?
set -e
case "$rc" in
  {register_ok}
  10) exit 0 ;;
  *) exit "$rc" ;;
esac
"""
    return f"""export IMAGEBUILD_LEASE_FILE="$PWD/{LEASE_DIR}/token"
build_id="${{BUILD_ID:-{pipeline}-$(date -u +%Y%m%d)}}"
echo "$build_id" > "{LEASE_DIR}/build_id"
cd "{SOURCE}/$SPEC_DIR"
{"" if spec.store_conn_id else gate}exec imagebuild milestone run {run_spec} {code} --build-id "$build_id" \\
  --engine {engine}
"""


def _hook(step: Step, how: str) -> dict[str, Any]:
    return {
        "put": STATE_RESOURCE,
        "inputs": [LEASE_DIR],
        "no_get": True,
        "params": {
            "action": "fail",
            "build_id_file": f"{LEASE_DIR}/build_id",
            "state": step.code,
            "token_file": f"{LEASE_DIR}/token",
            "error": f"Concourse: the step of milestone {step.code} ({step.key}) {how}; see the Concourse build log",
        },
    }


def milestone_step(spec: PipelineSpec, step: Step, spec_dir: str, spec_file: str) -> dict[str, Any]:
    params: dict[str, Any] = {"BUILD_ID": "((build_id))", "SPEC_DIR": spec_dir, "IMAGEBUILD_TRY": "1"}
    if not spec.store_conn_id:  # the gate's store: the spec's URL, else the deployment's
        params["IMAGEBUILD_STORE"] = spec_text(spec.store, "store") if spec.store else "((imagebuild_store))"
    for conn_id in connection_ids(spec):
        params[f"AIRFLOW_CONN_{conn_id.upper()}"] = f"(({var_name(conn_id)}))"
    task: dict[str, Any] = {
        "task": f"m{step.code:03d}-{step.key}".replace("_", "-"),
        "config": {
            "platform": "linux",
            "image_resource": IMAGE,
            "inputs": [{"name": SOURCE}],
            "outputs": [{"name": LEASE_DIR}],
            "params": params,
            "run": {"path": "sh", "args": ["-ec", step_script(spec, step, spec_file)]},
        },
        "on_failure": _hook(step, "failed"),
        "on_error": _hook(step, "errored"),
        "on_abort": _hook(step, "was aborted"),
    }
    retries = step.policy.retries or 0
    if retries:
        task["attempts"] = retries + 1
    if step.action == "approval":  # a person's wait: the approval's own timeout, and a minute to record it
        waits = step.milestone.timeout if step.milestone is not None else None
        if waits:
            task["timeout"] = f"{int(waits) + 60}s"
    elif step.policy.execution_timeout:
        task["timeout"] = f"{int(step.policy.execution_timeout)}s"
    return task


def _trigger(spec: PipelineSpec) -> dict[str, Any] | None:
    """A ``time`` resource for the spec's schedule where Concourse can say it: presets as an
    interval, a daily cron (``M H * * *``) as a start/stop window in UTC; else none."""
    schedule = spec.schedule or ""
    intervals = {"@hourly": "1h", "@daily": "24h", "@weekly": "168h"}
    if schedule in intervals:
        return {"interval": intervals[schedule]}
    m = re.fullmatch(r"(\d{1,2}) (\d{1,2}) \* \* \*", schedule)
    if m:
        minute, hour = int(m[1]), int(m[2])
        stop_minute = minute + 10
        return {
            "start": f"{hour:02d}:{minute:02d}",
            "stop": f"{(hour + stop_minute // 60) % 24:02d}:{stop_minute % 60:02d}",
            "location": "UTC",
        }
    return None


def render_pipeline(spec: PipelineSpec, spec_path: Path, repo_root: Path) -> dict[str, Any]:
    """The Concourse pipeline config (a mapping; :func:`render_yaml` writes it)."""
    plan: PipelinePlan = plan_from_spec(spec)
    spec_dir = spec_path.resolve().parent.relative_to(repo_root.resolve()).as_posix() or "."
    spec_text(spec_dir, "the spec's folder (relative to --repo-root)")
    spec_text(spec_path.name, "the spec's file name")
    spec_text(spec.pipeline, "pipeline")
    for conn_id in connection_ids(spec):
        spec_text(conn_id, f"connection id {conn_id}")
    resources: list[dict[str, Any]] = [
        {
            "name": SOURCE,
            "type": "git",
            "icon": "git",
            "source": {"uri": "((source_uri))", "branch": "((source_branch))", "private_key": "((source_key))"},
        },
        {
            "name": STATE_RESOURCE,
            "type": RESOURCE_TYPE,
            "icon": "database",
            "source": {"store": "((imagebuild_store))", "pipeline": spec.pipeline},
        },
    ]
    job_plan: list[dict[str, Any]] = [{"get": SOURCE}]
    trigger = _trigger(spec)
    if trigger is not None:
        resources.append({"name": "schedule", "type": "time", "icon": "clock-outline", "source": trigger})
        job_plan.append({"get": "schedule", "trigger": True})
    job_plan += [milestone_step(spec, step, spec_dir, spec_path.name) for step in plan.steps]
    config = {
        "resource_types": [{"name": RESOURCE_TYPE, "type": "registry-image", "source": IMAGE["source"]}],
        "resources": resources,
        "jobs": [
            {
                "name": f"build-{spec.pipeline}",
                "serial": True,
                "build_log_retention": {"builds": 100},
                "plan": job_plan,
            }
        ],
    }
    check_interpolation(config)
    return config


class _Dumper(yaml.SafeDumper):
    """Plain YAML a person reads: no anchors, scripts as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


# Fixed text: nothing of the spec is pasted into a comment, where a line break would end it.
HEADER = (
    "# Concourse pipeline rendered by `imagebuild concourse render` from a pipeline spec (its job: build-<pipeline>).\n"
    "# fly -t T set-pipeline -p NAME -c THIS_FILE -v build_id=ID (empty: <pipeline>-<UTC date>), and give the\n"
    "# vars below from your credential manager: imagebuild_image/imagebuild_tag (the provider's image),\n"
    "# source_uri/source_branch/source_key (the repository holding the spec), imagebuild_store (the store\n"
    "# URL), connection_<id> (each Airflow connection the spec names, as its JSON or URI form).\n"
)


def render_yaml(spec: PipelineSpec, spec_path: Path, repo_root: Path) -> str:
    config = render_pipeline(spec, spec_path, repo_root)
    return HEADER + yaml.dump(config, Dumper=_Dumper, sort_keys=False, width=120)
