"""`clinic-app import PATH`: the summary, the report file, exit statuses, idempotent re-runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinic_app.cli import main
from tests.services.test_batch_import import NOTE, write_png, write_truncated_dicom


def test_import_command_reports_errors_and_a_rerun_after_the_fix_exits_0(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "batch"
    write_png(root / "ACC-1" / "biopsy.png")
    broken = write_truncated_dicom(root / "ACC-2" / "broken.dcm")
    (root / "ACC-2" / "note.txt").write_text(NOTE, encoding="utf-8")

    assert main(["--data-dir", str(data_dir), "import", str(root)]) == 1
    captured = capsys.readouterr()
    assert "Cases: 2 created" in captured.out
    assert f"{broken} (case ACC-2): broken.dcm is not a readable DICOM file" in captured.out
    assert "case 1 of 2, ACC-1" in captured.err  # progress goes to stderr
    (report_line,) = [line for line in captured.out.splitlines() if line.startswith("Report: ")]
    report = Path(report_line.removeprefix("Report: "))
    assert report.parent == data_dir / "exports" / "imports" and report.suffix == ".txt"
    text = report.read_text(encoding="utf-8")
    assert "broken.dcm is not a readable DICOM file" in text
    assert "imported  image" in text and "imported  note" in text

    # Fix the folder (drop the broken file) and run again: nothing new, nothing failed.
    broken.unlink()
    out_json = tmp_path / "second.json"
    arguments = ["--data-dir", str(data_dir), "import", str(root), "--json"]
    assert main([*arguments, "--report", str(out_json)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is True and result["report"] == str(out_json)
    assert result["counts"]["imported"] == 0 and result["counts"]["duplicate"] == 2
    assert result["created_case_uids"] == []
    assert json.loads(out_json.read_text())["counts"] == result["counts"]


def test_import_help_explains_the_manifest_and_a_bad_path_exits_65(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["import", "--help"])
    assert exited.value.code == 0
    help_text = capsys.readouterr().out
    for words in ("case_id", "patient_id", "heart_rate_bpm", "vitals.json", "unknown column"):
        assert words in help_text

    assert main(["--data-dir", str(data_dir), "import", str(tmp_path / "missing")]) == 65
    assert "missing does not exist" in capsys.readouterr().err

    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,heart_rte_bpm\nX,70\n", encoding="utf-8")
    assert main(["--data-dir", str(data_dir), "import", str(manifest)]) == 1
    out = capsys.readouterr().out
    assert "'heart_rte_bpm' (did you mean 'heart_rate_bpm'?)" in out
