# The two commands of the README: `make run` and `make test`. Both set everything up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA_DIR := /usr/share/datasets/fashion-mnist
OUT ?= runs/default
ARGS ?=

.PHONY: run test test-fast install data lint typecheck check smoke clean lock

# requirements/lock.txt is the exact stack (every package, transitive ones too) that `make run`, `make test` and CI
# install, so the two README commands give the same numbers on every machine; pyproject.toml keeps the ranges a
# researcher's own environment may use. `make lock` writes the lock again from a fresh resolution.
LOCK := requirements/lock.txt

$(VENV)/.installed: pyproject.toml $(LOCK)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(LOCK) -e '.[dev]'
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
	$(VENV)/bin/elfdd run --config default --out $(OUT) $(ARGS)

smoke: install data
	$(VENV)/bin/elfdd run --config smoke --out runs/smoke

test: install data
	$(PY) -m pytest -q

# What a developer runs while editing: everything but the tests marked slow (several processes, long training).
test-fast: install data
	$(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy -p elfdd

lock:
	rm -rf .lock-venv && python3 -m venv .lock-venv && .lock-venv/bin/pip install -q '.[dev]' && \
	(echo "# The exact stack of make run / make test / CI (make lock writes it; pyproject.toml has the ranges)."; \
	 .lock-venv/bin/pip freeze --exclude-editable | grep -v '^elfdd') > $(LOCK) && rm -rf .lock-venv

# What CI runs: the gates, then the whole suite.
check: lint typecheck test

clean:
	rm -rf runs .pytest_cache
