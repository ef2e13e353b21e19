# The README's two commands: `make demo` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test bench docker-engine docker-image clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: venv
	$(BIN)/dockerparallel demo

test: venv
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

# The documentation site, into site/; --strict: a broken reference or docstring fails the build.
.PHONY: docs
DOCS_STAMP  := $(VENV)/.docs-installed
BENCH_STAMP := $(VENV)/.bench-installed

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The benchmarks draw their charts into docs/assets/charts with matplotlib (the bench extra).
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

# The Docker benchmark compares with Debian's docker-compose and needs the engine and the test image.
bench: venv $(BENCH_STAMP) docker-engine docker-image
	command -v docker-compose >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

docker-engine:
	bash scripts/install-docker.sh

docker-image: venv
	bash scripts/build-test-image.sh $(BIN)/python

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .hypothesis
