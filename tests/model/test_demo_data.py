"""The composite demo cohort built from ../shared/data: splits never leak, labels are coded."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from model.training.demo_data import (
    DEMO_LABELS,
    ECG_LABELS,
    SLIDE_LABEL,
    DemoCohort,
    build_demo_manifest,
    demo_data_card,
)

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> DemoCohort:
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (see ../shared/data/README.md)")
    return build_demo_manifest(SHARED_DATA, tmp_path_factory.mktemp("demo"), seed=0)


@pytest.fixture(scope="module")
def rows(cohort: DemoCohort) -> list[dict[str, Any]]:
    lines = cohort.manifest.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _splits_of(rows: list[dict[str, Any]], key: Any) -> dict[Any, set[str]]:
    seen: dict[Any, set[str]] = defaultdict(set)
    for row in rows:
        for value in key(row):
            seen[value].add(row["split"])
    return seen


def test_manifest_tiles_and_summary_are_written(
    cohort: DemoCohort, rows: list[dict[str, Any]], shared_data: Path
) -> None:
    base = cohort.manifest.parent
    assert cohort.manifest.name == "manifest.jsonl"
    assert (base / "cohort.json").is_file()
    assert len(rows) > 1500
    assert {row["split"] for row in rows} == {"train", "val", "test"}
    for row in rows:
        for image in row["images"]:
            assert (base / image).is_file()
        if row["ecg"] is not None:
            assert Path(row["ecg"]).is_file()
    assert json.loads((base / "cohort.json").read_text()) == cohort.summary


def test_no_group_patient_tile_source_or_note_crosses_splits(rows: list[dict[str, Any]]) -> None:
    groups = _splits_of(rows, lambda r: [r["group_id"]])
    patients = _splits_of(rows, lambda r: [r["sources"]["ecg"].rsplit("(patient ", 1)[1]]
                          if "ecg" in r["sources"] else [])  # fmt: skip
    tile_sources = _splits_of(rows, lambda r: [Path(i).name.split("__")[0] for i in r["images"]])
    notes = _splits_of(rows, lambda r: [" ".join(r["note_text"].split())] if r["note_text"] else [])
    for name, seen in (
        ("group", groups),
        ("patient", patients),
        ("tile source", tile_sources),
        ("note", notes),
    ):
        crossing = {key for key, splits in seen.items() if len(splits) > 1}
        assert not crossing, f"{name} in several splits: {sorted(crossing)[:3]}"
    assert len(patients) > 30 and len(tile_sources) >= 6 and len(notes) > 1800


def test_cases_are_flagged_and_labels_are_known(rows: list[dict[str, Any]]) -> None:
    known = {label for label, _ in DEMO_LABELS}
    for row in rows:
        modalities = [m for m in ("ecg", "slide", "note") if m in row["sources"]]
        assert row["composite"] is (len(modalities) > 1)
        if row["composite"]:
            assert "pairing" in row["sources"]
        assert set(row["labels"]) <= known and set(row["unknown_labels"]) <= known
        assert not set(row["labels"]) & set(row["unknown_labels"])
        if row["ecg"] is None:
            assert set(ECG_LABELS) <= set(row["unknown_labels"])
        if not row["images"]:
            assert SLIDE_LABEL in row["unknown_labels"]
        assert bool(row["heads"]) is (row["note_text"] is not None)
    partial = sum(not r["composite"] or len(r["sources"]) < 4 for r in rows)
    assert 0.1 < partial / len(rows) < 0.2


def test_every_label_has_train_positives_and_the_test_split_is_real(
    cohort: DemoCohort, rows: list[dict[str, Any]]
) -> None:
    for label, name in DEMO_LABELS:
        assert any(label in r["labels"] for r in rows if r["split"] == "train"), name
        assert any(label in r["labels"] for r in rows if r["split"] == "test"), name
    assert not any(r["synthetic"] for r in rows if r["split"] == "test")
    specialties = {r["heads"]["specialty"] for r in rows if r["heads"]}
    assert len(specialties) >= 39
    card = demo_data_card(cohort.summary)
    assert "COMPOSITE" in card and "CC BY 4.0" in card and "Sinus bradycardia" in card


def test_build_is_deterministic_for_a_seed(
    cohort: DemoCohort, tmp_path: Path, shared_data: Path
) -> None:
    again = build_demo_manifest(shared_data, tmp_path / "again", seed=0)
    assert again.manifest.read_bytes() == cohort.manifest.read_bytes()
    assert again.summary == cohort.summary
    first = sorted(p.name for p in (cohort.manifest.parent / "tiles").iterdir())
    assert first == sorted(p.name for p in (tmp_path / "again" / "tiles").iterdir())
    other = build_demo_manifest(shared_data, tmp_path / "other", seed=1)
    assert other.manifest.read_bytes() != cohort.manifest.read_bytes()
