# The two commands of the README: `make run` and `make test`. Everything else is installed here.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(or $(shell command -v uv 2>/dev/null),$(TOOLS)/bin/uv)
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := 3.11
SERVICES := gateway scoring evidence recommendation

help:
	@echo "make run   - start the embedded broker and the four services (SQLite)"
	@echo "make test  - unit, integration and end-to-end tests (embedded broker + SQLite)"
	@echo "make test-postgres / check-migrations / validate-deploy / bench / cds-token [AUD=url]"

$(TOOLS)/bin/uv:
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

.venv/.synced: uv.lock pyproject.toml shared/pyproject.toml $(foreach s,$(SERVICES),services/$(s)/pyproject.toml) | $(UV)
	$(UV) sync --frozen
	@touch $@

sync: .venv/.synced

run: sync
	$(UV) run --frozen python -m rnpc_shared.devstack

test: sync
	$(UV) run --frozen ruff check conftest.py shared services tests benchmarks migrations
	$(UV) run --frozen pytest -q

test-postgres: sync
	RNPC_TEST_DATABASE=postgres $(UV) run --frozen pytest -q -m integration

check-migrations: sync
	@set -e; for s in $(SERVICES); do \
		db=$$(mktemp -d)/$$s.db; \
		$(UV) run --frozen alembic -c migrations/alembic.ini -n $$s -x db_url=sqlite+aiosqlite:///$$db upgrade head; \
		$(UV) run --frozen alembic -c migrations/alembic.ini -n $$s -x db_url=sqlite+aiosqlite:///$$db check; \
	done

validate-deploy: sync
	bash deploy/validate.sh

bench: sync
	$(UV) run --frozen python -m benchmarks.pipeline

# A signed CDS Hooks client JWT for local calls (AUD = the exact URL you will call).
cds-token: sync
	@$(UV) run --frozen python -m rnpc_gateway.cds.devtoken "$(AUD)"

.PHONY: help sync run test test-postgres check-migrations validate-deploy bench cds-token
