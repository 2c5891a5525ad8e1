# The README's two commands: `make serve` and `make test`. Both install into .venv once;
# the stamp is rebuilt only when pyproject.toml changes, so reruns start at once.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.desra-installed

.PHONY: serve test install browser

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# An editable install compiles nothing; without .pyc files every `desra` start compiles desra
	# again (where PYTHONDONTWRITEBYTECODE is set, on every run): 30 ms of a 0.6 s detect.
	$(PY) -m compileall -q desra ui
	touch $@

serve: $(STAMP)
	$(VENV)/bin/desra serve

browser:
	@command -v chromium >/dev/null 2>&1 || sh scripts/install-chromium.sh

test: $(STAMP) browser
	$(PY) -m pytest
