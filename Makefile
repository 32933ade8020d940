# soap-service: `make run` to try it, `make test` to prove it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The address written into the committed WSDL: the development default.
CANONICAL_URL := https://localhost:8443/soap/v1
WSDL_FILE := wsdl/messaging-v1.wsdl

.PHONY: install run test lint format wsdl wsdl-check bench postgres test-tools demo clean translations

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (spyne 2.14)"'
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
bench: $(STAMP) postgres
	$(BIN)/python -m bench.send_message
	$(BIN)/python -m bench.delivery
	$(BIN)/python -m bench.memory
	$(BIN)/python -m bench.payroll
	$(BIN)/python -m bench.hostile
	$(BIN)/python -m bench.smtp_submission
	$(BIN)/python -m bench.gateway
	$(BIN)/python -m bench.batch

## Remove the virtual environment and caches. The data folder var/ stays: it holds the
## master keys, without which stored messages cannot be read.
clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
