"""The documentation site: it builds with ``mkdocs build --strict`` (a broken link or anchor, or a
page missing from the nav, fails), and the built pages name every ``imagebuild`` command with each
of its options and every key a spec may hold, per cloud.

The references are generated (mkdocs-click for the CLI, ``docs/hooks/spec_reference.py`` for the
spec), so they cover the code by construction; what these tests guard is that construction: the
generators are wired into the build, reach every nested command and model, and land on pages in
the nav. They walk the click group and the pydantic models on their own, not with the
generator's code, and read the built HTML. The hand-written pages may only cite commands that
exist, which is how the README's reference drifted from the CLI.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from pydantic import BaseModel, ValidationError, create_model

from airflow_provider_imagebuild.build.ids import CLOUDS
from airflow_provider_imagebuild.cli.main import cli
from airflow_provider_imagebuild.spec.pipeline import PipelineSpec

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PROG = "imagebuild"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built once, as ``make docs`` builds it (strict), into a temporary folder."""
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


def page_text(site: Path, page: str) -> str:
    """A built page's article as text (tags dropped, entities decoded): what a reader sees."""
    source = (site / page / "index.html").read_text(encoding="utf-8")
    article = source[source.index("<article") : source.index("</article>")]
    return html.unescape(re.sub(r"<[^>]+>", "", article))


# --- the CLI --------------------------------------------------------------------------------------


def commands(group: click.Group, prefix: str = PROG) -> Iterator[tuple[str, click.Command]]:
    """Every visible command below ``group`` (groups included), as ``imagebuild build create``."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from commands(command, path)


def cli_sections(text: str) -> dict[str, str]:
    """The CLI page split at its headings (each ends with the permalink sign): heading -> body."""
    sections: dict[str, str] = {}
    heading = ""
    for line in text.splitlines():
        if line.endswith("¶"):
            heading = line.removesuffix("¶").strip()
            sections[heading] = ""
        elif heading:
            sections[heading] += line + "\n"
    return sections


def undocumented_commands(group: click.Group, sections: dict[str, str]) -> list[str]:
    """Each command without a section of its own, and each option missing from its section."""
    missing: list[str] = []
    for path, command in [(PROG, group), *commands(group)]:
        body = sections.get(path)
        if body is None:
            missing.append(path)
            continue
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                missing.extend(f"{path} {flag}" for flag in param.opts if not re.search(rf"{re.escape(flag)}\b", body))
    return missing


def test_every_command_and_option_is_in_the_cli_reference(site: Path) -> None:
    sections = cli_sections(page_text(site, "reference/cli"))
    assert undocumented_commands(cli, sections) == []
    assert len(list(commands(cli))) > 20  # the walk reached the nested groups


def test_the_check_names_a_command_or_option_the_site_lacks(site: Path) -> None:
    """The check itself: a command added to the CLI after the site was built is named, and so
    is an option added to an existing command."""
    sections = cli_sections(page_text(site, "reference/cli"))
    store = typing.cast(click.Group, cli.commands["store"])
    grown_store = click.Group("store", commands={**store.commands, "vacuum": click.Command("vacuum")})
    report = store.commands["url"]
    grown_report = click.Command("url", params=[*report.params, click.Option(["--since-epoch"])])
    grown_store.commands["url"] = grown_report
    grown = click.Group(PROG, params=cli.params, commands={**cli.commands, "store": grown_store})
    assert undocumented_commands(grown, sections) == ["imagebuild store url --since-epoch", "imagebuild store vacuum"]


def cited_commands(text: str) -> Iterator[list[str]]:
    """The words after ``imagebuild`` as cited in code (spans and blocks) of a hand-written page,
    up to the end of the command (a pipe, ``;``, ``&&``, a comment, the line's end)."""
    for snippet in re.findall(r"```.*?```|`[^`\n]+`", text, flags=re.S):
        for line in snippet.replace("`", " ").splitlines():
            for found in re.finditer(r"(?<![\w/-])imagebuild((?: [^\s|;&#]+)*)", line):
                yield found.group(1).split()


def citation_problem(words: list[str]) -> str | None:
    """What is wrong with ``imagebuild WORDS...``: a command that does not exist, or an option
    its command does not take; None when the CLI would recognise it."""
    command: click.Command = cli
    path = [PROG]
    for word in words:
        if not (isinstance(command, click.Group) and not word.startswith("-")):
            break
        if word not in command.commands:
            return f"{' '.join(path)} has no command {word!r}" if word.isidentifier() or "-" in word else None
        command = command.commands[word]
        path.append(word)
    flags = {flag for param in command.params for flag in (*param.opts, *param.secondary_opts)}
    for word in words[len(path) - 1 :]:
        flag = word.split("=")[0]
        if flag.startswith("--") and flag not in flags:
            return f"{' '.join(path)} has no option {flag}"
    return None


def test_hand_written_pages_cite_only_commands_and_options_that_exist() -> None:
    wrong = [
        f"{page.relative_to(ROOT)}: {problem}"
        for page in sorted(DOCS.rglob("*.md"))
        for words in cited_commands(page.read_text(encoding="utf-8"))
        if (problem := citation_problem(words))
    ]
    assert wrong == []
    assert citation_problem(["history"]) == "imagebuild has no command 'history'"
    assert citation_problem(["build", "list", "--stage", "55"]) == "imagebuild build list has no option --stage"
    assert citation_problem(["build", "list", "--status", "failed"]) is None


# --- the spec -------------------------------------------------------------------------------------


def _models_in(annotation: object) -> list[tuple[str, type[BaseModel]]]:
    """(path suffix, model) of the models a field holds: ``[]`` list items, ``.<code>`` values."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [("", annotation)]
    if origin in (typing.Union, types.UnionType):
        return [found for arg in args for found in _models_in(arg)]
    if origin is list:
        return [("[]" + suffix, model) for suffix, model in _models_in(args[0])]
    if origin is dict:
        key = ".<code>" if args[0] is int else ".<name>"
        return [(key + suffix, model) for suffix, model in _models_in(args[1])]
    return []


def spec_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Every key of ``model`` and the models below it, as the reference writes them."""
    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        for suffix, nested in dict.fromkeys(_models_in(info.annotation)):
            yield from spec_keys(nested, path + suffix)


def target_model(cloud: str) -> type[BaseModel]:
    """The model a ``cloud:`` spec's ``target:`` is validated with, found by validating one (the
    table of models the validator reads, where a cloud's bare target is refused)."""
    try:
        spec = PipelineSpec.model_validate({"pipeline": "p", "cloud": cloud, "image_type": "t"})
    except ValidationError:
        from airflow_provider_imagebuild.spec import pipeline as spec_module

        return spec_module.TARGET_MODELS.get(cloud, spec_module.TargetSpec)
    return type(spec.target)


def undocumented_keys(model: type[BaseModel], text: str, prefix: str = "", skip: str = "") -> list[str]:
    """The keys of ``model`` a page does not show as code (``target.boot.timeout``)."""
    return [key for key in spec_keys(model, prefix) if not (skip and key.startswith(skip)) and key not in text]


def test_every_key_every_pipeline_has_is_in_the_spec_reference(site: Path) -> None:
    text = page_text(site, "reference/spec")
    assert undocumented_keys(PipelineSpec, text, skip="target.") == []
    assert "milestones.<code>.action" in text and "publish[].glance.visibility" in text


@pytest.mark.parametrize("cloud", CLOUDS)
def test_every_target_key_of_each_cloud_is_on_its_page(site: Path, cloud: str) -> None:
    text = page_text(site, f"reference/spec/{cloud}")
    assert f"cloud: {cloud}" in text
    assert undocumented_keys(target_model(cloud), text, "target") == []


def test_the_check_names_a_spec_key_the_site_lacks(site: Path) -> None:
    """The check itself: a key added to the models after the site was built is named."""
    text = page_text(site, "reference/spec")
    grown = create_model("GrownSpec", __base__=PipelineSpec, retention_days=(int, 30))
    assert undocumented_keys(grown, text, skip="target.") == ["retention_days"]


def test_the_milestone_catalog_page_lists_every_milestone(site: Path) -> None:
    from airflow_provider_imagebuild.build.catalog import CATALOG

    text = page_text(site, "concepts")
    assert [key for key in (f"s{code:03d}_{m.key}" for code, m in CATALOG.items()) if key not in text] == []


# --- documents the code cites ---------------------------------------------------------------------

CITED_DOCUMENT = re.compile(r"(?<![\w./-])([\w./-]+\.md)\b")
CITING_FOLDERS = ("airflow_provider_imagebuild", "benchmarks", "scripts", "dags")


def missing_documents(text: str, folder: Path = ROOT) -> list[str]:
    """The ``.md`` documents a source file in ``folder`` cites that this repository does not hold:
    a path is taken from the repository's root, a bare name from the root or the file's folder."""
    return [
        cited
        for cited in CITED_DOCUMENT.findall(text)
        if not ((ROOT / cited).is_file() or ("/" not in cited and (folder / cited).is_file()))
    ]


def test_the_code_cites_only_documents_this_repository_holds() -> None:
    """Docstrings and comments once sent readers to ``milestones.md`` and ``architecture.md``,
    design notes that were never in the repository; they now cite the site's pages."""
    wrong = [
        f"{path.relative_to(ROOT)}: {cited}"
        for folder in CITING_FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        for cited in missing_documents(path.read_text(encoding="utf-8"), path.parent)
    ]
    assert wrong == []
    assert missing_documents("see ``architecture.md`` and docs/concepts/nowhere.md") == [
        "architecture.md",
        "docs/concepts/nowhere.md",
    ]


def test_hand_written_pages_write_no_placeholder_markdown_would_swallow() -> None:
    """``<user>`` outside code is an HTML tag to Markdown: the reader sees nothing there (the
    README's "redo from 70 by <user>" showed as "redo from 70 by"). Placeholders go in code or
    capitals."""
    swallowed: list[str] = []
    for page in sorted(DOCS.rglob("*.md")):
        prose = re.sub(r"```.*?```|`[^`\n]*`|<!--.*?-->", "", page.read_text(encoding="utf-8"), flags=re.S)
        swallowed.extend(f"{page.relative_to(ROOT)}: {tag}" for tag in re.findall(r"<[A-Za-z/][^>\n]*>", prose))
    assert swallowed == []


def test_no_page_shows_markdown_it_did_not_render(site: Path) -> None:
    """GitHub renders a list right after a paragraph line, a list nested by two spaces and a
    fence inside a list item; MkDocs' Markdown does not and shows the raw ``- `` and backticks.
    Text copied from the README is where this comes from: a blank line before the list, nested
    items and fences indented by four."""
    raw: list[str] = []
    for built in sorted(site.rglob("index.html")):
        source = built.read_text(encoding="utf-8")
        if "<article" not in source:
            continue
        article = source[source.index("<article") : source.index("</article>")]
        text = html.unescape(re.sub(r"<[^>]+>", "", re.sub(r"<pre.*?</pre>", "", article, flags=re.S)))
        raw.extend(
            f"{built.parent.relative_to(site)}: {found.group(0).strip()[:60]}"
            for found in re.finditer(r"\n[ \t]*(?:- |\d+\. |```).*", text)
        )
    assert raw == []
