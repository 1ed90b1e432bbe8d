# The set-up commands of the README: `make study`, `make book`, `make test`; each installs first,
# into the project's own virtual environment (.venv), so they also work where the system Python
# refuses `pip install` (PEP 668, Debian and Ubuntu).
PYTHON ?= python3
PROFILE ?= cpu
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install browser study book test lint bench quality clean

# Re-installs only when pyproject.toml changed since the last install.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

# Debian's headless Chromium, for the test that opens the built book in a real browser.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium (needs root and Debian's apt); the browser test will say so"; }

# The study: the notebooks executed with the profile's parameters into book/executed, then the book.
study: install
	$(BIN)/maskad study --profile $(PROFILE)

# Render the book from the executed notebooks in book/executed (the committed reference edition,
# or the last `make study`): nothing is trained.
book: install
	$(BIN)/jupyter-book build . -W -n --keep-going

test: install browser
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check maskad_core tests bench

bench: install
	$(BIN)/python -m bench

# The detection benchmark: bench/results/quality.{json,md}.
quality: install
	$(BIN)/python -m bench.quality

clean:
	rm -rf _build
