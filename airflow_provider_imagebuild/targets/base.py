"""Where a build host lives: the interface every target (aws, local, ...) implements.

A target launches a build host from an image, tells whether a recorded host still exists, gives
Ansible its connection settings, captures images (checkpoints and the final one), publishes and
cleans up. It knows nothing of DAGs: the operators call it, the store remembers what it made.

The build host is recorded in the build's metadata (``host_id``, ``host_address``,
``host_image``, ``host_checkpoint``) the moment it is launched, so that a retried milestone, or
any worker, reconnects to the same host; checkpoint images are milestone outputs
(``checkpoint_image``), so the latest one before a milestone is a lookup in the record.

Trust: anyone who can write the store can put any value in a build's outputs (``build complete
--output image_id=...``), so a target never takes a recorded host or image on faith. Before it
launches from, captures, copies, shares, deletes or terminates anything, it proves the thing is
this build's: a path derived from the build id under the target's own roots (local), or tags
carrying the build id and the pipeline (clouds). What it cannot prove is refused, naming it, or
(for a recorded host) treated as gone, so that a new host of the build's own is launched.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The checkpoint rules are the build domain's (the store's reset enforces resume_problem); they
# are re-exported here for the targets and operators that read them through this module.
from airflow_provider_imagebuild.build.checkpoints import CHECKPOINT_OUTPUT as CHECKPOINT_OUTPUT
from airflow_provider_imagebuild.build.checkpoints import DISCARDED_METADATA as DISCARDED_METADATA
from airflow_provider_imagebuild.build.checkpoints import Checkpoint as Checkpoint
from airflow_provider_imagebuild.build.checkpoints import discarded_checkpoints as discarded_checkpoints
from airflow_provider_imagebuild.build.checkpoints import latest_checkpoint as latest_checkpoint
from airflow_provider_imagebuild.build.checkpoints import resume_problem as resume_problem
from airflow_provider_imagebuild.build.holdings import IMAGE_OUTPUT as IMAGE_OUTPUT
from airflow_provider_imagebuild.build.holdings import checkpoint_images as checkpoint_images
from airflow_provider_imagebuild.build.record import BuildRecord, parse_ts

if TYPE_CHECKING:
    from airflow_provider_imagebuild.spec.pipeline import TargetSpec
    from airflow_provider_imagebuild.targets.boot import BootReport, BootRequest

# The tag (AWS, Azure) or label (Google Cloud) value that marks what this provider made.
MANAGED_BY = "airflow-provider-imagebuild"

# The build's metadata while its host is parked (a milestone failed for good): how it was parked
# ("stopped", "deallocated", "shelved", "powered off"), and when. Written through the failing
# milestone's session (``host_`` keys are the lease holder's), set to "" when a later milestone
# starts the host again; ``imagebuild build show`` and the build page list them as any metadata.
HOST_PARKED = "host_parked"
HOST_PARKED_AT = "host_parked_at"


def parked(meta: Mapping[str, str]) -> str:
    """How the build's host is parked ("" when it is not)."""
    return meta.get(HOST_PARKED, "")


@dataclass(frozen=True)
class Host:
    id: str
    address: str
    image: str  # the image it was launched from
    checkpoint: int  # the milestone that image was captured after
    synced: int  # the last milestone whose work this host has (checkpoint, replays, own runs)

    def to_metadata(self) -> dict[str, str]:
        return {
            "host_id": self.id,
            "host_address": self.address,
            "host_image": self.image,
            "host_checkpoint": str(self.checkpoint),
            "host_synced": str(self.synced),
        }

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> Host | None:
        if not meta.get("host_id"):
            return None
        checkpoint = int(meta.get("host_checkpoint") or 0)
        return cls(
            meta["host_id"],
            meta.get("host_address", ""),
            meta.get("host_image", ""),
            checkpoint,
            int(meta.get("host_synced") or checkpoint),
        )


def build_digest(pipeline: str, build_id: str, length: int) -> str:
    """A digest of the pipeline and build id: what names and tags of a build's cloud resources
    carry where the id itself does not fit (capitals, dots, length)."""
    return hashlib.sha256(f"{pipeline}/{build_id}".encode()).hexdigest()[:length]


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file (images, checkpoint archives, OVF parts), read in chunks."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def built_with_tags(build: BuildRecord) -> dict[str, str]:
    """What built the image (recorded by the seal), as two tags a cloud image can carry:
    ``BuiltWith`` (``packer 1.6.6, ansible-core 2.19.3, ...``) and ``BuiltFrom`` (the source image)."""
    tools = [f"{k.removeprefix('built_with.').replace('_', '-')} {v}" for k, v in sorted(build.metadata.items())
             if k.startswith("built_with.")]  # fmt: skip
    found = {"BuiltWith": ", ".join(tools)[:256]} if tools else {}
    if build.metadata.get("built_from"):
        found["BuiltFrom"] = build.metadata["built_from"][:256]
    return {**found, **sbom_tags(build)}


def sbom_tags(build: BuildRecord) -> dict[str, str]:
    """The sealed image's bill of materials as a tag its cloud image carries (#33): ``Sbom`` =
    ``cyclonedx sha256:<digest> packages:<n>``, the document's content address, so whoever finds
    the image can fetch its SBOM (``imagebuild build sbom``, the catalog) and check it is this one."""
    outputs = build.merged_outputs()
    digest, count = str(outputs.get("sbom_sha256") or ""), outputs.get("sbom_packages")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        return {}
    packages = f" packages:{count}" if isinstance(count, int) and not isinstance(count, bool) else ""
    return {"Sbom": f"cyclonedx sha256:{digest}{packages}"}


def final_image_name(prefix: str, build: BuildRecord, key: str) -> str:
    """The final image's name on the clouds that name it: ``<prefix>-<created>-<key6>``, from the
    build's creation time (UTC), so a retried seal makes the same name, and a digest of the
    pipeline and build id, so two builds of one second do not collide."""
    created = parse_ts(build.created_at).astimezone(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{created}-{key[:6]}"


def synced_to(host: Host, code: int) -> Host:
    return replace(host, synced=max(host.synced, code))


def ssh_ansible_vars(settings: Any, host: Host) -> dict[str, Any]:
    """Ansible's connection to a cloud build host: the spec's ``connection`` override (a bastion,
    chroot in tests), else SSH to the host's address as ``ssh_user`` with become."""
    if settings.connection:
        return dict(settings.connection)
    found: dict[str, Any] = {"ansible_host": host.address, "ansible_user": settings.ssh_user, "ansible_become": True}
    if settings.ssh_private_key_file:
        found["ansible_ssh_private_key_file"] = settings.ssh_private_key_file
    return found


class DigestNames:
    """Names and ownership keys of a cloud target's resources: ``key`` (tagged, labelled or set on
    everything the build makes) and ``prefix`` (``ib-<digest>``, the start of its resource names)."""

    pipeline: str

    def key(self, build: BuildRecord) -> str:
        return build_digest(self.pipeline, build.build_id, 20)

    def prefix(self, build: BuildRecord) -> str:
        return f"ib-{self.key(build)[:10]}"


class Target(ABC):
    """One cloud (or this machine) as seen by the milestone operators."""

    name: str
    boot_checks = False  # whether boot_check works here (spec/boot.py BOOT_CHECK_CLOUDS lists the same)
    # Whether the seal boots the sealed image itself when the plan has no launch_test milestone: a
    # qemu boot from an overlay is cheap (local); a cloud's test instance is a milestone of its own
    # (targets/launch.py), so that a failed boot never makes a cleared seal capture the image again.
    seal_boots = False

    @classmethod
    @abstractmethod
    def from_settings(cls, settings: TargetSpec, *, pipeline: str, image_type: str) -> Target:
        """The target for a spec's ``target:`` settings (clients from its Airflow connection)."""

    @abstractmethod
    def launch(self, build: BuildRecord, checkpoint: Checkpoint) -> Host:
        """Start a build host from a checkpoint image; return it once Ansible can reach it."""

    @abstractmethod
    def alive(self, build: BuildRecord, host: Host) -> bool:
        """Whether the recorded host still exists, runs and is this build's (a terminated,
        reclaimed or foreign one is not)."""

    @abstractmethod
    def ansible_vars(self, host: Host) -> dict[str, Any]:
        """Inventory variables that connect Ansible to the host."""

    @abstractmethod
    def capture(self, build: BuildRecord, host: Host, milestone: int, final: bool) -> dict[str, Any]:
        """Capture the host as an image; return outputs (``checkpoint_image`` or ``image_id``...)."""

    @abstractmethod
    def discard(self, build: BuildRecord, images: list[str]) -> list[str]:
        """Delete this build's checkpoint images that are no longer wanted; returns those deleted
        (an image that is gone or not the build's is left alone)."""

    @abstractmethod
    def publish(self, build: BuildRecord, image: str) -> dict[str, Any]:
        """Make the final image available where users find it; return what was published."""

    @abstractmethod
    def cleanup(self, build: BuildRecord, host: Host) -> None:
        """Remove the build host if it is this build's (idempotent: a host already gone is fine)."""

    def owns_image(self, build: BuildRecord, image: str) -> bool:
        """Whether ``image`` (a recorded output) is provably this build's."""
        return False

    def adopt_checkpoint(self, build: BuildRecord, source: BuildRecord, checkpoint: Checkpoint) -> dict[str, Any]:
        """Make an earlier build's checkpoint image ``build``'s own, so that ``build`` starts from it
        (#32, build/reuse.py): prove the image is ``source``'s (as :meth:`owns_image` proves any
        image: path or tags, never the record's word alone), copy it (or share and claim it where
        the cloud can) under ``build``'s ownership, and return the outputs ``build`` records for it
        (``checkpoint_image``: the copy, and ``checkpoint_sha256``/``checkpoint_gb`` where known).
        Idempotent: a retry finds the copy an earlier attempt made. A copy that fails half-way is
        deleted before the error is raised, so nothing is left that no record names. Raises
        :class:`TargetError` (or :class:`InvalidInput`): the build then runs cold."""
        from airflow_provider_imagebuild.errors import InvalidInput

        raise InvalidInput("reuse", f"the {self.name} target cannot start a build from another build's checkpoint")

    # -- parking (a milestone failed for good) ------------------------------------------------------
    # Whether a failed build's host is parked when the spec's ``on_failure.park`` is not given: a
    # cloud host costs while it runs and nobody resumes it tonight; the local tree costs nothing.
    parks_by_default = True

    def park_host(self, build: BuildRecord, host: Host) -> str:
        """Stop paying for the build's host, keeping its disk so that a resume starts it again:
        the word for what was done ("stopped", "deallocated", "shelved", "powered off"), or "" when
        it was kept as is (the target cannot park, or the host is gone or not provably the
        build's: nothing is done to what is not the build's). Idempotent: a host parked already
        gives the same word."""
        return ""

    def unpark_host(self, build: BuildRecord, host: Host) -> Host | None:
        """Start a parked host again (the next milestone's begin), once it is proven the build's,
        and return it with its address now (a cloud may give a restarted host a new one); None when
        it is gone, so that a new host is launched from the latest checkpoint."""
        return host

    def image_file(self, build: BuildRecord, image: str) -> Path:
        """The sealed image as a file of this build's, for destinations that upload it (Glance, a
        content library); only targets whose image is a file have one."""
        from airflow_provider_imagebuild.errors import InvalidInput

        raise InvalidInput("publish", f"the {self.name} target's image {image} is not a file to upload")

    def packer_artifacts(self, build: BuildRecord, milestone: int) -> dict[str, str]:
        """The images (region -> id) an earlier attempt of Packer milestone ``milestone`` already
        made under the name the template gets (:meth:`packer_image_name`), complete and proven this
        build's by what owns them and by the tags or labels the template writes. Every Packer
        builder stops when its artifact's name is taken, so a retry after Packer had finished (a
        lost worker, a throttled claim) could never succeed: it adopts these instead of running
        Packer again. An incomplete artifact of the build's is removed here so that Packer can make
        it again; one under that name that is not provably the build's raises (it is never
        deleted). Empty: nothing there, run Packer."""
        return {}

    def claim_images(self, build: BuildRecord, images: Mapping[str, str], milestone: int) -> None:  # noqa: B027
        """Mark images a tool (Packer) just made for this build as the build's (tags); targets
        whose images prove themselves by path need nothing."""

    def bootstrap(self, build: BuildRecord, milestone: int) -> tuple[Host, dict[str, Any]]:
        """Install the OS into a new build host (the kickstart where no Packer is used)."""
        from airflow_provider_imagebuild.errors import InvalidInput

        raise InvalidInput("action", f"bootstrap is not available on the {self.name} target")

    def boot_check(self, build: BuildRecord, what: Host | str, request: BootRequest) -> BootReport:
        """Boot ``what`` and prove it (:mod:`.boot`): the build host as it stands (the green image,
        milestone 10) or a recorded image of the build's (the sealed one, before it is published),
        without changing it. Local: qemu on this worker; a cloud: a test instance launched from the
        image and always deleted (:class:`~.launch.LaunchTestTarget`, whose hooks a cloud writes).
        The report says which check failed, and the console's tail."""
        from airflow_provider_imagebuild.errors import InvalidInput

        raise InvalidInput("target.boot", f"boot checks are not available on the {self.name} target")

    def playbook_vars(self, build: BuildRecord) -> dict[str, Any]:
        """Extra variables every playbook on this target gets (the build's SSH public key...)."""
        return {}

    # -- what is inside the image (#33: the policy gate and the bill of materials) ----------------
    def package_root(self, build: BuildRecord, host: Host) -> Path | None:
        """The build host's root filesystem as a tree on this worker, proven the build's, where
        the host is one (local): its package database is read there directly. None (the clouds):
        it is read over Ansible (:mod:`..operators.packages`)."""
        return None

    def sbom_file(self, build: BuildRecord) -> Path:
        """Where the seal writes the build's bill of materials on this worker: beside the image
        where the image is a file here (local); else under the worker's work folder
        (``$IMAGEBUILD_WORK``, default /var/tmp/imagebuild), per pipeline and build id, both
        validated names."""
        import os

        work = Path(os.environ.get("IMAGEBUILD_WORK") or "/var/tmp/imagebuild")
        return work / "sbom" / build.pipeline / f"{build.build_id}.cdx.json"

    def packer_image_name(self, build: BuildRecord, pipeline: str, milestone: int) -> str:
        """The ``image_name`` a Packer template gets (a cloud with stricter names overrides it)."""
        return f"{pipeline}-{build.build_id}-m{milestone:03d}"

    def packer_source_image(self, image: str) -> str:
        """The ``source_image`` a Packer template gets for ``image`` (a cloud whose builder takes
        ids only resolves the spec's image name here)."""
        return image

    def packer_vars(self) -> dict[str, str]:
        """Variables every Packer template of this target may declare (region, endpoint...)."""
        return {}

    def packer_env(self) -> dict[str, str]:
        """Environment for Packer (credentials: never on the command line, never logged)."""
        return {}
