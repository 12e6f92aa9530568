"""Analysing a stored case with the real shipped demo bundle, and what is (not) stored.

The model runs once per module (a seeded demo case on SQLite, module-scoped fixture); the tests
on both back ends stop before the model: cancelling, and a stored file changed on disk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from sqlalchemy import func, select

from clinic_app.config.settings import Settings, load_settings
from clinic_app.domain.cases import AnalysisInfo
from clinic_app.domain.errors import Cancelled, StorageError
from clinic_app.domain.explanations import AnalysisExplanation
from clinic_app.domain.notes import plain_text_from_markdown
from clinic_app.domain.records import Modality, Role
from clinic_app.services.case_analysis import analyse_case, load_case_views
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor
from clinic_app.services.demo_cases import seed_demo_cases
from clinic_app.services.ingest import IngestService
from clinic_app.storage.engine import Database, create_database_engine
from clinic_app.storage.migrate import upgrade
from clinic_app.storage.orm import Analysis, AuditEvent
from tests.conftest import PROJECT_ROOT
from tests.services.test_cases import make_actor

DEMO_BUNDLE = PROJECT_ROOT / "assets" / "bundles" / "clinicfusion-demo"
#: The demo case analysed here: an IHC micrograph, the 12-lead ECG and a note (one of the
#: recipe's three-modality cases on a CPU).
DEMO_KEY = "colon-ihc"


@dataclass
class Analysed:
    cases: CaseService
    settings: Settings
    clinician: Actor
    case_uid: str
    analysis: AnalysisInfo
    progress: list[tuple[float, str]]


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Analysed]:
    root = tmp_path_factory.mktemp("analysed")
    settings = load_settings(root / "data", environ={"CLINICFUSION_KEYS_DIR": str(root / "keys")})
    database = Database(create_database_engine(f"sqlite:///{root / 'cases.sqlite3'}"))
    upgrade(database)
    cases = CaseService(database, settings.inputs_dir)
    ingest = IngestService.from_settings(cases, settings)
    (summary,) = seed_demo_cases(cases, ingest, Actor.system(), keys=[DEMO_KEY])
    clinician = make_actor(database, "dr_fusion", Role.CLINICIAN)
    progress: list[tuple[float, str]] = []
    analysis = analyse_case(
        cases,
        settings,
        clinician,
        summary.case_uid,
        bundle=DEMO_BUNDLE,
        device="cpu",
        progress=lambda fraction, message: progress.append((fraction, message)),
    )
    yield Analysed(cases, settings, clinician, summary.case_uid, analysis, progress)
    database.dispose()


def test_the_stored_analysis_carries_an_explanation_that_fits_its_inputs(
    analysed: Analysed,
) -> None:
    detail = analysed.cases.get_case(analysed.clinician, analysed.case_uid)
    assert detail.summary.status.value == "analysed"
    stored = detail.latest_analysis
    assert stored is not None and stored.id == analysed.analysis.id
    assert stored.model_name == "clinicfusion-demo" and stored.device == "cpu"
    explanation = AnalysisExplanation.from_outputs(stored.outputs)
    assert explanation is not None
    assert set(explanation.modalities_used) == {"pathology", "ecg", "note"}
    assert explanation.label in {f"{s.code_system}|{s.code}" for s in stored.suggestions}
    assert len(json.dumps(stored.outputs["explanation"])) < 50_000

    views = load_case_views(analysed.cases, analysed.clinician, analysed.case_uid)
    try:
        assert views.slide is not None and views.slide_input is not None
        assert views.ecg is not None and views.ecg_input is not None and views.note is not None
        slide = explanation.slide
        assert slide is not None and slide.tiles
        assert slide.input_sha256 == views.slide_input.sha256
        width, height = views.slide.info.dimensions
        assert (slide.level0_width, slide.level0_height) == (width, height)
        for tile in slide.tiles:
            assert tile.x >= 0 and tile.x + slide.tile_size_level0 <= width
            assert tile.y >= 0 and tile.y + slide.tile_size_level0 <= height
            assert 0.0 <= tile.score <= 1.0
        assert max(t.score for t in slide.tiles) == pytest.approx(1.0)

        ecg = explanation.ecg
        assert ecg is not None and ecg.input_sha256 == views.ecg_input.sha256
        assert ecg.lead_names == tuple(views.ecg.lead_names)
        assert ecg.start_s >= 0 and ecg.start_s + ecg.bin_s * len(ecg.values[0]) <= (
            views.ecg.duration_s + ecg.bin_s
        )
        flat = [v for row in ecg.values for v in row]
        assert min(flat) >= 0.0 and max(flat) == pytest.approx(1.0)
        assert sum(ecg.lead_share.values()) == pytest.approx(1.0)

        note = explanation.note
        # the model reads the stored Markdown note without its markup
        assert note is not None and note.text == plain_text_from_markdown(views.note.text)
        assert "**" not in note.text and not note.text.startswith("#")
        assert note.text_sha256 == hashlib.sha256(note.text.encode("utf-8")).hexdigest()
        assert note.note_version == views.note.version
        assert note.words
        for word in note.words:
            assert 0 <= word.start < word.end <= len(note.text)
    finally:
        views.close()

    top = next(s for s in stored.suggestions if s.evidence.get("explained"))
    assert top.evidence["top_tiles"][0]["size"] == slide.tile_size_level0
    assert all(s["word"] in s["snippet"] for s in top.evidence["note_snippets"])
    assert all(0.0 <= s.probability <= 1.0 for s in stored.suggestions)
    assert stored.input_sha256s[:2] == [views.slide_input.sha256, views.ecg_input.sha256]


def test_progress_is_monotone_and_reaches_one(analysed: Analysed) -> None:
    fractions = [fraction for fraction, _ in analysed.progress]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert any("Loading the model" in message for _, message in analysed.progress)


def test_case_views_open_the_verified_inputs(analysed: Analysed) -> None:
    views = load_case_views(analysed.cases, analysed.clinician, analysed.case_uid)
    try:
        assert views.slide is not None and views.slide.read_region(0, 0, 0, 8, 8).shape == (
            8,
            8,
            3,
        )
        assert views.ecg is not None and views.ecg.lead_count == 12
        assert views.ecg_input is not None and views.ecg_input.modality is Modality.ECG
        assert views.vitals is not None and views.vitals["heart_rate_bpm"] == 72.0
        assert views.case.summary.is_composite_demo
    finally:
        views.close()


# -- both back ends: nothing is stored when the run stops before the model -------------------
def _analyses(database: Database) -> int:
    with database.read() as session:
        return session.scalar(select(func.count()).select_from(Analysis)) or 0


def _analyse_events(database: Database) -> int:
    with database.read() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.event_type == "case.analyse")
            )
            or 0
        )


def test_cancel_before_the_model_runs_stores_nothing(
    database: Database, settings: Settings, tmp_path: Path
) -> None:
    cases = CaseService(database, tmp_path / "inputs")
    clinician = make_actor(database, "dr_cancel", Role.CLINICIAN)
    case = cases.create_case(clinician, title="Palpitations")
    cases.save_note(clinician, case.case_uid, "Palpitations for three weeks; ECG requested.")
    seen: list[tuple[float, str]] = []
    with pytest.raises(Cancelled, match="cancelled; nothing was stored"):
        analyse_case(
            cases,
            settings,
            clinician,
            case.case_uid,
            bundle=DEMO_BUNDLE,
            device="cpu",
            progress=lambda fraction, message: seen.append((fraction, message)),
            cancel=lambda: bool(seen),  # cancel once the first step has been reported
        )
    assert [message for _, message in seen] == ["Opening the case…"]
    assert _analyses(database) == 0 and _analyse_events(database) == 0
    assert cases.get_case(clinician, case.case_uid).summary.status.value == "new"


def test_a_changed_stored_file_stops_the_analysis(
    database: Database, settings: Settings, tmp_path: Path
) -> None:
    cases = CaseService(database, tmp_path / "inputs")
    clinician = make_actor(database, "dr_tamper", Role.CLINICIAN)
    case = cases.create_case(clinician, title="Chest pain")
    source = Path(str(get_testdata_file("waveform_ecg.dcm")))
    item = cases.add_input(
        clinician, case.case_uid, source, modality=Modality.ECG, media_type="application/dicom"
    )
    stored = Path(item.stored_path)
    stored.chmod(0o644)
    with stored.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(StorageError, match="has changed on disk"):
        analyse_case(cases, settings, clinician, case.case_uid, bundle=DEMO_BUNDLE, device="cpu")
    assert _analyses(database) == 0 and _analyse_events(database) == 0


@pytest.mark.slow
def test_the_model_host_gives_the_same_stored_result(analysed: Analysed) -> None:
    from clinic_app.services.model_host import ModelHost

    host = ModelHost()
    try:
        again = analyse_case(
            analysed.cases,
            analysed.settings,
            analysed.clinician,
            analysed.case_uid,
            bundle=DEMO_BUNDLE,
            device="cpu",
            host=host,
        )
    finally:
        host.close()
    first = {(s.code, s.abstained): s.probability for s in analysed.analysis.suggestions}
    second = {(s.code, s.abstained): s.probability for s in again.suggestions}
    assert second.keys() == first.keys()
    for key, value in first.items():
        assert second[key] == pytest.approx(value, abs=1e-4)
    one = AnalysisExplanation.from_outputs(analysed.analysis.outputs)
    two = AnalysisExplanation.from_outputs(again.outputs)
    assert one is not None and two is not None
    assert two.label == one.label and two.ecg is not None and one.ecg is not None
    assert two.ecg.lead_names == one.ecg.lead_names
    assert two.slide == one.slide and two.note is not None and one.note is not None
    assert [(w.start, w.end) for w in two.note.words] == [(w.start, w.end) for w in one.note.words]
