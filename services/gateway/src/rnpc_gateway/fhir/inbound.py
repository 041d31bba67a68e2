"""rnpc.ehr.inbound.v1: integration engines publish a native record or a FHIR Bundle (CloudEvent
data). Thin handler: map if FHIR, then the same accept path as POST /v1/recurrences. Anything
unusable is a PermanentError, so the consumer dead-letters it with the reason and moves on."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import ConfigDict, ValidationError
from sqlmodel import Session

from rnpc_gateway import audit, service
from rnpc_gateway.fhir import metrics
from rnpc_gateway.fhir.mapping import MappingError, map_bundle
from rnpc_shared.auth import Principal
from rnpc_shared.contracts.events import TOPIC_EHR_INBOUND, EventHeader, Payload
from rnpc_shared.contracts.record import RecurrenceRecord
from rnpc_shared.http import valid_correlation_id
from rnpc_shared.kafka.consumer import PermanentError
from rnpc_shared.logging import correlation_id_var
from rnpc_shared.problems import ProblemError


# The broker authenticated the publisher (SASL principal + ACL on Apache Kafka); the audit names the path.
INBOUND_AUDITOR = audit.Auditor(
    Principal("urn:rnpc:kafka:" + TOPIC_EHR_INBOUND, None, frozenset(), "urn:rnpc:kafka"), "KAFKA " + TOPIC_EHR_INBOUND, None
)


class InboundMessage(Payload):
    """Either shape is accepted here; the handler decides which one it is."""

    model_config = ConfigDict(extra="allow")


def inbound_handler(max_event_bytes: int) -> Callable[[Session, EventHeader, InboundMessage], None]:
    """The handler, with the broker's message size limit every accepted record's events must fit."""

    def on_inbound(session: Session, event: EventHeader, payload: InboundMessage) -> None:
        data = payload.model_dump()
        # The publisher's id is stored (record version, audit row) and sent on: bounded as over HTTP.
        correlation_id = valid_correlation_id(event.correlationid)
        token = correlation_id_var.set(correlation_id)  # the audit row and the logs carry the stored id
        try:
            if data.get("resourceType") == "Bundle":
                record = map_bundle(data).record
            else:
                record = RecurrenceRecord.model_validate(data)
            accepted = service.accept_record(
                session, record, correlation_id=correlation_id, max_event_bytes=max_event_bytes
            )
            # Same transaction as the write: an ingest without its audit row never commits.
            audit.chain(session.connection(), [INBOUND_AUDITOR.entry("create", record.recurrence_id, record.version, 202, accepted.outcome)])
        except MappingError as exc:
            metrics.FHIR_INGEST.labels("kafka", "refused").inc()
            raise PermanentError(f"FHIR Bundle cannot be used: {exc}") from exc
        except ValidationError as exc:
            raise PermanentError(f"invalid native record: {exc.errors(include_url=False)}") from exc
        except ProblemError as exc:  # e.g. the same version with other content (409)
            raise PermanentError(f"{exc.title}: {exc.detail}") from exc
        finally:
            correlation_id_var.reset(token)
        metrics.FHIR_INGEST.labels("kafka", "accepted").inc()

    return on_inbound
