"""The triage worklist service on SQLite and PostgreSQL: sorting by risk and by uncertainty over
hand-built analyses, flags, filters, paging, review progress, permissions and audit."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from clinic_app.domain.cases import NewAnalysis, NewSuggestion
from clinic_app.domain.errors import AccessDenied
from clinic_app.domain.records import AuditOutcome, CaseStatus, DecisionAction, Role
from clinic_app.domain.worklist import (
    FLAG_ABSTAINED,
    FLAG_CRITICAL,
    FLAG_OVERRIDE,
    REVIEWER_ME,
    REVIEWER_UNASSIGNED,
    WorklistQuery,
    WorklistSort,
    WorklistStatus,
)
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor
from clinic_app.services.worklist import WorklistService
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditEvent, User

SNOMED = "http://snomed.info/sct"
AF, MALIGNANT, SINUS, PVC, PAC = "164889003", "363346000", "426783006", "427172004", "284470004"
DISPLAY = {
    AF: "Atrial fibrillation",
    MALIGNANT: "Malignant neoplastic disease",
    SINUS: "Sinus rhythm",
    PVC: "Premature ventricular contractions",
    PAC: "Premature atrial contraction",
}
CRITICAL = {AF, MALIGNANT}

#: (code, calibrated probability, abstained)
Label = tuple[str, float, bool]


def make_actor(database: Database, username: str, role: Role = Role.CLINICIAN) -> Actor:
    with database.write() as session:
        user = User(username=username, display_name=username, role=role, password_hash="x")
        session.add(user)
        session.flush()
        return Actor(user.id, username, role, "ws-test")


def new_analysis(
    labels: Sequence[Label], *, missing: dict[str, str] | None = None, flag_critical: bool = True
) -> NewAnalysis:
    """An analysis as the model would store it; ``flag_critical`` False: an older analysis
    whose suggestions carry no critical flag in their evidence."""
    return NewAnalysis(
        model_name="clinicfusion-demo",
        model_version="1.0.0",
        bundle_sha256="b" * 64,
        input_sha256s=[],
        device="cpu",
        suggestions=[
            NewSuggestion(
                SNOMED,
                code,
                DISPLAY[code],
                probability=min(1.0, p + 0.02),
                calibrated_probability=p,
                abstained=abstained,
                evidence={"critical": code in CRITICAL} if flag_critical else {},
            )
            for code, p, abstained in labels
        ],
        outputs={"modalities_missing": missing or {}, "inputs": {}},
    )


def analysed_case(
    cases: CaseService, actor: Actor, title: str, labels: Sequence[Label], **kwargs: Any
) -> str:
    """A new case with one analysis; returns its uid."""
    uid = cases.create_case(actor, title=title).case_uid
    cases.record_analysis(actor, uid, new_analysis(labels, **kwargs))
    return uid


@pytest.fixture
def cases(database: Database, tmp_path: Path) -> CaseService:
    return CaseService(database, tmp_path / "inputs")


@pytest.fixture
def clinician(database: Database) -> Actor:
    return make_actor(database, "dr_ada")


@pytest.fixture
def four(cases: CaseService, clinician: Actor) -> dict[str, str]:
    """Four analysed cases with known risk and uncertainty."""
    return {
        # risk 0.90 (AF), confident top 0.90: far from 0.5
        "high": analysed_case(
            cases, clinician, "High risk", [(AF, 0.90, False), (SINUS, 0.20, False)]
        ),
        # risk 0.30, top confident 0.55 (closest to 0.5), no abstention
        "borderline": analysed_case(
            cases, clinician, "Borderline", [(SINUS, 0.55, False), (MALIGNANT, 0.30, False)]
        ),
        # no critical label; two abstentions; ECG missing
        "unsure": analysed_case(
            cases,
            clinician,
            "Unsure",
            [(PVC, 0.80, False), (SINUS, 0.45, True), (PAC, 0.05, True)],
            missing={"ecg": "no ECG in the case"},
        ),
        # risk 0.60 (abstained critical counts: triage errs on the side of looking), 1 abstention
        "abstained critical": analysed_case(
            cases, clinician, "Abstained critical", [(SINUS, 0.97, False), (MALIGNANT, 0.60, True)]
        ),
    }


def titles(page: Any) -> list[str]:
    return [item.title for item in page.items]


def test_sorted_by_risk_with_flags(
    cases: CaseService, clinician: Actor, four: dict[str, str]
) -> None:
    service = WorklistService(cases)
    page = service.worklist(clinician, WorklistQuery(sort=WorklistSort.RISK))
    assert titles(page) == ["High risk", "Abstained critical", "Borderline", "Unsure"]
    assert page.total == 4 and page.reviewed == 0
    high, abstained, borderline, unsure = page.items
    assert high.risk == pytest.approx(0.90) and high.top_critical == "Atrial fibrillation"
    assert high.flags == (FLAG_CRITICAL,)
    assert high.top_suggestion == "Atrial fibrillation" and high.top_probability == 0.90
    assert abstained.risk == pytest.approx(0.60) and abstained.abstained_count == 1
    assert abstained.flags == (FLAG_CRITICAL, FLAG_ABSTAINED)
    assert borderline.risk == pytest.approx(0.30) and borderline.flags == ()
    assert unsure.risk is None and unsure.top_critical is None
    assert unsure.flags == (FLAG_ABSTAINED, "missing ECG")
    assert unsure.abstained_count == 2
    # suggestions come confident first; critical ones are marked by id
    assert unsure.suggestions[0].display == "Premature ventricular contractions"
    assert {s.id for s in high.suggestions if s.code == AF} == set(high.critical_ids)
    assert not high.decided and not high.signed and high.status is CaseStatus.ANALYSED


def test_sorted_by_uncertainty(cases: CaseService, clinician: Actor, four: dict[str, str]) -> None:
    page = WorklistService(cases).worklist(clinician, WorklistQuery(sort=WorklistSort.UNCERTAINTY))
    # abstentions first (two before one), then the top probability closest to 0.5
    assert titles(page) == ["Unsure", "Abstained critical", "Borderline", "High risk"]


def test_older_analyses_use_the_bundles_critical_codes(
    cases: CaseService, clinician: Actor
) -> None:
    analysed_case(
        cases, clinician, "Old AF", [(AF, 0.70, False), (SINUS, 0.9, False)], flag_critical=False
    )
    analysed_case(cases, clinician, "New", [(MALIGNANT, 0.40, False)])
    without = WorklistService(cases).worklist(clinician, WorklistQuery())
    assert titles(without) == ["New", "Old AF"] and without.items[1].risk is None
    with_codes = WorklistService(cases, critical_codes={f"{SNOMED}|{AF}", f"{SNOMED}|{MALIGNANT}"})
    page = with_codes.worklist(clinician, WorklistQuery())
    assert titles(page) == ["Old AF", "New"]
    assert page.items[0].risk == pytest.approx(0.70) and FLAG_CRITICAL in page.items[0].flags
    # an explicit evidence flag wins over the code list
    assert page.items[1].risk == pytest.approx(0.40)


def test_only_the_latest_analysis_counts(cases: CaseService, clinician: Actor) -> None:
    uid = analysed_case(cases, clinician, "Re-analysed", [(AF, 0.95, False)])
    case = cases.get_case(clinician, uid)
    first = case.latest_analysis
    assert first is not None
    cases.decide(clinician, uid, first.suggestions[0].id, DecisionAction.ACCEPT)
    service = WorklistService(cases)
    assert service.worklist(clinician).items[0].decided
    cases.record_analysis(clinician, uid, new_analysis([(AF, 0.20, False), (SINUS, 0.7, False)]))
    (item,) = service.worklist(clinician).items
    assert item.risk == pytest.approx(0.20) and not item.decided
    assert item.status is CaseStatus.IN_REVIEW and not item.reviewed
    assert service.review_progress(clinician) == (0, 1)


def test_filters_by_status_reviewer_and_flags(
    cases: CaseService, database: Database, clinician: Actor, four: dict[str, str]
) -> None:
    other = make_actor(database, "dr_bo", Role.REVIEWER)
    service = WorklistService(cases)
    items = {item.title: item for item in service.worklist(clinician).items}
    high = items["High risk"]
    # dr_ada overrides on "High risk"; dr_bo accepts "Borderline" and signs it
    cases.decide(
        clinician,
        four["high"],
        high.suggestions[0].id,
        DecisionAction.OVERRIDE,
        reason="Flutter on the rhythm strip",
        override=(SNOMED, "5370000", "Atrial flutter"),
    )
    border = items["Borderline"]
    cases.decide(other, four["borderline"], border.suggestions[0].id, DecisionAction.ACCEPT)
    cases.sign(other, four["borderline"], "Sinus rhythm.")

    def listed(**query: Any) -> list[str]:
        return sorted(titles(service.worklist(clinician, WorklistQuery(**query))))

    assert listed() == ["Abstained critical", "High risk", "Unsure"]  # unsigned by default
    assert listed(status=WorklistStatus.ANALYSED) == ["Abstained critical", "Unsure"]
    assert listed(status=WorklistStatus.IN_REVIEW) == ["High risk"]
    assert listed(status=WorklistStatus.SIGNED) == ["Borderline"]
    assert listed(reviewer=REVIEWER_ME) == ["High risk"]
    assert listed(reviewer=REVIEWER_UNASSIGNED) == ["Abstained critical", "Unsure"]
    assert listed(reviewer="DR_BO", status=WorklistStatus.SIGNED) == ["Borderline"]
    assert listed(reviewer="nobody-of-that-name") == []
    assert listed(only_flagged=True) == ["Abstained critical", "High risk", "Unsure"]
    assert listed(only_flagged=True, status=WorklistStatus.SIGNED) == []
    high_now = service.worklist(clinician, WorklistQuery(reviewer=REVIEWER_ME)).items[0]
    assert high_now.decided and high_now.reviewer == "dr_ada"
    assert FLAG_OVERRIDE in high_now.flags
    decision = high_now.decision_for(high.suggestions[0].id)
    assert decision is not None and decision.action is DecisionAction.OVERRIDE
    signed = service.worklist(clinician, WorklistQuery(status=WorklistStatus.SIGNED)).items[0]
    assert signed.signed and signed.reviewed


def test_paging_and_progress(cases: CaseService, clinician: Actor, four: dict[str, str]) -> None:
    service = WorklistService(cases)
    first = service.worklist(clinician, WorklistQuery(), page=1, page_size=3)
    second = service.worklist(clinician, WorklistQuery(), page=2, page_size=3)
    assert (first.total, len(first.items), first.offset) == (4, 3, 0)
    assert (second.total, len(second.items), second.offset) == (4, 1, 3)
    assert titles(first) + titles(second) == [
        "High risk",
        "Abstained critical",
        "Borderline",
        "Unsure",
    ]
    shifted = service.worklist(clinician, WorklistQuery(), offset=1, page_size=2)
    assert titles(shifted) == ["Abstained critical", "Borderline"]
    beyond = service.worklist(clinician, WorklistQuery(), page=9, page_size=3)
    assert beyond.items == [] and beyond.total == 4
    assert service.review_progress(clinician, WorklistQuery()) == (0, 4)
    item = first.items[0]
    cases.decide(clinician, item.case_uid, item.suggestions[0].id, DecisionAction.ACCEPT)
    assert service.review_progress(clinician, WorklistQuery()) == (1, 4)
    assert service.worklist(clinician, WorklistQuery(), page_size=1).progress == (1, 4)
    fresh = service.item(clinician, item.case_uid)
    assert fresh is not None and fresh.decided and fresh.status is CaseStatus.IN_REVIEW
    # a case without an analysis is not on the worklist
    bare = cases.create_case(clinician, title="Not analysed").case_uid
    assert service.item(clinician, bare) is None
    assert service.review_progress(clinician) == (1, 4)


def test_admin_is_refused_and_listing_is_audited(
    cases: CaseService, database: Database, clinician: Actor, four: dict[str, str]
) -> None:
    service = WorklistService(cases)
    admin = make_actor(database, "it_admin", Role.ADMIN)
    with pytest.raises(AccessDenied):
        service.worklist(admin, WorklistQuery())
    with pytest.raises(AccessDenied):
        service.review_progress(admin)
    service.worklist(clinician, WorklistQuery(only_flagged=True, reviewer="dr_bo"), page_size=2)
    with database.read() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.event_type == "case.worklist")
        ).all()
    refused = [e for e in events if e.outcome == AuditOutcome.MINOR_FAILURE]
    assert len(refused) == 2 and all(e.username == "it_admin" for e in refused)
    (listed,) = [e for e in events if e.outcome == AuditOutcome.SUCCESS]
    assert listed.username == "dr_ada"
    assert listed.details["page_size"] == 2 and listed.details["only_flagged"] is True
    assert listed.details["reviewer"] == "named"  # no user name in the trail's details
    assert listed.details["total"] == 0 and listed.details["returned"] == 0


def test_signing_checks_the_password_again(cases: CaseService, database: Database) -> None:
    from clinic_app.services.users import (
        PasswordHashing,
        authenticate,
        create_first_admin,
        create_user,
    )

    cheap = PasswordHashing(time_cost=1, memory_cost_kib=8, parallelism=1)
    create_first_admin(database, "it-admin", "Admin-password-2026!", hashing=cheap)
    admin = authenticate(database, "it-admin", "Admin-password-2026!", hashing=cheap)
    create_user(database, admin, "dr-lee", "Correct-horse-9", Role.CLINICIAN, hashing=cheap)
    actor = authenticate(database, "dr-lee", "Correct-horse-9", hashing=cheap)
    uid = analysed_case(cases, actor, "To sign", [(AF, 0.9, False)])
    service = WorklistService(cases)
    with pytest.raises(AccessDenied):
        service.sign_with_password(actor, uid, "AF.", "wrong password")
    assert cases.get_case(actor, uid).summary.status is CaseStatus.ANALYSED
    signed = service.sign_with_password(actor, uid, "AF confirmed.", "Correct-horse-9")
    assert signed.user == "dr-lee" and signed.final_impression == "AF confirmed."
    item = service.item(actor, uid)
    assert item is not None and item.signed and item.reviewed
