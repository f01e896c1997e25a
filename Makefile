# The two set-up commands of the README: `make demo` runs the main job, `make test` runs the tests.
# Each works on a fresh machine by itself: it creates .venv, installs what it needs, then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The editor's JavaScript dependency (litegraph, pinned in web/package-lock.json), installed by npm ci.
WEB_STAMP := web/node_modules/.installed
# The browser tests drive Debian's Chromium (Playwright never downloads a browser here).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test install lint web browser

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch and torchvision are pinned: pip takes these releases from local disk.
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test,bench,ray]'
	touch $@

$(WEB_STAMP): web/package.json web/package-lock.json
	@command -v npm >/dev/null 2>&1 || { \
	  echo "installing Debian's npm for the editor's dependencies"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm; }
	cd web && npm ci --no-audit --no-fund
	touch $@

web: $(WEB_STAMP)

browser:
	@test -x $(CHROMIUM) || command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }

install: $(STAMP) $(WEB_STAMP)

demo: $(STAMP) $(WEB_STAMP)
	$(VENV)/bin/nodegraph run workflows/variation.json

test: $(STAMP) $(WEB_STAMP) browser
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
