"""The case store's tables: typed SQLAlchemy 2.0 ``Mapped[]`` classes.

Conventions: integer surrogate keys; public ids (``case_uid``, ``pseudonym``) are random and
carry no patient information; every time is UTC (:class:`UtcDateTime`); every constraint is
named (Alembic batch mode on SQLite needs names); enums are stored as their text values with a
CHECK constraint, so the schema reads the same on SQLite and PostgreSQL.

Never put a patient name or record number in a column other than
``Patient.identifier_encrypted``.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from clinic_app.domain.records import (
    AuditAction,
    CaseStatus,
    DecisionAction,
    Modality,
    ReportKind,
    Role,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every back end (SQLite stores it naive, PostgreSQL as timestamptz).

    Naive datetimes are refused: a local time in a clinical record is ambiguous.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class ExactFraction(TypeDecorator[Fraction]):
    """An exact rational stored as text ``"n/d"``: SQLite has no exact decimal type, and a
    float privacy ledger accepts 10 x 0.1 against 1.0 and reports 0.9999999999999999."""

    impl = String(64)
    cache_ok = True

    def process_bind_param(self, value: Fraction | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Fraction):
            raise TypeError(f"ExactFraction columns take fractions.Fraction, not {type(value)}")
        return f"{value.numerator}/{value.denominator}"

    def process_result_value(self, value: str | None, dialect: Dialect) -> Fraction | None:
        return None if value is None else Fraction(value)


def _enum(kind: type[enum.Enum], name: str) -> Enum:
    return Enum(
        kind,
        name=name,
        native_enum=False,
        create_constraint=True,
        validate_strings=True,
        length=32,
        values_callable=lambda members: [member.value for member in members],
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


# -- people ---------------------------------------------------------------------------------
class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class Patient(Base):
    """A pseudonymous patient. ``identifier_encrypted`` (MRN etc.) is ciphertext or NULL."""

    __tablename__ = "patients"

    id: Mapped[int] = mapped_column(primary_key=True)
    pseudonym: Mapped[str] = mapped_column(String(40), unique=True)
    identifier_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    # Keyed HMAC of the normalised identifier: finds the patient again without decrypting.
    identifier_lookup: Mapped[str | None] = mapped_column(String(64), unique=True)
    birth_year: Mapped[int | None]
    sex: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    cases: Mapped[list[Case]] = relationship(back_populates="patient")


# -- cases and their inputs -------------------------------------------------------------------
class Case(Base):
    """One clinical question about one patient. Signed cases are read-only; an amendment is a
    new row with ``version + 1`` whose ``previous_version_id`` points at the signed one."""

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("case_uid", "version", name="uq_cases_case_uid_version"),
        CheckConstraint("version >= 1", name="version_positive"),
        Index("ix_cases_status_updated_at", "status", "updated_at"),
        Index("ix_cases_updated_at", "updated_at"),
        # The triage worklist walks these in its sort order and counts through them without
        # reading the table: they hold every column its filters test (bench/worklist_gui.py:
        # page 500 of 100,000 cases 250 -> 35 ms, counts 60 -> 24 ms on SQLite).
        Index(
            "ix_cases_triage_risk",
            "triage_risk",
            "status",
            "reviewer_id",
            "triage_abstained",
            "triage_uncertainty",
        ),
        Index(
            "ix_cases_triage_uncertainty",
            "triage_uncertainty",
            "status",
            "reviewer_id",
            "triage_risk",
            "triage_abstained",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_uid: Mapped[str] = mapped_column(String(40), index=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    previous_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("cases.id", ondelete="RESTRICT")
    )
    patient_id: Mapped[int] = mapped_column(
        ForeignKey("patients.id", ondelete="RESTRICT"), index=True
    )
    title: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[CaseStatus] = mapped_column(
        _enum(CaseStatus, "case_status"), default=CaseStatus.NEW
    )
    is_composite_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    top_suggestion: Mapped[str | None] = mapped_column(String(200), index=True)
    priority: Mapped[float | None] = mapped_column(Float, index=True)
    # The triage worklist's figures of the latest analysis (clinic_app.domain.worklist
    # .triage_scores), written with it so the worklist sorts and filters through indexes;
    # grouping the suggestions per query took 0.6-1.8 s a page at 100,000 cases.
    # triage_uncertainty NULL: no analysis (the case is not on the worklist).
    triage_risk: Mapped[float | None] = mapped_column(Float)
    triage_abstained: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    triage_uncertainty: Mapped[float | None] = mapped_column(Float)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    signed_at: Mapped[datetime | None]

    patient: Mapped[Patient] = relationship(back_populates="cases")
    inputs: Mapped[list[CaseInput]] = relationship(
        back_populates="case", cascade="all, delete-orphan", order_by="CaseInput.id"
    )
    notes: Mapped[list[NoteVersion]] = relationship(
        back_populates="case", cascade="all, delete-orphan", order_by="NoteVersion.version"
    )
    vitals: Mapped[list[VitalSigns]] = relationship(
        back_populates="case", cascade="all, delete-orphan", order_by="VitalSigns.id"
    )
    analyses: Mapped[list[Analysis]] = relationship(
        back_populates="case", cascade="all, delete-orphan", order_by="Analysis.id"
    )
    decisions: Mapped[list[Decision]] = relationship(
        back_populates="case", cascade="all, delete-orphan", order_by="Decision.id"
    )
    sign_off: Mapped[SignOff | None] = relationship(back_populates="case", cascade="all")
    reports: Mapped[list[Report]] = relationship(
        back_populates="case", cascade="all, delete-orphan", order_by="Report.id"
    )
    search_terms: Mapped[list[CaseSearchTerm]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True
    )


class CaseSearchTerm(Base):
    """One lower-case word of a case's id, patient pseudonym, title or top suggestion.

    The case list's search box matches word prefixes through this index (a B-tree range scan on
    both back ends) instead of scanning every case with LIKE '%...%', which took ~250 ms at
    100,000 cases (bench/case_store.py). Kept up to date by the case service."""

    __tablename__ = "case_search_terms"

    case_id: Mapped[int] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), primary_key=True
    )
    # Binary collation on PostgreSQL so the prefix range [w, w + U+FFFF) means "starts with w".
    term: Mapped[str] = mapped_column(
        String(100).with_variant(String(100, collation="C"), "postgresql"),
        primary_key=True,
        index=True,
    )


class CaseInput(Base):
    """An imported file: stored content-addressed by sha256, with de-identified metadata."""

    __tablename__ = "case_inputs"
    __table_args__ = (UniqueConstraint("case_id", "sha256", name="uq_case_inputs_case_sha256"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    modality: Mapped[Modality] = mapped_column(_enum(Modality, "modality"))
    original_name: Mapped[str] = mapped_column(String(255))
    media_type: Mapped[str] = mapped_column(String(100))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    stored_path: Mapped[str] = mapped_column(String(1024))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    deidentified_metadata: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(back_populates="inputs")


class NoteVersion(Base):
    """A clinical note as saved: every save is a new version; PHI scrubbing changes are kept."""

    __tablename__ = "note_versions"
    __table_args__ = (UniqueConstraint("case_id", "version", name="uq_note_versions_case_ver"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    scrubbed: Mapped[list[Any]] = mapped_column(default=list)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(back_populates="notes")


class VitalSigns(Base):
    __tablename__ = "vital_signs"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    measured_at: Mapped[datetime | None]
    heart_rate_bpm: Mapped[float | None]
    systolic_mmhg: Mapped[float | None]
    diastolic_mmhg: Mapped[float | None]
    spo2_percent: Mapped[float | None]
    temperature_c: Mapped[float | None]
    respiratory_rate_per_min: Mapped[float | None]
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(back_populates="vitals")


# -- model output ---------------------------------------------------------------------------
class Analysis(Base):
    """One model run on one case; enough to reproduce it (bundle and input hashes, device)."""

    __tablename__ = "analyses"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    model_name: Mapped[str] = mapped_column(String(100))
    model_version: Mapped[str] = mapped_column(String(40))
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    input_sha256s: Mapped[list[Any]] = mapped_column(default=list)
    device: Mapped[str] = mapped_column(String(64))
    timings_ms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    outputs: Mapped[dict[str, Any]] = mapped_column(default=dict)
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(back_populates="analyses")
    suggestions: Mapped[list[Suggestion]] = relationship(
        back_populates="analysis", cascade="all, delete-orphan", order_by="Suggestion.rank"
    )
    artefacts: Mapped[list[ExplanationArtefact]] = relationship(
        back_populates="analysis", cascade="all, delete-orphan"
    )


class Suggestion(Base):
    __tablename__ = "suggestions"
    __table_args__ = (
        CheckConstraint("probability >= 0 AND probability <= 1", name="probability_range"),
        Index("ix_suggestions_code", "code_system", "code"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_id: Mapped[int] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), index=True
    )
    rank: Mapped[int] = mapped_column(Integer)
    code_system: Mapped[str] = mapped_column(String(100))
    code: Mapped[str] = mapped_column(String(64))
    display: Mapped[str] = mapped_column(String(255))
    probability: Mapped[float] = mapped_column(Float)
    calibrated_probability: Mapped[float | None] = mapped_column(Float)
    abstained: Mapped[bool] = mapped_column(Boolean, default=False)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)

    analysis: Mapped[Analysis] = relationship(back_populates="suggestions")


class ExplanationArtefact(Base):
    """A heatmap or relevance file written beside the database, identified by its sha256."""

    __tablename__ = "explanation_artefacts"

    id: Mapped[int] = mapped_column(primary_key=True)
    analysis_id: Mapped[int] = mapped_column(
        ForeignKey("analyses.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)

    analysis: Mapped[Analysis] = relationship(back_populates="artefacts")


# -- the clinician's part -------------------------------------------------------------------
class Decision(Base):
    """Accept / override / reject of one suggestion; override and reject need a reason."""

    __tablename__ = "decisions"
    __table_args__ = (
        CheckConstraint(
            "action = 'accept' OR (reason IS NOT NULL AND length(trim(reason)) > 0)",
            name="reason_required",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    suggestion_id: Mapped[int | None] = mapped_column(
        ForeignKey("suggestions.id", ondelete="SET NULL"), index=True
    )
    action: Mapped[DecisionAction] = mapped_column(_enum(DecisionAction, "decision_action"))
    reason: Mapped[str | None] = mapped_column(Text)
    override_code_system: Mapped[str | None] = mapped_column(String(100))
    override_code: Mapped[str | None] = mapped_column(String(64))
    override_display: Mapped[str | None] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(back_populates="decisions")


class SignOff(Base):
    """The final impression and electronic signature (21 CFR 11.50: who, when, meaning).

    ``content_sha256`` hashes the signed content (inputs, analysis, decisions, impression), so a
    later change to any of it is detectable."""

    __tablename__ = "sign_offs"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="RESTRICT"), unique=True)
    final_impression: Mapped[str] = mapped_column(Text)
    meaning: Mapped[str] = mapped_column(String(64), default="reviewed and approved")
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    signed_at: Mapped[datetime] = mapped_column(default=utcnow)
    content_sha256: Mapped[str] = mapped_column(String(64))

    case: Mapped[Case] = relationship(back_populates="sign_off")


class Report(Base):
    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ReportKind] = mapped_column(_enum(ReportKind, "report_kind"))
    path: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    case: Mapped[Case] = relationship(back_populates="reports")


# -- batch import and batch analysis --------------------------------------------------------
class ImportedSource(Base):
    """A source file already imported: a keyed digest of its original bytes, so a batch import
    run twice (or a file listed twice) is recognised and skipped. Keyed (HMAC-SHA256 with the
    installation's secret), never a plain sha256: a plain hash of an identifiable file would let
    anyone holding that file confirm the patient is in this database."""

    __tablename__ = "imported_sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # InputKind value: slide, image, ecg, note
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BatchRunState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    FINISHED = "finished"


class BatchItemState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class BatchRun(Base):
    """One batch analysis: a persistent queue of cases, so a crash or kill -9 loses nothing
    and a restarted worker resumes where it stopped."""

    __tablename__ = "batch_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[BatchRunState] = mapped_column(
        _enum(BatchRunState, "batch_run_state"), default=BatchRunState.QUEUED, index=True
    )
    bundle: Mapped[str | None] = mapped_column(String(1024))
    device: Mapped[str] = mapped_column(String(32), default="auto")
    explain: Mapped[bool] = mapped_column(Boolean, default=True)
    batch_size: Mapped[int] = mapped_column(Integer, default=8)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    #: The worker holding the run ("host:pid:uuid") and until when; a lapsed lease is free.
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]

    items: Mapped[list[BatchItem]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="BatchItem.id"
    )


class BatchItem(Base):
    """One case of a batch run and what became of it."""

    __tablename__ = "batch_items"
    __table_args__ = (
        UniqueConstraint("run_id", "case_uid", name="uq_batch_items_run_id_case_uid"),
        Index("ix_batch_items_run_id_state", "run_id", "state"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("batch_runs.id", ondelete="CASCADE"))
    case_uid: Mapped[str] = mapped_column(String(40), index=True)
    state: Mapped[BatchItemState] = mapped_column(
        _enum(BatchItemState, "batch_item_state"), default=BatchItemState.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    analysis_id: Mapped[int | None] = mapped_column(ForeignKey("analyses.id", ondelete="SET NULL"))
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    run: Mapped[BatchRun] = relationship(back_populates="items")


# -- audit trail ----------------------------------------------------------------------------
class AuditEvent(Base):
    """One audited action (DICOM PS3.15 A.5 / IHE ATNA fields), hash-chained to the previous.

    Append-only: triggers refuse UPDATE and DELETE on SQLite; on PostgreSQL the app's role has
    no such rights. ``sequence`` is gap-free and ``prev_hash`` is the previous event's hash."""

    __tablename__ = "audit_events"
    __table_args__ = (
        CheckConstraint("outcome IN (0, 4, 8, 12)", name="outcome_code"),
        Index("ix_audit_events_occurred_at", "occurred_at"),
        Index("ix_audit_events_case_uid", "case_uid"),
    )

    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_uid: Mapped[str] = mapped_column(String(36), unique=True)
    event_type: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[AuditAction] = mapped_column(_enum(AuditAction, "audit_action"))
    occurred_at: Mapped[datetime]
    outcome: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(Integer)
    username: Mapped[str | None] = mapped_column(String(64))
    role: Mapped[str | None] = mapped_column(String(32))
    workstation: Mapped[str] = mapped_column(String(255))
    patient_pseudonym: Mapped[str | None] = mapped_column(String(40))
    case_uid: Mapped[str | None] = mapped_column(String(40))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditChainHead(Base):
    """A single row naming the last event; updating it serialises appends on every back end."""

    __tablename__ = "audit_chain_head"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last_sequence: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


class AuditCheckpoint(Base):
    """The chain head signed with an HMAC whose key lives outside the database."""

    __tablename__ = "audit_checkpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger, index=True)
    head_hash: Mapped[str] = mapped_column(String(64))
    hmac: Mapped[str] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# -- differential privacy ledger -----------------------------------------------------------
class PrivacyBudget(Base):
    """The (epsilon, delta) an admin allowed for one dataset. Exact fractions, never floats."""

    __tablename__ = "privacy_budgets"

    id: Mapped[int] = mapped_column(primary_key=True)
    dataset: Mapped[str] = mapped_column(String(100), unique=True)
    epsilon_total: Mapped[Fraction] = mapped_column(ExactFraction())
    delta_total: Mapped[Fraction] = mapped_column(ExactFraction())
    set_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    charges: Mapped[list[PrivacyCharge]] = relationship(
        back_populates="budget", order_by="PrivacyCharge.id"
    )


class PrivacyCharge(Base):
    """One release's cost, committed before its result is shown."""

    __tablename__ = "privacy_charges"
    id: Mapped[int] = mapped_column(primary_key=True)
    budget_id: Mapped[int] = mapped_column(
        ForeignKey("privacy_budgets.id", ondelete="RESTRICT"), index=True
    )
    query: Mapped[str] = mapped_column(String(100))
    mechanism: Mapped[str] = mapped_column(String(64))
    epsilon: Mapped[Fraction] = mapped_column(ExactFraction())
    delta: Mapped[Fraction] = mapped_column(ExactFraction())
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    budget: Mapped[PrivacyBudget] = relationship(back_populates="charges")
