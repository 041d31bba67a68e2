"""What a rule may say about a case, and the order in which competing statements win.

A rule never sets an option's final status: it proposes, and the engine combines every
proposal with the precedence documented here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rnpc_shared.contracts.recommendation import OptionStatus, RecommendationStatus
from rnpc_shared.contracts.record import Modality

from rnpc_recommendation.domain.schedules import ScheduleTemplate

# Clinical precedence, most cautious first: when rules disagree the most cautious proposal
# wins, so a safety rule can never be outvoted by an indication rule. "unavailable" is not a
# clinical status; the engine applies it afterwards (see engine.final_status).
CLINICAL_PRECEDENCE: tuple[OptionStatus, ...] = (
    OptionStatus.contraindicated,
    OptionStatus.not_recommended,
    OptionStatus.consider,
    OptionStatus.recommended,
)
# A provisional model's output may reorder options of the same status or add a warning, never
# set a status (MODELS.md "provisional"; issue 9): a proposal names only exact (or lookup-only)
# models in `models`, and the engine refuses a proposal that names a provisional one.
EXCLUDING_STATUSES = frozenset({OptionStatus.not_recommended, OptionStatus.contraindicated})

# Ranking: each pathway lists every option in its order of preference; an option's priority is
# its place × PLACE plus the shifts modifiers add (lower = preferred, within its status group).
PLACE = 10
SPAN = PLACE * len(Modality)  # every place of a pathway's order lies in [0, SPAN)
DOWN = 15  # one place behind (crosses exactly one neighbour)
# FRONT and BACK exceed the span, so they reach the front or back from any place: smaller
# values made the outcome depend on where other options sat, and one option moving place could
# swap two options it has nothing to do with.
FRONT = -SPAN  # to the front of its status group; options moved together keep their order
BACK = SPAN  # to the back of its status group
FIRST = 2 * FRONT  # ahead even of options other rules moved to the front

# Recommendation-level precedence: an M1 case is not a local candidate whatever its workup.
CASE_PRECEDENCE: tuple[RecommendationStatus, ...] = (
    RecommendationStatus.not_local_candidate,
    RecommendationStatus.workup_incomplete,
    RecommendationStatus.complete,
)


Modalities = Modality | tuple[Modality, ...]


Models = tuple[str, ...]  # score model ids a statement relies on


@dataclass(frozen=True)
class Proposal:
    modality: Modality
    status: OptionStatus
    text: str
    source: str | None
    models: Models = ()  # the models this status rests on (record facts alone: none)


@dataclass(frozen=True)
class Note:
    """A reason that explains without proposing a status (e.g. a schedule choice, a derived KPS)."""

    modality: Modality
    text: str
    source: str | None
    models: Models = ()


@dataclass(frozen=True)
class Shift:
    modality: Modality
    points: int
    text: str
    source: str | None
    models: Models = ()


@dataclass(frozen=True)
class OptionWarning:
    modality: Modality
    text: str
    models: Models = ()


@dataclass
class Effects:
    """Everything one rule says about one case; built locally inside a pure rule function."""

    proposals: list[Proposal] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    shifts: list[Shift] = field(default_factory=list)
    option_warnings: list[OptionWarning] = field(default_factory=list)
    schedules: dict[Modality, ScheduleTemplate] = field(default_factory=dict)
    unavailable: list[Modality] = field(default_factory=list)
    preference_order: tuple[Modality, ...] | None = None  # set by the one pathway rule that fires
    case_status: RecommendationStatus | None = None
    required_workup: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    missing_assessments: list[str] = field(default_factory=list)

    def propose(
        self,
        modalities: Modalities,
        status: OptionStatus,
        text: str,
        *,
        source: str | None = None,
        models: Models = (),
    ) -> None:
        for modality in _many(modalities):
            self.proposals.append(Proposal(modality, status, text, source, models))

    def note(
        self, modalities: Modalities, text: str, *, source: str | None = None, models: Models = ()
    ) -> None:
        for modality in _many(modalities):
            self.notes.append(Note(modality, text, source, models))

    def shift(
        self,
        modalities: Modalities,
        points: int,
        text: str,
        *,
        source: str | None = None,
        models: Models = (),
    ) -> None:
        for modality in _many(modalities):
            self.shifts.append(Shift(modality, points, text, source, models))

    def warn(self, modalities: Modalities, text: str, *, models: Models = ()) -> None:
        for modality in _many(modalities):
            self.option_warnings.append(OptionWarning(modality, text, models))


def _many(modalities: Modalities) -> tuple[Modality, ...]:
    return (modalities,) if isinstance(modalities, Modality) else modalities
