"""The triage worklist's plain views: what to list (WorklistQuery), one row (WorklistItem), one
page (WorklistPage) and the review progress, and the triage figures themselves
(:func:`triage_scores`, the one place they are computed).

Definitions the worklist sorts and flags by (also shown in the GUI's tooltips), over the
latest analysis of each case, with p(s) = a suggestion's calibrated probability (the raw one
where the model had no calibration):

- **critical**: a suggestion whose stored evidence says ``"critical": True`` (the model bundle
  flags the label); for analyses stored before bundles flagged labels (no ``"critical"`` key),
  one whose ``system|code`` is among the bundle's critical codes.
- **risk**: the highest p(s) of a critical suggestion (abstained ones included: triage errs on
  the side of looking); None when there is none. Sorted descending, cases without risk last.
- **uncertainty**: ``abstained + 1 - 2 * |p(top) - 0.5|`` where ``abstained`` counts the
  abstained suggestions and ``top`` is the first confident (not abstained) suggestion by rank
  (p = 0.5 when there is none). Cases with more abstentions come first, then those whose top
  call is closest to 0.5; sorted descending.
- **flagged**: risk >= 50 % or at least one abstained suggestion.
- **reviewed**: signed, or at least one decision on a suggestion of the latest analysis.

The case service stores risk, the abstention count and uncertainty on the case row when it
records an analysis (``Case.triage_*``), so the worklist sorts and filters through indexes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from clinic_app.domain.cases import CaseSummary, SuggestionInfo
from clinic_app.domain.records import CaseStatus, DecisionAction

#: ``WorklistQuery.reviewer`` value for "cases I review" (user names cannot contain ':').
REVIEWER_ME = ":me"
#: ``WorklistQuery.reviewer`` value for cases nobody has started reviewing.
REVIEWER_UNASSIGNED = ":unassigned"
#: A critical label at or above this calibrated probability flags the case.
CRITICAL_FLAG_THRESHOLD = 0.5

FLAG_CRITICAL = "critical \u2265 50%"
FLAG_ABSTAINED = "abstained"
FLAG_OVERRIDE = "override"
FLAG_REJECTED = "rejected"
#: Flag text for a modality the model could not use ("missing ECG").
MISSING_FLAGS = {"pathology": "missing slide", "ecg": "missing ECG", "note": "missing note"}


class ScoredSuggestion(Protocol):
    """What the triage figures need of a suggestion (stored, new or a domain view)."""

    @property
    def code_system(self) -> str: ...
    @property
    def code(self) -> str: ...
    @property
    def probability(self) -> float: ...
    @property
    def calibrated_probability(self) -> float | None: ...
    @property
    def abstained(self) -> bool: ...
    @property
    def evidence(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class TriageScores:
    """The triage figures of one analysis, as stored on its case (``Case.triage_*``)."""

    risk: float | None
    abstained: int
    uncertainty: float


def triage_probability(suggestion: ScoredSuggestion) -> float:
    """p(s): the calibrated probability, else the raw one."""
    calibrated = suggestion.calibrated_probability
    return calibrated if calibrated is not None else suggestion.probability


def is_critical(suggestion: ScoredSuggestion, critical_codes: Collection[str] = ()) -> bool:
    """The suggestion's own ``evidence["critical"]`` flag; without one (analyses stored before
    bundles flagged labels), whether its ``system|code`` is in ``critical_codes``."""
    flag = suggestion.evidence.get("critical")
    if flag is not None:
        return bool(flag)
    return f"{suggestion.code_system}|{suggestion.code}" in critical_codes


def triage_scores(
    suggestions: Iterable[ScoredSuggestion], critical_codes: Collection[str] = ()
) -> TriageScores:
    """Risk, abstention count and uncertainty of one analysis (definitions in this module's
    docstring); ``suggestions`` in rank order."""
    risk: float | None = None
    abstained = 0
    top: ScoredSuggestion | None = None
    for suggestion in suggestions:
        if is_critical(suggestion, critical_codes):
            p = triage_probability(suggestion)
            risk = p if risk is None else max(risk, p)
        if suggestion.abstained:
            abstained += 1
        elif top is None:
            top = suggestion
    top_p = triage_probability(top) if top is not None else 0.5
    return TriageScores(risk, abstained, abstained + 1 - 2 * abs(top_p - 0.5))


class WorklistSort(StrEnum):
    RISK = "risk"
    UNCERTAINTY = "uncertainty"


class WorklistStatus(StrEnum):
    """Which cases by review state; the worklist only lists analysed cases."""

    UNSIGNED = "unsigned"  # analysed or in review
    ANALYSED = "analysed"  # analysed, no decision yet
    IN_REVIEW = "in_review"
    SIGNED = "signed"

    @property
    def statuses(self) -> tuple[CaseStatus, ...]:
        if self is WorklistStatus.UNSIGNED:
            return (CaseStatus.ANALYSED, CaseStatus.IN_REVIEW)
        return (CaseStatus(self.value),)


@dataclass(frozen=True)
class WorklistQuery:
    """Sorting and filters of the worklist. ``reviewer``: a user name, REVIEWER_ME,
    REVIEWER_UNASSIGNED or None (anyone)."""

    sort: WorklistSort = WorklistSort.RISK
    status: WorklistStatus = WorklistStatus.UNSIGNED
    reviewer: str | None = None
    only_flagged: bool = False


@dataclass(frozen=True)
class LatestDecision:
    """The newest decision on one suggestion of the latest analysis."""

    suggestion_id: int
    action: DecisionAction
    user: str


@dataclass(frozen=True)
class WorklistItem:
    """One analysed case as triage sees it (the latest analysis only)."""

    summary: CaseSummary
    analysis_id: int
    risk: float | None
    top_critical: str | None  # display of the critical label that sets ``risk``
    top_suggestion: str | None
    top_probability: float | None  # calibrated (else raw) probability of top_suggestion
    abstained_count: int
    flags: tuple[str, ...]
    decided: bool  # a decision on a suggestion of the latest analysis
    suggestions: tuple[SuggestionInfo, ...] = ()  # confident first, by rank
    decisions: tuple[LatestDecision, ...] = ()
    critical_ids: frozenset[int] = field(default_factory=frozenset)

    @property
    def case_uid(self) -> str:
        return self.summary.case_uid

    @property
    def version(self) -> int:
        return self.summary.version

    @property
    def title(self) -> str:
        return self.summary.title

    @property
    def patient_pseudonym(self) -> str:
        return self.summary.patient_pseudonym

    @property
    def is_composite_demo(self) -> bool:
        return self.summary.is_composite_demo

    @property
    def status(self) -> CaseStatus:
        return self.summary.status

    @property
    def reviewer(self) -> str | None:
        return self.summary.reviewer

    @property
    def signed(self) -> bool:
        return self.summary.status is CaseStatus.SIGNED

    @property
    def reviewed(self) -> bool:
        return self.signed or self.decided

    def decision_for(self, suggestion_id: int) -> LatestDecision | None:
        return next((d for d in self.decisions if d.suggestion_id == suggestion_id), None)


class ReviewProgress(NamedTuple):
    reviewed: int
    total: int


@dataclass(frozen=True)
class WorklistPage:
    items: list[WorklistItem]
    total: int
    reviewed: int
    offset: int
    page_size: int

    @property
    def progress(self) -> ReviewProgress:
        return ReviewProgress(self.reviewed, self.total)
