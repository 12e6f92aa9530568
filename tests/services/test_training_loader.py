"""The training case loader on real files: WFDB and DICOM ECG with windows, PNG tiles
mosaicked so tiling cuts them back apart, notes, and one clear error per unreadable file."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clinic_app.domain.errors import InputError
from clinic_app.services.training import (
    CaseLoadError,
    ManifestCaseLoader,
    check_out_dir,
    make_case_loader,
    mosaic,
    next_version,
)

SNOMED = "http://snomed.info/sct"


def row(line: int = 2, case_id: str = "c1", **fields: Any) -> Any:
    from model.training.manifest import ManifestRow

    return ManifestRow(line=line, case_id=case_id, group_id=f"g-{case_id}", split="train", **fields)


@pytest.fixture
def loader(settings: Any) -> ManifestCaseLoader:
    from model.config import ImageConfig

    return make_case_loader(settings, image_config=ImageConfig(tile_size=64, target_mpp=0.5))


def write_wfdb(folder: Path, name: str = "rec", seconds: float = 20.0, rate: int = 250) -> Any:
    """A 2-lead record whose lead II is a ramp in mV, so a window's values show where it is."""
    import wfdb

    t = np.arange(int(seconds * rate)) / rate
    signal = np.stack([np.sin(2 * np.pi * 1.2 * t), t / 10.0], axis=1)
    wfdb.wrsamp(
        name,
        fs=rate,
        units=["mV", "mV"],
        sig_name=["I", "II"],
        p_signal=signal,
        fmt=["16", "16"],
        adc_gain=[1000.0, 1000.0],
        baseline=[0, 0],
        write_dir=str(folder),
    )
    return signal.T


def write_png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> np.ndarray:
    from PIL import Image

    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[:] = colour
    Image.fromarray(pixels).save(path)
    return pixels


def test_wfdb_window_is_cut_in_millivolts(loader: ManifestCaseLoader, tmp_path: Path) -> None:
    truth = write_wfdb(tmp_path)
    case = loader(row(ecg=tmp_path / "rec.hea", ecg_start_s=5.0, ecg_duration_s=10.0))
    ecg = case.ecg
    assert ecg.lead_names == ("I", "II") and ecg.sampling_rate_hz == 250.0
    samples = np.asarray(ecg.samples)
    assert samples.shape == (2, 2500)
    np.testing.assert_allclose(samples, truth[:, 1250:3750], atol=1e-3)
    assert ecg.units == "mV"
    # Named without the extension, and without a window: the whole record.
    whole = loader(row(ecg=tmp_path / "rec"))
    assert np.asarray(whole.ecg.samples).shape == (2, 5000)


def test_an_ecg_window_past_the_end_names_line_case_and_file(
    loader: ManifestCaseLoader, tmp_path: Path
) -> None:
    write_wfdb(tmp_path, seconds=20.0)
    with pytest.raises(InputError) as caught:
        loader(row(7, "late", ecg=tmp_path / "rec.hea", ecg_start_s=15.0, ecg_duration_s=10.0))
    message = str(caught.value)
    assert "line 7" in message and "case late" in message and "rec.hea" in message
    assert "past the end" in message
    with pytest.raises(InputError, match="starts at 30 s, past the end"):
        loader(row(ecg=tmp_path / "rec.hea", ecg_start_s=30.0))


def test_dicom_waveform_ecg_with_a_window(loader: ManifestCaseLoader) -> None:
    from pydicom.data import get_testdata_file

    path = Path(str(get_testdata_file("waveform_ecg.dcm")))
    case = loader(row(ecg=path, ecg_start_s=2.0, ecg_duration_s=5.0))
    assert len(case.ecg.lead_names) == 12 and case.ecg.sampling_rate_hz == 1000.0
    assert np.asarray(case.ecg.samples).shape == (12, 5000)


def test_several_images_are_mosaicked_so_tiling_separates_them(
    loader: ManifestCaseLoader, tmp_path: Path
) -> None:
    from model.config import ImageConfig
    from model.preprocess import tile_image

    colours = [(200, 30, 30), (30, 160, 40), (40, 40, 190)]
    paths = []
    for index, colour in enumerate(colours):
        path = tmp_path / f"tile{index}.png"
        write_png(path, (100, 80), colour)
        paths.append(path)
    case = loader(row(images=tuple(paths)))
    canvas = np.asarray(case.image)
    assert case.microns_per_pixel == 0.5
    # Cells of 2x2 tiles (100x80 rounded up to 128x128), a 2x2 grid, padded white.
    assert canvas.shape == (256, 256, 3)
    assert tuple(canvas[0, 0]) == colours[0] and tuple(canvas[0, 128]) == colours[1]
    assert tuple(canvas[128, 0]) == colours[2]
    assert tuple(canvas[90, 110]) == (255, 255, 255) and tuple(canvas[200, 200]) == (255,) * 3

    config = ImageConfig(
        encoder="small-cnn", pretrained=False, tile_size=64, max_tiles=64, min_tissue_fraction=0.1
    )
    tiles = tile_image(canvas, config, case.microns_per_pixel)
    for tile in tiles.tiles:
        tissue = tile.reshape(-1, 3)
        tissue = tissue[(tissue != 255).any(axis=1)]
        assert len({tuple(p) for p in tissue}) == 1, "a tile mixes two images"
    seen = {tuple(t.reshape(-1, 3)[0]) for t in tiles.tiles}
    assert set(colours) <= seen


def test_mosaic_scales_images_with_a_known_resolution() -> None:
    half = np.full((64, 64, 3), 10, dtype=np.uint8)  # 1 µm/px: becomes 128x128 at 0.5
    plain = np.full((40, 40, 3), 90, dtype=np.uint8)
    canvas = mosaic([(half, 1.0), (plain, None)], tile_size=64, target_mpp=0.5)
    assert canvas.shape == (128, 256, 3)
    assert (canvas[:128, :128] == 10).all()
    assert (canvas[:40, 128:168] == 90).all() and (canvas[40:, 128:] == 255).all()
    with pytest.raises(InputError, match="mosaic"):
        mosaic([(half, 1.0), (plain, None)], tile_size=64, target_mpp=0.5, max_pixels=1000)


def test_one_image_is_a_slide_reader_that_closes_itself(
    loader: ManifestCaseLoader, tmp_path: Path
) -> None:
    pixels = write_png(tmp_path / "one.png", (150, 90), (120, 60, 150))
    case = loader(row(images=(tmp_path / "one.png",)))
    reader = case.image
    assert reader.info.dimensions == (150, 90)
    np.testing.assert_array_equal(reader.read_region(0, 0, 0, 150, 90), pixels)
    finalizer = reader._finalizer
    del case, reader
    gc.collect()
    assert not finalizer.alive


def test_notes_and_vitals(loader: ManifestCaseLoader, tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_bytes("Palpitations for two days; irregular pulse.\n".encode("cp1252"))
    vitals = {"heart_rate_bpm": 112.0, "age_years": 71.0}
    case = loader(row(note_path=note, vitals=vitals))
    assert case.note is not None and case.note.startswith("Palpitations")
    assert dict(case.vitals) == vitals and case.case_id == "c1"
    typed = loader(row(note_text="Chest pain at rest."))
    assert typed.note == "Chest pain at rest." and typed.vitals is None and typed.image is None


def test_missing_and_corrupt_files_give_one_error_naming_line_and_case(
    loader: ManifestCaseLoader, tmp_path: Path
) -> None:
    with pytest.raises(CaseLoadError) as missing:
        loader(row(3, "gone", images=(tmp_path / "absent.png",)))
    assert "line 3" in str(missing.value) and "case gone" in str(missing.value)
    assert "absent.png" in str(missing.value)

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    with pytest.raises(CaseLoadError) as corrupt:
        loader(row(4, "bad", images=(broken,)))
    assert "line 4" in str(corrupt.value) and "case bad" in str(corrupt.value)
    assert "broken.png" in str(corrupt.value)

    text = tmp_path / "notes.txt"
    text.write_text("not an ECG", encoding="utf-8")
    with pytest.raises(CaseLoadError, match=r"line 5 \(case c5\).*notes.txt.*not an ECG"):
        loader(row(5, "c5", ecg=text))
    # A CaseLoadError is also a ValueError, so build_cases lists every failing row.
    assert isinstance(corrupt.value, ValueError) and isinstance(corrupt.value, InputError)


def test_build_cases_lists_every_unreadable_row(settings: Any, tmp_path: Path) -> None:
    from model.registry import variant_config
    from model.training.data import CaseBuildError, build_cases
    from model.training.manifest import Manifest

    config = variant_config("fusion-tiny")
    write_wfdb(tmp_path)
    rows = (
        row(2, "ok", ecg=tmp_path / "rec.hea", labels=(f"{SNOMED}|426783006",)),
        row(3, "late", ecg=tmp_path / "rec.hea", ecg_start_s=99.0),
        row(4, "gone", note_path=tmp_path / "missing.txt"),
    )
    loader = make_case_loader(settings, image_config=config.image)
    with pytest.raises(CaseBuildError) as caught:
        build_cases(Manifest(tmp_path / "m.csv", rows), config, loader, progress=False)
    message = str(caught.value)
    assert "2 of 3" in message
    assert "line 3 (case late)" in message and "line 4 (case gone)" in message


def test_versions_and_output_folders(tmp_path: Path) -> None:
    assert next_version("1.0.0") == "1.0.1"
    assert next_version("2.3") == "2.4"
    assert next_version("1.0.0rc1") == "1.0.1"
    with pytest.raises(InputError, match="--version"):
        next_version("demo")
    old = tmp_path / "bundle"
    old.mkdir()
    (old / "metadata.json").write_text("{}")
    with pytest.raises(InputError, match="never overwritten"):
        check_out_dir(old, old)
    with pytest.raises(InputError, match="never overwritten"):
        check_out_dir(old / "inside", old)
    with pytest.raises(InputError, match="not empty"):
        check_out_dir(old)
    check_out_dir(tmp_path / "new", old)
    (tmp_path / "empty").mkdir()
    check_out_dir(tmp_path / "empty", old)


# -- the command line ------------------------------------------------------------------------------
def test_train_and_evaluate_parse_their_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    from clinic_app.cli import main

    for command, flag in (("train", "--from-bundle"), ("evaluate", "--bootstrap")):
        with pytest.raises(SystemExit) as done:
            main([command, "--help"])
        assert done.value.code == 0
        assert flag in capsys.readouterr().out
    with pytest.raises(SystemExit) as done:
        main(["train", "--manifest", "m.csv"])  # --out is required
    assert done.value.code == 2


def test_a_broken_manifest_lists_every_bad_line_and_trains_nothing(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clinic_app.cli import main

    write_wfdb(tmp_path)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "case_id,group_id,ecg,labels\n"
        "c1,p1,rec.hea,snomed:426783006\n"
        "c2,p2,absent.hea,snomed:426783006\n"
        "c3,p3,rec.hea,no-system\n",
        encoding="utf-8",
    )
    out = tmp_path / "bundle"
    code = main(
        ["--data-dir", str(data_dir), "train", "--manifest", str(manifest), "--out", str(out)]
    )
    error = capsys.readouterr().err
    assert code == InputError.exit_code
    assert "nothing was trained" in error
    assert "line 3 (case c2), column ecg" in error and "absent.hea" in error
    assert "line 4 (case c3), column labels" in error
    assert not out.exists()


def test_train_refuses_inconsistent_data_choices(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clinic_app.cli import main

    base = ["--data-dir", str(data_dir), "train", "--out", str(tmp_path / "new")]
    assert main([*base, "--cases", "signed"]) == InputError.exit_code
    assert "--from-bundle" in capsys.readouterr().err
    old = tmp_path / "old"
    old.mkdir()
    args = ["--data-dir", str(data_dir), "train", "--from-bundle", str(old), "--cases", "signed"]
    assert main([*args, "--out", str(old)]) == InputError.exit_code
    assert "never overwritten" in capsys.readouterr().err
    assert main([*base]) == InputError.exit_code
    assert "--manifest" in capsys.readouterr().err


def test_evaluate_names_a_missing_bundle(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clinic_app.cli import main
    from clinic_app.domain.errors import ModelError

    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,group_id,note_text,labels\nc1,p1,a b c,snomed:1\n")
    code = main(
        [
            "--data-dir",
            str(data_dir),
            "evaluate",
            "--bundle",
            str(tmp_path / "nowhere"),
            "--manifest",
            str(manifest),
        ]
    )
    assert code == ModelError.exit_code
    assert "nowhere" in capsys.readouterr().err
