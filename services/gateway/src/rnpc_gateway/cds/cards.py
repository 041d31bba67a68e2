"""CDS Hooks cards from a recommendation (pure). Spec rules kept here: `summary` < 140 chars,
`indicator` info | warning | critical, `source.label`, a `uuid` for feedback, `overrideReasons`
with `display`; never a null or empty value (omit the key instead)."""

from __future__ import annotations

import functools
import json
import re
import uuid
from typing import Any

from rnpc_gateway.fhir.output import modality_title

SUMMARY_MAX = 139
OVERRIDE_SYSTEM = "https://rnpc.example/cds/override-reasons"
OVERRIDE_REASONS = [
    {"code": "mdt-decided-otherwise", "system": OVERRIDE_SYSTEM, "display": "Tumour board decided otherwise"},
    {"code": "patient-preference", "system": OVERRIDE_SYSTEM, "display": "Patient preference"},
    {"code": "data-outdated", "system": OVERRIDE_SYSTEM, "display": "Recommendation based on outdated data"},
]
# Words in a drafted order's text → the option it is about (order-select). Text, because order
# catalogues code these procedures locally; an order we cannot place gets no card.
ORDER_KEYWORDS: list[tuple[str, str]] = [
    (r"carbon", "carbon_ion"), (r"proton", "proton"), (r"brachy", "brachytherapy"),
    (r"radiosurgery|\bsrs\b", "srs"), (r"\bsbrt\b|stereotactic body", "sbrt"),
    (r"neck dissection", "neck_dissection"), (r"robotic|\btors\b", "tors"), (r"maxillary swing", "msnp"),
    (r"endoscopic|nasopharyngectomy", "enp"), (r"re-?irradiation|\bimrt\b|\bvmat\b|radiotherapy|radiation", "reimrt"),
]
STATUS_INDICATOR = {"recommended": "info", "consider": "info", "not_recommended": "warning", "unavailable": "warning", "contraindicated": "critical"}


def _clip(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1] + "…"


def _source(source_url: str | None) -> dict[str, str]:
    source = {"label": "rNPC retreatment advisor"}
    if source_url:
        source["url"] = source_url
    return source


CARD_FIELDS = ("recurrence_id", "version", "status", "warnings", "required_workup", "disclaimer")


@functools.lru_cache(maxsize=128)
def card_basis(stored_body: str) -> dict[str, Any]:
    """What the cards read of a stored recommendation, parsed once per stored body (a stored body
    never changes: a new version is a new body). Parsing the whole ~64 KB body cost more than the
    rest of a CDS Hooks call; the kept fields are small, so the cache is too. Shared: read only."""
    full = json.loads(stored_body)
    options = [
        {
            "rank": o.get("rank"), "modality": o.get("modality"), "status": o.get("status"),
            "reasons": [r for r in o.get("reasons") or [] if isinstance(r, dict) and r.get("text")][:1],
        }
        for o in full.get("options") or [] if isinstance(o, dict)
    ]
    return {**{name: full.get(name) for name in CARD_FIELDS}, "options": options}


def _options(recommendation: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted((o for o in recommendation.get("options") or [] if isinstance(o, dict)), key=lambda o: o.get("rank", 99))


def _detail(recommendation: dict[str, Any]) -> str:
    lines = [f"**Recommendation {recommendation.get('status', '')}** (recurrence {recommendation.get('recurrence_id')}, version {recommendation.get('version')})", ""]
    for option in _options(recommendation):
        reason = next((r.get("text") for r in option.get("reasons") or [] if isinstance(r, dict) and r.get("text")), "")
        lines.append(f"{option.get('rank')}. **{modality_title(str(option.get('modality')))}**: {str(option.get('status')).replace('_', ' ')}. {reason}")
    for warning in recommendation.get("warnings") or []:
        lines.append(f"- ⚠ {warning}")
    workup = recommendation.get("required_workup") or []
    if workup:
        lines.append(f"- Required work-up: {', '.join(map(str, workup))}")
    lines += ["", str(recommendation.get("disclaimer") or "Decision support only: the multidisciplinary tumour board decides.")]
    return "\n".join(lines)


def _card(summary: str, indicator: str, detail: str, source_url: str | None) -> dict[str, Any]:
    return {
        "uuid": str(uuid.uuid4()),
        "summary": _clip(summary),
        "indicator": indicator,
        "detail": detail,
        "source": _source(source_url),
        "overrideReasons": OVERRIDE_REASONS,
    }


def patient_view_cards(recommendation: dict[str, Any], *, source_url: str | None = None) -> list[dict[str, Any]]:
    options = _options(recommendation)
    status = str(recommendation.get("status"))
    top = next((o for o in options if o.get("status") in ("recommended", "consider")), None)
    if status == "workup_incomplete":
        summary, indicator = "rNPC: work-up incomplete before a retreatment decision", "warning"
    elif top is None:
        summary, indicator = "rNPC: no local salvage option recommended", "warning"
    else:
        summary, indicator = f"rNPC: {modality_title(str(top.get('modality')))} {str(top.get('status')).replace('_', ' ')}", "info"
    return [_card(summary, indicator, _detail(recommendation), source_url)]


def order_modality(order: dict[str, Any]) -> str | None:
    """The option a drafted order is about, from its code text / displays."""
    code = order.get("code") or {}
    text = " ".join([str(code.get("text") or "")] + [str(c.get("display") or "") for c in code.get("coding") or [] if isinstance(c, dict)]).lower()
    return next((modality for pattern, modality in ORDER_KEYWORDS if re.search(pattern, text)), None)


def order_select_cards(recommendation: dict[str, Any], orders: list[dict[str, Any]], *, source_url: str | None = None) -> list[dict[str, Any]]:
    by_modality = {str(o.get("modality")): o for o in _options(recommendation)}
    cards = []
    for order in orders:
        modality = order_modality(order)
        option = by_modality.get(modality or "")
        if option is None:
            continue  # not a retreatment we assess: nothing to say
        status = str(option.get("status"))
        summary = f"rNPC: drafted {modality_title(str(modality)).lower()} is {status.replace('_', ' ')} for this recurrence"
        cards.append(_card(summary, STATUS_INDICATOR.get(status, "info"), _detail(recommendation), source_url))
    return cards


def not_assessable_card(message: str, *, source_url: str | None = None) -> dict[str, Any]:
    return _card("rNPC: this recurrence cannot be assessed from the chart data", "warning", message, source_url)


def strip_empty(value: Any) -> Any:
    """Drop None and empty values at every level (clients break on `links: null`)."""
    if isinstance(value, dict):
        return {k: strip_empty(v) for k, v in value.items() if v is not None and v != [] and v != {} and v != ""}
    if isinstance(value, list):
        return [strip_empty(v) for v in value if v is not None]
    return value
