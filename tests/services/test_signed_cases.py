"""Signed cases as training data, on SQLite and PostgreSQL: clinicians' decisions become the
labels, only cases signed after the bundle count, stored files are checked, reads are audited."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from clinic_app.domain.cases import NewAnalysis, NewSuggestion
from clinic_app.domain.errors import AccessDenied, StorageError
from clinic_app.domain.records import AuditOutcome, DecisionAction, Modality, Role
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor
from clinic_app.services.training import (
    TRAINING_READ_EVENT,
    decision_labels,
    signed_training_data,
    signed_training_rows,
)
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import AuditEvent, User

SNOMED = "http://snomed.info/sct"
SR, AF, LVH, TWA, BRADY = "426783006", "164889003", "55827005", "164934002", "426177001"
LABELS = [SR, AF, LVH, TWA, BRADY]


def name(code: str) -> str:
    return f"{SNOMED}|{code}"


def make_actor(database: Database, username: str, role: Role) -> Actor:
    with database.write() as session:
        user = User(username=username, display_name=username, role=role, password_hash="x")
        session.add(user)
        session.flush()
        return Actor(user.id, username, role, "ws-test")


def metadata(created: datetime) -> dict[str, Any]:
    return {
        "name": "demo-fusion",
        "version": "1.0.0",
        "created": created.isoformat(),
        "labels": [{"system": SNOMED, "code": c, "display": c} for c in LABELS],
    }


def analysis() -> NewAnalysis:
    return NewAnalysis(
        model_name="demo-fusion",
        model_version="1.0.0",
        bundle_sha256="b" * 64,
        input_sha256s=[],
        device="cpu",
        suggestions=[
            NewSuggestion(SNOMED, SR, "Sinus rhythm", 0.4, 0.35),
            NewSuggestion(SNOMED, AF, "Atrial fibrillation", 0.9, 0.82),
            NewSuggestion(SNOMED, LVH, "Left ventricular hypertrophy", 0.5, 0.5),
        ],
    )


@pytest.fixture
def service(database: Database, tmp_path: Path) -> CaseService:
    return CaseService(database, tmp_path / "inputs")


@pytest.fixture
def clinician(database: Database) -> Actor:
    return make_actor(database, "dr_ada", Role.CLINICIAN)


@pytest.fixture
def scientist(database: Database) -> Actor:
    return make_actor(database, "ds_grace", Role.DATA_SCIENTIST)


def analysed_case(service: CaseService, actor: Actor, **create: Any) -> tuple[str, dict[str, int]]:
    case = service.create_case(actor, **create)
    stored = service.record_analysis(actor, case.case_uid, analysis())
    return case.case_uid, {s.code: s.id for s in stored.suggestions}


def events(database: Database, event_type: str) -> list[AuditEvent]:
    with database.read() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.event_type == event_type)
                .order_by(AuditEvent.sequence)
            )
        )


def test_decisions_become_labels() -> None:
    names = [name(c) for c in LABELS]
    got = decision_labels(
        [
            ("accept", name(AF), None),
            ("reject", name(SR), None),
            ("override", name(LVH), name(TWA)),
            ("override", name(BRADY), f"{SNOMED}|5370000"),  # not a label of the model
        ],
        names,
    )
    assert got == {name(AF): 1.0, name(SR): 0.0, name(LVH): 0.0, name(TWA): 1.0, name(BRADY): 0.0}
    # A later decision on the same label wins.
    later = decision_labels([("accept", name(AF), None), ("reject", name(AF), None)], names)
    assert later == {name(AF): 0.0}
    assert decision_labels([("accept", f"{SNOMED}|999", None)], names) == {}


def test_signed_cases_since_the_bundle_with_their_decisions(
    database: Database,
    service: CaseService,
    clinician: Actor,
    scientist: Actor,
    tmp_path: Path,
) -> None:
    before, ids = analysed_case(service, clinician, title="old")
    service.decide(clinician, before, ids[AF], DecisionAction.ACCEPT)
    service.sign(clinician, before, "AF.")
    created = datetime.now(UTC)

    uid, ids = analysed_case(service, clinician, birth_year=1950, sex="male")
    ecg_file = tmp_path / "ecg.hea"
    ecg_file.write_text("record 100 2 360 650000\n", encoding="utf-8")
    ecg = service.add_input(
        clinician, uid, ecg_file, modality=Modality.ECG, media_type="application/x-wfdb"
    )
    png = tmp_path / "tile.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n fake pixels")
    image = service.add_input(
        clinician, uid, png, modality=Modality.PATHOLOGY, media_type="image/png"
    )
    service.save_note(clinician, uid, "First draft.")
    service.save_note(clinician, uid, "Irregularly irregular pulse, no P waves.")
    service.add_vitals(clinician, uid, heart_rate_bpm=118.0, systolic_mmhg=135.0)
    service.decide(clinician, uid, ids[AF], DecisionAction.ACCEPT)
    service.decide(clinician, uid, ids[SR], DecisionAction.REJECT, reason="No P waves")
    service.decide(
        clinician,
        uid,
        ids[LVH],
        DecisionAction.OVERRIDE,
        reason="Repolarisation only",
        override=(SNOMED, TWA, "T wave abnormal"),
    )
    service.sign(clinician, uid, "Atrial fibrillation with T wave changes.")

    unsigned, ids_unsigned = analysed_case(service, clinician, title="unsigned")
    service.decide(clinician, unsigned, ids_unsigned[AF], DecisionAction.ACCEPT)
    undecided, _ = analysed_case(service, clinician, title="no decision")
    service.sign(clinician, undecided, "Normal.")

    data = signed_training_data(database, scientist, metadata(created))
    assert data.signed == 2 and data.without_labels == (undecided,)
    assert [r.case_id for r in data.rows] == [uid]
    row = data.rows[0]
    assert row.labels == (name(AF), name(TWA))
    assert row.unknown == (name(BRADY),)  # SR and LVH are known negatives
    assert row.split is None and row.group_id.startswith("P-")
    assert row.ecg == Path(ecg.stored_path) and row.images == (Path(image.stored_path),)
    assert row.note_text == "Irregularly irregular pulse, no P waves." and row.note_path is None
    assert row.vitals["heart_rate_bpm"] == 118.0 and row.vitals["systolic_mmhg"] == 135.0
    assert row.vitals["sex_male"] == 1.0 and row.vitals["age_years"] >= 74
    assert not row.composite and not row.synthetic

    reads = events(database, TRAINING_READ_EVENT)
    per_case = [e for e in reads if e.case_uid is not None]
    assert [e.case_uid for e in per_case] == [uid]
    assert per_case[0].username == "ds_grace" and per_case[0].outcome == AuditOutcome.SUCCESS
    assert set(per_case[0].details["input_sha256s"]) == {ecg.sha256, image.sha256}
    assert "Irregularly" not in str(per_case[0].details), "note text must not be audited"
    summary = [e for e in reads if e.case_uid is None]
    assert len(summary) == 1 and summary[0].details["cases_read"] == 1
    assert summary[0].details["cases_without_labels"] == 1

    # Everything signed after an earlier time, as a plain list of rows.
    rows = signed_training_rows(database, scientist, metadata(created), since=datetime(2000, 1, 1))
    assert [r.case_id for r in rows] == [before, uid]
    assert rows[0].labels == (name(AF),) and len(rows[0].unknown) == len(LABELS) - 1


def test_a_changed_stored_file_is_refused(
    database: Database, service: CaseService, clinician: Actor, scientist: Actor, tmp_path: Path
) -> None:
    created = datetime.now(UTC)
    uid, ids = analysed_case(service, clinician)
    note = tmp_path / "ecg.hea"
    note.write_text("record 100 2 360 650000\n", encoding="utf-8")
    item = service.add_input(clinician, uid, note, modality=Modality.ECG, media_type="x")
    service.decide(clinician, uid, ids[AF], DecisionAction.ACCEPT)
    service.sign(clinician, uid, "AF.")
    Path(item.stored_path).write_text("record 100 2 360 999\n", encoding="utf-8")
    with pytest.raises(StorageError, match=f"case {uid} has changed on disk"):
        signed_training_rows(database, scientist, metadata(created))


def test_only_a_role_that_may_train_reads_cases_and_a_refusal_is_audited(
    database: Database, clinician: Actor
) -> None:
    with pytest.raises(AccessDenied, match="train models"):
        signed_training_rows(database, clinician, metadata(datetime.now(UTC)))
    refused = events(database, TRAINING_READ_EVENT)
    assert len(refused) == 1 and refused[0].outcome == AuditOutcome.MINOR_FAILURE
    assert refused[0].details["refused"] == "model.train"
    admin = make_actor(database, "admin", Role.ADMIN)
    with pytest.raises(AccessDenied):
        signed_training_rows(database, admin, metadata(datetime.now(UTC)))


# -- fine-tuning a bundle on the signed cases, end to end ------------------------------------------
def _dicom_ecg() -> Path:
    from pydicom.data import get_testdata_file

    return Path(str(get_testdata_file("waveform_ecg.dcm")))


def _base_bundle(settings: Any, tmp_path: Path) -> Path:
    """A fusion-tiny bundle trained for one epoch on windows of a real DICOM ECG with notes."""
    from clinic_app.services.training import run_training
    from model.training.trainer import TrainOptions

    lines = ["case_id,group_id,ecg,ecg_start_s,ecg_duration_s,note_text,labels"]
    for i in range(16):
        code = "427084000" if i % 2 else "426177001"
        words = "fast pounding heart beat" if i % 2 else "tired with a slow pulse"
        lines.append(f"c{i},p{i},{_dicom_ecg()},{i % 5},4,patient {words} today,snomed:{code}")
    manifest = tmp_path / "base.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    options = TrainOptions(epochs=1, batch_size=8, progress=False, tensorboard=False)
    outcome = run_training(
        settings,
        None,
        manifest=manifest,
        out_dir=tmp_path / "v1",
        options=options,
        variant="fusion-tiny",
        name="demo-fusion",
        bootstrap=10,
    )
    assert outcome.bundle is not None and outcome.bundle.version == "1.0.0"
    return Path(outcome.bundle.path)


@pytest.mark.slow
def test_fine_tuning_on_signed_cases_writes_a_new_version_and_charges_dp(
    database: Database,
    clinician: Actor,
    settings: Any,
    tmp_path: Path,
) -> None:
    from fractions import Fraction

    from clinic_app.domain.errors import InputError
    from clinic_app.services.privacy.ledger import budget_status, set_budget
    from clinic_app.services.training import run_training, training_actor
    from model.bundle import verify_bundle
    from model.training.trainer import TrainOptions

    old = _base_bundle(settings, tmp_path)
    before = verify_bundle(old)
    actor = training_actor()
    options = TrainOptions(epochs=1, batch_size=4, progress=False, tensorboard=False)
    common: dict[str, Any] = {
        "manifest": None,
        "from_bundle": old,
        "cases": "signed",
        "database": database,
        "bootstrap": 10,
    }
    with pytest.raises(InputError, match="No cases with decisions have been signed"):
        run_training(settings, actor, out_dir=tmp_path / "none", options=options, **common)

    service = CaseService(database, tmp_path / "inputs")
    for i in range(10):
        case = service.create_case(clinician, birth_year=1940 + i, sex="female")
        service.add_input(
            clinician,
            case.case_uid,
            _dicom_ecg(),
            modality=Modality.ECG,
            media_type="application/dicom",
        )
        service.save_note(clinician, case.case_uid, f"patient {i} with palpitations and fatigue")
        stored = service.record_analysis(
            clinician,
            case.case_uid,
            NewAnalysis(
                "demo-fusion",
                "1.0.0",
                before.sha256,
                [],
                "cpu",
                [
                    NewSuggestion(SNOMED, "427084000", "Sinus tachycardia", 0.6),
                    NewSuggestion(SNOMED, "426177001", "Sinus bradycardia", 0.4),
                ],
            ),
        )
        top = stored.suggestions[0]
        if i % 2:
            service.decide(clinician, case.case_uid, top.id, DecisionAction.ACCEPT)
        else:
            service.decide(
                clinician,
                case.case_uid,
                top.id,
                DecisionAction.OVERRIDE,
                reason="slow",
                override=(SNOMED, "426177001", "Sinus bradycardia"),
            )
        service.sign(clinician, case.case_uid, "Reviewed.")

    with pytest.raises(InputError, match="never overwritten"):
        run_training(settings, actor, out_dir=old, options=options, **common)

    set_budget(database, Actor.system(), "clinical", Fraction(5), Fraction(1, 10000))
    private = TrainOptions(
        epochs=1, batch_size=4, progress=False, tensorboard=False, dp_epsilon=2.0, dp_delta=1e-5
    )
    outcome = run_training(settings, actor, out_dir=tmp_path / "v2", options=private, **common)
    assert outcome.bundle is not None and outcome.signed is not None
    assert outcome.bundle.version == "1.0.1" and outcome.bundle.name == "demo-fusion"
    assert len(outcome.signed.rows) == 10 and sum(outcome.cases.values()) == 10
    assert verify_bundle(old).sha256 == before.sha256, "the old bundle must not change"
    extra = outcome.bundle.metadata
    assert before.sha256 in str(extra)
    # The target is charged before training; anything spent beyond it is charged after.
    status = budget_status(database, actor, "clinical")
    spent = outcome.privacy["epsilon_spent"]
    assert status is not None and outcome.privacy["dataset"] == "clinical"
    assert status.epsilon_spent == Fraction(outcome.privacy["epsilon_charged"])
    assert status.epsilon_spent >= Fraction(2) and float(status.epsilon_spent) >= spent > 0
    assert float(status.epsilon_spent) - max(spent, 2.0) < 1e-5
    card = (Path(outcome.bundle.path) / "model_card.md").read_text(encoding="utf-8")
    data_card = (Path(outcome.bundle.path) / "data_card.md").read_text(encoding="utf-8")
    assert "epsilon" in (card + data_card).lower()
    assert "signed by clinicians" in data_card
    reads = [e for e in events(database, TRAINING_READ_EVENT) if e.case_uid is not None]
    assert len(reads) == 10 and {e.role for e in reads} == {"data_scientist"}


@pytest.mark.slow
def test_evaluate_on_the_test_split_reproduces_the_bundles_metrics(
    settings: Any, data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from clinic_app.cli import main

    bundle = _base_bundle(settings, tmp_path)
    out = tmp_path / "report"
    args = ["--data-dir", str(data_dir), "evaluate", "--bundle", str(bundle)]
    args += ["--manifest", str(tmp_path / "base.csv"), "--bootstrap", "10", "--out", str(out)]
    assert main([*args, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "macro AUROC" in printed and "evaluation.md" in printed
    stored = json.loads((bundle / "metrics.json").read_text(encoding="utf-8"))["test"]
    fresh = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    assert fresh["cases"]["n"] == stored["cases"]["n"]
    assert fresh["macro"]["auroc"]["value"] == pytest.approx(stored["macro"]["auroc"]["value"])
    assert fresh["calibration"]["ece_calibrated"] == pytest.approx(
        stored["calibration"]["ece_calibrated"]
    )
    assert (out / "evaluation.md").is_file()
