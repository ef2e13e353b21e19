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

# The Docker benchmark compares with Debian's docker-compose and needs the engine and the test image.
bench: venv docker-engine docker-image
	command -v docker-compose >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-compose
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

docker-engine:
	bash scripts/install-docker.sh

docker-image: venv
	bash scripts/build-test-image.sh $(BIN)/python

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .hypothesis
