"""`clinic-app predict`: one JSON object for a case, JSON lines for a batch, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from clinic_app.cli import main
from tests.model.test_bundle_roundtrip import make_tiny_bundle

ECG = Path(get_testdata_file("waveform_ecg.dcm"))
HE_TILE = Path(get_testdata_file("SC_jpeg_no_color_transform.dcm"))
NOTE = "Palpitations and dizziness for two days; known hypertension, on a beta blocker."
FIELDS = {
    "suggestions",
    "specialty",
    "extra_heads",
    "modalities_used",
    "modalities_missing",
    "modality_weights",
    "contributions",
    "ecg_measurements",
    "model",
    "timings_ms",
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("cli") / "tiny")


def run(capsys: pytest.CaptureFixture[str], data_dir: Path, *args: str) -> tuple[int, str, str]:
    code = main(["--data-dir", str(data_dir), "predict", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_one_case_prints_one_json_object_with_every_field(
    capsys: pytest.CaptureFixture[str], data_dir: Path, bundle: Path
) -> None:
    code, out, err = run(
        capsys, data_dir,
        "--ecg", str(ECG), "--note-text", NOTE, "--vitals", '{"age": 70, "sex": "M"}',
        "--bundle", str(bundle), "--device", "cpu", "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert set(result) >= FIELDS
    assert result["modalities_used"] == ["ecg", "note", "tabular"]
    assert result["modalities_missing"] == {"pathology": "not provided"}
    first = result["suggestions"][0]
    assert set(first) == {"system", "code", "display", "probability", "abstained", "critical"}
    assert first["system"] == "http://snomed.info/sct"
    assert result["ecg_measurements"]["heart_rate_bpm"] == pytest.approx(61, abs=5)
    assert result["model"]["name"] == "fusion-tiny-test"
    assert len(result["model"]["sha256"]) == 64
    assert result["inputs"]["ecg"]["file"] == "waveform_ecg.dcm"
    assert sum(result["modality_weights"].values()) == pytest.approx(1.0, abs=1e-4)


def test_a_blank_slide_region_is_reported_missing(
    capsys: pytest.CaptureFixture[str], data_dir: Path, bundle: Path
) -> None:
    code, out, err = run(
        capsys, data_dir, "--image", str(HE_TILE), "--ecg", str(ECG),
        "--bundle", str(bundle), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["modalities_used"] == ["ecg"]
    assert "no tissue" in result["modalities_missing"]["pathology"]


def test_batch_goes_on_after_a_bad_row(
    capsys: pytest.CaptureFixture[str], data_dir: Path, bundle: Path, tmp_path: Path
) -> None:
    note = tmp_path / "note.txt"
    note.write_text(NOTE, encoding="utf-8")
    rows = [
        {"id": "a", "ecg": str(ECG), "note": "note.txt"},
        {"id": "b", "ecg": "missing.dcm"},
        {"id": "c", "note_text": NOTE, "vitals": {"age": 50}},
        {"id": "d", "ecg": str(note)},  # a note where an ECG belongs
    ]
    batch = tmp_path / "cases.jsonl"
    batch.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n", encoding="utf-8")
    code, out, err = run(capsys, data_dir, "--batch", str(batch), "--bundle", str(bundle))
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["id"] for line in lines] == ["a", "b", "c", "d", "line-5"]
    assert set(lines[0]) >= FIELDS and set(lines[2]) >= FIELDS
    assert lines[0]["modalities_used"] == ["ecg", "note"]
    assert "missing.dcm does not exist" in lines[1]["error"]
    assert "not an ECG" in lines[3]["error"]
    assert "not a JSON object" in lines[4]["error"]
    assert code == 1 and "3 of 5 rows failed" in err
    assert "Traceback" not in err


def test_csv_batch_equals_single_runs(
    capsys: pytest.CaptureFixture[str], data_dir: Path, bundle: Path, tmp_path: Path
) -> None:
    batch = tmp_path / "cases.csv"
    batch.write_text(
        f'id,image,ecg,note,note_text,vitals\nx,,{ECG},,"{NOTE}","{{""age"": 70}}"\ny,,{ECG},,,\n',
        encoding="utf-8",
    )
    code, out, err = run(capsys, data_dir, "--batch", str(batch), "--bundle", str(bundle))
    assert code == 0, err
    x, y = (json.loads(line) for line in out.splitlines())
    assert x["modalities_used"] == ["ecg", "note", "tabular"] and y["modalities_used"] == ["ecg"]
    code, out, _ = run(capsys, data_dir, "--ecg", str(ECG), "--bundle", str(bundle))
    single = json.loads(out)
    assert single["suggestions"] == y["suggestions"]


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["--ecg", "{note}"], 65, "is not an ECG recording"),
        (["--ecg", "{nowhere}"], 65, "does not exist"),
        (["--vitals", "{{not json"], 65, "--vitals is not valid JSON"),
        (["--note-text", "  "], 65, "note: the note is empty"),
        ([], 65, "Give at least one input"),
    ],
)
def test_bad_input_is_one_clear_line_without_traceback(
    capsys: pytest.CaptureFixture[str],
    data_dir: Path,
    bundle: Path,
    tmp_path: Path,
    args: list[str],
    status: int,
    message: str,
) -> None:
    note = tmp_path / "note.txt"
    note.write_text(NOTE, encoding="utf-8")
    filled = [a.format(note=note, nowhere=tmp_path / "none.dcm") for a in args]
    code, out, err = run(capsys, data_dir, *filled, "--bundle", str(bundle))
    assert code == status
    assert message in err and "Traceback" not in err and out == ""


def test_without_a_bundle_option_the_shipped_demo_bundle_is_used(
    capsys: pytest.CaptureFixture[str], data_dir: Path
) -> None:
    code, out, _ = run(capsys, data_dir, "--ecg", str(ECG), "--note-text", NOTE, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["model"]["name"] == "clinicfusion-demo"
    codes = {s["code"] for s in result["suggestions"]}
    assert {"426783006", "164889003", "363346000"} <= codes
    assert "specialty" in json.dumps(result)


def test_a_missing_named_bundle_is_a_model_error(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> None:
    code, _, err = run(
        capsys, data_dir, "--ecg", str(ECG), "--bundle", str(tmp_path / "nowhere"), "--json"
    )
    assert code == 69 and err


def test_a_tampered_bundle_is_refused(
    capsys: pytest.CaptureFixture[str], data_dir: Path, tmp_path: Path
) -> None:
    folder = make_tiny_bundle(tmp_path / "b")
    (folder / "model_card.md").write_text("# edited\n", encoding="utf-8")
    code, out, err = run(capsys, data_dir, "--ecg", str(ECG), "--bundle", str(folder))
    assert code == 69 and out == ""
    assert "has been altered: model_card.md" in err


@pytest.mark.data
def test_real_slide_tile_and_wfdb_ecg_from_shared_data(
    capsys: pytest.CaptureFixture[str], data_dir: Path, bundle: Path
) -> None:
    from tests.conftest import SHARED_DATA

    headers = sorted((SHARED_DATA / "ecg" / "cinc2021").glob("*.hea"))
    tiles = sorted((SHARED_DATA / "pathology" / "tiles" / "kather").glob("*.*"))
    if not headers or not tiles:
        pytest.skip("../shared/data (cinc2021 ECG, Kather tiles) is not present")
    code, out, err = run(
        capsys, data_dir, "--image", str(tiles[0]), "--ecg", str(headers[0]),
        "--note-text", NOTE, "--bundle", str(bundle), "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["modalities_used"] == ["pathology", "ecg", "note"]
    assert result["ecg_measurements"]["beat_count"] >= 5
