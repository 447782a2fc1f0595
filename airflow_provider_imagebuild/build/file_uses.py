"""Which files a playbook or a Packer template uses, found by reading them (no tool is run).

A fingerprint is only as honest as its list of files. Ansible resolves most of what a playbook
reads from names written in it, relative to the playbook's folder (or the including file's, or a
role's): ``import_playbook``, ``import_tasks``/``include_tasks``, ``include_vars``/``vars_files``,
roles (``roles:``, ``import_role``/``include_role``, a role's ``meta`` dependencies), the ``src``
of ``template``/``copy``/``script``/``unarchive`` (looked up in ``templates/`` and ``files/`` as
Ansible does), and the ``group_vars``/``host_vars`` folders and ``ansible.cfg`` beside the
playbook. Those are followed here. What only exists at run time is not: a name built from a
variable (``include_vars: "vars/{{ ansible_os_family }}.yml"``) is covered by hashing every file
of the folder its fixed part names (``vars/``), or the playbook's whole folder when nothing of it
is fixed; a file Ansible cannot find beside the playbook (a role in a ``roles_path`` of the
worker's, an installed collection) is not covered (the tool versions are). A role is hashed
whole (its tasks, handlers, templates, files, vars, defaults, meta).

For a Packer template: the template, and every file a quoted string in it names relative to the
template's folder (``file("${path.root}/user-data")``, ``playbook_file = "site.yml"``); a string
with another interpolation in a ``file()``/``templatefile()`` call makes the template's whole folder
count.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# Bounds: a playbook tree is small; a runaway (a symlink loop, a folder of ISOs) must not hang a task.
MAX_FILES = 5000
MAX_ENTRIES = 10 * MAX_FILES  # files and folders walked, counted as they are
MAX_DEPTH = 40

_TASK_LISTS = ("tasks", "pre_tasks", "post_tasks", "handlers", "block", "rescue", "always")
_ROLE_DIRS = ("roles",)


def _short(key: str) -> str:
    """``ansible.builtin.import_tasks`` -> ``import_tasks`` (also ``ansible.legacy.``)."""
    return key.rsplit(".", 1)[-1] if key.startswith(("ansible.builtin.", "ansible.legacy.")) else key


def _templated(name: str) -> bool:
    return "{{" in name or "{%" in name


def _static_prefix(name: str) -> str:
    """The folder part of ``name`` before its first templated component (``vars/{{ x }}.yml`` -> ``vars``)."""
    parts = name.split("/")
    fixed: list[str] = []
    for part in parts[:-1]:
        if _templated(part):
            break
        fixed.append(part)
    return "/".join(fixed)


class _Walker:
    """Collects the files (and whole folders) a playbook uses, each visited once."""

    def __init__(self, playbook_dir: Path) -> None:
        self.playbook_dir = playbook_dir
        self.files: set[Path] = set()
        self.folders: set[Path] = set()
        self.uncovered: list[str] = []  # what could not be resolved (said in the task log)
        self._seen_roles: set[Path] = set()

    # -- adding ----------------------------------------------------------------------------------
    def add_file(self, path: Path) -> bool:
        if path.is_file():
            self.files.add(path)
            return True
        return False

    def add_folder(self, path: Path) -> None:
        if path.is_dir():
            self.folders.add(path)

    def dynamic(self, name: str, base: Path, why: str) -> None:
        """A name built at run time: its fixed folder counts whole."""
        prefix = _static_prefix(name)
        folder = (base / prefix) if prefix else self.playbook_dir
        self.uncovered.append(f"{why} {name!r}: every file under {folder.name or '.'}/ counts")
        self.add_folder(folder if folder.is_dir() else self.playbook_dir)

    # -- playbooks and task files ------------------------------------------------------------------
    def playbook(self, path: Path, depth: int = 0) -> None:
        if depth > MAX_DEPTH or path in self.files:
            return
        if not self.add_file(path):
            return
        doc = _load(path)
        if not isinstance(doc, list):
            self.uncovered.append(f"{path.name} is not a list of plays: its whole folder counts")
            self.add_folder(path.parent)
            return
        for play in doc:
            if not isinstance(play, dict):
                continue
            for key, value in play.items():
                short = _short(str(key))
                if short == "import_playbook" and isinstance(value, str):
                    self._named(value, path.parent, "import_playbook", lambda p: self.playbook(p, depth + 1))
                elif short == "vars_files":
                    for item in value if isinstance(value, list) else [value]:
                        for name in item if isinstance(item, list) else [item]:
                            if isinstance(name, str):
                                self._named(name, path.parent, "vars_files", self.add_file)
                elif short == "roles" and isinstance(value, list):
                    for role in value:
                        name = role.get("role") or role.get("name") if isinstance(role, dict) else role
                        if isinstance(name, str):
                            self.role(name, path.parent, depth + 1)
                elif short in _TASK_LISTS and isinstance(value, list):
                    self.tasks(value, path.parent, depth + 1)

    def tasks(self, tasks: list[Any], base: Path, depth: int) -> None:
        if depth > MAX_DEPTH:
            return
        for task in tasks:
            if not isinstance(task, dict):
                continue
            for key, value in task.items():
                short = _short(str(key))
                if short in ("block", "rescue", "always") and isinstance(value, list):
                    self.tasks(value, base, depth + 1)
                elif short in ("import_tasks", "include_tasks", "include"):
                    name = value.get("file") if isinstance(value, dict) else value
                    if isinstance(name, str):
                        self._named(name, base, short, lambda p: self.task_file(p, depth + 1), ("tasks",))
                elif short == "include_vars":
                    self._include_vars(value, base)
                elif short in ("import_role", "include_role") and isinstance(value, dict):
                    name = value.get("name")
                    if isinstance(name, str):
                        self.role(name, base, depth + 1)
                elif short in ("template", "copy", "script", "unarchive", "assemble"):
                    self._src(short, value, task, base)

    def task_file(self, path: Path, depth: int) -> None:
        if path in self.files or not self.add_file(path):
            return
        doc = _load(path)
        if isinstance(doc, list):
            self.tasks(doc, path.parent, depth)

    def _include_vars(self, value: Any, base: Path) -> None:
        if isinstance(value, dict):
            if isinstance(value.get("dir"), str):
                self._named(value["dir"], base, "include_vars dir", self._folder_named, ("vars",))
                return
            value = value.get("file") or value.get("_raw_params")
        if isinstance(value, str) and value.strip():
            self._named(value.strip(), base, "include_vars", self.add_file, ("vars",))

    def _folder_named(self, path: Path) -> bool:
        self.add_folder(path)
        return path.is_dir()

    def _src(self, module: str, value: Any, task: dict[str, Any], base: Path) -> None:
        args = value if isinstance(value, dict) else _kv(value) if isinstance(value, str) else {}
        if isinstance(task.get("args"), dict):
            args = {**task["args"], **args}
        if module == "script":
            src = args.get("cmd") or args.get("_raw_params") or (value.split()[0] if isinstance(value, str) else None)
        else:
            src = args.get("src")
        if not isinstance(src, str) or not src or args.get("remote_src") in (True, "yes", "true", "True"):
            return
        if src.startswith("/"):
            self.uncovered.append(f"{module} src {src!r} is an absolute path on the worker: not covered")
            return
        folder = "templates" if module == "template" else "files"
        self._named(src, base, f"{module} src", self.add_file, (folder,))

    def _named(self, name: str, base: Path, why: str, use: Any, subdirs: tuple[str, ...] = ()) -> None:
        """Resolve ``name`` as Ansible would from ``base`` (its ``subdirs`` first, then ``base``,
        then the playbook's folder and its ``subdirs``) and ``use`` the first that exists."""
        if _templated(name):
            self.dynamic(name, base, why)
            return
        if name.startswith("/"):
            self.uncovered.append(f"{why} {name!r} is an absolute path on the worker: not covered")
            return
        roots = [base, self.playbook_dir] if base != self.playbook_dir else [base]
        for root in roots:
            for candidate in [*(root / sub / name for sub in subdirs), root / name]:
                if candidate.exists() and use(candidate) is not False:
                    return
        self.uncovered.append(f"{why} {name!r} was not found beside the playbook")

    # -- roles -----------------------------------------------------------------------------------
    def role(self, name: str, base: Path, depth: int) -> None:
        if _templated(name):
            self.dynamic(name, base, "role")
            return
        if name.count(".") >= 2 and "/" not in name:  # a collection's role: namespace.collection.role
            namespace, collection = name.split(".")[:2]
            found = self.playbook_dir / "collections" / "ansible_collections" / namespace / collection
            if found.is_dir():
                self.add_folder(found)
            else:
                self.uncovered.append(f"role {name!r} comes from an installed collection: not covered")
            return
        candidates = [base / "roles" / name, self.playbook_dir / "roles" / name, base / name, self.playbook_dir / name]
        folder = next((c for c in candidates if c.is_dir()), None)
        if folder is None:
            self.uncovered.append(f"role {name!r} is not beside the playbook (a roles_path of the worker's?)")
            return
        if folder in self._seen_roles or depth > MAX_DEPTH:
            return
        self._seen_roles.add(folder)
        self.add_folder(folder)
        meta = next((m for m in (folder / "meta" / "main.yml", folder / "meta" / "main.yaml") if m.is_file()), None)
        doc = _load(meta) if meta else None
        deps = doc.get("dependencies") if isinstance(doc, dict) else None
        for dep in deps if isinstance(deps, list) else []:
            dep_name = dep.get("role") or dep.get("name") if isinstance(dep, dict) else dep
            if isinstance(dep_name, str):
                self.role(dep_name, folder.parent, depth + 1)


def _kv(text: str) -> dict[str, str]:
    """Ansible's ``key=value`` short form of module arguments."""
    found: dict[str, str] = {"_raw_params": text}
    for word in text.split():
        if "=" in word:
            key, _, value = word.partition("=")
            found[key] = value.strip("'\"")
    return found


def _load(path: Path) -> Any:
    """A YAML file as data; None when it is not YAML (Ansible would fail on it anyway)."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_AnsibleLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


class _AnsibleLoader(yaml.SafeLoader):
    """A safe loader that reads Ansible's ``!vault`` and ``!unsafe`` tags as plain strings."""


_AnsibleLoader.add_constructor("!vault", lambda loader, node: "")
_AnsibleLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]


def _files_under(folder: Path) -> Iterator[Path]:
    """The files of ``folder``, stopping at :data:`MAX_FILES` while it walks: a templated name
    whose fixed part is ``/usr`` (``include_vars: /usr/{{ x }}.yml``) must not list all of it
    first (sorting the whole walk did, for seconds, before the bound was even checked)."""
    count = seen = 0
    for root, dirs, names in os.walk(folder):  # symlinked folders are not entered
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        seen += len(dirs) + len(names)
        if seen > MAX_ENTRIES:
            raise ValueError(f"{folder} holds more than {MAX_ENTRIES} entries")
        for name in sorted(names):
            path = Path(root) / name
            if path.is_symlink() and not _inside(path, folder):
                continue  # a link out of the folder (to a key, to /etc) is not the folder's content
            if path.is_file() and not name.endswith((".retry", ".pyc")):
                count += 1
                if count > MAX_FILES:
                    raise ValueError(f"{folder} holds more than {MAX_FILES} files")
                yield path


def playbook_files(playbook: Path) -> tuple[list[Path], list[str]]:
    """The files ``playbook`` uses, sorted, and what was not resolved statically (each a sentence)."""
    playbook = playbook.absolute()
    walker = _Walker(playbook.parent)
    walker.playbook(playbook)
    for name in ("group_vars", "host_vars"):
        walker.add_folder(playbook.parent / name)
    for name in ("ansible.cfg", "requirements.yml", "collections/requirements.yml"):
        walker.add_file(playbook.parent / name)
    return _expanded(walker.files, walker.folders), walker.uncovered


_QUOTED_RE = re.compile(r'"((?:[^"\\\n]|\\.){1,1000})"')
_FILE_CALL_RE = re.compile(r'\b(?:file|templatefile|fileset|filebase64|filesha256)\(\s*"([^"\n]{1,1000})"')


def template_files(template: Path, var_files: list[Path]) -> tuple[list[Path], list[str]]:
    """The files a Packer template uses (itself, its var files, what its strings name), sorted,
    and what was not resolved statically."""
    template = template.absolute()
    root = template.parent
    files = {template, *(f.absolute() for f in var_files if f.is_file())}
    folders: set[Path] = set()
    uncovered: list[str] = []
    try:
        text = template.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return sorted(files), uncovered
    for call in _FILE_CALL_RE.findall(text):
        rest = call.replace("${path.root}", ".").replace("${path.cwd}", ".")
        if "${" in rest:
            uncovered.append(f"{call!r} names a file at run time: every file beside the template counts")
            folders.add(root)
    for quoted in _QUOTED_RE.findall(text):
        name = quoted.replace("${path.root}", ".").replace("${path.cwd}", ".")
        if "${" in name or name.startswith("/") or "\n" in name or len(name) > 300:
            continue
        candidate = (root / name).absolute()
        if candidate.is_file() and _inside(candidate, root.parent):
            files.add(candidate)
    return _expanded(files, folders), uncovered


_PLUGIN_SOURCE_RE = re.compile(r'\bsource\s*=\s*"((?:[A-Za-z0-9.-]+/){2}[A-Za-z0-9_.-]+)"')


def required_plugins(template: Path) -> set[str] | None:
    """The plugin sources a template's ``required_plugins`` names (``github.com/hashicorp/amazon``);
    None when it names none (a JSON template, or plugins found by the builders' names)."""
    try:
        found = set(_PLUGIN_SOURCE_RE.findall(template.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError):
        return None
    return found or None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _expanded(files: set[Path], folders: set[Path]) -> list[Path]:
    found = set(files)
    for folder in folders:
        found.update(_files_under(folder))
        if len(found) > MAX_FILES:
            raise ValueError(f"the files used number more than {MAX_FILES}")
    return sorted(found)
