"""The ``packer`` action: ``packer build -machine-readable`` of a template.

Packer gets the build's identity and the target's settings through a generated JSON var file
(only the variables the template declares, so Packer prints no warnings about the rest), the
spec's var files and ``vars`` as ``-var``, and credentials through its environment (never on the
command line). Its UI goes to the task log decoded; the images of *this* run become the
milestone's outputs (per region), and the image is a checkpoint a build host can start from.
``on_kill`` sends SIGINT so that Packer removes its instance, key pair and security group.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from airflow.sdk.exceptions import AirflowException

from airflow_provider_imagebuild.build.record import BuildRecord
from airflow_provider_imagebuild.errors import InvalidInput
from airflow_provider_imagebuild.operators.session import MilestoneSession
from airflow_provider_imagebuild.operators.target import TargetMilestoneOperator
from airflow_provider_imagebuild.targets.base import CHECKPOINT_OUTPUT, IMAGE_OUTPUT
from airflow_provider_imagebuild.toolchain.locate import TOOLS_DIR_ENV, find_tool
from airflow_provider_imagebuild.toolchain.packer import PackerRun, manifest_images, plugin_env
from airflow_provider_imagebuild.toolchain.private import private_json

VARIABLE_RE = re.compile(r'^\s*variable\s+"([A-Za-z_][A-Za-z0-9_-]*)"', re.MULTILINE)


def declared_variables(template: Path) -> set[str]:
    """Variable names declared by an HCL2 template (a file, or every ``*.pkr.hcl`` of a directory)."""
    files = sorted(template.glob("*.pkr.hcl")) if template.is_dir() else [template]
    names: set[str] = set()
    for file in files:
        names.update(VARIABLE_RE.findall(file.read_text(encoding="utf-8")))
    return names


def earlier_image(build: BuildRecord, before: int) -> tuple[int, str] | None:
    """The newest image an earlier milestone made, with that milestone's code."""
    for code in sorted(build.completed, reverse=True):
        if code < before and build.milestones[code].outputs.get(IMAGE_OUTPUT):
            return code, str(build.milestones[code].outputs[IMAGE_OUTPUT])
    return None


class PackerMilestoneOperator(TargetMilestoneOperator):
    template_fields: Sequence[str] = ("variables",)
    ui_color = "#e6f6ee"
    builds_on_a_host = True  # Packer's own build VM, for the attempt's usage (cost)

    def __init__(
        self,
        *,
        template: str,
        var_files: Sequence[str] = (),
        variables: Mapping[str, str] | None = None,
        only: Sequence[str] = (),
        on_error: Literal["cleanup", "abort"] | None = None,
        manifest: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.template = template
        self.var_files = list(var_files)
        self.variables = dict(variables or {})
        self.only = list(only)
        self.on_error = on_error
        self.manifest = manifest
        self._packer: PackerRun | None = None

    def source_image(self, build: BuildRecord) -> str:
        """What Packer starts from: the newest image an earlier milestone made, if it is provably
        the build's (a value written into the store by hand is refused), else the spec's
        ``target.source_image``."""
        found = earlier_image(build, self.state)
        if found is None:
            return getattr(self.target_settings, "source_image", None) or ""  # vSphere: target.template
        code, image = found
        if not self.get_target().owns_image(build, image):
            raise InvalidInput(
                f"milestones.{code}.outputs.{IMAGE_OUTPUT}",
                f"{image} is not build {build.build_id}'s image; Packer starts only from the build's own images",
            )
        return image

    def standard_values(self, build: BuildRecord, manifest: Path) -> dict[str, str]:
        target = self.get_target()
        return {
            "build_id": build.build_id,
            "milestone": str(self.state),
            "pipeline": self.pipeline,
            "image_type": self.image_type,
            "os": self.os_name,
            "image_name": target.packer_image_name(build, self.pipeline, self.state),
            "source_image": target.packer_source_image(self.source_image(build)),
            "packer_manifest": str(manifest),
            **target.packer_vars(),
        }

    def argv(self, packer: str, var_file: Path, spec_vars: Path | None = None) -> list[str]:
        """Packer's command line: files only. Values are in var files readable by this user only
        (the build's values first, then the spec's var files, then the spec's ``vars``, which win
        as ``-var`` would), never on a command line that every local user can read."""
        argv = [packer, "build", "-machine-readable", "-color=false", f"-var-file={var_file}"]
        argv += [f"-var-file={f}" for f in self.var_files]
        if spec_vars is not None:
            argv.append(f"-var-file={spec_vars}")
        if self.only:
            argv.append("-only=" + ",".join(self.only))
        if self.on_error:
            argv.append(f"-on-error={self.on_error}")
        argv.append(self.template)
        return argv

    def run_milestone(self, context: Any, build: BuildRecord, session: MilestoneSession) -> dict[str, Any]:
        packer = find_tool("packer")
        if packer is None:
            raise InvalidInput("packer", f"no packer binary beside the worker's Python, in ${TOOLS_DIR_ENV} or on PATH")
        template = Path(self.template)
        if not template.exists():
            raise InvalidInput("template", f"{template} not found")
        declared = declared_variables(template)
        adopted = self.get_target().packer_artifacts(build, self.state)
        if adopted:
            self.log_output(
                f"an earlier attempt of milestone {self.state} already made {', '.join(adopted.values())}: "
                "adopted instead of running Packer again"
            )
            return self.claimed(build, adopted, adopted=True)
        env = {
            **os.environ,
            **plugin_env(packer),
            **self.get_target().packer_env(),
            "PACKER_NO_COLOR": "1",
            "CHECKPOINT_DISABLE": "1",
        }
        with tempfile.TemporaryDirectory(prefix="imagebuild-packer-") as tmp:
            manifest = Path(tmp) / "manifest.json"
            values = {k: v for k, v in self.standard_values(build, manifest).items() if k in declared}
            var_file = private_json(Path(tmp) / "imagebuild.pkrvars.json", values)
            spec_vars = private_json(Path(tmp) / "spec.pkrvars.json", self.variables) if self.variables else None
            argv = self.argv(packer, var_file, spec_vars)
            self.log_output("running " + " ".join(argv))
            run = self._packer = PackerRun(
                argv,
                env=env,
                cwd=str(template.parent if template.is_file() else template),
                log=self.log_output,
            )
            if self._cancelled:  # killed before Packer started
                raise AirflowException(f"packer stopped: {self._cancelled}")
            result = run.run()
            if result.code == 0 and "packer_manifest" in values and manifest.exists():
                result.manifest = manifest_images(manifest)
        self._packer = None
        if result.code != 0 or self._cancelled:
            kept = result.instances
            if self.on_error == "abort" and kept and not self._cancelled:
                session.set_metadata({"packer_kept_instance": kept[-1]}, actor=f"milestone {self.state}")
                self.log.warning("packer kept instance %s for debugging (on_error: abort)", kept[-1])
            if self._cancelled:
                raise AirflowException(f"packer stopped: {self._cancelled}")
            detail = "\n".join(result.errors[-3:]) or "\n".join(result.tail[-10:])
            raise AirflowException(f"packer build failed (exit status {result.code}):\n{detail}")
        images = result.manifest or result.images()
        if self.manifest:
            images = manifest_images(
                template.parent / self.manifest if template.is_file() else template / self.manifest
            )
        if not images:
            raise AirflowException("packer build succeeded but reported no artifact (no image id)")
        return self.claimed(build, images)

    def claimed(self, build: BuildRecord, images: Mapping[str, str], adopted: bool = False) -> dict[str, Any]:
        """The milestone's outputs once its images are claimed as the build's."""
        target = self.get_target()
        target.claim_images(build, images, self.state)
        region = getattr(target, "region", "")
        image = images.get(region) or next(iter(images.values()))
        outputs: dict[str, Any] = {IMAGE_OUTPUT: image, CHECKPOINT_OUTPUT: image, "images": dict(images)}
        if adopted:
            outputs["packer_adopted"] = True
        return outputs

    def stop_action(self, reason: str) -> None:
        super().stop_action(reason)
        if self._packer is not None:
            self.log.warning("interrupting packer (%s); it cleans up what it created", reason)
            self._packer.stop(reason)
