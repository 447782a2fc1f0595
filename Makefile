# The two commands a new user runs: `make demo` (sets everything up, runs the main job) and
# `make test` (the test suite, as CI runs it). Everything is installed on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# uv runs from the machine's Python, never from an activated venv (this project's has no pip nor
# uv: `source .venv/bin/activate` then `make demo` failed with "No module named pip"), so the
# activated venv's bin folder is taken off PATH for the two commands that install and run uv.
ifdef VIRTUAL_ENV
HOST_PATH := $(subst $(VIRTUAL_ENV)/bin:,,$(PATH))
else
HOST_PATH := $(PATH)
endif
HOST_PY := env -u VIRTUAL_ENV PATH="$(HOST_PATH)" python3
UV := $(HOST_PY) -m uv
export UV_LINK_MODE := copy
export AIRFLOW__CORE__LOAD_EXAMPLES := False

.PHONY: setup system-deps venv node rootfs-cache vcsim packer-tools demo walkthrough test lint docs bench scaleout clean

setup: system-deps venv node rootfs-cache vcsim

system-deps:
	@bash scripts/install-system-deps.sh

venv:
	@$(UV) --version >/dev/null 2>&1 || $(HOST_PY) -m pip install --quiet uv
	@$(UV) sync --frozen --extra ansible --extra azure --extra gcp --extra celery --extra vsphere --extra openstack --extra notify --quiet

node_modules/.package-lock.json: package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

node: node_modules/.package-lock.json

# The Debian base (debootstrap) downloaded once into /var/cache/imagebuild (or $$IMAGEBUILD_CACHE),
# and a bootstrapped root filesystem archive: build hosts start from it without the network.
rootfs-cache: venv system-deps
	@$(PY) -m airflow_provider_imagebuild.targets.rootfs --rootfs >/dev/null

# The vCenter simulator for the vSphere tests: govmomi's simulator library (a Debian package) with
# a main of our own, built in GOPATH mode (no Go module proxy is needed).
VCSIM := .cache/vcsim
$(VCSIM): tests/servers/vcsim/main.go
	@mkdir -p .cache
	GO111MODULE=off GOPATH=$(CURDIR)/.cache/gopath:/usr/share/gocode GOCACHE=$(CURDIR)/.cache/gocache \
		GOFLAGS= go build -o $@ ./tests/servers/vcsim

vcsim: system-deps
	@$(MAKE) --no-print-directory $(VCSIM)

# Packer and the plugins of its builders (amazon, azure, googlecompute, openstack, vsphere, qemu,
# ansible), built from their Go modules at the versions scripts/packer-tools.sh pins, into
# /var/cache/imagebuild/packer (or $$IMAGEBUILD_CACHE/packer): built once per machine, whatever the
# clone; a second run only checks a stamp. The venv's bin/packer links to it, and the provider gives
# Packer the plugins folder beside it. `make demo` needs no Packer, so it does not wait for this.
packer-tools: venv system-deps
	@bash scripts/packer-tools.sh $(VENV)/bin

demo: setup
	@$(PY) scripts/demo.py

walkthrough: setup
	@bash scripts/walkthrough.sh

lint: venv packer-tools
	$(VENV)/bin/ruff check airflow_provider_imagebuild tests benchmarks dags scripts docs/hooks
	$(VENV)/bin/mypy
	$(VENV)/bin/imagebuild spec check dags/pipelines
	cd dags/ansible && PATH=$(CURDIR)/$(VENV)/bin:$$PATH ansible-lint --profile production --offline --nocolor -q .
	@$(VENV)/bin/packer fmt -check dags/packer >/dev/null || { $(VENV)/bin/packer fmt -check dags/packer; echo "run: $(VENV)/bin/packer fmt dags/packer"; exit 1; }

# The documentation site (mkdocs.yml, docs/) into site/, outside git: --strict fails on a broken link
# or anchor and on a page missing from the nav; the spec and CLI references are generated from the
# code as it builds (a few seconds). Open site/index.html, or `.venv/bin/mkdocs serve` while writing.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# Two workers (pytest-xdist): the slow end-to-end tests mostly wait on child processes (Packer,
# ansible-playbook, debootstrap, airflow standalone), so two run side by side. Slow tests start
# first; tests/standalone/ shares one airflow standalone on one worker (tests/conftest.py).
test: setup packer-tools lint docs
	$(PY) -m pytest -q -n 2 --dist loadscope --durations=30

bench: setup packer-tools
	$(PY) benchmarks/store_bench.py
	$(PY) benchmarks/dag_bench.py
	$(PY) benchmarks/spec_bench.py
	$(PY) benchmarks/aws_bench.py
	$(PY) benchmarks/azure_bench.py
	$(PY) benchmarks/gcp_bench.py
	$(PY) benchmarks/report_bench.py
	$(PY) benchmarks/vsphere_bench.py
	$(PY) benchmarks/recovery_bench.py
	$(PY) benchmarks/boot_bench.py
	$(PY) benchmarks/ui_bench.py
	$(PY) benchmarks/gc_bench.py
	$(PY) benchmarks/fingerprint_bench.py
	$(PY) benchmarks/scaleout_bench.py --short
	$(PY) benchmarks/nightly_reuse_bench.py
	$(PY) benchmarks/nightly_reuse_aws_bench.py

# The CeleryExecutor scenario: ten builds on two workers through a worker kill, a scheduler
# restart and a Redis outage, then the figures against airflow standalone (needs root).
scaleout: setup
	$(PY) benchmarks/scaleout_bench.py

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .demo site
