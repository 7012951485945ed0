# Two entry points: `make run` (demo data -> train -> register -> serve) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/leadscore demo

test: $(STAMP) system-deps
	$(BIN)/ruff check --quiet .
	$(BIN)/mypy --no-error-summary features models training serving leadscore benchmarks
	$(BIN)/python -m pytest -q

# Tests drive Debian's headless Chromium (the threshold page) and a throw-away PostgreSQL server (the
# production backends); install them with apt-get when missing.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	(command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1) || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing for the tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy features models training serving leadscore benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/featurize.py

clean:
	rm -rf $(VENV) .leadscore
