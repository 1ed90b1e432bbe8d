# The set-up commands of the README: `make study`, `make book`, `make test`; each installs first,
# into a virtual environment of the project, so they also work where the system Python refuses
# `pip install` (PEP 668, Debian and Ubuntu): `make study` and `make test` into .venv (everything,
# torch included), `make book` into its own light one (book/requirements.txt: no torch).
PYTHON ?= python3
PROFILE ?= cpu
VENV ?= .venv
BIN := $(VENV)/bin
# Under _build/ (git-ignored, excluded from the book's sources; `make clean` removes it).
BOOK_VENV ?= _build/venv-book
BOOK_BIN := $(BOOK_VENV)/bin

.PHONY: install book-install browser study book test lint bench quality gpu-pack clean

# Re-installs only when pyproject.toml changed since the last install.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@touch $@

# The book build only: jupyter-book, its Sphinx extensions and what book/_ext/maskad_book.py imports.
# Re-installs only when book/requirements.txt changed since the last install.
book-install: $(BOOK_VENV)/.installed

$(BOOK_VENV)/.installed: book/requirements.txt
	@test -x $(BOOK_BIN)/python || $(PYTHON) -m venv $(BOOK_VENV)
	$(BOOK_BIN)/python -m pip install -q -r book/requirements.txt
	@touch $@

# Debian's headless Chromium, for the test that opens the built book in a real browser.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium (needs root and Debian's apt); the browser test will say so"; }

# The study: the notebooks executed with the profile's parameters into book/executed, then the book.
study: install
	$(BIN)/maskad study --profile $(PROFILE)

# Render the book from the executed notebooks in book/executed* (the committed reference editions,
# or the last `make study`) into _build/html: nothing is trained, and torch is not installed.
book: book-install
	$(BOOK_BIN)/jupyter-book build . -W -n --keep-going
	@echo "The book: $(CURDIR)/_build/html/index.html"

test: install browser
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check maskad_core tests bench

bench: install
	$(BIN)/python -m bench

# The detection benchmark: bench/results/quality.{json,md}.
quality: install
	$(BIN)/python -m bench.records.quality

# The real data resized to 224 px for the GPU run (python -m bench.gpu run): .gpu-pack/, git-ignored.
gpu-pack: install
	$(BIN)/python -m bench.gpu pack --out .gpu-pack

clean:
	rm -rf _build
