# Two entry points (see README): `make demo` runs the end-to-end job on built-in phantom data,
# `make test` runs the tests. Both create the virtual environment on first use.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
DEMO_OUT ?= demo_output

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: install
	$(BIN)/medisynth demo --out $(DEMO_OUT) --overwrite

test: install
	$(BIN)/pytest -n 2 --durations=15

bench: install
	$(BIN)/python benchmarks/bench_dcgan.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
