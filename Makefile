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
	@echo "make test-postgres / test-kafka / check-migrations / validate-deploy / bench"

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
	$(UV) run --frozen python -m benchmarks.pipeline

.PHONY: help sync run test test-postgres kafka-broker test-kafka check-migrations validate-deploy bench
