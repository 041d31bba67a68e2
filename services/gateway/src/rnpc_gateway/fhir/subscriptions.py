"""FHIR Subscriptions (R4 Backport IG 1.1.0) notifications: pure parsing and event-number tracking.

A notification is a `history` Bundle whose first entry is the status: a `Parameters` (R4) or a
`SubscriptionStatus` (R4B). `event-number` / `events-since-subscription-start` are valueString
in R4. Handshake and heartbeat carry no events and are never turned into records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import Any

from rnpc_gateway.fhir.mapping import MappingError, Issue, Resource

NOTIFICATION_TYPES = frozenset({"handshake", "heartbeat", "event-notification", "query-status", "query-event"})


@dataclass(frozen=True)
class NotificationEvent:
    number: int | None
    focus: str | None  # a reference, relative or absolute


@dataclass(frozen=True)
class Notification:
    subscription: str
    topic: str | None
    status: str | None
    type: str
    events_since_start: int | None
    events: list[NotificationEvent]
    resources: list[Resource] = field(default_factory=list)  # full-resource payload
    id_only: list[str] = field(default_factory=list)  # entries with a fullUrl and no resource


def _fail(element: str, rule: str, message: str) -> MappingError:
    return MappingError([Issue("Bundle.entry[0]", element, rule, message)])


def _int(value: Any, element: str) -> int | None:
    if value is None:
        return None
    try:
        return int(str(value))
    except ValueError as exc:
        raise _fail(element, "integer_string", f"{value!r} is not an event count") from exc


def _param(parameters: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next((p for p in parameters if p.get("name") == name), {})


def _from_parameters(status: Resource) -> tuple[str, str | None, str | None, str | None, int | None, list[NotificationEvent]]:
    params = status.get("parameter") or []
    subscription = (_param(params, "subscription").get("valueReference") or {}).get("reference")
    events = []
    for p in params:
        if p.get("name") != "notification-event":
            continue
        parts = p.get("part") or []
        events.append(NotificationEvent(
            number=_int(_param(parts, "event-number").get("valueString"), "parameter[notification-event].part[event-number]"),
            focus=(_param(parts, "focus").get("valueReference") or {}).get("reference"),
        ))
    return (
        str(subscription or ""),
        _param(params, "topic").get("valueCanonical"),
        _param(params, "status").get("valueCode"),
        _param(params, "type").get("valueCode"),
        _int(_param(params, "events-since-subscription-start").get("valueString"), "parameter[events-since-subscription-start]"),
        events,
    )


def _from_subscription_status(status: Resource) -> tuple[str, str | None, str | None, str | None, int | None, list[NotificationEvent]]:
    events = [
        NotificationEvent(number=_int(e.get("eventNumber"), "notificationEvent.eventNumber"), focus=(e.get("focus") or {}).get("reference"))
        for e in status.get("notificationEvent") or []
    ]
    return (
        str((status.get("subscription") or {}).get("reference") or ""),
        status.get("topic"), status.get("status"), status.get("type"),
        _int(status.get("eventsSinceSubscriptionStart"), "eventsSinceSubscriptionStart"), events,
    )


def parse_notification(bundle: Any) -> Notification:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" or bundle.get("type") != "history":
        raise MappingError([Issue("Bundle", "type", "history_bundle_required", "a notification is a Bundle of type 'history'")])
    entries = bundle.get("entry") or []
    status = (entries[0].get("resource") if entries and isinstance(entries[0], dict) else None) or {}
    if status.get("resourceType") == "Parameters":
        parsed = _from_parameters(status)
    elif status.get("resourceType") == "SubscriptionStatus":
        parsed = _from_subscription_status(status)
    else:
        raise _fail("resourceType", "status_first", "the first entry must be the subscription status (Parameters in R4)")
    subscription, topic, state, kind, since, events = parsed
    if not subscription:
        raise _fail("parameter[subscription]", "required", "the status names no subscription")
    if kind not in NOTIFICATION_TYPES:
        raise _fail("parameter[type]", "notification_type", f"type {kind!r} is not one of {sorted(NOTIFICATION_TYPES)}")
    resources, id_only = [], []
    for entry in entries[1:]:
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("resource"), dict):
            resources.append(entry["resource"])
        elif entry.get("fullUrl"):
            id_only.append(str(entry["fullUrl"]))
    return Notification(subscription, topic, state, kind, since, events, resources, id_only)


@dataclass(frozen=True)
class Tracking:
    last_event_number: int | None
    gaps: list[tuple[int, int]]  # missed event numbers, inclusive ranges
    fresh: list[int]  # event numbers not seen before (to ingest)


def track_events(last: int | None, notification: Notification) -> Tracking:
    """Advance the event counter; a jump means events were missed (recover with $events).

    Handshake/heartbeat do not advance it, but their events-since-subscription-start reveals
    missed events too. Event numbers already seen (a redelivery) are not ingested again."""
    gaps: list[tuple[int, int]] = []
    seen = 0 if last is None else last
    if notification.type in ("handshake", "heartbeat", "query-status"):
        since = notification.events_since_start
        if since is not None and since > seen:
            gaps.append((seen + 1, since))
            return Tracking(since, gaps, [])
        return Tracking(last if last is not None else since, gaps, [])
    fresh = []
    for number in sorted(n.number for n in notification.events if n.number is not None):
        if number <= seen:
            continue
        if number > seen + 1:
            gaps.append((seen + 1, number - 1))
        fresh.append(number)
        seen = number
    return Tracking(seen if (fresh or last is not None) else last, gaps, fresh)


def ranges(numbers: Iterable[int]) -> list[tuple[int, int]]:
    """Distinct numbers as sorted inclusive ranges of consecutive numbers: {1, 2, 3, 7} → [(1, 3), (7, 7)]."""
    out: list[tuple[int, int]] = []
    for number in sorted(set(numbers)):
        if out and number == out[-1][1] + 1:
            out[-1] = (out[-1][0], number)
        else:
            out.append((number, number))
    return out


def subtract(first: int, last: int, numbers: Iterable[int]) -> list[tuple[int, int]]:
    """What is left of the range first..last once `numbers` are taken out, as ranges (arithmetic:
    a range may be wide)."""
    out, start = [], first
    for number in sorted({n for n in numbers if first <= n <= last}):
        if number > start:
            out.append((start, number - 1))
        start = number + 1
    if start <= last:
        out.append((start, last))
    return out
