# The two commands of the README: `make demo` (the main job) and `make test` (every test).
SHELL := /bin/bash
ROOT := $(CURDIR)
export PATH := $(ROOT)/.tools/bin:$(ROOT)/.venv/bin:$(PATH)
export PULUMI_SKIP_UPDATE_CHECK := true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION := true
export CLUSTERCTL_DISABLE_VERSIONCHECK := true
PYTEST_ARGS ?=
# two workers, a test file each (its module fixtures stay in one process): most of the suite waits on
# API servers and the pulumi CLI, so two files at a time fit the 2-core machines it runs on
PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: bootstrap demo test lint bench clusters-down clean

bootstrap:
	python3 tools/bootstrap.py

demo: bootstrap
	python -m lab.demo

test:
	python3 tools/bootstrap.py --tests
	tools/offline python -m pytest $(PYTEST_WORKERS) $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

bench: bootstrap
	python -m benchmarks.move_bench $(BENCH_ARGS)

lint: bootstrap
	ruff check metal3_pivot lab langhost components policies tests tools benchmarks __main__.py
	mypy --strict metal3_pivot

clusters-down:
	python -m lab.cli down

clean: clusters-down
	rm -rf .lab .state
