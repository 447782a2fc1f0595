"""The README is the front door, not the manual: the pitch, the two commands (``.ci/run`` runs the
test command it gives), install, a five-minute tour and links to the site's pages. Everything else
lives in ``docs/``, once; a README that grew a reference again drifted from the code, as the old
one's did. Its links must reach pages of the site, and the commands it cites must exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.docs.test_docs import citation_problem, cited_commands

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_readme_keeps_the_pitch_the_commands_install_the_tour_and_links() -> None:
    assert re.findall(r"^#{1,6} .*", README, flags=re.M) == [
        "# airflow-provider-imagebuild",
        "## Install",
        "## A five-minute tour",
        "## Documentation",
    ]
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line.split()[:2] for line in first_block.splitlines()] == [["make", "demo"], ["make", "test"]]
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert len(README.splitlines()) < 150


def pages(entry: object) -> list[str]:
    """The pages of one entry of mkdocs.yml's nav, however deep."""
    if isinstance(entry, str):
        return [entry]
    if isinstance(entry, dict):
        return [page for value in entry.values() for page in pages(value)]
    if isinstance(entry, list):
        return [page for item in entry for page in pages(item)]
    return []


def test_the_readmes_links_reach_files_and_every_section_of_the_site() -> None:
    """Each section of the site's nav (a page or a group of pages) has a link from the README, so a
    reader finds everything from the front door; pages added to a section need no README change."""
    links = [target.split("#", 1)[0] for target in re.findall(r"\]\(([^)\s]+)\)", README)]
    local = {target for target in links if not re.match(r"[a-z]+://", target)}
    assert sorted(target for target in local if not (ROOT / target).is_file()) == []
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))["nav"]
    unlinked = [entry for entry in nav if not {f"docs/{page}" for page in pages(entry)} & local]
    assert unlinked == []


def test_the_readme_cites_only_commands_that_exist() -> None:
    assert [problem for words in cited_commands(README) if (problem := citation_problem(words))] == []
