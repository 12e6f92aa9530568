"""Plain, immutable views of a case that services hand to the GUI and CLI.

ORM objects never leave a service's session (nor cross threads); these do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clinic_app.domain.records import CaseStatus, DecisionAction, Modality


@dataclass(frozen=True)
class CaseSummary:
    """One row of the case list."""

    case_uid: str
    version: int
    title: str
    status: CaseStatus
    patient_pseudonym: str
    is_composite_demo: bool
    top_suggestion: str | None
    priority: float | None
    reviewer: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class CasePage:
    items: list[CaseSummary]
    total: int
    page: int
    page_size: int
    #: True when a search found more than the count cap: show "more than {total - 1}".
    total_is_lower_bound: bool = False

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


@dataclass(frozen=True)
class CaseQuery:
    """Search, filters and sorting of the case list (all optional)."""

    # Words that must each start a word of the case id, patient pseudonym, title or top
    # suggestion (case-insensitive): "atrial fib" finds "Atrial fibrillation".
    text: str | None = None
    status: CaseStatus | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    suggestion: str | None = None
    reviewer: str | None = None
    include_superseded: bool = False
    sort: str = "updated_at"  # updated_at | created_at | priority | status | case_uid
    descending: bool = True


@dataclass(frozen=True)
class InputInfo:
    id: int
    modality: Modality
    original_name: str
    media_type: str
    sha256: str
    stored_path: str
    size_bytes: int
    metadata: dict[str, Any]


@dataclass(frozen=True)
class NoteInfo:
    version: int
    text: str
    sha256: str
    scrubbed: list[Any]
    author: str | None
    created_at: datetime


@dataclass(frozen=True)
class SuggestionInfo:
    id: int
    rank: int
    code_system: str
    code: str
    display: str
    probability: float
    calibrated_probability: float | None
    abstained: bool
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AnalysisInfo:
    id: int
    model_name: str
    model_version: str
    bundle_sha256: str
    input_sha256s: list[str]
    device: str
    timings_ms: dict[str, Any]
    outputs: dict[str, Any]
    created_at: datetime
    suggestions: list[SuggestionInfo]


@dataclass(frozen=True)
class DecisionInfo:
    id: int
    suggestion_id: int | None
    action: DecisionAction
    reason: str | None
    override_code_system: str | None
    override_code: str | None
    override_display: str | None
    user: str
    decided_at: datetime


@dataclass(frozen=True)
class SignOffInfo:
    final_impression: str
    meaning: str
    user: str
    signed_at: datetime
    content_sha256: str


@dataclass(frozen=True)
class CaseDetail:
    summary: CaseSummary
    previous_version: int | None
    inputs: list[InputInfo]
    notes: list[NoteInfo]
    vitals: list[dict[str, Any]]
    analyses: list[AnalysisInfo]
    decisions: list[DecisionInfo]
    sign_off: SignOffInfo | None
    #: The patient's demographics (pseudonymised record: year of birth only).
    birth_year: int | None = None
    sex: str | None = None

    @property
    def latest_note(self) -> NoteInfo | None:
        return self.notes[-1] if self.notes else None

    @property
    def latest_analysis(self) -> AnalysisInfo | None:
        return self.analyses[-1] if self.analyses else None


@dataclass(frozen=True)
class NewSuggestion:
    """A suggestion as the model produced it, to be stored with its analysis."""

    code_system: str
    code: str
    display: str
    probability: float
    calibrated_probability: float | None = None
    abstained: bool = False
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewAnalysis:
    """A finished model run, to be stored: enough to reproduce it."""

    model_name: str
    model_version: str
    bundle_sha256: str
    input_sha256s: list[str]
    device: str
    suggestions: list[NewSuggestion]
    timings_ms: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
