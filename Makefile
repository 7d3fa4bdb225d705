# Entry points for building, testing and demoing gitfleet. Every target that
# runs the project first runs scripts/setup.sh, which installs what is missing
# and returns quickly when everything is in place.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

# scripts/setup.sh records the Temporal CLI it resolved in .tools/env. A
# TEMPORAL_CLI from the environment or the command line takes precedence.
ifeq ($(origin TEMPORAL_CLI),undefined)
-include .tools/env
endif
ifdef TEMPORAL_CLI
export TEMPORAL_CLI
endif

JEST := npx jest --runInBand

.PHONY: setup build test test-long demo bench clean

setup:
	bash scripts/setup.sh

build:
	npm run build

# The last line is jest's totals in the plain "N passed, N failed" form.
test: setup
	rm -f .tools/jest-results.json; status=0; $(JEST) --json --outputFile=.tools/jest-results.json || status=$$?; \
	  node scripts/test-summary.js .tools/jest-results.json; exit $$status

# Long chaos tests are skipped unless GITFLEET_LONG=1.
test-long: setup
	GITFLEET_LONG=1 $(JEST)

demo: setup
	node dist/src/cli.js demo

bench: setup
	@shopt -s nullglob; \
	benches=(dist/bench/*.js); \
	if (( $${#benches[@]} == 0 )); then echo "bench: no files match dist/bench/*.js"; exit 1; fi; \
	for bench in "$${benches[@]}"; do \
		echo "bench: node $$bench"; \
		node "$$bench"; \
	done

# Keeps .tools/bin (the Temporal CLI takes minutes to build) and node_modules.
clean:
	rm -rf dist .tools/state
