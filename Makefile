# The two commands of the README: `make demo` (the main job) and `make test` (every test).
SHELL := /bin/bash
ROOT := $(CURDIR)
export PATH := $(ROOT)/.tools/bin:$(ROOT)/.venv/bin:$(PATH)
export PULUMI_SKIP_UPDATE_CHECK := true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION := true
export CLUSTERCTL_DISABLE_VERSIONCHECK := true
PYTEST_ARGS ?=
# two workers, a test file each (its module fixtures stay in one process): most of the suite waits on
# API servers and the pulumi CLI, so two files at a time fit the 2-core machines it runs on; the files go out
# in the order tests/conftest.py sets (the longest first), not by their number of tests
PYTEST_WORKERS ?= -n 2 --dist loadfile --no-loadscope-reorder

.PHONY: bootstrap demo test unit lint bench bench-pulumi bench-live clusters-down clean

bootstrap:
	python3 tools/bootstrap.py

demo: bootstrap
	python -m lab.demo

# lint first: a layering or typing error fails in seconds, before the ~40-minute suite
test: lint
	python3 tools/bootstrap.py --tests
	tools/offline python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

# the tests that need no cluster and no pulumi CLI (marker `unit`): seconds, one process
unit:
	python3 tools/bootstrap.py --tests
	tools/offline python -m pytest -m unit -p no:xdist $(PYTEST_ARGS)

bench: bootstrap
	python -m benchmarks.move_bench $(BENCH_ARGS)

# what the Pulumi layer adds: no-change previews, the pivot's `pulumi up` against the engine's own move
bench-pulumi: bootstrap
	python -m benchmarks.pulumi_bench $(BENCH_ARGS)

# the live pivot, ours against clusterctl + move.yml's handover by hand, on one live lab (issue 17, goal 5)
bench-live: bootstrap
	python -m benchmarks.live_bench $(BENCH_ARGS)

# needs only the virtualenv (no Go toolchain): ruff, the import contracts, mypy --strict
lint:
	python3 tools/bootstrap.py --venv-only
	ruff check metal3_pivot lab langhost components policies tests tools benchmarks __main__.py
	python -m pytest -q -p no:xdist -p no:cacheprovider tests/test_layering.py
	mypy --strict metal3_pivot components policies

clusters-down:
	python -m lab.cli down

clean: clusters-down
	rm -rf .lab .state
