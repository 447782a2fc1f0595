#!/usr/bin/env bash
# A walk through the build state store with the `imagebuild` CLI: a build fails at a milestone,
# the store shows where it stopped, and a second run resumes there without redoing anything.
# Switches: IMAGEBUILD_DEMO_FAIL_AT (default 45) picks the milestone that fails on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
FAIL_AT="${IMAGEBUILD_DEMO_FAIL_AT:-45}"
DEMO_DIR="$(pwd)/.demo"
rm -rf "$DEMO_DIR" && mkdir -p "$DEMO_DIR"
export IMAGEBUILD_STORE="sqlite:///$DEMO_DIR/state.db"
export COLUMNS=130
ib() { .venv/bin/imagebuild "$@"; }
BUILD="demo-$(date +%Y%m%d-%H%M%S)"

run_pipeline() {   # $1: run name; walks the plan, skipping what the store says is done
  local run="$1" code token
  for code in $(ib build show "$BUILD" --json | .venv/bin/python -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(str(c) for c in d["plan"]))'); do
    if ib build show "$BUILD" --json | .venv/bin/python -c "import json,sys; sys.exit(0 if $code in json.load(sys.stdin)['completed'] else 1)"; then
      echo "  [$run] milestone $code: already completed, skipped"
      continue
    fi
    token=$(ib build begin "$BUILD" "$code" --owner "walkthrough/$run" --lease-seconds 60)
    if [ "$run" = "first-run" ] && [ "$code" = "$FAIL_AT" ]; then
      ib build fail "$BUILD" "$code" --token "$token" --error "injected failure at $code (IMAGEBUILD_DEMO_FAIL_AT)"
      echo "  [$run] milestone $code: FAILED (injected)"
      return 1
    fi
    sleep 0.1   # the milestone's work
    ib build complete "$BUILD" "$code" --token "$token" --output "finished_by=$run" >/dev/null
    echo "  [$run] milestone $code: completed"
  done
}

echo "== store: $IMAGEBUILD_STORE"
ib store init
ib build create "$BUILD" --pipeline demo-base --cloud local --image-type base --os debian-12 \
  --states 0,5,10,15,25,35,45,55,70,90,95,100 --meta purpose=walkthrough
echo "== first run (fails at $FAIL_AT)"
run_pipeline first-run || true
ib build show "$BUILD"
echo "== second run: resumes at $FAIL_AT"
run_pipeline resume
ib build show "$BUILD"
ib build history "$BUILD" | tail -n 8
echo "Full pipeline demo with Airflow, Packer and Ansible: make demo (README.md)."
