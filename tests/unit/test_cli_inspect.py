"""`clinic-app inspect FILE...`: what was read, or the clear error; exit 0 or 1; no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from clinic_app.cli import main

ECG = Path(str(get_testdata_file("waveform_ecg.dcm")))
CT = Path(str(get_testdata_file("CT_small.dcm")))


@pytest.fixture
def run(data_dir: Path, capsys):  # type: ignore[no-untyped-def]
    def _run(*args: str) -> tuple[int, str, str]:
        status = main(["--data-dir", str(data_dir), "inspect", *args])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return _run


def test_good_files_are_described(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    note = tmp_path / "note.txt"
    note.write_text("Chest pain for two days; seen by Dr. Jonathan Smithers.", encoding="utf-8")
    status, out, _ = run(str(ECG), str(CT), str(note))
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith("ok ") and "ECG, 12 leads (I, II, III, aVR" in lines[0]
    assert "1,000 Hz" in lines[0] or "1000 Hz" in lines[0]
    assert "10.0 s" in lines[0]
    assert "image (dicom), 128 x 128 px" in lines[1]
    assert "note," in lines[2]


def test_a_bad_file_exits_1_with_one_clear_line(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(CT.read_bytes()[:-2000])
    status, out, err = run(str(ECG), str(cut), str(tmp_path / "absent.svs"))
    assert status == 1
    lines = out.splitlines()
    assert lines[0].startswith("ok ")
    assert lines[1].startswith("error ") and "cut.dcm" in lines[1] and "truncated" in lines[1]
    assert lines[2].startswith("error ") and "absent.svs" in lines[2]
    assert "Traceback" not in out + err


def test_json_output(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import wfdb

    t = np.arange(0, 5, 1 / 500)
    wfdb.wrsamp(
        "rec",
        fs=500,
        units=["mV"],
        sig_name=["V1"],
        p_signal=np.sin(t)[:, None],
        fmt=["16"],
        write_dir=str(tmp_path),
        comments=["Age: 93", "Dx: 164889003", "Referred by Dr. Jonathan Smithers"],
    )
    status, out, _ = run("--json", str(tmp_path / "rec.hea"), str(tmp_path / "rec.dat"))
    assert status == 0
    header, signal = json.loads(out)
    assert header["ok"] and header["kind"] == "ecg" and header["leads"] == ["V1"]
    assert header["sampling_rate_hz"] == 500 and header["duration_s"] == 5.0
    assert header["metadata"]["dx_snomed"] == ["164889003"]
    assert "Smithers" not in json.dumps(header)  # metadata is shown de-identified
    assert signal["leads"] == ["V1"]  # a record's signal file finds its header


def test_no_traceback_from_a_fresh_process(tmp_path: Path) -> None:
    junk = tmp_path / "slide.svs"
    junk.write_bytes(b"II*\x00" + b"\xff" * 64)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "clinic_app",
            "--data-dir",
            str(tmp_path / "d"),
            "inspect",
            str(junk),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "slide.svs" in result.stdout and "Traceback" not in result.stdout + result.stderr


@pytest.mark.data
def test_every_shared_ecg_and_pathology_file_reads_or_fails_clearly(shared_data: Path) -> None:
    """Every file in ../shared/data/ecg and ../shared/data/pathology, as an import reads it."""
    from clinic_app.services.ingest import inspect_files

    files = sorted(
        p
        for folder in ("ecg", "pathology")
        for p in (shared_data / folder).rglob("*")
        if p.is_file() and p.name != "README.md"
    )
    assert len(files) > 100
    results = inspect_files(files)
    failures = {r.path.name: r.error for r in results if not r.ok}
    # Every error is one sentence naming the file, never a reader bug or a hang.
    for name, error in failures.items():
        assert error and name in error, (name, error)
        assert "unexpectedly" not in error and "took longer" not in error, (name, error)
    kinds = {r.path.suffix.lower(): r.summary["kind"] for r in results if r.summary}
    assert kinds[".hea"] == "ecg" and kinds[".svs"] == "slide" and kinds[".png"] == "image"
    assert not failures, failures
