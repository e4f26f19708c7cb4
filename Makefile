# The two commands of the README: `make run` and `make test`. Both set everything up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR := /usr/share/datasets/fashion-mnist
OUT ?= runs/default
ARGS ?=

.PHONY: run test test-fast install data lint typecheck check smoke clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package (nothing is downloaded at run time).
data:
	@if [ -n "$$ELFDD_DATA" ] || [ -f $(DATA_DIR)/train-images-idx3-ubyte.gz ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		echo "installing Fashion-MNIST (apt-get install dataset-fashion-mnist)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; \
	else \
		echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist', or set ELFDD_DATA to a folder holding the four IDX files" >&2; \
		exit 2; \
	fi

run: install data
	$(VENV)/bin/elfdd run --config configs/default.yaml --out $(OUT) $(ARGS)

smoke: install data
	$(VENV)/bin/elfdd run --config configs/smoke.yaml --out runs/smoke

test: install data
	$(PY) -m pytest -q

# What a developer runs while editing: everything but the tests marked slow (several processes, long training).
test-fast: install data
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

# mypy checks the package by its name, elfdd, which the repository root is installed as (pyproject.toml): through
# a link named elfdd in a temporary folder, so the check does not depend on what the checkout folder is called.
TYPED := core models store pipeline flows
typecheck: install
	@link=$$(mktemp -d) && ln -s "$(CURDIR)" "$$link/elfdd" && \
	(cd "$$link" && "$(CURDIR)/$(VENV)/bin/mypy" --config-file "$(CURDIR)/pyproject.toml" $(TYPED:%=-p elfdd.%) -m elfdd.api); \
	status=$$?; rm -rf "$$link"; exit $$status

# What CI runs: the gates, then the whole suite.
check: lint typecheck test

clean:
	rm -rf runs .pytest_cache
