"""An inventory as a CycloneDX 1.6 JSON document, written by cyclonedx-python-lib.

The image is the document's subject (``metadata.component``, type ``operating-system``); each
installed package a component with a package URL (``pkg:deb/debian/openssl@3.0.15-1?arch=amd64``,
``pkg:rpm/rhel/...``), its licenses (an SPDX id where the name is one, else the name the image's
database gives), and its source package as a property; the kernel packages are marked
``imagebuild:kernel``; what built the image (the seal's ``built_with.*`` versions) are the
document's tools. The library writes and validates the JSON, so the document is what CycloneDX
consumers (Dependency-Track, grype, trivy) read.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from airflow_provider_imagebuild.sbom.inventory import DPKG, Inventory, Package

SPEC_VERSION = "1.6"
KERNEL_PROPERTY = "imagebuild:kernel"


def _purl(inventory: Inventory, package: Package) -> Any:
    from packageurl import PackageURL

    namespace = (inventory.os_release.get("ID") or ("debian" if inventory.kind == DPKG else "redhat")).lower()
    qualifiers = {"arch": package.arch} if package.arch else {}
    if package.source:
        qualifiers["upstream"] = package.source
    return PackageURL(
        type=inventory.kind, namespace=namespace, name=package.name, version=package.version, qualifiers=qualifiers
    )


def _licenses(names: tuple[str, ...]) -> list[Any]:
    from cyclonedx.model.license import DisjunctiveLicense

    try:  # its home since cyclonedx-python-lib 11.x; the older one warns there
        from cyclonedx.contrib.license.factories import LicenseFactory
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from cyclonedx.factory.license import LicenseFactory

    factory = LicenseFactory()
    found = []
    for name in names:
        try:
            made = factory.make_from_string(name)
        except Exception:  # a name the expression parser chokes on is kept as a name
            made = DisjunctiveLicense(name=name)
        if not isinstance(made, DisjunctiveLicense):  # one expression would forbid any other entry
            made = DisjunctiveLicense(name=name)
        found.append(made)
    return found


def sbom_document(
    inventory: Inventory,
    *,
    image_name: str,
    image_version: str,
    built_with: Mapping[str, str],
    created: datetime | None = None,
) -> str:
    """The CycloneDX JSON text of ``inventory`` for the image ``image_name`` (its build id as the
    version)."""
    from cyclonedx.model import Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output.json import JsonV1Dot6

    kernels = {p.name for p in inventory.kernels}
    components = []
    for package in inventory.packages:
        properties = [Property(name=KERNEL_PROPERTY, value="true")] if package.name in kernels else []
        if package.source:
            properties.append(Property(name="imagebuild:source", value=package.source))
        components.append(
            Component(
                name=package.name,
                version=package.version,
                type=ComponentType.LIBRARY if package.name.startswith("lib") else ComponentType.APPLICATION,
                bom_ref=f"{package.name}@{package.version}:{package.arch}",
                purl=_purl(inventory, package),
                licenses=_licenses(package.licenses),
                properties=properties,
            )
        )
    tools = ToolRepository(
        components=[
            Component(
                name=name.removeprefix("built_with.").replace("_", "-"), version=version, type=ComponentType.APPLICATION
            )
            for name, version in sorted(built_with.items())
        ]
    )
    os_name = inventory.os_release.get("PRETTY_NAME") or inventory.os_release.get("ID", "")
    subject = Component(
        name=image_name,
        version=image_version,
        type=ComponentType.OPERATING_SYSTEM,
        bom_ref=f"image:{image_name}",
        description=os_name or None,
        properties=[Property(name="imagebuild:package_format", value=inventory.kind)]
        + [Property(name="imagebuild:kernel_version", value=k.version) for k in inventory.kernels],
    )
    bom = Bom(
        components=components,
        metadata=BomMetaData(tools=tools, component=subject, timestamp=created or datetime.now(timezone.utc)),
    )
    bom.register_dependency(subject, components)  # the image holds every package
    return str(JsonV1Dot6(bom).output_as_string(indent=1))


def summary(text: str) -> dict[str, Any]:
    """What a person reads first of a CycloneDX document: its subject, how many packages, the
    kernel, how many carry a license (``imagebuild build sbom``, the build page)."""
    doc = json.loads(text)
    components = doc.get("components") or []
    kernels = [
        f"{c.get('name')} {c.get('version')}"
        for c in components
        if any(p.get("name") == KERNEL_PROPERTY for p in c.get("properties") or [])
    ]
    subject = (doc.get("metadata") or {}).get("component") or {}
    return {
        "format": f"CycloneDX {doc.get('specVersion', '?')}",
        "image": subject.get("name", ""),
        "os": subject.get("description", ""),
        "packages": len(components),
        "licensed": sum(1 for c in components if c.get("licenses")),
        "kernel": kernels,
    }


def packages_of(text: str) -> list[tuple[str, str, str]]:
    """(name, version, arch) of every component of a document this module wrote."""
    from packageurl import PackageURL

    found = []
    for component in json.loads(text).get("components") or []:
        arch = ""
        if component.get("purl"):
            arch = PackageURL.from_string(component["purl"]).qualifiers.get("arch", "")
        found.append((str(component.get("name")), str(component.get("version", "")), str(arch)))
    return found
