"""Pipeline specs: the YAML a DAG author writes, validated fully at parse time.

Every error names the spec file, the key path and the reason (``pipelines/web.yaml:
milestones.45.action: unknown action 'pakcer'``), so a typo fails when the DAG file is parsed,
not an hour into a build.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airflow_provider_imagebuild.build.catalog import CATALOG, FIRST_STATE, MAX_TITLE, check_code
from airflow_provider_imagebuild.build.ids import CLOUDS, NAME_RE, Cloud
from airflow_provider_imagebuild.clouds.aws import AWS_REGION_RE
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.spec.airflow_options import (
    AccessControl,
    DefaultArgs,
    TaskPlacement,
    checked_access_control,
    checked_default_args,
)
from airflow_provider_imagebuild.spec.approval import Approver, OnTimeout, approval_problems
from airflow_provider_imagebuild.spec.azure import AzureTargetSpec
from airflow_provider_imagebuild.spec.boot import BOOT_CHECK_CLOUDS, BootSpec
from airflow_provider_imagebuild.spec.cost import CostSpec
from airflow_provider_imagebuild.spec.fields import ConnId, Seconds, WholeSeconds
from airflow_provider_imagebuild.spec.gcp import GcpTargetSpec
from airflow_provider_imagebuild.spec.lifecycle import DEFAULT_MAX_ATTEMPTS, MAX_MAX_ATTEMPTS, OnFailureSpec
from airflow_provider_imagebuild.spec.notify import NotifySpec
from airflow_provider_imagebuild.spec.openstack import OpenstackTargetSpec
from airflow_provider_imagebuild.spec.policy import PolicySpec
from airflow_provider_imagebuild.spec.problems import (
    Refused,
    SpecProblem,
    located,
    models_at,
    problems_error,
    pydantic_problems,
    raise_refused,
    split_problem,
)
from airflow_provider_imagebuild.spec.publish import PublishSpec, publish_problem
from airflow_provider_imagebuild.spec.retention import PipelineRetentionSpec
from airflow_provider_imagebuild.spec.reuse import ReuseSpec
from airflow_provider_imagebuild.spec.vsphere import VsphereTargetSpec
from airflow_provider_imagebuild.spec.watch import WatchSpec, watch_problem
from airflow_provider_imagebuild.spec.yaml_reader import (
    MAX_SPEC_BYTES,
    PLACEHOLDER_RE,
    Positions,
    load_yaml_with_positions,
    placeholders,
)
from airflow_provider_imagebuild.targets.registry import IMAGE_WATCH_CLOUDS, TARGET_ACTIONS, clouds_for

FILE_ACTIONS = {"packer": "template", "ansible": "playbook"}
SCHEDULE_PRESETS = {"@once", "@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@continuous"}


class SpecError(InvalidInput):
    """A spec that cannot be loaded: file, key path and reason of its first error, and every error
    in ``problems`` (each with its line and column when the file was read: ``spec check``)."""

    def __init__(self, file: str, path: str, reason: str, problems: list[SpecProblem] | None = None) -> None:
        self.file = file
        self.path = path
        self.problems = problems or [SpecProblem(path, reason)]
        more = [p.path or f"line {p.line}" for p in self.problems[1:]]
        if more:
            placeholders = all(p.reason.startswith("fill in ") for p in self.problems)
            reason = f"{reason} ({'also to fill in' if placeholders else 'also'}: {', '.join(more)})"
        super().__init__(f"{file}: {path}" if path else file, reason)

    @classmethod
    def of(cls, file: str, problems: list[SpecProblem]) -> SpecError:
        """The error of a spec with these problems (the first one named in its message)."""
        return cls(file, problems[0].path, problems[0].reason, problems)


class RetryPolicy(BaseModel):
    """Airflow retry settings; per milestone, falling back to the spec's ``defaults``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retries: int | None = Field(
        default=None,
        ge=0,
        le=100,
        description="how many times Airflow retries a failed attempt before the milestone waits for a person",
    )
    retry_delay: Seconds | None = Field(default=None, ge=0, description="seconds, or a duration like 5m")
    retry_exponential_backoff: bool | None = Field(
        default=None, description="whether the wait doubles after each retry, up to max_retry_delay"
    )
    max_retry_delay: Seconds | None = Field(default=None, gt=0, description="seconds, or a duration like 1h")
    execution_timeout: Seconds | None = Field(default=None, gt=0, description="seconds, or a duration like 1h30m")
    lease_seconds: WholeSeconds | None = Field(
        default=None, ge=5, le=86400, description="how long a milestone's lease lasts without a heartbeat (or 10m)"
    )

    def merged(self, defaults: RetryPolicy) -> RetryPolicy:
        values = {k: v if v is not None else getattr(defaults, k) for k, v in self.retry_settings().items()}
        return RetryPolicy.model_construct(**values)  # both sides are validated already (parse-time cost)

    def retry_settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in RetryPolicy.model_fields}


class MilestoneSpec(RetryPolicy, TaskPlacement):
    """One milestone of a pipeline: what reaches it, how it is retried, and where its task runs
    (Airflow's ``pool``, ``pool_slots``, ``queue``, ``priority_weight``: spec/airflow_options)."""

    action: Literal[
        "command", "noop", "packer", "bootstrap", "ansible", "seal", "launch_test", "approval", "publish"
    ] = Field(
        default="noop",
        description="what reaches the milestone; packer, ansible, seal, publish work on the target",
    )
    key: str | None = Field(
        default=None, description="the task id's key (s042_<key>); required for a code outside the catalog"
    )
    title: str | None = Field(
        default=None,
        max_length=MAX_TITLE,
        description="the task's display name, and the milestone's everywhere the build is shown "
        f"(at most {MAX_TITLE} characters)",
    )
    command: str | list[str] | None = Field(default=None, description="action command: an argv list, or a shell string")
    env: dict[str, str] = Field(default_factory=dict, description="action command: extra environment of the command")
    cwd: str | None = Field(
        default=None, description="action command: its working directory, relative to the spec's folder"
    )
    # packer: the template, its var files and variables, -only, -on-error, a manifest to read
    template: str | None = Field(default=None, description="action packer: the template, relative to the spec's folder")
    var_files: list[str] = Field(
        default_factory=list, description="action packer: var files given after the provider's own"
    )
    vars: dict[str, str] = Field(
        default_factory=dict, description="action packer: variables, passed in a var file only the worker can read"
    )
    only: list[str] = Field(default_factory=list, description="action packer: -only (the template's builds to run)")
    on_error: Literal["cleanup", "abort"] | None = Field(
        default=None, description="action packer: -on-error; abort keeps the instance and records it"
    )
    manifest: str | None = Field(
        default=None, description="action packer: the manifest the template writes, read for the image ids"
    )
    # ansible (and seal, which may run a clean-up playbook before capturing the image)
    playbook: str | None = Field(
        default=None, description="action ansible (or seal: a clean-up before the capture): the playbook"
    )
    extravars: dict[str, Any] = Field(
        default_factory=dict, description="action ansible: extra variables (passed in a file only the worker can read)"
    )
    # Whether a person may step over this milestone (``imagebuild build skip``); seal and publish
    # may not unless this says true.
    skippable: bool | None = Field(
        default=None,
        description="whether a person may skip it (build skip); seal, launch test and publish: only if true",
    )
    # Attempts at this milestone across every run before the store refuses another (spec/lifecycle)
    max_attempts: int | None = Field(
        default=None,
        ge=1,
        le=MAX_MAX_ATTEMPTS,
        description=f"attempts across every run before the store refuses another (default {DEFAULT_MAX_ATTEMPTS})",
    )
    # External inputs whose current value enters the milestone's fingerprint (spec/watch)
    watch: list[WatchSpec] = Field(
        default_factory=list,
        description="inputs that change without a file changing (a repository, an image family, a command's "
        "output): their current values enter the milestone's fingerprint",
    )
    # approval: who may approve, how long to wait, what a wait without a decision does (spec/approval)
    approvers: list[Approver] = Field(
        default_factory=list,
        description="action approval: who may approve or reject: user names (alice) and roles (role:Op)",
    )
    timeout: Seconds | None = Field(
        default=None,
        gt=0,
        description="action approval: how long to wait for a decision (seconds, or a duration like 8h); none: forever",
    )
    on_timeout: OnTimeout | None = Field(
        default=None,
        description="action approval: what a timeout does: fail (the default; a clear asks again) or reject",
    )

    @model_validator(mode="before")
    @classmethod
    def _launch_test_names(cls, raw: Any) -> Any:
        """A launch test at a custom code (97, between the seal and publish) needs no key or title
        of its own: ``launch_test``, "Launch test of the sealed image"."""
        if isinstance(raw, dict) and raw.get("action") == "launch_test":
            return {"key": "launch_test", "title": "Launch test of the sealed image", **raw}
        return raw

    @field_validator("key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", value):
            raise ValueError("must be lowercase letters, digits and '_' (at most 40), starting with a letter")
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and (not value or not all(isinstance(v, str) and v for v in value)):
            raise ValueError("an argv list must be non-empty strings")
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("env")
    @classmethod
    def _env(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @model_validator(mode="after")
    def _action_fields(self) -> MilestoneSpec:
        needed = FILE_ACTIONS.get(self.action)
        if needed and not getattr(self, needed):
            raise ValueError(f"action {self.action!r} needs '{needed}'")
        if self.template is not None and self.action != "packer":
            raise ValueError("'template' needs action: packer")
        if self.playbook is not None and self.action not in ("ansible", "seal"):
            raise ValueError("'playbook' needs action: ansible or seal")
        if self.action == "command" and self.command is None:
            raise ValueError("action 'command' needs 'command' (an argv list or a shell string)")
        if self.action == "noop" and self.command is not None:
            raise ValueError("'command' needs action: command")
        twice = watch_problem(self.watch)
        if twice:
            raise ValueError(twice)
        problems = approval_problems(self.action, self.approvers, self.timeout, self.on_timeout)
        if problems:
            raise ValueError("; ".join(problems))
        return self


class TargetSpec(BaseModel):
    """Where and how the build host runs and where the image is published (per cloud).

    ``connection`` overrides the Ansible connection to the build host (for example
    ``{ansible_connection: community.general.chroot, ansible_host: /srv/rootfs}`` in tests, or a
    bastion's SSH settings).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    aws_conn_id: ConnId = Field(
        default="aws_default", description="the Amazon provider's connection: credentials, region, endpoint"
    )
    region: str | None = Field(default=None, description="the EC2 region the build runs in; else the connection's")
    source_image: str | None = Field(
        default=None,
        description="what the first packer (or bootstrap) milestone starts from: an AMI id, or a name pattern "
        "(RHEL-8.10.0_HVM-*-x86_64-*) resolved to the newest AMI of source_image_owners when the milestone runs",
    )
    source_image_owners: list[str] = Field(
        default_factory=list,
        description="the accounts (ids, or self, amazon, aws-marketplace) whose AMIs a source_image name pattern "
        "resolves to; required with a name pattern (anyone can publish an AMI under a vendor's name)",
    )
    instance_type: str = Field(default="t3.micro", description="the build host's and Packer's instance type")
    subnet_id: str | None = Field(default=None, description="the subnet build hosts are launched in")
    security_group_ids: list[str] = Field(default_factory=list, description="security groups of the build host")
    key_name: str | None = Field(default=None, description="an EC2 key pair for the build host")
    ssh_user: str = Field(default="ec2-user", description="the user Ansible logs in to the build host as")
    ssh_private_key_file: str | None = Field(
        default=None, description="the private half of the key pair, on the workers"
    )
    publish_regions: list[str] = Field(default_factory=list, description="regions the final AMI is copied to")
    share_accounts: list[str] = Field(
        default_factory=list, description="AWS accounts the final AMI and its copies are shared with"
    )
    ssm_parameter: str | None = Field(
        default=None, description="an SSM parameter written with the new image id in each region"
    )
    keep_checkpoints: list[int] = Field(
        default_factory=list,
        description="checkpoint images kept after the seal (a redo needs one); the others are deleted",
    )
    connection: dict[str, str] = Field(
        default_factory=dict, description="Ansible connection settings for the build host (a bastion; chroot in tests)"
    )
    # local: where build hosts (root filesystems) live and where images are published
    work_dir: str | None = Field(
        default=None, description="local: where build hosts live ($IMAGEBUILD_WORK, else /var/tmp/imagebuild)"
    )
    catalog: str | None = Field(
        default=None,
        description="local: the catalog publish writes to ($IMAGEBUILD_CATALOG, /var/lib/imagebuild/catalog)",
    )
    catalog_keep: int | None = Field(default=None, ge=1, description="published versions kept per pipeline")
    ssh_public_key: str | None = Field(
        default=None, description="the public key the build host accepts; without it each build makes a key pair"
    )
    # the boot checks of the green and the sealed image, and the launch test's settings (spec/boot)
    boot: BootSpec = Field(
        default=BootSpec(),
        description="the boot checks of the green and the sealed image, and the launch test's settings",
    )

    @field_validator("region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and not AWS_REGION_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a region name (like eu-west-1)")
        return value

    @field_validator("publish_regions")
    @classmethod
    def _regions(cls, value: list[str]) -> list[str]:
        for region in value:
            if not AWS_REGION_RE.fullmatch(region):
                raise ValueError(f"{region!r} is not a region name (like eu-west-1)")
        if len(set(value)) != len(value):
            raise ValueError("lists a region twice")
        return value

    @field_validator("source_image_owners")
    @classmethod
    def _owners(cls, value: list[str]) -> list[str]:
        for owner in value:  # what DescribeImages' Owners takes: an account id or one of EC2's aliases
            if not re.fullmatch(r"[0-9]{12}|self|amazon|aws-marketplace|aws-backup-vault", owner):
                raise ValueError(
                    f"{owner[:40]!r} is not an AMI owner: a 12-digit account id, self, amazon, aws-marketplace or "
                    "aws-backup-vault"
                )
        return value

    @field_validator("share_accounts")
    @classmethod
    def _accounts(cls, value: list[str]) -> list[str]:
        for account in value:
            if not re.fullmatch(r"[0-9]{12}", account):
                raise ValueError(f"{account!r} is not a 12-digit AWS account id")
        return value

    @field_validator("ssm_parameter")
    @classmethod
    def _ssm(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"/[A-Za-z0-9_.\-/]{1,1000}", value):
            raise ValueError("must be an SSM parameter path like /imagebuild/web/image_id")
        return value


# The ``target:`` model of each cloud (the others share TargetSpec: AWS settings, local's paths).
TARGET_MODELS: dict[str, type[BaseModel]] = {
    "azure": AzureTargetSpec,
    "gcp": GcpTargetSpec,
    "vsphere": VsphereTargetSpec,
    "openstack": OpenstackTargetSpec,
}
# The settings of TargetSpec the local target reads (the others are AWS's, refused on cloud: local).
LOCAL_TARGET_KEYS = frozenset(
    {"connection", "work_dir", "catalog", "catalog_keep", "ssh_public_key", "ssh_private_key_file", "boot"}
    | {"keep_checkpoints"}
)
AnyTargetSpec = TargetSpec | AzureTargetSpec | GcpTargetSpec | VsphereTargetSpec | OpenstackTargetSpec


class PipelineSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pipeline: str = Field(description="the pipeline's name: the DAG id is imagebuild_<pipeline> unless dag_id is given")
    dag_id: str | None = Field(default=None, description="the DAG's id, instead of imagebuild_<pipeline>")
    cloud: Cloud = Field(description="where the image is built: the target, and which target: settings apply")
    image_type: str = Field(description="what the image is for (base, webserver...): recorded on every build")
    os: str = Field(default="", description="the image's OS, a label recorded on every build (debian-12, rhel-8.10)")
    description: str = Field(default="", description="the DAG's description")
    schedule: str | None = Field(
        default=None, description="a cron expression or a preset (@daily, @weekly...); null: triggered by hand"
    )
    start_date: datetime = Field(default=datetime(2026, 1, 1), description="the DAG's start date (YYYY-MM-DD)")
    catchup: bool = Field(default=False, description="whether Airflow runs the schedule's missed intervals")
    # Builds of this pipeline that run at once (Airflow's max_active_runs). One by default: a
    # nightly pipeline should not overlap itself; raise it for a pipeline triggered per variant.
    max_active_runs: int = Field(1, ge=1, le=64, description="builds of this pipeline that run at once")
    store: str | None = Field(
        default=None, description="the state store's URL (sqlite:///abs/path.db, s3://..., dynamodb://...)"
    )
    store_conn_id: ConnId | None = Field(
        default=None, description="an imagebuild_state connection holding the store; neither: the deployment's"
    )
    defaults: RetryPolicy = Field(
        default=RetryPolicy(),
        description="retry policy of every milestone (each may override it); durations in seconds or like 5m",
    )
    # Airflow's own settings (spec/airflow_options): every task's default_args, and who may do what on the DAG
    default_args: DefaultArgs | None = Field(
        default=None, description="Airflow's default_args of every task (owner, retries, pool...)"
    )
    access_control: AccessControl | None = Field(
        default=None, description="who may do what on the DAG: role -> actions, or role -> resource -> actions"
    )
    include_standard: bool = Field(
        default=False, description="add the catalog's standard milestones the spec does not list (as no-ops)"
    )
    tags: list[str] = Field(default_factory=list, description="the DAG's tags")
    target: AnyTargetSpec = Field(
        default=TargetSpec(),
        description="where the build host runs and where the image is published (this cloud's settings)",
    )
    checkpoints: list[int] = Field(
        default_factory=list, description="milestones after which a checkpoint image is taken (10 always is)"
    )
    milestones: dict[int, MilestoneSpec] = Field(
        default_factory=dict, description="milestone code (1-100) -> its action, settings and retry policy"
    )
    # Where the sealed image goes (spec/publish); empty: through the target alone
    publish: list[PublishSpec] = Field(
        default_factory=list, description="where the sealed image goes; empty: through the target alone"
    )
    # Who hears of failures, stuck builds and deliveries (spec/notify)
    notify: NotifySpec | None = Field(default=None, description="who hears of failures, stuck builds and deliveries")
    # What becomes of a failed build nobody resumes: park its host, abandon it after a while (spec/lifecycle)
    on_failure: OnFailureSpec = Field(
        default=OnFailureSpec(),
        description="what becomes of a failed build nobody resumes: its host parked, then abandoned",
    )
    # What its resources cost, over the cloud's example prices (spec/cost.py; build/prices.py)
    cost: CostSpec | None = Field(
        default=None, description="what the build's resources cost (prices; else the cloud's example prices)"
    )
    # How many published images stay, and how long (spec/retention; imagebuild retention); per destination too
    retention: PipelineRetentionSpec | None = Field(
        default=None,
        description="published images kept: keep_last N delivered builds', keep_days D; absent: all kept "
        "(a publish destination's own retention replaces it)",
    )
    # Start from an earlier build's matching work (spec/reuse; build/reuse.py); absent: every build is cold
    reuse: ReuseSpec | None = Field(
        default=None,
        description="a new build starts from the newest earlier checkpoint whose fingerprint chain matches, and "
        "reuses the last delivered image when nothing changed; absent: every build runs every milestone",
    )
    # The team's rules for the image's packages, checked at final validation (90) (spec/policy; sbom/policy)
    policy: PolicySpec | None = Field(
        default=None,
        description="packages required and forbidden, version floors, a license allow-list and advisory files, "
        "checked at milestone 90 against the build host's package database; a violation fails it (not retried)",
    )

    @field_validator("pipeline", "image_type")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.fullmatch(value) or ".." in value:
            raise ValueError("must be 1-128 ASCII letters, digits, '.', '_' or '-' (no '..')")
        return value

    @field_validator("os")
    @classmethod
    def _os(cls, value: str) -> str:
        if value and (not NAME_RE.fullmatch(value) or ".." in value):
            raise ValueError("must be ASCII letters, digits, '.', '_' or '-' (no '..')")
        return value

    @field_validator("dag_id")
    @classmethod
    def _dag_id(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{1,200}", value):
            raise ValueError("must be letters, digits, '_', '.' or '-'")
        return value

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str | None) -> str | None:
        if value is None or value in SCHEDULE_PRESETS:
            return value
        from croniter import croniter

        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is neither a cron expression nor one of {sorted(SCHEDULE_PRESETS)}")
        return value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        if value is not None:
            from airflow_provider_imagebuild.store.url import parse_store_url

            parse_store_url(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _target_model(cls, raw: Any) -> Any:
        """Validate ``target:`` with its cloud's model (an AWS key in an Azure spec is unknown)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("target", {}), dict):
            return raw
        cloud = str(raw.get("cloud"))
        model = TARGET_MODELS.get(cloud, TargetSpec)
        target = raw.get("target") or {}
        problems = []
        if cloud == "local":  # TargetSpec holds AWS's settings too: the local target takes none of them
            problems = [
                (str(key), "unknown key for cloud local (an aws setting; the local target builds on the worker)")
                for key in target
                if key in TargetSpec.model_fields and key not in LOCAL_TARGET_KEYS
            ]
        try:
            validated: Any = model.model_validate(target)
        except ValidationError as exc:
            problems += [(p.path, p.reason) for p in pydantic_problems(exc, target, model, models_at, cloud)]
        return {**raw, "target": Refused(problems) if problems else validated}

    _refused_target = field_validator("target", "default_args", "access_control", mode="before")(raise_refused)

    @model_validator(mode="before")
    @classmethod
    def _airflow_settings(cls, raw: Any) -> Any:
        """``default_args:`` and ``access_control:`` checked by spec/airflow_options, which names the
        nearest known setting, permission or resource for a typo."""
        if not isinstance(raw, dict):
            return raw
        checked = dict(raw)
        for name, check in (("default_args", checked_default_args), ("access_control", checked_access_control)):
            if raw.get(name) is not None:
                try:
                    checked[name] = check(raw[name])
                except ValueError as exc:  # "default_args.retires: unknown Airflow setting; did you mean..."
                    found = [split_problem(text, [name]) for text in getattr(exc, "problems", [str(exc)])]
                    checked[name] = Refused([(path.removeprefix(name).lstrip("."), reason) for path, reason in found])
        return checked

    @model_validator(mode="after")
    def _consistent(self) -> PipelineSpec:
        """The checks across keys; every inconsistency is reported, not only the first."""
        problems = [split_problem(text, PipelineSpec.model_fields) for text in self._inconsistencies()]
        if problems:
            raise problems_error(problems)
        return self

    def _inconsistencies(self) -> Iterator[str]:
        """``key.path: reason`` of each check across keys the spec fails."""
        if self.store and self.store_conn_id:
            yield "give either 'store' or 'store_conn_id', not both"
        if self.default_args is not None:
            for name in sorted(set(RetryPolicy.model_fields) & self.default_args.model_fields_set):
                if name in self.defaults.model_fields_set:
                    yield (
                        f"default_args.{name}: also given as defaults.{name}; keep one (both apply to every milestone)"
                    )
        keys: dict[str, int] = {}
        for code, milestone in self.milestones.items():
            if code == FIRST_STATE:
                yield "milestones.0: milestone 0 registers the build and takes no action"
                continue
            if code not in CATALOG and not milestone.key:
                yield f"milestones.{code}: custom code {code} needs a 'key'"
                continue
            key = milestone.key or CATALOG[code].key
            if key in keys:
                yield f"milestones.{code}: key {key!r} is also used by milestone {keys[key]}"
            keys[key] = code
            clouds = clouds_for(milestone.action) if milestone.action in TARGET_ACTIONS else ()
            if milestone.action in TARGET_ACTIONS and self.cloud not in clouds:
                yield (
                    f"milestones.{code}: action {milestone.action!r} is not available for cloud {self.cloud!r} "
                    f"(only {', '.join(clouds)})"
                )
        if isinstance(self.target, (AzureTargetSpec, GcpTargetSpec, VsphereTargetSpec, OpenstackTargetSpec)):
            actions: set[str] = {m.action for m in self.milestones.values()}
            for missing in self.target.missing_for(actions):
                yield f"target.{missing}: is required by this pipeline's {sorted(actions & TARGET_ACTIONS)} milestones"
        try:
            self._boot_consistent()
        except ValueError as exc:
            yield str(exc)
        has_publish = any(m.action == "publish" for m in self.milestones.values())
        problem = publish_problem(self.publish, self.cloud, has_publish)
        if problem:
            yield f"{problem[0]}: {problem[1]}"
        source = getattr(self.target, "source_image", None)
        owners = getattr(self.target, "source_image_owners", None)
        named = source and not str(source).startswith("ami-") and not PLACEHOLDER_RE.search(str(source))
        if self.cloud == "aws" and named and not owners:  # a placeholder is refused as one (fill it in)
            yield (
                "target.source_image_owners: is required when target.source_image is a name pattern "
                f"({source!r}): name the accounts whose AMIs it may be (a vendor's id, self, amazon)"
            )
        for code, milestone in self.milestones.items():
            if any(w.image for w in milestone.watch) and self.cloud not in IMAGE_WATCH_CLOUDS:
                yield (
                    f"milestones.{code}.watch: 'image: source' is not available for cloud {self.cloud!r} yet "
                    f"(only {', '.join(IMAGE_WATCH_CLOUDS)})"
                )
        for code in [*self.checkpoints, *self.target.keep_checkpoints]:
            if code not in self.milestones or self.milestones[code].action not in ("packer", "bootstrap", "ansible"):
                yield f"checkpoints: {code} is not a packer, bootstrap or ansible milestone of this spec"
        if self.policy is not None and (90 not in self.milestones or self.milestones[90].action != "ansible"):
            yield (
                "policy: is checked at milestone 90 (final validation) on the build host, after its playbook: "
                "give milestone 90 an ansible action"
            )

    def _boot_consistent(self) -> None:
        boot = getattr(self.target, "boot", None)
        if boot is None:
            return
        self._launch_test_consistent(boot)
        if self.cloud not in BOOT_CHECK_CLOUDS:
            if "boot" in self.target.model_fields_set:
                raise ValueError(
                    f"target.boot: boot checks are not available for cloud {self.cloud!r} yet "
                    f"(only {', '.join(BOOT_CHECK_CLOUDS)})"
                )
            return
        target = self.target
        keyless = isinstance(target, TargetSpec) and target.ssh_public_key and not target.ssh_private_key_file
        if boot.enabled and keyless:
            raise ValueError(
                "target.ssh_private_key_file: the boot checks log in with the private half of target.ssh_public_key: "
                "give its file, or leave ssh_public_key out (each build then makes a key of its own)"
            )

    def _launch_test_consistent(self, boot: BootSpec) -> None:
        """A launch test boots the sealed image before it is published: one, after a seal and
        before any publish, with the before-publish boot on, and a key to log in with on a cloud
        (the action's cloud is checked with the other target actions)."""
        tests = sorted(code for code, m in self.milestones.items() if m.action == "launch_test")
        if not tests:
            return
        code = tests[0]
        if len(tests) > 1:
            raise ValueError(f"milestones.{tests[1]}: only one launch_test milestone (there is one at {code})")
        seals = [c for c, m in self.milestones.items() if m.action == "seal"]
        if not any(c < code for c in seals):
            raise ValueError(f"milestones.{code}: a launch_test tests the sealed image: a seal must come first")
        publish = [c for c, m in self.milestones.items() if m.action == "publish" and c < code]
        if publish:
            raise ValueError(f"milestones.{code}: a launch_test must come before publish (milestone {publish[0]})")
        if boot.before_publish is False:
            raise ValueError(
                "target.boot.before_publish: is false, which turns off booting the sealed image before it is "
                f"published, but milestone {code} is a launch_test that does exactly that"
            )
        if self.cloud != "local" and not getattr(self.target, "ssh_private_key_file", None):
            raise ValueError(
                f"target.ssh_private_key_file: milestone {code}'s launch test logs in to its test instance with it "
                "(the private half of the key the instance accepts)"
            )

    @property
    def effective_dag_id(self) -> str:
        return self.dag_id or f"imagebuild_{self.pipeline.replace('-', '_')}"


def _code_problems(raw: dict[Any, Any]) -> Iterator[SpecProblem]:
    milestones = raw.get("milestones")
    if milestones is None:
        return
    if not isinstance(milestones, dict):
        yield SpecProblem("milestones", "must be a mapping of milestone code to settings")
        return
    for code in milestones:
        try:
            check_code(code, "code")
        except InvalidInput as exc:
            yield SpecProblem(f"milestones.{code}", exc.reason)
            continue
        if code == FIRST_STATE:  # here as well as in the checks across keys, which run only on valid fields
            yield SpecProblem("milestones.0", "milestone 0 registers the build and takes no action")


def _nul_problems(value: Any, path: str) -> Iterator[SpecProblem]:
    """A NUL (``"\\0"`` in a quoted YAML string) can reach no command line, environment or file
    name: refused where it stands rather than failing the milestone that runs it."""
    if isinstance(value, str):
        if "\x00" in value:
            yield SpecProblem(path or "(document)", "must not contain a NUL character")
    elif isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            yield from _nul_problems(key, where)
            yield from _nul_problems(item, where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nul_problems(item, f"{path}[{i}]")


def _file_problems(spec: PipelineSpec, base: Path) -> Iterator[SpecProblem]:
    for code, milestone in spec.milestones.items():
        for name in ("template", "playbook"):
            value = getattr(milestone, name)
            if value is not None and not (base / value).is_file():
                yield SpecProblem(f"milestones.{code}.{name}", f"file {value} not found (in {base})")
        for i, var_file in enumerate(milestone.var_files):
            if not (base / var_file).is_file():
                yield SpecProblem(f"milestones.{code}.var_files[{i}]", f"file {var_file} not found (in {base})")
        if isinstance(milestone.command, list):
            exe = milestone.command[0]
            if "/" in exe and not Path(exe).is_absolute():
                cwd = base / (milestone.cwd or ".")
                if not (cwd / exe).exists():
                    yield SpecProblem(f"milestones.{code}.command[0]", f"file {exe} not found (in {cwd})")
        if milestone.cwd and not (base / milestone.cwd).is_dir():
            yield SpecProblem(f"milestones.{code}.cwd", f"directory {milestone.cwd} not found")
    boot = getattr(spec.target, "boot", None)
    if boot is not None and boot.playbook is not None and not (base / boot.playbook).is_file():
        yield SpecProblem("target.boot.playbook", f"file {boot.playbook} not found (in {base})")
    for i, source in enumerate(spec.policy.advisories if spec.policy is not None else []):
        if not source.startswith(("http://", "https://")) and not (base / source).is_file():  # a URL is read at 90
            yield SpecProblem(f"policy.advisories[{i}]", f"file {source} not found (in {base})")


def _with_boot_playbook(spec: PipelineSpec, base: Path) -> PipelineSpec:
    """The verification playbook of ``target.boot``, relative to the spec's folder like every
    playbook; returned with its path made absolute, which is what the operators get."""
    boot = getattr(spec.target, "boot", None)
    if boot is None or boot.playbook is None:
        return spec
    resolved = boot.model_copy(update={"playbook": str((base / boot.playbook).absolute())})
    return spec.model_copy(update={"target": spec.target.model_copy(update={"boot": resolved})})


def _under(path: str, found: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``found`` or below one (one error per value, not two)."""
    return any(path == p or path.startswith((f"{p}.", f"{p}[")) for p in found)


def parse_spec(
    raw: Any, file: str = "<spec>", base: Path | None = None, positions: Positions | None = None
) -> PipelineSpec:
    """Validate a spec already loaded from YAML (``base``: directory for relative files;
    ``positions``: where its keys stand, for the line and column of each error). Raises a
    ``SpecError`` holding every problem of the spec, not only the first."""
    if not isinstance(raw, dict):
        raise SpecError.of(
            file,
            located(
                [SpecProblem("", "must be a YAML mapping with at least 'pipeline', 'cloud', 'image_type'")], positions
            ),
        )
    problems = [*_code_problems(raw), *_nul_problems(raw, "")]
    # a value `imagebuild init` left for a person to fill in
    problems += [SpecProblem(path, f"fill in {what}") for path, what in placeholders(raw)]
    spec: PipelineSpec | None = None
    try:
        spec = PipelineSpec.model_validate(raw)
    except ValidationError as exc:
        cloud = str(raw.get("cloud"))
        found = pydantic_problems(exc, raw, PipelineSpec, models_at, cloud)
        problems += [p for p in found if not _under(p.path, [q.path for q in problems])]
    except InvalidInput as exc:
        problems.append(SpecProblem(exc.field, exc.reason))
    if spec is not None and base is not None:
        problems += _file_problems(spec, base)
    if problems:
        raise SpecError.of(file, located(problems, positions))
    assert spec is not None
    return _with_boot_playbook(spec, base) if base is not None else spec


def _read_spec(path: str | Path) -> tuple[PipelineSpec, Positions]:
    """One YAML spec file validated, and where its keys stand."""
    spec_path = Path(path)
    name = str(spec_path)
    try:
        size = spec_path.stat().st_size
        if size > MAX_SPEC_BYTES:
            raise SpecError(name, "", f"is {size} bytes; a spec may be at most {MAX_SPEC_BYTES // 1024} KiB")
        data = spec_path.read_bytes()
    except OSError as exc:
        raise SpecError(name, "", f"cannot be read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise SpecError(
            name, "", f"is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); save it as UTF-8"
        ) from None
    try:
        raw, positions = load_yaml_with_positions(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = f"is not valid YAML: {getattr(exc, 'problem', exc)}"
        if mark is None:
            raise SpecError(name, "", reason) from None
        where = SpecProblem("", reason, mark.line + 1, mark.column + 1)
        raise SpecError(name, f"line {mark.line + 1}", reason, [where]) from None
    return parse_spec(raw, name, spec_path.parent, positions), positions


def load_spec(path: str | Path) -> PipelineSpec:
    """Read and validate one YAML spec file."""
    return _read_spec(path)[0]


PIPELINES_ENV = "IMAGEBUILD_PIPELINES_DIR"


def pipelines_folder(folder: str | Path | None = None) -> Path:
    """Where the specs are: ``folder``, else ``$IMAGEBUILD_PIPELINES_DIR``, else ``dags/pipelines``."""
    return Path(folder or os.environ.get(PIPELINES_ENV) or Path.cwd() / "dags" / "pipelines")


def spec_files(folder: Path) -> list[Path]:
    """The spec files of a folder (``*.yaml`` and ``*.yml``), in a stable order."""
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def load_specs(paths: Iterable[Path]) -> tuple[list[tuple[Path, PipelineSpec]], list[SpecError]]:
    """Every spec validated on its own, so that one broken file does not hide the others; a DAG id
    that an earlier file already uses is an error of the later file. Used by the DAG file and by
    ``imagebuild spec check``, so that both accept and refuse exactly the same specs."""
    loaded: list[tuple[Path, PipelineSpec]] = []
    errors: list[SpecError] = []
    used: dict[str, Path] = {}
    for path in paths:
        try:
            spec, positions = _read_spec(path)
            dag_id = spec.effective_dag_id
            if dag_id in used:
                key = "dag_id" if spec.dag_id else "pipeline"
                reason = f"DAG id {dag_id} is already used by {used[dag_id]}"
                raise SpecError(str(path), key, reason, located([SpecProblem(key, reason)], positions))
        except SpecError as exc:
            errors.append(exc)
            continue
        used[spec.effective_dag_id] = path
        loaded.append((path, spec))
    return loaded, errors


__all__ = [
    "CLOUDS",
    "PIPELINES_ENV",
    "AnyTargetSpec",
    "AzureTargetSpec",
    "BootSpec",
    "GcpTargetSpec",
    "MilestoneSpec",
    "PipelineSpec",
    "RetryPolicy",
    "SpecError",
    "TargetSpec",
    "load_spec",
    "load_specs",
    "parse_spec",
    "pipelines_folder",
    "spec_files",
]
