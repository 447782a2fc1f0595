"""``imagebuild init --force`` into a project that already has files: what is the user's stays the
user's. Identical files are left as they are, missing ones are written, a file that differs gets
init's version beside it as ``FILE.new`` (listed, exit 0), and no symbolic link below the project
folder is ever written through: a layout init cannot write safely is refused in one line before
anything is written (real CLI, real files and links)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from airflow_provider_imagebuild.cli.main import cli

ARGS = ["--cloud", "local", "--os", "debian-12", "--image-type", "base"]
SPEC = "dags/pipelines/local-debian-12-base.yaml"


def _init(folder: Path, *extra: str) -> Result:
    return CliRunner().invoke(cli, ["init", str(folder), *ARGS, *extra])


def _project(folder: Path) -> Path:
    got = _init(folder)
    assert got.exit_code == 0, got.output
    return folder


def _snapshot(*roots: Path) -> dict[str, tuple[str, str]]:
    """Every entry under ``roots`` (links not followed): its kind and content or link target."""
    seen: dict[str, tuple[str, str]] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = Path(dirpath) / name
                if path.is_symlink():
                    seen[str(path)] = ("link", os.readlink(path))
                elif path.is_dir():
                    seen[str(path)] = ("dir", "")
                else:
                    seen[str(path)] = ("file", path.read_text())
    return seen


def test_force_keeps_changed_files_and_writes_init_version_beside_them(tmp_path: Path) -> None:
    folder = _project(tmp_path / "golden")
    playbook = folder / "dags/ansible/15-base-config.yml"
    shipped_playbook = playbook.read_text()
    playbook.write_text(shipped_playbook + "# tuned by the team\n")
    (folder / "README.md").write_text("# our notes\n")
    (folder / "Makefile").write_text("all:\n\techo ours\n")
    (folder / "dags/imagebuild_pipelines.py").unlink()
    untouched = folder / SPEC
    before = untouched.stat()

    got = _init(folder, "--force")

    assert got.exit_code == 0, got.output
    assert playbook.read_text() == shipped_playbook + "# tuned by the team\n"
    assert (folder / "README.md").read_text() == "# our notes\n"
    assert (folder / "Makefile").read_text() == "all:\n\techo ours\n"
    assert Path(f"{playbook}.new").read_text() == shipped_playbook
    assert "make run BUILD_ID" in (folder / "README.md.new").read_text()
    assert "airflow dags test" in (folder / "Makefile.new").read_text()
    for kept in (playbook, folder / "README.md", folder / "Makefile"):
        assert f"{kept}.new" in got.output
    assert (folder / "dags/imagebuild_pipelines.py").is_file()  # missing: written again
    after = untouched.stat()  # identical: left as it is, not rewritten
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert not Path(f"{untouched}.new").exists()
    assert not [p for p in folder.rglob("*") if ".tmp" in p.name]
    # A second run finds the same differences: the stale .new files are replaced, nothing else moves.
    again = _init(folder, "--force")
    assert again.exit_code == 0 and f"{folder / 'Makefile'}.new" in again.output
    assert (folder / "Makefile").read_text() == "all:\n\techo ours\n"


def test_an_unchanged_project_is_left_as_it_is(tmp_path: Path) -> None:
    folder = _project(tmp_path / "golden")
    before = _snapshot(folder)
    got = _init(folder, "--force")
    assert got.exit_code == 0, got.output
    assert _snapshot(folder) == before and ".new" not in got.output


def _link_makefile(folder: Path, outside: Path) -> Path:
    (outside / "Makefile").write_text("precious\n")
    (folder / "Makefile").unlink()
    (folder / "Makefile").symlink_to(outside / "Makefile")
    return folder / "Makefile"


def _link_dags(folder: Path, outside: Path) -> Path:
    (folder / "keep.txt").write_text("mine\n")
    (folder / "dags").symlink_to(outside)
    return folder / "dags"


def _link_group_vars(folder: Path, outside: Path) -> Path:
    group_vars = folder / "dags/ansible/group_vars"
    for child in group_vars.iterdir():
        child.unlink()
    group_vars.rmdir()
    group_vars.symlink_to(outside)
    return group_vars


def _link_new_beside_a_changed_file(folder: Path, outside: Path) -> Path:
    (outside / "victim").write_text("precious\n")
    (folder / "Makefile").write_text("ours\n")
    (folder / "Makefile.new").symlink_to(outside / "victim")
    return folder / "Makefile.new"


def _dangling_link(folder: Path, outside: Path) -> Path:
    (folder / "README.md").unlink()
    (folder / "README.md").symlink_to(outside / "created-by-init")
    return folder / "README.md"


def _folder_where_a_file_goes(folder: Path, outside: Path) -> Path:
    (folder / "README.md").unlink()
    (folder / "README.md").mkdir()
    (folder / "README.md/notes.txt").write_text("mine\n")
    return folder / "README.md"


def _file_where_a_folder_goes(folder: Path, outside: Path) -> Path:
    (folder / "keep.txt").write_text("mine\n")
    (folder / "dags").write_text("not a folder\n")
    return folder / "dags"


def _folder_where_a_new_file_goes(folder: Path, outside: Path) -> Path:
    (folder / "Makefile").write_text("ours\n")
    (folder / "Makefile.new").mkdir()
    return folder / "Makefile.new"


@pytest.mark.parametrize(
    ("arrange", "reason", "fresh"),
    [
        (_link_makefile, "is a symbolic link", False),
        (_link_dags, "is a symbolic link", True),
        (_link_group_vars, "is a symbolic link", False),
        (_link_new_beside_a_changed_file, "is a symbolic link", False),
        (_dangling_link, "is a symbolic link", False),
        (_folder_where_a_file_goes, "is a folder where init writes a file", False),
        (_file_where_a_folder_goes, "is not a folder", True),
        (_folder_where_a_new_file_goes, "is a folder where init writes a file", False),
    ],
)
def test_a_layout_init_cannot_write_safely_is_refused_and_nothing_is_written(
    arrange: Callable[[Path, Path], Path], reason: str, fresh: bool, tmp_path: Path
) -> None:
    folder = tmp_path / "golden"
    if fresh:
        folder.mkdir()
    else:
        _project(folder)
    outside = tmp_path / "outside"
    outside.mkdir()
    culprit = arrange(folder, outside)
    before = _snapshot(folder, outside)

    got = _init(folder, "--force")

    assert got.exit_code == 2, got.output
    [line] = got.output.strip().splitlines()
    assert line.startswith(f"imagebuild: error: {culprit}: {reason}"), line
    assert _snapshot(folder, outside) == before  # nothing written, inside or outside the project


def test_a_symlinked_project_folder_is_the_users_choice(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "golden").symlink_to(real)
    got = _init(tmp_path / "golden")
    assert got.exit_code == 0, got.output
    assert (real / SPEC).is_file() and (real / "Makefile").is_file()
    again = _init(tmp_path / "golden", "--force")
    assert again.exit_code == 0 and ".new" not in again.output


def test_a_link_to_a_missing_project_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "golden").symlink_to(tmp_path / "nowhere")
    got = _init(tmp_path / "golden")
    assert got.exit_code == 2 and f"{tmp_path / 'golden'}: is a symbolic link to" in got.output
    assert not (tmp_path / "nowhere").exists()


def test_a_project_folder_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("mine\n")
    got = _init(tmp_path / "notes/golden")
    assert got.exit_code == 2 and f"{tmp_path / 'notes'}: is a file, so" in got.output
    assert (tmp_path / "notes").read_text() == "mine\n"
