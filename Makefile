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
	@echo "make token - a bearer token for the dev profile (SCOPES=\"...\" to narrow it)"
	@echo "make test  - ruff, mypy, unit, integration and end-to-end tests (embedded broker + SQLite)"
	@echo "make test-postgres / test-kafka / check-migrations / validate-deploy / bench / bench-reevaluate / reevaluate / cds-token [AUD=url]"

$(TOOLS)/bin/uv:
	python3 -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

.venv/.synced: uv.lock pyproject.toml shared/pyproject.toml tools/devstack/pyproject.toml $(foreach s,$(SERVICES),services/$(s)/pyproject.toml) | $(UV)
	$(UV) sync --frozen
	@touch $@

sync: .venv/.synced

run: sync
	$(UV) run --frozen python -m rnpc_devstack

# A bearer token from the dev profile's issuer (.var/dev-issuer/): every user scope by default.
token: sync
	@$(UV) run --frozen python -m rnpc_devstack.token token --scopes "$(SCOPES)"

test: sync
	$(UV) run --frozen ruff check conftest.py shared services tools tests benchmarks migrations
	# Types: strict on shared/ and the pure domain packages, mypy's defaults on the rest.
	$(UV) run --frozen mypy --strict shared/src services/*/src/*/domain
	$(UV) run --frozen mypy services/*/src tools/devstack/src
	$(UV) run --frozen pytest -q

test-postgres: sync
	RNPC_TEST_DATABASE=postgres $(UV) run --frozen pytest -q -m integration

# Apache Kafka from Maven Central (tools/kafka/pom.xml): no Maven, no network → this fails, loudly.
KAFKA_LIB := $(TOOLS)/kafka/lib
$(KAFKA_LIB)/.fetched: tools/kafka/pom.xml
	rm -rf $(KAFKA_LIB)
	mvn -B -q -Dstyle.color=never -f tools/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(abspath $(KAFKA_LIB))
	@touch $@

kafka-broker: $(KAFKA_LIB)/.fetched

# The integration and end-to-end suites on the production parts: Apache Kafka (KRaft, SASL/SCRAM,
# ACLs) and PostgreSQL (running on 127.0.0.1:5432, see .ci/postgres-up), plus tests/kafka.
test-kafka: sync kafka-broker
	RNPC_TEST_DATABASE=postgres RNPC_TEST_BROKER=kafka RNPC_KAFKA_LIB=$(abspath $(KAFKA_LIB)) \
		$(UV) run --frozen pytest -q -m integration

check-migrations: sync
	@set -e; for s in $(SERVICES); do \
		db=$$(mktemp -d)/$$s.db; \
		$(UV) run --frozen alembic -c migrations/alembic.ini -n $$s -x db_url=sqlite+aiosqlite:///$$db upgrade head; \
		$(UV) run --frozen alembic -c migrations/alembic.ini -n $$s -x db_url=sqlite+aiosqlite:///$$db check; \
	done

validate-deploy: sync
	bash deploy/validate.sh

bench: sync
	@command -v wrk >/dev/null || { echo "installing wrk (Debian) for the HTTP benchmark"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y wrk >/dev/null || echo "wrk unavailable: the HTTP figures use the async httpx load generator"; }
	$(UV) run --frozen python -m benchmarks.pipeline

# Re-evaluation of BENCH_REEVALUATE_RECORDS cases (default 10,000) after a rules release, timed.
bench-reevaluate: sync
	$(UV) run --frozen python -m benchmarks.reevaluate

# After a rules or evidence release: re-evaluate every case's latest version (GATEWAY_URL of a running stack;
# RNPC_TOKEN, or an admin token minted by the dev issuer of `make run`).
GATEWAY_URL ?= http://127.0.0.1:8000
reevaluate: sync
	@RNPC_TOKEN="$${RNPC_TOKEN:-$$($(UV) run --frozen python -m rnpc_devstack.token token --scopes system/Admin.write)}" \
		$(UV) run --frozen python -m rnpc_gateway.reevaluate --gateway $(GATEWAY_URL) $(REEVALUATE_ARGS)

# A signed CDS Hooks client JWT for local calls (AUD = the exact URL you will call).
cds-token: sync
	@$(UV) run --frozen python -m rnpc_devstack.cds_token "$(AUD)"

.PHONY: help sync run token test test-postgres kafka-broker test-kafka check-migrations validate-deploy bench bench-reevaluate reevaluate cds-token
