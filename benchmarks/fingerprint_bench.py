"""What fingerprinting costs a milestone task when it starts, over the shipped sample pipelines.

Every milestone task fingerprints itself before it runs (#32: the spec entry, every file its
playbook or template uses, variables, source image, tool versions, watched values, chained on the
previous milestone's fingerprint). This measures, per shipped spec in ``dags/pipelines``, the whole
chain as reuse will compute it before a build (``pipeline_fingerprints``; watched values left out:
they are network reads, bounded by their own timeouts), cold (first call in a process: files read
from disk, playbooks parsed) and warm (median of 5), the number of inputs and of files followed, and
``tool_versions()`` alone (Packer's version asked once per task). Prints a table; fails (exit 1) if
the same inputs gave two different chains.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from airflow_provider_imagebuild.fingerprints import pipeline_fingerprints, tool_versions
    from airflow_provider_imagebuild.plan import plan_from_spec
    from airflow_provider_imagebuild.spec.pipeline import load_spec

    started = time.perf_counter()
    tools = tool_versions()
    tools_s = time.perf_counter() - started
    print(f"tool_versions(): {tools_s * 1000:.0f} ms ({len(tools)} tools: {', '.join(sorted(tools))})")
    print(f"{'pipeline':38} {'milestones':>10} {'inputs':>7} {'files':>6} {'cold ms':>8} {'warm ms':>8}")
    stable = True
    for path in sorted((ROOT / "dags/pipelines").glob("*.yaml")):
        spec = load_spec(path)
        codes = plan_from_spec(spec).codes
        started = time.perf_counter()
        chain = pipeline_fingerprints(spec, path.parent, codes, tools=tools)
        cold = time.perf_counter() - started
        warm = []
        for _ in range(5):
            started = time.perf_counter()
            again = pipeline_fingerprints(spec, path.parent, codes, tools=tools)
            warm.append(time.perf_counter() - started)
            stable &= {c: f.fingerprint for c, f in again.items()} == {c: f.fingerprint for c, f in chain.items()}
        inputs = sum(len(f.inputs) for f in chain.values())
        files = len({name for f in chain.values() for name in f.inputs if name.startswith("file:")})
        print(
            f"{spec.pipeline:38} {len(chain):>10} {inputs:>7} {files:>6} "
            f"{cold * 1000:>8.1f} {statistics.median(warm) * 1000:>8.1f}"
        )
    print(f"Measured {time.strftime('%Y-%m-%d')} with `.venv/bin/python benchmarks/fingerprint_bench.py` (2 cores).")
    if not stable:
        print("FAIL: the same inputs gave two different chains")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
