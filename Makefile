# The two commands of the quick start. Both set up everything they need first (idempotent).
.PHONY: demo test setup bench

demo:    ## run the main job on embedded defaults (SQLite, our own Label Studio, the sample set)
	bash scripts/demo.sh $(ARGS)

test:    ## run the whole test suite, real servers and browser included
	bash scripts/test.sh $(ARGS)

setup:   ## only the set-up (Debian packages, .venv with pinned packages)
	bash scripts/setup.sh

bench:   ## print the benchmarks' figures
	bash scripts/setup.sh && for b in benchmarks/*_bench.py; do .venv/bin/python $$b; done
