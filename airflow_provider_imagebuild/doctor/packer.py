"""Packer as a Packer milestone runs it: which binary, which version, which builders and plugins,
and whether each template the specs name can run with it.

Packer itself answers every question, offline (``CHECKPOINT_DISABLE``: no version check call):
``packer version``; ``packer plugins installed`` for the plugin binaries of Packer 1.8 and later
(earlier ones have their builders built in); the builders it knows, from the list its
``validate`` prints for a source type nobody has (the same on every version, and the only list
Packer 1.6 gives); ``packer validate -syntax-only`` per template (a template Packer cannot read,
such as a ``required_plugins`` block before Packer 1.7, fails there); and ``packer plugins
required`` per template, which lists the installed binaries that meet each ``required_plugins``
entry, none when it is not met (Packer would stop at "Missing plugins").
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from airflow_provider_imagebuild.doctor.findings import OK, Finding, judged
from airflow_provider_imagebuild.doctor.host import TOOL_FIXES
from airflow_provider_imagebuild.redact.patterns import Redactor, redact_patterns
from airflow_provider_imagebuild.toolchain.locate import find_tool
from airflow_provider_imagebuild.toolchain.packer import plugin_env

TIMEOUT_S = 30
PROBE_TYPE = "imagebuild-doctor-probe"  # a source type no Packer has: its error lists the known ones
PROBE_TEMPLATE = f'source "{PROBE_TYPE}" "probe" {{\n}}\n\nbuild {{\n  sources = ["source.{PROBE_TYPE}.probe"]\n}}\n'
KNOWN_RE = re.compile(r"known builders: \[([^\]]*)\]")
VERSION_RE = re.compile(r"Packer v?([0-9]+(?:\.[0-9]+)+)")
SOURCE_RE = re.compile(r'^\s*source\s+"([^"]+)"\s+"([^"]+)"', re.MULTILINE)
REQUIRED_RE = re.compile(r'^(\S+) (\S+) "([^"]*)"(.*)$')  # `plugins required`: accessor source "constraint" paths
SOURCE_LINE_RE = re.compile(r"[0-9]+:")  # a quoted template line in Packer's error
BINARY_RE = re.compile(r"packer-plugin-([A-Za-z0-9-]+?)_v([0-9][^_]*)_x([0-9.]+)_")
DEFAULT_COMPONENT = "-packer-default-plugin-name-"  # a plugin's builder named after the plugin itself
PLUGINS_COMMAND = (1, 8)  # `packer plugins installed|required` came with Packer 1.8
NO_BUILT_IN = (1, 10)  # Packer 1.10 dropped its built-in plugins, and the list of known builders
REQUIRED_PLUGINS = (1, 7)  # the `required_plugins` block came with Packer 1.7


def packer_env(packer: str) -> dict[str, str]:
    """The environment a Packer milestone gives Packer (the plugins folder installed with it as
    ``PACKER_PLUGIN_PATH``: :func:`toolchain.packer.plugin_env`), without the cloud's credentials
    (the doctor never builds), with Packer's version check call turned off."""
    return {**os.environ, **plugin_env(packer), "PACKER_NO_COLOR": "1", "CHECKPOINT_DISABLE": "1"}


def version_tuple(version: str | None) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")) if version else ()


def plugin_fix(source_type: str) -> str:
    """How to get the plugin of a builder (``amazon-ebs`` is the ``amazon`` plugin's ``ebs``)."""
    name = source_type.split("-")[0]
    return (
        f"make packer-tools in a clone of the provider (builds Packer and its plugins), or "
        f"packer plugins install --path BINARY github.com/hashicorp/{name}"
    )


def _run(argv: list[str], cwd: str | None = None) -> tuple[int, str]:
    """Exit code and output (stdout then stderr) of one Packer (or plugin) command; -1 when it did
    not run."""
    env = packer_env(argv[0])
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, f"{type(exc).__name__}: {exc}"
    return done.returncode, done.stdout + done.stderr


def _first_error(output: str) -> str:
    """Packer's first error as one line: its summary and the sentence that explains it (the
    file position and the quoted source lines between them left out)."""
    lines = [line.strip() for line in output.splitlines()]
    for i, line in enumerate(lines):
        if not line.startswith("Error:"):
            continue
        summary = line.removeprefix("Error:").strip()
        for follow in lines[i + 1 :]:
            if follow.startswith("Error:"):
                break
            if follow and not follow.startswith(("on ", "(")) and not SOURCE_LINE_RE.match(follow):
                return f"{summary}: {follow}"
        return summary
    rest = [line for line in lines if line]
    return rest[-1] if rest else "no output"


def _probe(packer: str, source_type: str) -> str:
    """What ``packer validate`` says of a template with one empty source of ``source_type``."""
    template = PROBE_TEMPLATE.replace(PROBE_TYPE, source_type)
    with tempfile.TemporaryDirectory(prefix="imagebuild-doctor-") as tmp:
        probe = Path(tmp) / "probe.pkr.hcl"
        probe.write_text(template)
        return _run([packer, "validate", str(probe)], cwd=tmp)[1]


def known_builders(packer: str) -> list[str] | None:
    """The source types Packer lists when a template names one it lacks (Packer 1.6 to 1.9: its
    built-in builders and the installed plugins' ones), or None where it lists none (1.10 on)."""
    found = KNOWN_RE.search(_probe(packer, PROBE_TYPE))
    return sorted(found[1].split()) if found else None


def has_builder(packer: str, source_type: str) -> bool:
    """Whether this Packer builds ``source_type``: it does unless it calls the type unknown (the
    empty source's other errors, its missing settings, say the builder is there)."""
    return f"Unknown source type {source_type}" not in _probe(packer, source_type)


def installed_plugins(packer: str) -> list[dict[str, Any]]:
    """``packer plugins installed``: one entry per plugin binary Packer would load, with the
    builders it offers (what the binary's ``describe`` answers Packer at discovery)."""
    code, output = _run([packer, "plugins", "installed"])
    plugins = []
    for line in output.splitlines() if code == 0 else []:
        path = line.strip()
        found = BINARY_RE.search(os.path.basename(path))
        if not found:
            continue
        parts = Path(path).parent.parts
        source = "/".join(parts[-3:]) if len(parts) >= 3 else found[1]
        plugins.append({"name": source, "version": found[2], "api": f"x{found[3]}", "path": path,
                        "builders": _plugin_builders(path, found[1])})  # fmt: skip
    return plugins


def _plugin_builders(binary: str, name: str) -> list[str]:
    """The source types of one plugin: ``<name>-<builder>``, or ``<name>`` for its default one."""
    code, output = _run([binary, "describe"])
    try:
        described = json.loads(output) if code == 0 else {}
    except ValueError:
        return []
    builders = described.get("builders") if isinstance(described, dict) else None
    return sorted(name if b == DEFAULT_COMPONENT else f"{name}-{b}" for b in builders or [] if isinstance(b, str))


def template_sources(path: Path) -> list[str]:
    """The source types a template (or each template of a folder) declares."""
    found: list[str] = []
    for file in _template_files(path):
        with contextlib.suppress(OSError):  # reported by examine_template
            found += [source for source, _ in SOURCE_RE.findall(file.read_text())]
    return list(dict.fromkeys(found))


def _template_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.pkr.hcl")) if path.is_dir() else [path]


def examine_template(
    packer: str,
    version: tuple[int, ...],
    builders: dict[str, bool],
    path: Path,
    needed_by: list[str],
    redact: Redactor = redact_patterns,
) -> tuple[dict[str, Any], Finding]:
    """Whether this Packer can run one template: it reads it, has its builders (``builders``:
    source type -> whether Packer has it), meets its ``required_plugins``."""
    problems: list[str] = []
    fixes: list[str] = []
    required: list[dict[str, Any]] = []
    sources = template_sources(path)
    for file in _template_files(path):
        try:
            text = file.read_text()
        except OSError as exc:
            problems.append(f"{file}: cannot be read ({exc.strerror})")
            continue
        # `plugins required` reads the template as `validate -syntax-only` does, then lists what
        # meets each required_plugins entry: one run instead of two (each loads every plugin).
        listing = version >= PLUGINS_COMMAND
        command = ["plugins", "required"] if listing else ["validate", "-syntax-only"]
        code, output = _run([packer, *command, str(file)], cwd=str(file.parent))
        if code != 0:
            shown = ".".join(map(str, version))
            problems.append(f"Packer {shown} cannot read {file.name}: {redact(_first_error(output))}")
            if "required_plugins" in text and version < REQUIRED_PLUGINS:
                fixes.append("a Packer that reads required_plugins (1.7 or later): make packer-tools")
            continue
        if listing:
            required += _requirements(output, file, problems, fixes)
    for source in sources:
        if not builders.get(source, True):
            problems.append(f"Packer has no {source} builder (plugin {source.split('-')[0]})")
            fixes.append(plugin_fix(source))
    entry = {
        "file": str(path),
        "needed_by": needed_by,
        "sources": sources,
        "required_plugins": required,
        "ok": not problems,
        "problems": problems,
    }
    detail = "; ".join(problems) or f"builders {', '.join(sources) or 'none'} and required plugins present"
    fix = "; ".join(dict.fromkeys(fixes))
    return entry, judged(f"packer template {path}", not problems, detail, fix, needed_by)


def _requirements(output: str, file: Path, problems: list[str], fixes: list[str]) -> list[dict[str, Any]]:
    """What ``packer plugins required FILE`` printed: each entry with the installed binaries that
    meet it (none: Packer would stop at "Missing plugins")."""
    found = []
    for line in output.splitlines():
        match = REQUIRED_RE.match(line.strip())
        if not match:
            continue
        accessor, source, constraint, rest = match.groups()
        installed = rest.split()
        found.append({"name": accessor, "source": source, "version": constraint, "installed": installed,
                      "ok": bool(installed)})  # fmt: skip
        if not installed:
            problems.append(f"{file.name} requires {source} {constraint}: not installed")
            fixes.append(plugin_fix(accessor))
    return found


def examine_packer(
    needed_by: list[str], templates: dict[Path, list[str]], redact: Redactor = redact_patterns
) -> tuple[dict[str, Any], list[Finding]]:
    """The ``packer`` entry of the report and its findings (the binary, then each template)."""
    path = find_tool("packer")
    entry: dict[str, Any] = {
        "needed_by": needed_by,
        "path": path,
        "version": None,
        "plugins": [],
        "builders": [],
        "templates": [],
    }
    if path is None:
        detail = "not found beside the worker's Python, in $IMAGEBUILD_TOOLS_DIR, on PATH or in sbin"
        return entry, [judged("packer", False, detail, TOOL_FIXES["packer"], needed_by)]
    code, output = _run([path, "version"])
    found = VERSION_RE.search(output)
    if code != 0 or not found:
        detail = f"{path} does not run: {redact(_first_error(output))}"
        return entry, [judged("packer", False, detail, TOOL_FIXES["packer"], needed_by)]
    entry["version"] = found[1]
    version = version_tuple(found[1])
    types = list(dict.fromkeys(t for template in templates for t in template_sources(template)))
    with ThreadPoolExecutor(max_workers=4) as pool:
        plugins_job = pool.submit(installed_plugins, path) if version >= PLUGINS_COMMAND else None
        known = known_builders(path) if version < NO_BUILT_IN else None
        plugins = plugins_job.result() if plugins_job else []
        offered = {b for p in plugins for b in p["builders"]}
        if known is not None:
            builders = {t: t in known for t in types}
        else:  # Packer lists nothing: a type no plugin offers is asked about (Packer's own null, file)
            asked = [t for t in types if t not in offered]
            builders = {t: True for t in types if t in offered}
            builders |= dict(zip(asked, pool.map(lambda t: has_builder(path, t), asked), strict=True))
        jobs = [pool.submit(examine_template, path, version, builders, t, who, redact) for t, who in templates.items()]
        results = [job.result() for job in jobs]
    entry["builders"] = known if known is not None else sorted(offered)
    built_in = [{"name": b, "version": found[1], "api": "built-in", "path": path, "builders": [b]} for b in known or []]
    entry["plugins"] = plugins or built_in
    entry["templates"] = [template for template, _ in results]
    if version >= PLUGINS_COMMAND:
        shown = ", ".join(p["name"].rsplit("/", 1)[-1] + " " + p["version"] for p in plugins)
        detail = f"{found[1]} at {path}; plugins: {shown or 'none'}"
    else:
        detail = f"{found[1]} at {path}; {len(entry['builders'])} builders built in (no plugins before Packer 1.8)"
    return entry, [Finding("packer", OK, detail, "", tuple(needed_by)), *(finding for _, finding in results)]
