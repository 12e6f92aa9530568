"""Case use cases: create, list, open, import inputs, notes, vitals, analyses, decisions,
sign-off, amendment, deletion, reports.

Every method checks the actor's permission, does its work in one transaction and writes exactly
one audit event in that same transaction (reads included: opening a case or listing cases is
audited). Methods return immutable domain views, never ORM objects.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.orm import Session, aliased, selectinload

from clinic_app.domain.cases import (
    AnalysisInfo,
    CaseDetail,
    CasePage,
    CaseQuery,
    CaseSummary,
    DecisionInfo,
    InputInfo,
    NewAnalysis,
    NoteInfo,
    SignOffInfo,
    SuggestionInfo,
)
from clinic_app.domain.errors import (
    AccessDenied,
    ConfigError,
    InputError,
    ReadOnlyCase,
    StorageError,
)
from clinic_app.domain.notes import MAX_NOTE_CHARS
from clinic_app.domain.permissions import Permission
from clinic_app.domain.records import AuditAction, CaseStatus, DecisionAction, Modality, ReportKind
from clinic_app.domain.search import query_words, search_terms
from clinic_app.domain.worklist import triage_scores
from clinic_app.services.authorization import authorize
from clinic_app.services.context import Actor, record_audit
from clinic_app.services.identifiers import PatientIdentifierCipher
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import (
    Analysis,
    Case,
    CaseInput,
    CaseSearchTerm,
    Decision,
    ImportedSource,
    NoteVersion,
    Patient,
    Report,
    SignOff,
    Suggestion,
    User,
    VitalSigns,
)

MAX_PAGE_SIZE = 500
#: A search reports "more than" this many matches instead of counting them all.
SEARCH_COUNT_CAP = 1000
_TOP = "\uffff"  # [word, word + _TOP) is every term that starts with word
_SORT_COLUMNS = {
    "updated_at": Case.updated_at,
    "created_at": Case.created_at,
    "priority": Case.priority,
    "status": Case.status,
    "case_uid": Case.case_uid,
}
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: ids are read aloud and typed


def new_public_id(prefix: str, length: int = 10) -> str:
    """A random, meaningless id such as ``C-7KQ2M9XW4T`` (carries no patient information)."""
    return prefix + "-" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class CaseService:
    """Case use cases over one database; files are kept content-addressed under ``inputs_dir``."""

    def __init__(
        self,
        database: Database,
        inputs_dir: Path,
        identifiers: PatientIdentifierCipher | None = None,
    ) -> None:
        self.database = database
        self.inputs_dir = inputs_dir
        self.identifiers = identifiers

    # -- helpers --------------------------------------------------------------------------
    def _authorize(
        self,
        actor: Actor,
        permission: Permission,
        event_type: str,
        action: AuditAction,
        case_uid: str | None = None,
    ) -> None:
        authorize(self.database, actor, permission, event_type, action, case_uid=case_uid)

    @staticmethod
    def _latest(session: Session, case_uid: str, *, for_update: bool = False) -> Case:
        statement = (
            select(Case).where(Case.case_uid == case_uid).order_by(Case.version.desc()).limit(1)
        )
        if for_update:
            statement = statement.with_for_update()
        case = session.scalars(statement).one_or_none()
        if case is None:
            raise InputError(f"There is no case {case_uid}.", hint="Check the case id.")
        return case

    @staticmethod
    def _writable(case: Case) -> None:
        if case.status.read_only:
            raise ReadOnlyCase(
                f"Case {case.case_uid} is signed and cannot be changed.",
                hint="Amend it to create a new version.",
            )

    @staticmethod
    def _index(session: Session, case: Case) -> None:
        """Rewrite the case's search terms (id, pseudonym, title, top suggestion)."""
        session.flush()
        session.execute(delete(CaseSearchTerm).where(CaseSearchTerm.case_id == case.id))
        terms = search_terms(case.case_uid, case.patient.pseudonym, case.title, case.top_suggestion)
        if terms:
            session.execute(
                insert(CaseSearchTerm), [{"case_id": case.id, "term": t} for t in sorted(terms)]
            )

    @staticmethod
    def _touch(case: Case) -> None:
        case.updated_at = datetime.now(UTC)

    @staticmethod
    def _record_source(session: Session, case: Case, digest: str | None, kind: str) -> None:
        """Remember an imported source's keyed digest in the transaction that stores it, so a
        batch import run twice skips it (refused here too, should two imports race)."""
        if digest is None:
            return
        owner = session.scalar(
            select(Case.case_uid)
            .join(ImportedSource, ImportedSource.case_id == Case.id)
            .where(ImportedSource.digest == digest)
        )
        if owner is not None:
            raise InputError(f"This {kind} was already imported into case {owner}.")
        session.flush()
        session.add(ImportedSource(digest=digest, case_id=case.id, kind=kind))

    def _audit(
        self,
        session: Session,
        actor: Actor,
        event_type: str,
        action: AuditAction,
        case: Case,
        **details: Any,
    ) -> None:
        record_audit(
            session,
            actor,
            event_type,
            action,
            patient_pseudonym=case.patient.pseudonym,
            case_uid=case.case_uid,
            details={"version": case.version, **details},
        )

    # -- create, list, open ---------------------------------------------------------------
    def create_case(
        self,
        actor: Actor,
        *,
        title: str = "",
        patient_pseudonym: str | None = None,
        birth_year: int | None = None,
        sex: str | None = None,
        is_composite_demo: bool = False,
        patient_identifier: str | None = None,
        source_digest: str | None = None,
    ) -> CaseSummary:
        """A new case for a new or existing patient.

        The patient is found by pseudonym, or by identifier (medical record number), which is
        stored only encrypted; neither the identifier nor its hash reaches the audit trail.
        ``source_digest`` (batch import) is the keyed digest of the external case id."""
        self._authorize(actor, Permission.CASE_CREATE, "case.create", AuditAction.CREATE)
        if birth_year is not None and not 1880 <= birth_year <= datetime.now(UTC).year:
            raise InputError(f"The birth year {birth_year} is not plausible.")
        encrypted = lookup = None
        if patient_identifier is not None and patient_identifier.strip():
            if self.identifiers is None:
                raise ConfigError(
                    "Patient identifiers cannot be kept: no identifier key is configured.",
                    hint="Register the patient by pseudonym only.",
                )
            lookup = self.identifiers.lookup_hash(patient_identifier)
            encrypted = self.identifiers.encrypt(patient_identifier)
        with self.database.write() as session:
            patient = None
            if lookup is not None:
                patient = session.scalars(
                    select(Patient).where(Patient.identifier_lookup == lookup)
                ).one_or_none()
            if patient is None and patient_pseudonym:
                patient = session.scalars(
                    select(Patient).where(Patient.pseudonym == patient_pseudonym)
                ).one_or_none()
            if patient is None:
                patient = Patient(
                    pseudonym=patient_pseudonym or new_public_id("P", 12),
                    birth_year=birth_year,
                    sex=sex,
                    identifier_encrypted=encrypted,
                    identifier_lookup=lookup,
                )
                session.add(patient)
            elif lookup is not None and patient.identifier_lookup is None:
                patient.identifier_encrypted, patient.identifier_lookup = encrypted, lookup
            elif lookup is not None and patient.identifier_lookup != lookup:
                raise InputError(
                    f"Patient {patient.pseudonym} is registered with another identifier.",
                    hint="Check the medical record number and the pseudonym.",
                )
            case = Case(
                case_uid=new_public_id("C"),
                version=1,
                patient=patient,
                title=title.strip()[:200],
                status=CaseStatus.NEW,
                is_composite_demo=is_composite_demo,
                created_by_id=actor.user_id,
            )
            session.add(case)
            self._index(session, case)
            self._record_source(session, case, source_digest, "case")
            self._audit(session, actor, "case.create", AuditAction.CREATE, case)
            return _summary(case, None)

    def reveal_identifier(self, actor: Actor, case_uid: str) -> str | None:
        """The patient's identifier in clear, for a clinician who needs it (an audited read)."""
        self._authorize(
            actor, Permission.CASE_READ, "patient.identifier.read", AuditAction.READ, case_uid
        )
        with self.database.write() as session:
            case = self._latest(session, case_uid)
            blob = case.patient.identifier_encrypted
            if blob is not None and self.identifiers is None:
                raise ConfigError("The patient identifier key is not available here.")
            identifier = (
                self.identifiers.decrypt(blob) if blob is not None and self.identifiers else None
            )
            self._audit(
                session,
                actor,
                "patient.identifier.read",
                AuditAction.READ,
                case,
                identifier_kept=identifier is not None,
            )
            return identifier

    def list_cases(
        self, actor: Actor, query: CaseQuery | None = None, *, page: int = 1, page_size: int = 100
    ) -> CasePage:
        """One page of the case list (latest versions only unless asked), newest first."""
        self._authorize(actor, Permission.CASE_READ, "case.list", AuditAction.READ)
        query = query or CaseQuery()
        page = max(1, page)
        page_size = max(1, min(page_size, MAX_PAGE_SIZE))
        with self.database.write() as session:
            # A text search counts at most SEARCH_COUNT_CAP + 1 matches ("more than 1,000"):
            # an exact count of a common word costs a scan of every match. The count also picks
            # the plan: few matches are fetched by the term index and sorted; many are found
            # by walking the sort index and probing the terms, which stops after one page.
            words = query_words(query.text or "")
            driver: str | None = None
            if words:
                # Drive by the rarest word: a join over its terms streams and stops at the
                # cap, while the other words are probed per case.
                driver = min(words, key=lambda word: _term_count(session, word))
                alias = aliased(CaseSearchTerm)
                rest = replace(query, text=" ".join(w for w in words if w != driver))
                counted = (
                    _filtered(
                        select(Case.id)
                        .join(alias, alias.case_id == Case.id)
                        .where(alias.term >= driver, alias.term < driver + _TOP),
                        rest,
                        dense=True,
                    )
                    .distinct()
                    .limit(SEARCH_COUNT_CAP + 1)
                )
            else:
                counted = _filtered(select(Case.id), query)
            total = session.scalar(select(func.count()).select_from(counted.subquery())) or 0
            capped = bool(words) and total > SEARCH_COUNT_CAP
            column = _SORT_COLUMNS.get(query.sort)
            if column is None:
                raise InputError(
                    f"Cases cannot be sorted by '{query.sort}'.",
                    hint=f"Use one of {', '.join(_SORT_COLUMNS)}.",
                )
            order = (column.desc() if query.descending else column.asc()).nulls_last()
            rows = session.execute(
                _filtered(
                    select(Case, Patient.pseudonym, User.username)
                    .join(Patient, Case.patient_id == Patient.id)
                    .outerjoin(User, Case.reviewer_id == User.id),
                    query,
                    dense=capped,
                    driver=driver,
                )
                .order_by(order, Case.id.desc())
                .offset((page - 1) * page_size)
                .limit(page_size)
            ).all()
            items = [_summary(case, reviewer, pseudonym) for case, pseudonym, reviewer in rows]
            record_audit(
                session,
                actor,
                "case.list",
                AuditAction.READ,
                details={
                    "page": page,
                    "page_size": page_size,
                    "returned": len(items),
                    "total": total,
                    "total_is_lower_bound": capped,
                    "filtered": query != CaseQuery(),
                },
            )
            return CasePage(
                items=items,
                total=total,
                page=page,
                page_size=page_size,
                total_is_lower_bound=capped,
            )

    def get_case(self, actor: Actor, case_uid: str, *, version: int | None = None) -> CaseDetail:
        """Everything about one case version (default: the latest); an audited read."""
        self._authorize(actor, Permission.CASE_READ, "case.read", AuditAction.READ, case_uid)
        with self.database.write() as session:
            statement = (
                select(Case)
                .where(Case.case_uid == case_uid)
                .options(
                    selectinload(Case.patient),
                    selectinload(Case.inputs),
                    selectinload(Case.notes),
                    selectinload(Case.vitals),
                    selectinload(Case.analyses).selectinload(Analysis.suggestions),
                    selectinload(Case.decisions),
                    selectinload(Case.sign_off),
                )
            )
            if version is None:
                statement = statement.order_by(Case.version.desc()).limit(1)
            else:
                statement = statement.where(Case.version == version)
            case = session.scalars(statement).one_or_none()
            if case is None:
                which = f" version {version}" if version is not None else ""
                raise InputError(f"There is no case {case_uid}{which}.")
            detail = _detail(session, case)
            self._audit(session, actor, "case.read", AuditAction.READ, case)
            return detail

    # -- inputs, notes, vitals ------------------------------------------------------------
    def _store_file(self, source: Path) -> tuple[str, Path, int]:
        """Copy ``source`` into the content-addressed store atomically (sha256, path, size)."""
        digest = hashlib.sha256()
        self.inputs_dir.mkdir(parents=True, exist_ok=True)
        handle, temp_name = tempfile.mkstemp(dir=self.inputs_dir, prefix=".incoming-")
        size = 0
        try:
            with os.fdopen(handle, "wb") as out, source.open("rb") as src:
                while chunk := src.read(1024 * 1024):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            target = self.inputs_dir / sha[:2] / (sha + "".join(source.suffixes[-2:]).lower())
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                Path(temp_name).unlink()
            else:
                Path(temp_name).replace(target)
            return sha, target, size
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    def add_input(
        self,
        actor: Actor,
        case_uid: str,
        source: Path,
        *,
        modality: Modality,
        media_type: str,
        metadata: dict[str, Any] | None = None,
        original_name: str | None = None,
        source_digest: str | None = None,
    ) -> InputInfo:
        """Attach an already parsed and de-identified file to a case (the file is copied);
        ``source_digest`` is the keyed digest of the original file (batch import)."""
        self._authorize(
            actor, Permission.CASE_UPDATE, "case.input.add", AuditAction.UPDATE, case_uid
        )
        if not source.is_file():
            raise InputError(f"The file {source} does not exist or is not a file.")
        with self.database.write() as session:
            case = self._latest(session, case_uid, for_update=True)
            self._writable(case)
            sha, stored, size = self._store_file(source)
            existing = session.scalars(
                select(CaseInput).where(CaseInput.case_id == case.id, CaseInput.sha256 == sha)
            ).one_or_none()
            if existing is not None:
                raise InputError(
                    f"{source.name} is already part of case {case_uid} "
                    f"(as {existing.original_name})."
                )
            item = CaseInput(
                case=case,
                modality=modality,
                original_name=(original_name or source.name)[:255],
                media_type=media_type,
                sha256=sha,
                stored_path=str(stored),
                size_bytes=size,
                deidentified_metadata=metadata or {},
            )
            session.add(item)
            self._record_source(
                session, case, source_digest, str((metadata or {}).get("kind", modality.value))
            )
            self._touch(case)
            session.flush()
            self._audit(
                session,
                actor,
                "case.input.add",
                AuditAction.UPDATE,
                case,
                input_sha256=sha,
                modality=modality.value,
            )
            return _input_info(item)

    def stored_input(self, actor: Actor, case_uid: str, input_id: int) -> tuple[InputInfo, Path]:
        """The input's stored file, after checking that its bytes still have the recorded sha256.

        A case must never silently point at a changed file: a file that was altered, replaced
        or removed on disk raises StorageError instead of being read (an audited read).
        """
        self._authorize(actor, Permission.CASE_READ, "case.input.read", AuditAction.READ, case_uid)
        with self.database.write() as session:
            case = self._latest(session, case_uid)
            item = session.scalars(
                select(CaseInput).where(CaseInput.case_id == case.id, CaseInput.id == input_id)
            ).one_or_none()
            if item is None:
                raise InputError(f"Case {case_uid} has no input {input_id}.")
            info = _input_info(item)
            self._audit(
                session, actor, "case.input.read", AuditAction.READ, case, input_sha256=item.sha256
            )
        path = Path(info.stored_path)
        digest = hashlib.sha256()
        try:
            with path.open("rb") as handle:
                while chunk := handle.read(1024 * 1024):
                    digest.update(chunk)
        except OSError as exc:
            raise StorageError(
                f"The stored file of {info.original_name} in case {case_uid} cannot be read "
                f"({exc.strerror or exc}).",
                hint="Restore the data folder's inputs/ from a backup.",
            ) from exc
        if digest.hexdigest() != info.sha256:
            raise StorageError(
                f"The stored file of {info.original_name} in case {case_uid} has changed on disk "
                f"(sha256 {digest.hexdigest()[:12]}…, recorded {info.sha256[:12]}…), so it is "
                "not used.",
                hint="Restore the file from a backup; the case record itself is unchanged.",
            )
        return info, path

    def save_note(
        self,
        actor: Actor,
        case_uid: str,
        text: str,
        *,
        scrubbed: Sequence[Any] = (),
        source_digest: str | None = None,
    ) -> NoteInfo:
        """Save the note as a new version (earlier versions are kept); ``source_digest`` is
        the keyed digest of the original note file (batch import)."""
        self._authorize(
            actor, Permission.CASE_UPDATE, "case.note.save", AuditAction.UPDATE, case_uid
        )
        if len(text) > MAX_NOTE_CHARS:
            raise InputError(
                f"The note has {len(text):,} characters; the limit is {MAX_NOTE_CHARS:,}.",
                hint="Attach long documents as files instead.",
            )
        with self.database.write() as session:
            case = self._latest(session, case_uid, for_update=True)
            self._writable(case)
            latest = session.scalar(
                select(func.max(NoteVersion.version)).where(NoteVersion.case_id == case.id)
            )
            note = NoteVersion(
                case=case,
                version=(latest or 0) + 1,
                text=text,
                sha256=sha256_bytes(text.encode("utf-8")),
                scrubbed=list(scrubbed),
                author_id=actor.user_id,
            )
            session.add(note)
            self._record_source(session, case, source_digest, "note")
            self._touch(case)
            session.flush()
            self._audit(
                session,
                actor,
                "case.note.save",
                AuditAction.UPDATE,
                case,
                note_version=note.version,
                note_sha256=note.sha256,
            )
            return NoteInfo(
                note.version, note.text, note.sha256, note.scrubbed, actor.username, note.created_at
            )

    def add_vitals(self, actor: Actor, case_uid: str, **values: float | datetime | None) -> int:
        """Record a set of vital signs (already unit-checked by the caller); returns its id."""
        self._authorize(
            actor, Permission.CASE_UPDATE, "case.vitals.add", AuditAction.UPDATE, case_uid
        )
        allowed = {
            "measured_at",
            "heart_rate_bpm",
            "systolic_mmhg",
            "diastolic_mmhg",
            "spo2_percent",
            "temperature_c",
            "respiratory_rate_per_min",
        }
        unknown = set(values) - allowed
        if unknown:
            raise InputError(f"Unknown vital sign(s): {', '.join(sorted(unknown))}.")
        with self.database.write() as session:
            case = self._latest(session, case_uid, for_update=True)
            self._writable(case)
            vitals = VitalSigns(case=case, recorded_by_id=actor.user_id, **values)
            session.add(vitals)
            self._touch(case)
            session.flush()
            self._audit(
                session, actor, "case.vitals.add", AuditAction.UPDATE, case, vitals_id=vitals.id
            )
            return vitals.id

    # -- analysis, decisions, sign-off -----------------------------------------------------
    def record_analysis(
        self,
        actor: Actor,
        case_uid: str,
        result: NewAnalysis,
        *,
        in_transaction: Callable[[Session, int], None] | None = None,
    ) -> AnalysisInfo:
        """Store a finished model run with its suggestions; the case becomes 'analysed'."""
        self._authorize(
            actor, Permission.CASE_ANALYSE, "case.analyse", AuditAction.EXECUTE, case_uid
        )
        for suggestion in result.suggestions:
            for value in (suggestion.probability, suggestion.calibrated_probability):
                if value is not None and not 0.0 <= value <= 1.0:
                    raise InputError(f"Probability {value} of {suggestion.code} is not in [0, 1].")
        with self.database.write() as session:
            case = self._latest(session, case_uid, for_update=True)
            self._writable(case)
            analysis = Analysis(
                case=case,
                model_name=result.model_name,
                model_version=result.model_version,
                bundle_sha256=result.bundle_sha256,
                input_sha256s=list(result.input_sha256s),
                device=result.device,
                timings_ms=dict(result.timings_ms),
                outputs=dict(result.outputs),
                requested_by_id=actor.user_id,
            )
            # Confident suggestions first, by calibrated probability; abstentions last.
            ranked = sorted(
                result.suggestions,
                key=lambda s: (
                    s.abstained,
                    -(
                        s.calibrated_probability
                        if s.calibrated_probability is not None
                        else s.probability
                    ),
                ),
            )
            for rank, item in enumerate(ranked, start=1):
                analysis.suggestions.append(
                    Suggestion(
                        rank=rank,
                        code_system=item.code_system,
                        code=item.code,
                        display=item.display,
                        probability=item.probability,
                        calibrated_probability=item.calibrated_probability,
                        abstained=item.abstained,
                        evidence=dict(item.evidence),
                    )
                )
            session.add(analysis)
            top = next((s for s in analysis.suggestions if not s.abstained), None)
            case.top_suggestion = top.display if top else None
            case.priority = (
                top.calibrated_probability
                if top and top.calibrated_probability is not None
                else (top.probability if top else None)
            )
            # The worklist sorts and filters by these (see clinic_app.domain.worklist).
            triage = triage_scores(analysis.suggestions)
            case.triage_risk, case.triage_abstained = triage.risk, triage.abstained
            case.triage_uncertainty = triage.uncertainty
            if case.status is CaseStatus.NEW:
                case.status = CaseStatus.ANALYSED
            self._touch(case)
            self._index(session, case)
            self._audit(
                session,
                actor,
                "case.analyse",
                AuditAction.EXECUTE,
                case,
                analysis_id=analysis.id,
                model=f"{result.model_name} {result.model_version}",
                bundle_sha256=result.bundle_sha256,
                input_sha256s=list(result.input_sha256s),
            )
            if in_transaction is not None:  # e.g. the batch worker marks its item done
                in_transaction(session, analysis.id)
            return _analysis_info(analysis)

    def decide(
        self,
        actor: Actor,
        case_uid: str,
        suggestion_id: int,
        action: DecisionAction,
        *,
        reason: str | None = None,
        override: tuple[str, str, str] | None = None,
    ) -> DecisionInfo:
        """Accept, override (with the clinician's code) or reject one suggestion."""
        self._authorize(actor, Permission.CASE_DECIDE, "case.decide", AuditAction.UPDATE, case_uid)
        reason = (reason or "").strip() or None
        if action.needs_reason and reason is None:
            raise InputError(f"A reason is required to {action.value} a suggestion.")
        if action is DecisionAction.OVERRIDE and override is None:
            raise InputError("An override needs the diagnosis chosen instead (system, code, name).")
        if actor.user_id is None:
            raise AccessDenied("Decisions must be made by a signed-in clinician.")
        with self.database.write() as session:
            case = self._latest(session, case_uid, for_update=True)
            self._writable(case)
            suggestion = session.get(Suggestion, suggestion_id)
            if suggestion is None or suggestion.analysis.case_id != case.id:
                raise InputError(f"Suggestion {suggestion_id} does not belong to case {case_uid}.")
            decision = Decision(
                case=case,
                suggestion_id=suggestion.id,
                action=action,
                reason=reason,
                override_code_system=override[0] if override else None,
                override_code=override[1] if override else None,
                override_display=override[2] if override else None,
                user_id=actor.user_id,
            )
            session.add(decision)
            case.status = CaseStatus.IN_REVIEW
            if case.reviewer_id is None:
                case.reviewer_id = actor.user_id
            self._touch(case)
            session.flush()
            self._audit(
                session,
                actor,
                "case.decide",
                AuditAction.UPDATE,
                case,
                decision_id=decision.id,
                suggestion_id=suggestion.id,
                decision=action.value,
                code=f"{suggestion.code_system}|{suggestion.code}",
            )
            return _decision_info(decision, actor.username)

    def sign(self, actor: Actor, case_uid: str, final_impression: str) -> SignOffInfo:
        """Sign the case with a final impression; from now on it is read-only."""
        self._authorize(actor, Permission.CASE_SIGN, "case.sign", AuditAction.UPDATE, case_uid)
        final_impression = final_impression.strip()
        if not final_impression:
            raise InputError("A final impression is required to sign the case.")
        if actor.user_id is None:
            raise AccessDenied("Cases must be signed by a signed-in clinician.")
        with self.database.write() as session:
            case = self._latest(session, case_uid, for_update=True)
            self._writable(case)
            content = _signed_content(session, case, final_impression)
            sign_off = SignOff(
                case=case,
                final_impression=final_impression,
                user_id=actor.user_id,
                content_sha256=sha256_bytes(content),
            )
            session.add(sign_off)
            case.status = CaseStatus.SIGNED
            now = datetime.now(UTC)
            case.signed_at = now
            case.updated_at = now
            session.flush()
            self._audit(
                session,
                actor,
                "case.sign",
                AuditAction.UPDATE,
                case,
                content_sha256=sign_off.content_sha256,
                meaning=sign_off.meaning,
            )
            return SignOffInfo(
                final_impression,
                sign_off.meaning,
                actor.username,
                sign_off.signed_at,
                sign_off.content_sha256,
            )

    def amend(self, actor: Actor, case_uid: str, reason: str) -> CaseSummary:
        """Open a new version of a signed case; the signed version stays as it was."""
        self._authorize(actor, Permission.CASE_AMEND, "case.amend", AuditAction.CREATE, case_uid)
        reason = reason.strip()
        if not reason:
            raise InputError("A reason is required to amend a signed case.")
        with self.database.write() as session:
            old = self._latest(session, case_uid, for_update=True)
            if old.status is not CaseStatus.SIGNED:
                raise InputError(
                    f"Case {case_uid} is not signed; change it directly instead of amending it."
                )
            new = Case(
                case_uid=old.case_uid,
                version=old.version + 1,
                previous_version_id=old.id,
                patient_id=old.patient_id,
                title=old.title,
                status=CaseStatus.IN_REVIEW,
                is_composite_demo=old.is_composite_demo,
                top_suggestion=old.top_suggestion,
                priority=old.priority,
                # No analysis of its own yet: off the triage worklist until re-analysed.
                triage_risk=None,
                triage_abstained=0,
                triage_uncertainty=None,
                created_by_id=actor.user_id,
                reviewer_id=old.reviewer_id,
            )
            session.add(new)
            session.flush()
            session.refresh(new, ["patient"])
            self._index(session, new)
            for item in old.inputs:  # the files are shared (content-addressed); rows are copied
                session.add(
                    CaseInput(
                        case_id=new.id,
                        modality=item.modality,
                        original_name=item.original_name,
                        media_type=item.media_type,
                        sha256=item.sha256,
                        stored_path=item.stored_path,
                        size_bytes=item.size_bytes,
                        deidentified_metadata=dict(item.deidentified_metadata),
                    )
                )
            if old.notes:
                last = old.notes[-1]
                session.add(
                    NoteVersion(
                        case_id=new.id,
                        version=1,
                        text=last.text,
                        sha256=last.sha256,
                        scrubbed=list(last.scrubbed),
                        author_id=last.author_id,
                    )
                )
            old.status = CaseStatus.AMENDED
            old.updated_at = datetime.now(UTC)
            session.flush()
            self._audit(
                session,
                actor,
                "case.amend",
                AuditAction.CREATE,
                new,
                reason=reason,
                previous_version=old.version,
            )
            return _summary(new, None)

    def delete_case(self, actor: Actor, case_uid: str) -> None:
        """Delete an unsigned case and all its versions' data (signed cases are kept)."""
        self._authorize(actor, Permission.CASE_DELETE, "case.delete", AuditAction.DELETE, case_uid)
        with self.database.write() as session:
            versions = session.scalars(select(Case).where(Case.case_uid == case_uid)).all()
            if not versions:
                raise InputError(f"There is no case {case_uid}.")
            if any(case.status.read_only for case in versions):
                raise ReadOnlyCase(
                    f"Case {case_uid} has a signed version and cannot be deleted.",
                    hint="Signed records are retained; amend the case instead.",
                )
            latest = max(versions, key=lambda c: c.version)
            self._audit(session, actor, "case.delete", AuditAction.DELETE, latest)
            for case in sorted(versions, key=lambda c: -c.version):
                session.delete(case)
                session.flush()

    def record_report(
        self,
        actor: Actor,
        case_uid: str,
        kind: ReportKind,
        path: Path,
        *,
        location: str | None = None,
    ) -> str:
        """Register an exported report file (allowed for signed cases); returns its sha256.

        ``location`` is stored instead of ``path`` when the file does not stay where it was
        read, e.g. ``"<zip>!<member>"`` for a report written into a zip archive."""
        self._authorize(
            actor, Permission.REPORT_EXPORT, "report.export", AuditAction.EXECUTE, case_uid
        )
        data = path.read_bytes()
        sha = sha256_bytes(data)
        with self.database.write() as session:
            case = self._latest(session, case_uid)
            session.add(
                Report(
                    case=case,
                    kind=kind,
                    path=location or str(path),
                    sha256=sha,
                    created_by_id=actor.user_id,
                )
            )
            session.flush()
            self._audit(
                session,
                actor,
                "report.export",
                AuditAction.EXECUTE,
                case,
                kind=kind.value,
                sha256=sha,
            )
        return sha


# -- query building and conversion ------------------------------------------------------------
def _term_count(session: Session, word: str) -> int:
    """How many terms start with ``word``, counted up to the search cap."""
    matching = (
        select(CaseSearchTerm.case_id)
        .where(CaseSearchTerm.term >= word, CaseSearchTerm.term < word + _TOP)
        .limit(SEARCH_COUNT_CAP + 1)
    )
    return session.scalar(select(func.count()).select_from(matching.subquery())) or 0


def _filtered(
    statement: Any, query: CaseQuery, *, dense: bool = False, driver: str | None = None
) -> Any:
    """Apply the list's search and filters to any SELECT over cases.

    Search words are tested per case with a correlated EXISTS, except ``driver`` (the rarest
    word), whose matches are collected with IN: fast when they are few. ``dense`` (the search
    matches many cases): EXISTS for every word, so the database walks the sort index and stops
    after one page."""
    if not query.include_superseded:
        statement = statement.where(Case.status != CaseStatus.AMENDED)
    if query.status is not None:
        statement = statement.where(Case.status == query.status)
    if query.created_from is not None:
        statement = statement.where(Case.created_at >= query.created_from)
    if query.created_to is not None:
        statement = statement.where(Case.created_at < query.created_to)
    if query.suggestion:
        statement = statement.where(
            Case.top_suggestion.ilike(f"%{_escape(query.suggestion)}%", escape="\\")
        )
    if query.reviewer:
        statement = statement.where(
            Case.reviewer_id.in_(select(User.id).where(User.username == query.reviewer))
        )
    for word in query_words(query.text or ""):
        # Word-prefix match through the B-tree index of case_search_terms (see orm).
        in_range = (CaseSearchTerm.term >= word, CaseSearchTerm.term < word + _TOP)
        if dense or word != driver:
            statement = statement.where(
                exists().where(CaseSearchTerm.case_id == Case.id, *in_range)
            )
        else:
            statement = statement.where(
                Case.id.in_(select(CaseSearchTerm.case_id).where(*in_range))
            )
    return statement


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _summary(case: Case, reviewer: str | None, pseudonym: str | None = None) -> CaseSummary:
    return CaseSummary(
        case_uid=case.case_uid,
        version=case.version,
        title=case.title,
        status=CaseStatus(case.status),
        patient_pseudonym=pseudonym or case.patient.pseudonym,
        is_composite_demo=case.is_composite_demo,
        top_suggestion=case.top_suggestion,
        priority=case.priority,
        reviewer=reviewer,
        created_at=case.created_at,
        updated_at=case.updated_at,
    )


def _input_info(item: CaseInput) -> InputInfo:
    return InputInfo(
        id=item.id,
        modality=Modality(item.modality),
        original_name=item.original_name,
        media_type=item.media_type,
        sha256=item.sha256,
        stored_path=item.stored_path,
        size_bytes=item.size_bytes,
        metadata=dict(item.deidentified_metadata),
    )


def _analysis_info(analysis: Analysis) -> AnalysisInfo:
    return AnalysisInfo(
        id=analysis.id,
        model_name=analysis.model_name,
        model_version=analysis.model_version,
        bundle_sha256=analysis.bundle_sha256,
        input_sha256s=list(analysis.input_sha256s),
        device=analysis.device,
        timings_ms=dict(analysis.timings_ms),
        outputs=dict(analysis.outputs),
        created_at=analysis.created_at,
        suggestions=[
            SuggestionInfo(
                id=s.id,
                rank=s.rank,
                code_system=s.code_system,
                code=s.code,
                display=s.display,
                probability=s.probability,
                calibrated_probability=s.calibrated_probability,
                abstained=s.abstained,
                evidence=dict(s.evidence),
            )
            for s in analysis.suggestions
        ],
    )


def _decision_info(decision: Decision, username: str) -> DecisionInfo:
    return DecisionInfo(
        id=decision.id,
        suggestion_id=decision.suggestion_id,
        action=DecisionAction(decision.action),
        reason=decision.reason,
        override_code_system=decision.override_code_system,
        override_code=decision.override_code,
        override_display=decision.override_display,
        user=username,
        decided_at=decision.decided_at,
    )


def _usernames(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    rows = session.execute(select(User.id, User.username).where(User.id.in_(wanted))).all()
    return {row[0]: row[1] for row in rows}


def _detail(session: Session, case: Case) -> CaseDetail:
    names = _usernames(
        session,
        {case.reviewer_id}
        | {n.author_id for n in case.notes}
        | {d.user_id for d in case.decisions}
        | ({case.sign_off.user_id} if case.sign_off else set()),
    )
    previous = session.get(Case, case.previous_version_id) if case.previous_version_id else None
    return CaseDetail(
        summary=_summary(case, names.get(case.reviewer_id or -1)),
        previous_version=previous.version if previous else None,
        inputs=[_input_info(item) for item in case.inputs],
        notes=[
            NoteInfo(
                n.version,
                n.text,
                n.sha256,
                list(n.scrubbed),
                names.get(n.author_id or -1),
                n.created_at,
            )
            for n in case.notes
        ],
        vitals=[
            {
                "measured_at": v.measured_at,
                "heart_rate_bpm": v.heart_rate_bpm,
                "systolic_mmhg": v.systolic_mmhg,
                "diastolic_mmhg": v.diastolic_mmhg,
                "spo2_percent": v.spo2_percent,
                "temperature_c": v.temperature_c,
                "respiratory_rate_per_min": v.respiratory_rate_per_min,
            }
            for v in case.vitals
        ],
        analyses=[_analysis_info(a) for a in case.analyses],
        decisions=[_decision_info(d, names.get(d.user_id, "?")) for d in case.decisions],
        sign_off=(
            SignOffInfo(
                case.sign_off.final_impression,
                case.sign_off.meaning,
                names.get(case.sign_off.user_id, "?"),
                case.sign_off.signed_at,
                case.sign_off.content_sha256,
            )
            if case.sign_off
            else None
        ),
        birth_year=case.patient.birth_year,
        sex=case.patient.sex,
    )


def _signed_content(session: Session, case: Case, final_impression: str) -> bytes:
    """The canonical bytes a signature covers: inputs, latest note, analyses, decisions."""
    content = {
        "case_uid": case.case_uid,
        "version": case.version,
        "patient": case.patient.pseudonym,
        "inputs": sorted(item.sha256 for item in case.inputs),
        "note_sha256": case.notes[-1].sha256 if case.notes else None,
        "vitals": [v.id for v in case.vitals],
        "analyses": [[a.id, a.bundle_sha256] for a in case.analyses],
        "decisions": [
            [d.id, d.suggestion_id, DecisionAction(d.action).value, d.reason, d.override_code]
            for d in case.decisions
        ],
        "final_impression": final_impression,
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":")).encode("utf-8")
