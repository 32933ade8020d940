# soap-service: `make run` to try it, `make test` to prove it.

# The Pythons soap-service runs on, newest first.
SUPPORTED_PYTHONS := 3.13 3.12 3.11
# Where to find one of version $(1): pythonX.Y on the PATH if it runs (pyenv's shims are on
# the PATH but answer only for the version pyenv has selected), then the interpreters pyenv
# and uv installed, newest patch release first.
python_candidates = $$(command -v python$(1)) \
	$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$(1).*/bin/python$(1) \
		$$HOME/.local/share/uv/python/cpython-$(1).*/bin/python$(1) 2>/dev/null | sort -rV)
# The first candidate of version $(1) that runs, or nothing.
find_python = $(shell for p in $(call python_candidates,$(1)); do \
	"$$p" -c '' >/dev/null 2>&1 && { echo "$$p"; break; }; done)
# The newest supported Python found: `make PYTHON=/path/to/python3.12 ...` chooses another.
ifndef PYTHON
PYTHON := $(firstword $(foreach v,$(SUPPORTED_PYTHONS),$(call find_python,$(v))))
endif
PYTHON_VERSION := $(if $(PYTHON),$(shell $(PYTHON) -c \
	'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null))
NO_PYTHON := soap-service needs Python 3.11, 3.12 or 3.13: \
	$(if $(PYTHON),$(PYTHON) is $(or $(PYTHON_VERSION),not a Python that runs),none was found). \
	Install one (README.md, "Which Python") or name it: make PYTHON=/path/to/python3.13
VENV := .venv
BIN := $(VENV)/bin
# Named after the Python: when the one chosen changes, the environment is made anew.
STAMP := $(VENV)/.installed-python$(PYTHON_VERSION)
# The address written into the committed WSDL: the development default.
CANONICAL_URL := https://localhost:8443/soap/v1
WSDL_FILE := wsdl/messaging-v1.wsdl

.PHONY: install run test test-other-pythons test-core lint format wsdl wsdl-check bench \
	bench-pythons bench-pythons-possible postgres test-tools demo clean translations

$(STAMP): pyproject.toml
	@$(if $(filter $(SUPPORTED_PYTHONS),$(PYTHON_VERSION)),,echo '$(NO_PYTHON)' >&2; exit 1)
	@echo "Python $(PYTHON_VERSION): $(PYTHON)"
	@if [ -x $(BIN)/python ] && ! $(BIN)/python -c 'import sys; \
		sys.exit("%d.%d" % sys.version_info[:2] != "$(PYTHON_VERSION)")'; then rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## Start the whole service on the embedded default (SQLite, self-signed certificate):
## the SOAP API at https://localhost:8443/soap/v1, a delivery worker, and a mail sink
## that keeps every notification in var/mail/.
run: $(STAMP)
	$(BIN)/soap-service init
	$(BIN)/soap-service dev-account
	$(BIN)/soap-service dev

## Lint and type-check, then every test (unit, end-to-end on SQLite and PostgreSQL,
## migrations).
test: $(STAMP) postgres test-tools lint
	$(BIN)/pytest

## The end-to-end SOAP, delivery and pickup tests (and the unit tests) on each other
## supported Python found, each in its own .venv-3.X; one not found is skipped with a
## line saying so, or fails the run with REQUIRE_ALL_PYTHONS=1 (as CI runs it).
OTHER_PYTHONS := $(filter-out $(PYTHON_VERSION),$(SUPPORTED_PYTHONS))
CORE_TESTS := tests/unit tests/delivery tests/pickup tests/e2e/test_soap_api.py \
	tests/e2e/test_batch_api.py tests/e2e/test_journal_api.py tests/e2e/test_mtom.py \
	tests/e2e/test_bad_input.py tests/e2e/test_pickup_browser.py \
	tests/e2e/test_smtp_channel_delivery.py
test-other-pythons: $(addprefix test-python,$(OTHER_PYTHONS))

test-python%: postgres test-tools
	$(eval FOUND := $(call find_python,$*))
	$(if $(FOUND),+$(MAKE) --no-print-directory test-core PYTHON=$(FOUND) VENV=.venv-$*,\
		@echo "Python $* not found: its tests were not run" $(if $(REQUIRE_ALL_PYTHONS),>&2; exit 1))

## The tests above on this Python.
test-core: $(STAMP) postgres test-tools
	$(BIN)/pytest $(CORE_TESTS)

postgres:
	@bash tests/postgres-up.sh

## Debian's chromium, PHP SoapClient, JAX-WS wsimport and xmllint, for the tests.
test-tools:
	@bash tests/debian-packages.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## A sample payroll run against `make run` (start that first, in another terminal): six
## payslips to var/mail/, then their states in var/payroll-report.csv.
demo: $(STAMP)
	$(BIN)/python client_examples/payroll_client.py send --period 2026-11 \
		--csv client_examples/sample/employees.csv --payslips client_examples/sample/payslips \
		--state-file var/payroll-state.json
	$(BIN)/python client_examples/payroll_client.py status --period 2026-11 \
		--csv client_examples/sample/employees.csv --report var/payroll-report.csv \
		--state-file var/payroll-state.json --until sent --timeout 60 --poll 1
	@echo
	@echo "Each employee's notification is in var/mail/: open one and follow its link."
	@echo "Follow the run until payslips are opened: the same status command without --until sent."

## After changing a page's words: extract them from the templates and the code, and
## merge them into each language's catalogue (translate the new entries there).
translations: $(STAMP)
	mkdir -p var
	$(BIN)/pybabel extract --no-location --omit-header -F babel.cfg -k lazy_gettext \
		-o var/messages.pot soap_service
	$(BIN)/pybabel update --no-fuzzy-matching --ignore-obsolete -i var/messages.pot \
		-d soap_service/translations -w 100

## Regenerate the committed WSDL from the code.
wsdl: $(STAMP)
	SOAP_SERVICE_PUBLIC_URL=$(CANONICAL_URL) $(BIN)/soap-service wsdl --output $(WSDL_FILE)

## Fail if the committed WSDL differs from what the service serves.
wsdl-check: $(STAMP)
	SOAP_SERVICE_PUBLIC_URL=$(CANONICAL_URL) $(BIN)/soap-service wsdl | diff -u $(WSDL_FILE) -

## SendMessage against a bare Spyne baseline (SQLite and PostgreSQL); delivery against a
## plain smtplib loop, and 10,000 payslips end to end (PostgreSQL); a worker's peak memory
## accepting 30 MiB inline and as MTOM, beside the baseline's; 10,000 payslips through the
## reference payroll client; what hostile requests cost a worker in CPU and memory.
BENCH_MODULES := send_message delivery memory payroll hostile smtp_submission gateway batch
bench: $(STAMP) postgres
	set -e; for module in $(BENCH_MODULES); do $(BIN)/python -m bench.$$module; done

## `make bench` on this Python and on the oldest supported one (in .venv-3.11), module by
## module in turns so that both meet the machine in the same state; each run's output and
## figures are kept in var/bench/python3.X/, then printed side by side.
OLDEST_PYTHON := $(lastword $(SUPPORTED_PYTHONS))
OLDEST_VENV := .venv-$(OLDEST_PYTHON)
bench-pythons: bench-pythons-possible $(STAMP) postgres
	+$(MAKE) --no-print-directory install PYTHON=$(call find_python,$(OLDEST_PYTHON)) \
		VENV=$(OLDEST_VENV)
	set -e; for module in $(BENCH_MODULES); do \
		for run in $(OLDEST_PYTHON):$(OLDEST_VENV) $(PYTHON_VERSION):$(VENV); do \
			out=var/bench/python$${run%%:*}; venv=$${run#*:}; \
			mkdir -p $$out; echo "== bench.$$module on $$out"; \
			$$venv/bin/python -m bench.$$module > $$out/$$module.log 2>&1 \
				|| { tail -20 $$out/$$module.log; exit 1; }; \
			cp var/bench/$$module.json $$out/; \
		done; \
	done
	$(BIN)/python -m bench.compare_pythons var/bench/python$(OLDEST_PYTHON) \
		var/bench/python$(PYTHON_VERSION) | tee var/bench/pythons.txt

# Refused before anything is installed or replaced.
bench-pythons-possible:
	@$(if $(filter $(OLDEST_PYTHON),$(PYTHON_VERSION)),echo "make bench-pythons compares \
		with Python $(OLDEST_PYTHON): choose a newer one (make PYTHON=...)" >&2; exit 1)
	@$(if $(call find_python,$(OLDEST_PYTHON)),,echo "make bench-pythons compares with \
		Python $(OLDEST_PYTHON): none was found" >&2; exit 1)

## Remove the virtual environments and caches. The data folder var/ stays: it holds the
## master keys, without which stored messages cannot be read.
clean:
	rm -rf $(VENV) .venv-3.* .pytest_cache .ruff_cache .mypy_cache
