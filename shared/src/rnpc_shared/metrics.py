"""Prometheus metrics shared by every service (one registry per process, `service` label).

Names follow PATTERNS.md: product prefix, base units, counters end in _total, no id labels.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "rnpc_http_requests_total", "HTTP requests", ["service", "method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "rnpc_http_request_duration_seconds", "HTTP request duration", ["service", "method", "route"]
)
HTTP_IN_PROGRESS = Gauge(
    "rnpc_http_requests_in_progress", "HTTP requests in progress", ["service", "method", "route"]
)
EVENTS_CONSUMED = Counter(
    "rnpc_events_consumed_total",
    "Events consumed, by outcome (success | duplicate | retry | dlq)",
    ["service", "topic", "outcome"],
)
EVENT_PROCESSING = Histogram(
    "rnpc_event_processing_seconds", "Event handling time, parse to DB commit", ["service", "topic"]
)
CONSUMER_LAG = Gauge(
    "rnpc_consumer_lag", "High watermark minus position", ["service", "topic", "partition"]
)
CONSUMER_LAST_POLL = Gauge(
    "rnpc_consumer_last_poll_timestamp_seconds", "Unix time of the consumer's last poll", ["service"]
)
COMMIT_FAILURES = Counter(
    "rnpc_consumer_commit_failures_total", "Offset commits that failed (will be redelivered)", ["service"]
)
REBALANCES = Counter("rnpc_consumer_rebalances_total", "Partition assignments received", ["service"])
DLQ_MESSAGES = Counter(
    "rnpc_dlq_messages_total", "Messages dead-lettered, by original topic", ["service", "topic"]
)
OUTBOX_PENDING = Gauge("rnpc_outbox_pending", "Outbox rows not yet published", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "rnpc_outbox_oldest_pending_age_seconds", "Age of the oldest unpublished outbox row", ["service"]
)
OUTBOX_PUBLISHED = Counter(
    "rnpc_outbox_published_total", "Outbox publish attempts, by status (ok | error)", ["service", "status"]
)
END_TO_END_LATENCY = Histogram(
    "rnpc_end_to_end_latency_seconds",
    "Record received at the gateway to recommendation issued",
    ["service"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
RECURRENCES_ACCEPTED = Counter(
    "rnpc_recurrences_accepted_total",
    "Records accepted at the gateway (new | duplicate | superseding)",
    ["service", "outcome"],
)
REDRIVES = Counter("rnpc_redrive_total", "Record versions re-driven into the pipeline", ["service"])
OUTBOX_PARKED = Counter(
    "rnpc_outbox_parked_total",
    "Outbox rows set aside because they can never be sent, by reason (too_large | failing)",
    ["service", "reason"],
)
TABLE_ROWS = Gauge("rnpc_table_rows", "Rows in a runtime table (outbox, inbox, stage_inputs)", ["service", "table"])
TABLE_BYTES = Gauge(
    "rnpc_table_bytes", "Payload bytes held in a runtime table (outbox, inbox, stage_inputs)", ["service", "table"]
)
RETENTION_DELETED = Counter(
    "rnpc_retention_deleted_total", "Runtime rows deleted by retention", ["service", "table"]
)
PROVENANCE_REJECTED = Counter(
    "rnpc_provenance_rejected_total",
    "Events dead-lettered because they do not match the stored record version or the stage order",
    ["service", "topic"],
)
BACKGROUND_ERRORS = Counter(
    "rnpc_background_errors_total", "Failed passes of a periodic job (the loop keeps running)", ["service", "job"]
)


def at_zero(metric: Counter, *label_sets: tuple[str, ...]) -> None:
    """Export these label sets at 0 before anything happens: a labelled series created by its first
    increment first shows up already at 1, and increase()/rate() never see that first one (an
    alert on "> 0" would miss the only parked event, the first forged result)."""
    for labels in label_sets:
        metric.labels(*labels)
