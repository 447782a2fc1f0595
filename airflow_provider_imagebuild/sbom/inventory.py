"""The installed packages of an image, read from its own package database.

Debian family: dpkg's status file (``/var/lib/dpkg/status``), every stanza whose ``Status`` ends in
``installed``; its licenses from the machine-readable (DEP-5) ``/usr/share/doc/<package>/copyright``
``License:`` lines where the package ships one (many do; a package without one has no licenses
here rather than a guess). RPM family: the lines of :data:`RPM_QUERY` (``rpm -qa --queryformat``),
which carry the license RPM's header records.

The kernel is what the image boots, not what the worker runs: the installed kernel packages
(``linux-image-<version>...`` on Debian, ``kernel``/``kernel-core``/``kernel-default`` on RPM
systems), so a chroot build host reports its own.

Everything read is bounded (sizes, counts, lengths) and read only inside the image's tree: a link
in the image that points out of it (``/usr/share/doc/x -> /etc``) is not followed, so an image
cannot make the worker read its own files into a bill of materials.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from airflow_provider_imagebuild.errors import InvalidInput

DPKG = "deb"
RPM = "rpm"
DPKG_STATUS = Path("var/lib/dpkg/status")
DOC_DIR = Path("usr/share/doc")
OS_RELEASE = (Path("etc/os-release"), Path("usr/lib/os-release"))
# One line per package: name, [epoch:]version-release, arch, license, source RPM (tab-separated).
RPM_QUERY = r"%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\t%{LICENSE}\t%{SOURCERPM}\n"

MAX_STATUS_BYTES = 64 << 20  # a large server has ~3,000 packages, ~5 MB of status
MAX_COPYRIGHT_BYTES = 1 << 20  # DEP-5 License: lines, in the first MAX_COPYRIGHT_LINES lines
MAX_COPYRIGHT_LINES = 4000
MAX_LICENSES = 16  # distinct names per package
MAX_FIELD = 200  # characters of any name, version or license kept
KERNEL_RPMS = frozenset({"kernel", "kernel-core", "kernel-default", "kernel-uek", "kernel-rt"})
KERNEL_DEB = re.compile(r"linux-image-[0-9].*")
PACKAGE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._~:-]*")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    arch: str = ""
    source: str = ""  # the source package (Debian) or source RPM's name, where it differs
    licenses: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inventory:
    kind: str  # DPKG or RPM: which version ordering applies
    packages: tuple[Package, ...]
    os_release: dict[str, str] = field(default_factory=dict)

    @property
    def kernels(self) -> list[Package]:
        if self.kind == DPKG:
            return [p for p in self.packages if KERNEL_DEB.fullmatch(p.name)]
        return [p for p in self.packages if p.name in KERNEL_RPMS]

    def named(self, name: str) -> list[Package]:
        """The installed packages called ``name`` (one per architecture: multiarch)."""
        return [p for p in self.packages if p.name == name]

    def digest(self) -> str:
        """The package set's SHA-256 (name, version, architecture): whether two readings of an
        image (the policy's at 90, the seal's at 95) saw the same packages."""
        lines = sorted(f"{p.name}\t{p.version}\t{p.arch}" for p in self.packages)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def _clip(value: str) -> str:
    """A field as kept: control characters dropped (a terminal escape in an image's database is
    not printed by ``imagebuild build sbom``), stripped, at most :data:`MAX_FIELD` characters."""
    return CONTROL.sub("", value).strip()[:MAX_FIELD]


def inside(root: Path, relative: Path) -> Path | None:
    """``root/relative`` if it is a regular file whose real path stays in ``root``, else None."""
    path = root / relative
    try:
        real = path.resolve()
    except (OSError, RuntimeError):  # a link loop
        return None
    if not real.is_relative_to(root.resolve()) or not real.is_file():
        return None
    return real


def read_bounded(path: Path, limit: int) -> str:
    with open(path, "rb") as f:
        return f.read(limit).decode("utf-8", errors="replace")


def dpkg_stanzas(text: str) -> Iterator[dict[str, str]]:
    """The stanzas of a dpkg status file as field -> first-line value (continuations dropped:
    descriptions and conffiles are not needed)."""
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if not line or line[0] in " \t#":
                continue
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip()] = value.strip()
        if fields:
            yield fields


def parse_dpkg_status(text: str, licenses: dict[str, tuple[str, ...]] | None = None) -> list[Package]:
    """Installed packages (``Status: install ok installed``; not half-installed, not config-files)."""
    found = []
    for fields in dpkg_stanzas(text):
        name = fields.get("Package", "")
        if not fields.get("Status", "").endswith(" installed") or not PACKAGE_NAME.fullmatch(name):
            continue
        source = fields.get("Source", "").split(" ")[0]  # "openssl (3.0.11-1)" when versions differ
        found.append(
            Package(
                _clip(name),
                _clip(fields.get("Version", "")),
                _clip(fields.get("Architecture", "")),
                _clip(source) if source and source != name else "",
                (licenses or {}).get(name, ()),
            )
        )
    return found


def parse_rpm_query(text: str) -> list[Package]:
    """The lines of ``rpm -qa --queryformat`` :data:`RPM_QUERY` (``gpg-pubkey`` entries are keys,
    not packages)."""
    found = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or not PACKAGE_NAME.fullmatch(parts[0]) or parts[0] == "gpg-pubkey":
            continue
        license_ = _clip(parts[3]) if len(parts) > 3 and parts[3] not in ("", "(none)") else ""
        source = re.sub(r"-[^-]+-[^-]+\.src\.rpm$", "", parts[4]) if len(parts) > 4 else ""
        found.append(
            Package(
                _clip(parts[0]),
                _clip(parts[1]),
                _clip(parts[2]),
                _clip(source) if source not in ("", "(none)", parts[0]) else "",
                (license_,) if license_ else (),
            )
        )
    return found


def dep5_licenses(text: str) -> tuple[str, ...]:
    """The distinct ``License:`` short names of a machine-readable copyright file, sorted; none
    for a free-form file (no ``Format:`` header): its prose is not a license list."""
    if not text.startswith("Format:"):
        return ()
    lines = text.splitlines()[:MAX_COPYRIGHT_LINES]
    found = (_clip(" ".join(line[8:].split())) for line in lines if line.startswith("License:"))
    seen = {name for name in found if name}
    return tuple(sorted(seen)[:MAX_LICENSES])


def debian_licenses(root: Path, names: Iterable[str]) -> dict[str, tuple[str, ...]]:
    found = {}
    for name in names:
        path = inside(root, DOC_DIR / name / "copyright")
        if path is None:
            continue
        try:
            licenses = dep5_licenses(read_bounded(path, MAX_COPYRIGHT_BYTES))
        except OSError:
            continue
        if licenses:
            found[name] = licenses
    return found


def parse_os_release(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and re.fullmatch(r"[A-Z_]{1,32}", key):
            found[key] = _clip(value.strip().strip("\"'"))
    return found


def os_release_of(root: Path) -> dict[str, str]:
    for relative in OS_RELEASE:
        path = inside(root, relative)
        if path is not None:
            return parse_os_release(read_bounded(path, 64 << 10))
    return {}


def inventory_of_root(root: Path) -> Inventory:
    """The inventory of an image's root filesystem tree (the local target's build host)."""
    status = inside(root, DPKG_STATUS)
    if status is None:
        raise InvalidInput("sbom", f"no dpkg package database in {root} ({DPKG_STATUS}); RPM trees are read on hosts")
    if status.stat().st_size > MAX_STATUS_BYTES:
        raise InvalidInput("sbom", f"{DPKG_STATUS} is larger than {MAX_STATUS_BYTES >> 20} MB")
    packages = parse_dpkg_status(read_bounded(status, MAX_STATUS_BYTES))
    licenses = debian_licenses(root, [p.name for p in packages])
    with_licenses = [Package(p.name, p.version, p.arch, p.source, licenses.get(p.name, ())) for p in packages]
    return Inventory(DPKG, tuple(sorted(with_licenses, key=lambda p: (p.name, p.arch))), os_release_of(root))


# -- a host reached over Ansible (the clouds' build hosts) --------------------------------------
# What sbom/collect-packages.yml runs on the build host (POSIX sh, no Python needed there): the
# package database in one of two sections, the DEP-5 license names per package, and os-release,
# each bounded as above. :func:`parse_collected` reads it back.
COLLECT_SCRIPT = r"""
if [ -r /var/lib/dpkg/status ]; then
  echo '#imagebuild:dpkg'
  head -c 67108864 /var/lib/dpkg/status
  echo
  echo '#imagebuild:licenses'
  set --
  for f in /usr/share/doc/*/copyright; do [ -f "$f" ] && [ -r "$f" ] && set -- "$@" "$f"; done
  [ $# -eq 0 ] || awk '
    FNR == 1 { dep5 = /^Format:/; p = FILENAME; sub("^/usr/share/doc/", "", p); sub("/copyright$", "", p) }
    !dep5 || FNR > 4000 { nextfile }
    /^License:/ {
      l = $0; sub(/^License:[ \t]*/, "", l); gsub(/[ \t]+/, " ", l); sub(/ +$/, "", l)
      if (l != "") print p "\t" l
    }' "$@"
elif command -v rpm >/dev/null 2>&1; then
  echo '#imagebuild:rpm'
  rpm -qa --queryformat '%s'
fi
echo '#imagebuild:os-release'
cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null
exit 0
""".replace("'%s'", f"'{RPM_QUERY}'")


def parse_collected(text: str) -> Inventory:
    """The inventory :data:`COLLECT_SCRIPT` printed on a host."""
    current = ""
    chunks: dict[str, list[str]] = {}
    for line in text[: MAX_STATUS_BYTES * 2].replace("\r\n", "\n").splitlines():  # a pty says \r\n
        if line.startswith("#imagebuild:"):
            current = line.removeprefix("#imagebuild:").strip()
            chunks[current] = []
        elif current:
            chunks[current].append(line)
    sections = {name: "\n".join(lines) for name, lines in chunks.items()}
    os_release = parse_os_release(sections.get("os-release", ""))
    if "dpkg" in sections:
        names: dict[str, set[str]] = {}
        for line in sections.get("licenses", "").splitlines():  # package TAB license, a line each
            name, _, license_ = line.partition("\t")
            if name and license_.strip():
                names.setdefault(name, set()).add(_clip(license_))
        licenses = {name: tuple(sorted(found)[:MAX_LICENSES]) for name, found in names.items()}
        packages = parse_dpkg_status(sections["dpkg"], licenses)
        return Inventory(DPKG, tuple(sorted(packages, key=lambda p: (p.name, p.arch))), os_release)
    if "rpm" in sections:
        packages = parse_rpm_query(sections["rpm"])
        return Inventory(RPM, tuple(sorted(packages, key=lambda p: (p.name, p.arch))), os_release)
    raise InvalidInput("sbom", "the build host has neither a dpkg database nor rpm: its packages cannot be listed")
