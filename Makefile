.PHONY: setup test unit check demo bench

setup:
	bash scripts/setup.sh

test:
	bash scripts/test.sh

unit:
	python3 -m pytest -q -m "not integration and not e2e"

check:
	ruff check cd4ml tests bench

demo:
	bash scripts/demo.sh

bench:
	for b in bench/bench_*.py; do python3 $$b; done
