"""How fast hostile specs are refused: ``imagebuild spec check`` as a merge-request job runs it.

Four specs, each written to a temporary folder and checked by a real ``imagebuild`` process (so
the figure includes the interpreter's start), median of 5 runs: a good spec (the baseline), a
spec with 100,000 milestones (2.2 MB), a "billion laughs" alias bomb in a milestone's extra
variables (10**9 values once expanded, 1 KB on disk), and a flat list of 150,000 values in 450 KB
(the node bound rather than the size bound). Before the spec loader bounded them, the 100k spec
took seconds to parse and validate, and the alias bomb hung the DAG processor for over 45 s
inside Airflow's scan of operator arguments. Writes the "Hostile specs" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import replace_section

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SECTION = "## Hostile specs"
RUNS = 5
GOOD = "pipeline: good\ncloud: local\nimage_type: base\nmilestones:\n  42: {action: command, key: k, command: 'true'}\n"


def bomb(levels: int = 9) -> str:
    anchors = ["lol: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    anchors += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    body = "\n".join(f"        {a}" for a in anchors)
    return (
        "pipeline: bomb\ncloud: local\nimage_type: base\nmilestones:\n"
        "  15:\n    action: command\n    command: 'true'\n    env:\n      nested:\n" + body + "\n"
    )


SPECS = {
    "good spec (baseline)": GOOD,
    "100,000 milestones": GOOD + "".join(f"  {i}: {{action: noop}}\n" for i in range(101, 100_101)),
    "alias bomb (10**9 values)": bomb(),
    "150,000 values in 450 KB": GOOD + "tags: [" + ", ".join(["0"] * 150_000) + "]\n",
}


def check(path: Path) -> tuple[float, int, str]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "airflow_provider_imagebuild.cli.main", "spec", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return time.perf_counter() - started, proc.returncode, (proc.stderr or proc.stdout).strip().splitlines()[0]


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in SPECS.items():
            path = Path(tmp) / "spec.yaml"
            path.write_text(text)
            runs = [check(path) for _ in range(RUNS)]
            seconds = statistics.median(r[0] for r in runs)
            verdict = runs[0][2].replace(str(path), "spec.yaml")
            rows.append((name, path.stat().st_size, seconds, runs[0][1], verdict))
            print(f"{name:28} {path.stat().st_size:>9} B  {seconds:6.3f} s  exit {runs[0][1]}  {verdict[:90]}")
    body = [
        f"Measured {time.strftime('%Y-%m-%d')} with `.venv/bin/python benchmarks/spec_bench.py` "
        "(part of `make bench`): `imagebuild spec check` as a process, interpreter start included, "
        f"median of {RUNS} runs.",
        "",
        "| spec | size | time | exit | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    body += [f"| {n} | {size:,} B | **{s:.2f} s** | {code} | {v[:110]} |" for n, size, s, code, v in rows]
    replace_section(ROOT / "docs/benchmarks.md", SECTION, body)


if __name__ == "__main__":
    main()
