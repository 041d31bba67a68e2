"""AJCC/UICC 8th edition helpers (MODELS.md §3): rT from extension flags, rN from neck fields,
stage group from T/N/M. Pure; thresholds and flag lists come from the ajcc8 card."""

from __future__ import annotations

from dataclasses import dataclass

from rnpc_shared.contracts.record import Extension, Neck, Parapharyngeal

from rnpc_scoring.domain.cards import ajcc8


@dataclass(frozen=True)
class Derivation:
    """A category derived from detail fields.

    `derived` is set only when the fields conclude it; `minimum` is the lowest category the
    positive findings already imply (a lower bound usable for conflict checks even when some
    fields are not assessed).
    """

    derived: str | None
    minimum: str | None
    findings: tuple[str, ...] = ()  # positive fields behind `minimum`, e.g. "skull_base_bone"
    not_assessed: tuple[str, ...] = ()
    issues: tuple[str, ...] = ()  # internal inconsistencies in the detail fields


def _flag(extension: Extension, name: str) -> bool | None:
    value = getattr(extension, name)
    if name == "parapharyngeal" and value is not None:
        return bool(value != Parapharyngeal.none)  # superficial or deep parapharyngeal space is T2
    flag: bool | None = value
    return flag


def derive_t(extension: Extension | None) -> Derivation:
    """rT from extension flags; T1 is the remainder (nasopharynx, oropharynx, nasal cavity)."""
    if extension is None:
        return Derivation(None, None)
    flags = {
        name: _flag(extension, name)
        for _, names in ajcc8.T_FLAGS_BY_CATEGORY
        for name in names
    }
    not_assessed = tuple(name for name, value in flags.items() if value is None)
    if len(not_assessed) == len(flags):
        return Derivation(None, None, not_assessed=not_assessed)

    higher_unknown = False  # some flag of a higher category is not assessed
    for category, names in ajcc8.T_FLAGS_BY_CATEGORY:  # T4 first
        findings = tuple(name for name in names if flags[name] is True)
        if findings:
            derived = None if higher_unknown else category
            return Derivation(derived, category, findings, not_assessed)
        higher_unknown = higher_unknown or any(flags[name] is None for name in names)
    # No T2–T4 structure involved: T1 if every flag was assessed.
    return Derivation(None if higher_unknown else "T1", None, (), not_assessed)


def derive_n(neck: Neck | None) -> Derivation:
    """rN from neck fields: N1 unilateral cervical and/or retropharyngeal; N2 bilateral cervical;
    N3 > 6 cm and/or below the caudal border of the cricoid (all ≤ 6 cm above it otherwise)."""
    if neck is None:
        return Derivation(None, None)
    largest_cm = neck.largest_node_cm
    too_large = largest_cm is not None and largest_cm > ajcc8.N3_NODE_SIZE_ABOVE_CM
    nodes_described = (
        neck.largest_node_cm is not None
        or neck.bilateral is True
        or neck.below_cricoid is True
        or neck.retropharyngeal_only is True
    )
    if neck.node_count == 0:
        if nodes_described:
            issue = "recurrence.neck.node_count is 0 but other neck fields describe nodes"
            return Derivation(None, None, issues=(issue,))
        return Derivation("N0", "N0")
    if neck.below_cricoid is True or too_large:
        findings = tuple(
            name for name, present in (("below_cricoid", neck.below_cricoid is True),
                                       ("largest_node_cm", too_large)) if present
        )
        return Derivation("N3", "N3", findings)
    if not (nodes_described or (neck.node_count or 0) > 0):
        return Derivation(None, None)  # nothing says whether there are nodes

    bilateral_cervical = neck.bilateral is True and neck.retropharyngeal_only is not True
    minimum, findings = ("N2", ("bilateral",)) if bilateral_cervical else ("N1", ("nodes",))
    not_assessed = tuple(
        name for name in ("largest_node_cm", "below_cricoid") if getattr(neck, name) is None
    )
    if not_assessed:
        return Derivation(None, minimum, findings, not_assessed)  # N3 cannot be excluded
    if neck.retropharyngeal_only is True or neck.bilateral is not None:
        return Derivation(minimum, minimum, findings)
    return Derivation(None, minimum, findings, ("bilateral",))


def stage_group(t_category: str | None, n_category: str, m_category: str) -> str | None:
    """Stage group for T/N/M, or None when the table has no group (T0 N0 M0, or no T and a
    group that depends on T)."""
    if m_category == "M1":
        return ajcc8.STAGE_GROUP_M1
    if t_category is None:
        return ajcc8.STAGE_GROUP_ANY_T_M0.get(n_category)
    return ajcc8.STAGE_GROUPS_M0[t_category][n_category]


def is_below(category: str, other: str, order: tuple[str, ...]) -> bool:
    return order.index(category) < order.index(other)
