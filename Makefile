# The two commands of the quick start. Both set up everything they need first (idempotent).
.PHONY: demo test setup bench

demo:    ## run the main job on embedded defaults (SQLite, our own Label Studio, the sample set); no Debian packages
	bash scripts/demo.sh $(ARGS)

test:    ## run the whole test suite, real servers and browser included
	bash scripts/test.sh $(ARGS)

setup:   ## only the set-up: the tests' Debian packages, .venv with the pinned packages
	bash scripts/install_system.sh && bash scripts/setup.sh

bench:   ## print the benchmarks' figures
	bash scripts/setup.sh && for b in benchmarks/*_bench.py; do .venv/bin/python $$b; done
