"""The triage worklist's plain views: what to list (WorklistQuery), one row (WorklistItem), one
page (WorklistPage) and the review progress.

Definitions the worklist sorts and flags by (also shown in the GUI's tooltips):

- **risk**: the highest calibrated probability (the raw probability where the model had no
  calibration) among the latest analysis's suggestions flagged *critical* in the model bundle;
  None when the analysis has no critical label. Sorted descending, cases without risk last.
- **uncertainty**: cases with abstained suggestions first (more abstentions first), then by how
  close the top confident suggestion's calibrated probability is to 0.5 (the model's least
  certain calls first); cases with neither last.
- **flagged**: critical >= 50 % or at least one abstained suggestion.
- **reviewed**: signed, or at least one decision on a suggestion of the latest analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

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
