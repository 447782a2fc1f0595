"""docs/benchmarks.md is written by several benchmarks; each replaces only its own section."""

from __future__ import annotations

from pathlib import Path


def replace_section(path: Path, heading: str, body: list[str]) -> None:
    """Put ``heading`` + ``body`` in place of that section (or at the end), keeping the others."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = "\n".join([heading, "", *body]).rstrip() + "\n"
    if f"\n{heading}\n" in text:
        before, _, rest = text.partition(f"\n{heading}\n")
        after = rest.split("\n## ", 1)
        tail = "\n## " + after[1] if len(after) == 2 else ""
        text = before.rstrip() + "\n\n" + block + tail
    else:
        text = text.rstrip() + "\n\n" + block
    path.write_text(text)
    print(f"wrote {path} ({heading.lstrip('# ')})")
