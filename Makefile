# The two set-up commands of the README are `make study` and `make test`; each installs first.
PYTHON ?= python3
PROFILE ?= cpu

.PHONY: install browser study book test lint bench clean

install:
	$(PYTHON) -m pip install -q -e ".[dev]"

# Debian's headless Chromium, for the test that opens the built book in a real browser.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium (needs root and Debian's apt); the browser test will say so"; }

# The study: the six notebooks executed with the profile's parameters, then the book.
study: install
	maskad study --profile $(PROFILE)

# Re-render the book from the executed notebooks already in book/executed.
book: install
	jupyter-book build . -W -n --keep-going

test: install browser
	$(PYTHON) -m pytest

lint:
	ruff check maskad_core tests bench

bench: install
	$(PYTHON) -m bench

clean:
	rm -rf _build book/executed
