# The two commands a newcomer needs: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint venv clean browser

venv: $(STAMP)

# Reinstall whenever pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m syncplatform.launcher

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The browser test drives Debian's chromium (Playwright comes with the dev extras and never
# downloads a browser of its own). Installed here when missing; without root it says how.
CHROMIUM_PATH ?= /usr/bin/chromium
browser:
	@test -x $(CHROMIUM_PATH) || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing chromium for the browser test ..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "*** $(CHROMIUM_PATH) is missing: the browser test (tests/browser) will fail." >&2; \
	    echo "*** Install it with: sudo apt-get install -y chromium" >&2; \
	  fi; \
	}

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .run .pytest_cache .ruff_cache
