"""Gateway metrics of the EHR integration (FHIR ingest, Subscriptions, CDS Hooks)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from rnpc_shared.metrics import at_zero

FHIR_INGEST = Counter("rnpc_fhir_ingest_total", "FHIR Bundles / notifications ingested, by path and outcome", ["path", "outcome"])
SUBSCRIPTION_NOTIFICATIONS = Counter("rnpc_fhir_subscription_notifications_total", "Subscription notifications, by type", ["type"])
SUBSCRIPTION_GAPS = Counter("rnpc_fhir_subscription_event_gaps_total", "Subscription event-number gaps noticed (missed events)")
# outcome: recovered (every missed event read back with $events), incomplete, failed, no_server, too_many
SUBSCRIPTION_GAP_RECOVERIES = Counter(
    "rnpc_fhir_subscription_gap_recoveries_total", "Missed-event ranges and what reading them back with $events gave", ["outcome"]
)
GAP_RECOVERY_OUTCOMES = ("recovered", "incomplete", "failed", "no_server", "too_many")
at_zero(SUBSCRIPTION_GAP_RECOVERIES, *((outcome,) for outcome in GAP_RECOVERY_OUTCOMES))  # the first one alerts too
# Events known and not ingested yet, kept in fhir_pending_events and retried (sampled each retry pass).
PENDING_EVENTS = Gauge("rnpc_fhir_events_pending", "Subscription events kept to retry (known, not ingested yet)")
PENDING_OLDEST_AGE = Gauge("rnpc_fhir_events_pending_oldest_age_seconds", "Age of the oldest Subscription event kept to retry (0: none)")
PENDING_EVENTS_INGESTED = Counter("rnpc_fhir_pending_events_ingested_total", "Kept Subscription events ingested by a retry")
CDS_REQUESTS = Counter("rnpc_cds_requests_total", "CDS Hooks service calls, by service and outcome", ["service_id", "outcome"])
CDS_FEEDBACK = Counter("rnpc_cds_feedback_total", "CDS Hooks feedback items, by service and outcome", ["service_id", "outcome"])
CDS_AUTH_REFUSED = Counter("rnpc_cds_auth_refused_total", "CDS Hooks JWTs refused, by reason", ["reason"])
