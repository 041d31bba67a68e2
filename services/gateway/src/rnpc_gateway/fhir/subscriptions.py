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
from rnpc_shared.contracts.record import DB_INT_MAX

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


STATUS = "Bundle.entry[0]"  # where the status resource is, in issues
# Event numbers and counts are stored in SubscriptionState.last_event_number, a 32-bit integer on
# PostgreSQL; one notification (or one $events answer, fhir_events_recovery_max <= 1000) carries
# at most EVENTS_MAX events.
EVENTS_MAX = 1000


def _fail(element: str, rule: str, message: str, resource: str = STATUS) -> MappingError:
    return MappingError([Issue(resource, element, rule, message)])


def _object(value: Any, element: str, resource: str = STATUS) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(element, "object_required", f"must be a JSON object, not {type(value).__name__}", resource)
    return value


def _objects(value: Any, element: str, resource: str = STATUS) -> list[dict[str, Any]]:
    """A list of JSON objects; absent is empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(element, "list_required", f"must be a JSON array, not {type(value).__name__}", resource)
    return [_object(item, f"{element}[{index}]", resource) for index, item in enumerate(value)]


def _text(value: Any, element: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _fail(element, "string_required", f"must be a string, not {type(value).__name__}")


def _reference(value: Any, element: str) -> str | None:
    return None if value is None else _text(_object(value, element).get("reference"), f"{element}.reference")


def _int(value: Any, element: str) -> int | None:
    """An event number or count: an integer or a string of one (R4 valueString), 0..DB_INT_MAX."""
    if value is None:
        return None
    try:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError(value)
        number = int(value)
    except ValueError as exc:
        raise _fail(element, "integer_string", f"{value!r} is not an event count") from exc
    if not 0 <= number <= DB_INT_MAX:
        raise _fail(element, "event_number_range", f"{number} is outside 0..{DB_INT_MAX}")
    return number


def _param(parameters: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next((p for p in parameters if p.get("name") == name), {})


def _from_parameters(status: Resource) -> tuple[str, str | None, str | None, str | None, int | None, list[NotificationEvent]]:
    params = _objects(status.get("parameter"), "parameter")
    events = []
    for p in params:
        if p.get("name") != "notification-event":
            continue
        parts = _objects(p.get("part"), "parameter[notification-event].part")
        events.append(NotificationEvent(
            number=_int(_param(parts, "event-number").get("valueString"), "parameter[notification-event].part[event-number]"),
            focus=_reference(_param(parts, "focus").get("valueReference"), "parameter[notification-event].part[focus].valueReference"),
        ))
    return (
        _reference(_param(params, "subscription").get("valueReference"), "parameter[subscription].valueReference") or "",
        _text(_param(params, "topic").get("valueCanonical"), "parameter[topic].valueCanonical"),
        _text(_param(params, "status").get("valueCode"), "parameter[status].valueCode"),
        _text(_param(params, "type").get("valueCode"), "parameter[type].valueCode"),
        _int(_param(params, "events-since-subscription-start").get("valueString"), "parameter[events-since-subscription-start]"),
        events,
    )


def _from_subscription_status(status: Resource) -> tuple[str, str | None, str | None, str | None, int | None, list[NotificationEvent]]:
    events = [
        NotificationEvent(number=_int(e.get("eventNumber"), "notificationEvent.eventNumber"),
                          focus=_reference(e.get("focus"), "notificationEvent.focus"))
        for e in _objects(status.get("notificationEvent"), "notificationEvent")
    ]
    return (
        _reference(status.get("subscription"), "subscription") or "",
        _text(status.get("topic"), "topic"), _text(status.get("status"), "status"), _text(status.get("type"), "type"),
        _int(status.get("eventsSinceSubscriptionStart"), "eventsSinceSubscriptionStart"), events,
    )


def parse_notification(bundle: Any) -> Notification:
    """The notification, its shape checked element by element: anything unusable is a
    MappingError naming the element and the rule."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" or bundle.get("type") != "history":
        raise MappingError([Issue("Bundle", "type", "history_bundle_required", "a notification is a Bundle of type 'history'")])
    entries = _objects(bundle.get("entry"), "entry", "Bundle")
    status = entries[0].get("resource") if entries else None
    if not isinstance(status, dict) or status.get("resourceType") not in ("Parameters", "SubscriptionStatus"):
        raise _fail("resourceType", "status_first", "the first entry must be the subscription status (Parameters in R4)")
    parsed = _from_parameters(status) if status["resourceType"] == "Parameters" else _from_subscription_status(status)
    subscription, topic, state, kind, since, events = parsed
    if not subscription:
        raise _fail("parameter[subscription]", "required", "the status names no subscription")
    if kind not in NOTIFICATION_TYPES:
        raise _fail("parameter[type]", "notification_type", f"type {kind!r} is not one of {sorted(NOTIFICATION_TYPES)}")
    if len(events) > EVENTS_MAX:
        raise _fail("parameter[notification-event]", "too_many_events", f"{len(events)} events in one notification; at most {EVENTS_MAX}")
    resources, id_only = [], []
    for entry in entries[1:]:
        if isinstance(entry.get("resource"), dict):
            resources.append(entry["resource"])
        elif isinstance(entry.get("fullUrl"), str) and entry["fullUrl"]:
            id_only.append(entry["fullUrl"])
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
