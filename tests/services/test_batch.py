"""The batch analysis queue: what is queued, status, cancel, resume, and a real run.

Queue semantics run on both back ends without the model (the worker is stopped or refused
before it reads a case, or finds nothing to do). One module-scoped SQLite set-up runs the real
demo bundle with explanations on three real cases (pydicom's 12-lead ECG and a note) and
compares the stored analyses with those of ``analyse_case``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import func, select

from clinic_app.config.settings import Settings, load_settings
from clinic_app.domain.cases import AnalysisInfo
from clinic_app.domain.errors import AccessDenied, InputError
from clinic_app.domain.explanations import AnalysisExplanation
from clinic_app.domain.records import Modality, Role
from clinic_app.services.batch import (
    MAX_ATTEMPTS,
    BatchProgress,
    BatchService,
    BatchStatus,
    WorkerBusy,
    new_worker_id,
)
from clinic_app.services.case_analysis import analyse_case
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor
from clinic_app.services.ingest import IngestService
from clinic_app.storage.engine import Database, create_database_engine
from clinic_app.storage.migrate import upgrade
from clinic_app.storage.orm import (
    Analysis,
    AuditEvent,
    BatchItem,
    BatchItemState,
    BatchRun,
    BatchRunState,
)
from tests.services.test_case_analysis import DEMO_BUNDLE
from tests.services.test_cases import analysis, make_actor

ECG_FILE = Path(str(get_testdata_file("waveform_ecg.dcm")))


def _service(database: Database, settings: Settings, tmp_path: Path) -> BatchService:
    return BatchService(CaseService(database, tmp_path / "inputs"), settings)


def _events(database: Database, event_type: str) -> list[AuditEvent]:
    with database.read() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.event_type == event_type)))


def _items(database: Database, run_id: int) -> dict[str, BatchItem]:
    with database.read() as session:
        rows = session.scalars(select(BatchItem).where(BatchItem.run_id == run_id))
        return {item.case_uid: item for item in rows}


@dataclass
class Clinic:
    service: BatchService
    cases: CaseService
    clinician: Actor
    new: str  # a note, no analysis
    empty: str  # nothing to analyse
    analysed: str  # has an analysis
    signed: str  # signed


@pytest.fixture
def clinic(database: Database, settings: Settings, tmp_path: Path) -> Clinic:
    service = _service(database, settings, tmp_path)
    cases = service.cases
    clinician = make_actor(database, "dr_batch", Role.CLINICIAN)
    uids = []
    for title in ("new", "empty", "analysed", "signed"):
        uids.append(cases.create_case(clinician, title=title).case_uid)
    new, empty, analysed, signed = uids
    for uid in (new, analysed, signed):
        cases.save_note(clinician, uid, "Palpitations for three weeks; ECG requested.")
    cases.record_analysis(clinician, analysed, analysis())
    cases.sign(clinician, signed, "Palpitations; no arrhythmia found.")
    return Clinic(service, cases, clinician, new, empty, analysed, signed)


def test_enqueue_all_new_takes_only_unsigned_cases_with_inputs_and_no_analysis(
    clinic: Clinic, database: Database
) -> None:
    status = clinic.service.enqueue(clinic.clinician, explain=False, batch_size=4, device="cpu")
    assert (status.state, status.total, status.queued, status.failed) == ("queued", 1, 1, 0)
    assert list(_items(database, status.run_id)) == [clinic.new]
    assert (status.explain, status.batch_size, status.device) == (False, 4, "cpu")
    assert status.bundle is not None and Path(status.bundle).is_dir()
    (event,) = _events(database, "batch.enqueue")
    assert event.username == "dr_batch" and event.details["run_id"] == status.run_id
    assert event.details["cases"] == 1 and event.details["selection"] == "all-new"

    # queued already: "everything new" finds nothing more, and no second event is written
    with pytest.raises(InputError, match="no new cases to analyse"):
        clinic.service.enqueue(clinic.clinician)
    assert len(_events(database, "batch.enqueue")) == 1


def test_named_cases_that_cannot_be_analysed_fail_with_their_reason(
    clinic: Clinic, database: Database
) -> None:
    first = clinic.service.enqueue(clinic.clinician, [clinic.new])
    status = clinic.service.enqueue(
        clinic.clinician, [clinic.analysed, clinic.signed, "C-NOSUCHCASE", clinic.new, clinic.new]
    )
    assert (status.total, status.queued, status.failed) == (4, 1, 3)
    reasons = {f.case_uid: f.error for f in status.failures}
    assert reasons[clinic.signed].startswith(f"Case {clinic.signed} is signed")
    assert reasons["C-NOSUCHCASE"] == "There is no case C-NOSUCHCASE."
    assert (
        reasons[clinic.new] == f"Case {clinic.new} is already queued in batch run {first.run_id}."
    )
    assert _items(database, status.run_id)[clinic.analysed].state is BatchItemState.QUEUED
    # the latest run is the default
    assert clinic.service.status(clinic.clinician).run_id == status.run_id
    assert clinic.service.status(clinic.clinician, first.run_id).queued == 1


def test_only_roles_that_may_analyse_can_queue_and_the_refusal_is_audited(
    clinic: Clinic, database: Database
) -> None:
    admin = make_actor(database, "admin_batch", Role.ADMIN)
    with pytest.raises(AccessDenied, match="may not run analyses"):
        clinic.service.enqueue(admin)
    (refusal,) = _events(database, "batch.enqueue")
    assert refusal.outcome == 4 and refusal.username == "admin_batch"
    with pytest.raises(InputError, match="between 1 and"):
        clinic.service.enqueue(clinic.clinician, batch_size=0)
    with pytest.raises(InputError, match="No batch run has been queued"):
        clinic.service.status(clinic.clinician)


def test_cancel_without_a_worker_cancels_the_queue_and_run_does_nothing(
    clinic: Clinic, database: Database
) -> None:
    queued = clinic.service.enqueue(clinic.clinician, [clinic.new, clinic.analysed])
    status = clinic.service.cancel(clinic.clinician)
    assert (status.state, status.cancelled, status.queued) == ("cancelled", 2, 0)
    assert status.finished_at is not None and status.eta_s is None
    (event,) = _events(database, "batch.cancel")
    assert event.details == {"run_id": queued.run_id, "cancelled": 2, "worker_active": False}
    # a worker started on it finds nothing to do (and never loads the model)
    again = clinic.service.run(clinic.clinician, queued.run_id)
    assert again.state == "cancelled" and again.done == 0
    # cancelling a finished run changes nothing
    assert clinic.service.cancel(clinic.clinician).cancelled == 2
    assert len(_events(database, "batch.cancel")) == 1


def _hold(database: Database, run_id: int, worker: str, running: str | None = None) -> None:
    """Make the run look held by ``worker`` with a live lease (and one item in the model)."""
    with database.write() as session:
        run = session.get(BatchRun, run_id)
        assert run is not None
        run.state = BatchRunState.RUNNING
        run.worker = worker
        run.lease_expires_at = datetime.now(UTC) + timedelta(minutes=5)
        for item in run.items:
            if item.case_uid == running:
                item.state = BatchItemState.RUNNING
                item.attempts = 1


def test_a_live_worker_is_told_to_cancel_and_a_second_worker_is_refused(
    clinic: Clinic, database: Database
) -> None:
    queued = clinic.service.enqueue(clinic.clinician, [clinic.new, clinic.analysed])
    _hold(database, queued.run_id, new_worker_id(), running=clinic.new)  # this process: alive
    assert clinic.service.status(clinic.clinician).worker_active
    with pytest.raises(WorkerBusy, match=f"Batch run {queued.run_id} is being worked on"):
        clinic.service.run(clinic.clinician)
    status = clinic.service.cancel(clinic.clinician)
    # the queued case is cancelled now; the one in the model is left to its worker
    assert (status.state, status.cancelled, status.running) == ("cancelling", 1, 1)
    (event,) = _events(database, "batch.cancel")
    assert event.details["worker_active"] is True


def test_a_dead_workers_run_resumes_and_a_case_that_crashed_it_three_times_fails(
    clinic: Clinic, database: Database
) -> None:
    extra = clinic.cases.create_case(clinic.clinician, title="another").case_uid
    clinic.cases.save_note(clinic.clinician, extra, "Syncope on exertion.")
    queued = clinic.service.enqueue(clinic.clinician, [clinic.new, clinic.analysed, extra])
    dead = f"{socket.gethostname()}:999999999:deadbeef0000"  # no such process on this host
    _hold(database, queued.run_id, dead, running=clinic.new)
    with database.write() as session:
        rows = session.scalars(select(BatchItem).where(BatchItem.run_id == queued.run_id))
        for item in rows:
            if item.case_uid == clinic.analysed:
                item.state, item.attempts = BatchItemState.RUNNING, MAX_ATTEMPTS
            if item.case_uid == extra:
                item.state = BatchItemState.DONE
    assert not clinic.service.status(clinic.clinician).worker_active

    seen: list[BatchProgress] = []
    status = clinic.service.run(
        clinic.clinician, progress=seen.append, cancel=lambda: True
    )  # resumes, then stops before the first batch: the rest stays queued
    assert status.state == "queued" and not status.worker_active
    items = _items(database, queued.run_id)
    assert items[clinic.new].state is BatchItemState.QUEUED and items[clinic.new].attempts == 1
    assert items[extra].state is BatchItemState.DONE  # never redone
    poison = items[clinic.analysed]
    assert poison.state is BatchItemState.FAILED
    assert poison.error == (
        f"The analysis of case {clinic.analysed} stopped the batch worker 3 times, "
        "so it was not tried again."
    )
    (event,) = _events(database, "batch.run")
    assert event.details["requeued"] == 1 and event.details["failed_after_crashes"] == 1
    assert seen and "paused" in seen[-1].message
    with database.read() as session:
        assert session.scalar(select(func.count()).select_from(Analysis)) == 1  # the fixture's


# -- a real run (SQLite, module scope) -------------------------------------------------------
@dataclass
class RealRun:
    database: Database
    cases: CaseService
    clinician: Actor
    reference: AnalysisInfo  # analyse_case's analysis of the first case
    batch_uids: list[str]
    broken: str
    status: BatchStatus
    progress: list[BatchProgress]


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRun]:
    root = tmp_path_factory.mktemp("batch")
    settings = load_settings(root / "data", environ={"CLINICFUSION_KEYS_DIR": str(root / "keys")})
    database = Database(create_database_engine(f"sqlite:///{root / 'cases.sqlite3'}"))
    upgrade(database)
    cases = CaseService(database, settings.inputs_dir)
    ingest = IngestService.from_settings(cases, settings)
    clinician = make_actor(database, "dr_batch", Role.CLINICIAN)
    uids = []
    stored = None
    for index in range(4):
        uid = cases.create_case(clinician, title=f"Palpitations {index}").case_uid
        if stored is None:
            stored = ingest.import_file(clinician, uid, ECG_FILE).input
        else:  # the same de-identified file (content-addressed: stored once)
            cases.add_input(
                clinician,
                uid,
                Path(stored.stored_path),
                modality=Modality.ECG,
                media_type=stored.media_type,
                original_name=stored.original_name,
            )
        cases.save_note(clinician, uid, f"Palpitations for {index + 2} weeks; irregular pulse.")
        uids.append(uid)
    assert stored is not None
    reference = analyse_case(cases, settings, clinician, uids[0], bundle=DEMO_BUNDLE, device="cpu")
    # a case whose stored ECG is not the one recorded (a separate, altered file)
    broken = cases.create_case(clinician, title="Altered file").case_uid
    altered = root / "altered.dcm"
    altered.write_bytes(ECG_FILE.read_bytes())
    item = cases.add_input(
        clinician, broken, altered, modality=Modality.ECG, media_type=stored.media_type
    )
    Path(item.stored_path).chmod(0o644)
    with Path(item.stored_path).open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02")
    service = BatchService(cases, settings)
    queued = service.enqueue(
        clinician, explain=True, batch_size=2, device="cpu", bundle=DEMO_BUNDLE
    )
    assert queued.total == 4  # the analysed first case is not new
    progress: list[BatchProgress] = []
    status = service.run(clinician, progress=progress.append)
    yield RealRun(database, cases, clinician, reference, uids[1:], broken, status, progress)
    database.dispose()


def test_the_worker_stores_analyses_like_analyse_case_and_fails_a_bad_case_alone(
    real_run: RealRun,
) -> None:
    status = real_run.status
    assert (status.state, status.done, status.failed, status.queued) == ("finished", 3, 1, 0)
    (failure,) = status.failures
    assert failure.case_uid == real_run.broken and "has changed on disk" in failure.error
    assert status.cases_per_s is not None and status.cases_per_s > 0 and status.eta_s is None

    reference = real_run.reference
    items = _items(real_run.database, status.run_id)
    for uid in real_run.batch_uids:
        detail = real_run.cases.get_case(real_run.clinician, uid)
        (stored,) = detail.analyses
        assert items[uid].analysis_id == stored.id and items[uid].state is BatchItemState.DONE
        assert detail.summary.status.value == "analysed"
        assert set(stored.outputs) == set(reference.outputs) | {"batch"}
        assert stored.outputs["batch"] == {"run_id": status.run_id, "explain": True}
        assert stored.outputs["inputs"].keys() == reference.outputs["inputs"].keys()
        assert stored.input_sha256s[0] == reference.input_sha256s[0]  # the same ECG file
        assert [s.code for s in stored.suggestions] and stored.device == reference.device
        assert {s.code for s in stored.suggestions} == {s.code for s in reference.suggestions}
        explanation = AnalysisExplanation.from_outputs(stored.outputs)
        assert explanation is not None and explanation.ecg is not None
        assert explanation.note is not None and explanation.note.words
        explained = [s for s in stored.suggestions if s.evidence.get("explained")]
        assert len(explained) == 1 and "ecg_leads" in explained[0].evidence
        assert "batch_cases" in stored.timings_ms and "read_inputs" in stored.timings_ms
    with real_run.database.read() as session:
        assert session.scalar(select(func.count()).select_from(Analysis)) == 4
    analysed = _events(real_run.database, "case.analyse")
    assert len(analysed) == 4 and {e.username for e in analysed} == {"dr_batch"}


def test_progress_is_throttled_and_ends_with_the_summary(real_run: RealRun) -> None:
    reports = real_run.progress
    assert reports[0].message == "Loading the model…"
    run_id = real_run.status.run_id
    assert reports[-1].message == (
        f"Batch run {run_id} finished: 3 analysed, 1 failed of 4; 4 by this worker."
    )
    assert [r.done for r in reports] == sorted(r.done for r in reports)
    assert reports[-1].done + reports[-1].failed == reports[-1].total == 4
    assert len(reports) <= 2 + 4
