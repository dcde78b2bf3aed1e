# DocuMind: `make run` (install, start the embedded default, serve) and `make test` (install, run every test).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat requirements/*.txt | sha256sum | cut -c1-12)

.PHONY: install run test lint format bench loadtest worker migrate mutation clean

# (Re)install when any requirements file changes; the stamp's name carries their hash.
$(STAMP): requirements/base.txt requirements/local.txt requirements/ocr.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { \
	  echo "Could not create $(VENV): Python 3.11+ with venv is needed (Debian/Ubuntu: apt install python3-venv)."; \
	  rm -rf $(VENV); exit 1; }
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is needed (PYTHON=python3.12 make ...)"; exit 1; }
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/local.txt
	$(PY) -m pip install --quiet --no-deps -r requirements/ocr.txt
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) scripts/run.py

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) benchmarks/run_all.py

# locust against `make run` on loopback (its own var/ and port): LOADTEST_SECONDS (120), LOADTEST_USERS (10).
loadtest: install
	$(PY) -m benchmarks.loadtest.driver

worker: install
	$(VENV)/bin/celery -A config worker -B -l INFO

# Mutation testing of the modules where a wrong line leaks data or money ([tool.mutmut] in pyproject.toml,
# scripts/mutation_report.py, docs/mutation.md). Not in CI: slow (one mutant at a time). Score per module at the end.
mutation: install
	$(PY) scripts/mutation_report.py --run --fresh --list

migrate: install
	$(PY) manage.py migrate

clean:
	rm -rf var mutants
