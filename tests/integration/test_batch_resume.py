"""kill -9 of a `clinic-app batch run` worker, then a restart: nothing lost, nothing twice.

Eight real cases (pydicom's 12-lead ECG, stored once, and a note each) are queued without
explanations, in batches of two. The worker runs as a separate process; once its first case is
DONE in the database, a second worker (this process) is refused while the first holds the run,
then the first is killed with SIGKILL. A restarted worker finishes the run: every case ends DONE
with exactly one analysis, the one its item points to, and the audit chain still verifies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import func, select

from clinic_app.config.settings import Settings, load_settings
from clinic_app.domain.explanations import EXPLANATION_KEY
from clinic_app.domain.records import Modality, Role
from clinic_app.services.audit import verify
from clinic_app.services.batch import BatchService, WorkerBusy
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor
from clinic_app.services.database import open_database
from clinic_app.services.ingest import IngestService
from clinic_app.storage.engine import Database
from clinic_app.storage.orm import Analysis, BatchItem, BatchItemState, Case
from tests.conftest import PROJECT_ROOT

CASES = 8
ECG_FILE = Path(str(get_testdata_file("waveform_ecg.dcm")))


@pytest.fixture
def clinic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Settings, Database]]:
    monkeypatch.setenv("CLINICFUSION_KEYS_DIR", str(tmp_path / "keys"))
    settings = load_settings(tmp_path / "data")
    database = open_database(settings)
    actor = Actor(None, "system", Role.CLINICIAN, "ws-test")
    cases = CaseService(database, settings.inputs_dir)
    ingest = IngestService.from_settings(cases, settings)
    stored = None
    for index in range(CASES):
        uid = cases.create_case(actor, title=f"Palpitations {index}").case_uid
        if stored is None:
            stored = ingest.import_file(actor, uid, ECG_FILE).input
        else:
            cases.add_input(
                actor,
                uid,
                Path(stored.stored_path),
                modality=Modality.ECG,
                media_type=stored.media_type,
                original_name=stored.original_name,
            )
        cases.save_note(actor, uid, f"Irregular pulse for {index + 1} days; ECG requested.")
    yield settings, database
    database.dispose()


def _worker(settings: Settings, *arguments: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "clinic_app", "--data-dir", str(settings.data_dir), "batch", "run",
         *arguments],
        cwd=PROJECT_ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def _states(database: Database) -> dict[str, BatchItemState]:
    with database.read() as session:
        return {i.case_uid: i.state for i in session.scalars(select(BatchItem))}


def test_a_killed_worker_resumes_without_losing_or_repeating_a_case(
    clinic: tuple[Settings, Database],
) -> None:
    settings, database = clinic
    first = _worker(
        settings, "--enqueue-new", "--no-explain", "--batch-size", "2", "--device", "cpu"
    )
    try:
        deadline = time.monotonic() + 120
        while BatchItemState.DONE not in _states(database).values():
            assert first.poll() is None, first.communicate()[0]
            assert time.monotonic() < deadline, "the worker stored nothing in 120 s"
            time.sleep(0.02)
        service = BatchService(CaseService(database, settings.inputs_dir), settings)
        with pytest.raises(WorkerBusy):
            service.run(Actor(None, "system", Role.CLINICIAN, "ws-test"))
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(30)
    assert first.returncode == -signal.SIGKILL
    before = _states(database)
    done_before = {uid for uid, state in before.items() if state is BatchItemState.DONE}
    assert len(before) == CASES and 1 <= len(done_before) < CASES, before

    second = _worker(settings)
    output, _ = second.communicate(timeout=180)
    assert second.returncode == 0, output
    summary = f"finished: {CASES} analysed, 0 failed of {CASES}; {CASES - len(done_before)} by"
    assert summary in output

    with database.read() as session:
        items = {i.case_uid: i for i in session.scalars(select(BatchItem))}
        per_case = dict(
            session.execute(
                select(Case.case_uid, func.count(Analysis.id))
                .join(Analysis, Analysis.case_id == Case.id)
                .group_by(Case.case_uid)
            ).all()
        )
        analyses = {a.id: a for a in session.scalars(select(Analysis))}
    assert {uid: item.state for uid, item in items.items()} == dict.fromkeys(
        items, BatchItemState.DONE
    )
    assert per_case == dict.fromkeys(items, 1)  # exactly one analysis per case, none lost
    for item in items.values():
        analysis = analyses[item.analysis_id]  # type: ignore[index]
        assert EXPLANATION_KEY not in analysis.outputs  # --no-explain: marked as not computed
        assert analysis.outputs["batch"]["explain"] is False
        if item.case_uid in done_before:
            assert item.attempts == 1  # finished before the kill: never redone

    assert verify(database).ok
