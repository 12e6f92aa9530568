"""Input quality checks on real signals: pydicom's 12-lead ECG and real H&E tiles, intact and
broken in the ways devices and file mix-ups break them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from model.config import EcgConfig, ImageConfig
from model.preprocess import ModelInputError, PreparedTiles, prepare_ecg, tile_image
from model.quality import check_ecg, check_note, check_tiles, lead_problems

ALL_LEADS = np.ones(12, dtype=bool)


@pytest.fixture(scope="module")
def dicom_ecg() -> tuple[npt.NDArray[np.float64], float, list[str]]:
    """(12, 10000) mV at 1000 Hz, and the lead names, from pydicom's waveform_ecg.dcm."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    dataset = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    group = dataset.WaveformSequence[0]
    names = [c.ChannelSourceSequence[0].CodeMeaning for c in group.ChannelDefinitionSequence]
    return dataset.waveform_array(0).T / 1000.0, float(group.SamplingFrequency), names


def test_a_real_ecg_passes(dicom_ecg: tuple[npt.NDArray[np.float64], float, list[str]]) -> None:
    signal, rate, names = dicom_ecg
    assert signal.shape == (12, 10000) and rate == 1000.0
    assert check_ecg(signal, ALL_LEADS, rate) is None
    assert lead_problems(signal, ALL_LEADS, rate) == {}
    # The filtered 12-lead signal the network sees passes too (no false alarm after filtering).
    prepared = prepare_ecg(signal, rate, names, EcgConfig())
    assert check_ecg(prepared.signal, prepared.lead_mask, prepared.sampling_rate_hz) is None


def test_a_zeroed_ecg_is_flat(dicom_ecg: tuple[npt.NDArray[np.float64], float, list[str]]) -> None:
    signal, rate, _ = dicom_ecg
    reason = check_ecg(np.zeros_like(signal), ALL_LEADS, rate)
    assert reason is not None and "flat in every lead" in reason
    # A constant offset (DC, no signal) is flat as well.
    assert check_ecg(np.full_like(signal, 1.7), ALL_LEADS, rate) == reason


def test_a_clipped_ecg_is_saturated(
    dicom_ecg: tuple[npt.NDArray[np.float64], float, list[str]],
) -> None:
    signal, rate, _ = dicom_ecg
    reason = check_ecg(np.clip(signal, -0.3, 0.3), ALL_LEADS, rate)
    assert reason is not None and "clipped" in reason
    assert "V4" in reason and "aVL" not in reason  # aVL stays within +-0.3 mV almost everywhere


def test_an_ecg_in_the_wrong_units_is_implausible(
    dicom_ecg: tuple[npt.NDArray[np.float64], float, list[str]],
) -> None:
    signal, rate, _ = dicom_ecg
    reason = check_ecg(signal * 1000.0, ALL_LEADS, rate)  # microvolts passed as millivolts
    assert reason is not None and "not in millivolts" in reason


def test_a_truncated_ecg_is_too_short(
    dicom_ecg: tuple[npt.NDArray[np.float64], float, list[str]],
) -> None:
    signal, rate, _ = dicom_ecg
    reason = check_ecg(signal[:, :1000], ALL_LEADS, rate)
    assert reason is not None and "only 1.0 s long" in reason
    assert check_ecg(signal[:, :3000], ALL_LEADS, rate) is None


def test_missing_samples_and_missing_leads(
    dicom_ecg: tuple[npt.NDArray[np.float64], float, list[str]],
) -> None:
    signal, rate, _ = dicom_ecg
    holes = signal.copy()
    holes[:, ::3] = np.nan  # a third missing: still readable
    assert check_ecg(holes, ALL_LEADS, rate) is None
    holes[:, : int(0.8 * signal.shape[1])] = np.nan
    reason = check_ecg(holes, ALL_LEADS, rate)
    assert reason is not None and "missing" in reason
    assert check_ecg(signal, np.zeros(12, dtype=bool), rate) == "no ECG lead was recorded"
    assert check_ecg(np.empty((0, 0)), np.zeros(0, dtype=bool), rate) == "no ECG lead was recorded"


def test_single_bad_leads_are_named_but_do_not_reject_the_record(
    dicom_ecg: tuple[npt.NDArray[np.float64], float, list[str]],
) -> None:
    signal, rate, _ = dicom_ecg
    damaged = signal.copy()
    damaged[6] = 0.0  # V1 electrode off
    damaged[9] = np.clip(damaged[9], -0.2, 0.2)  # V4 clipped
    assert check_ecg(damaged, ALL_LEADS, rate) is None
    assert lead_problems(damaged, ALL_LEADS, rate) == {6: "flat", 9: "saturated"}
    # Only the recorded rows count: a record with V1 alone missing from the mask is clean.
    mask = ALL_LEADS.copy()
    mask[6] = False
    assert lead_problems(damaged, mask, rate) == {9: "saturated"}


def test_every_lead_bad_in_different_ways_is_reported_per_lead(
    dicom_ecg: tuple[npt.NDArray[np.float64], float, list[str]],
) -> None:
    signal, rate, _ = dicom_ecg
    two = signal[:2].copy()  # a two-channel recorder with its own lead names
    two[0] = 0.0
    two[1, :6000] = np.nan
    reason = check_ecg(two, np.ones(2, dtype=bool), rate, lead_names=["MLII", "V5"])
    assert reason is not None and "V5" in reason


def test_bad_shapes_and_rates(dicom_ecg: tuple[npt.NDArray[np.float64], float, list[str]]) -> None:
    signal, rate, _ = dicom_ecg
    with pytest.raises(ModelInputError, match="one mask entry per lead"):
        check_ecg(signal, np.ones(3, dtype=bool), rate)
    assert check_ecg(signal, ALL_LEADS, 0.0) == "the ECG sampling rate (0.0 Hz) is not valid"


# -- pathology -------------------------------------------------------------------------------
CONFIG = ImageConfig()


def test_a_white_or_uniform_image_has_no_tissue() -> None:
    reason = check_tiles(tile_image(np.full((500, 400, 3), 255, np.uint8), CONFIG))
    assert reason is not None and "no tissue found" in reason
    pink = tile_image(np.full((300, 300, 3), (200, 80, 150), np.uint8), CONFIG)
    reason = check_tiles(pink)
    assert reason is not None and "uniform colour" in reason


def test_no_tiles_at_all() -> None:
    empty = PreparedTiles(
        tiles=np.zeros((0, 224, 224, 3), np.uint8),
        coords=np.zeros((0, 2), np.int64),
        source_tile_size=224.0,
        tissue_fraction=np.zeros(0, np.float32),
        candidates=0,
    )
    assert check_tiles(empty) == "the slide or image gave no tiles to analyse"


@pytest.mark.data
def test_a_real_he_tile_passes_and_a_real_blank_tile_fails(shared_data: Path) -> None:
    from PIL import Image

    tiles_dir = shared_data / "pathology" / "tiles"
    he = tiles_dir / "kather" / "CRC-VAL-HE-7K-NORM-TCGA-YLVCMEHK.tif"
    blank = tiles_dir / "histolab" / "almost-white-1.png"
    if not (he.is_file() and blank.is_file()):
        pytest.skip("the Kather H&E tile or the histolab blank tile is absent")
    he_rgb = np.asarray(Image.open(he).convert("RGB"))
    assert check_tiles(tile_image(he_rgb, CONFIG)) is None
    blank_rgb = np.asarray(Image.open(blank).convert("RGB"))
    reason = check_tiles(tile_image(blank_rgb, CONFIG))
    assert reason is not None and "no tissue found" in reason
    # The same H&E tile washed out to white fails.
    assert check_tiles(tile_image(np.full_like(he_rgb, 255), CONFIG)) is not None


# -- notes -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "58-year-old man with crushing chest pain radiating to the left arm since 06:00.",
        "BP 150/95, HR 112, SpO2 94% on air. Dyspnoea on exertion; ankle oedema.",
        "Na 140 K 4.1 Cl 101 HCO3 24 BUN 12 Cr 0.9 Glu 110",
        "Douleur thoracique depuis ce matin, essoufflement.",
    ],
)
def test_real_looking_notes_pass(text: str) -> None:
    assert check_note(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the note is empty"),
        (" \n\t ", "the note is empty"),
        ("Chest pain.", "the note has only 2 words; at least 3 are needed"),
        ("120 80 98 37.2 14 22 1.1 0.9", "mostly numbers or symbols"),
        ("#### ---- //// ****", "mostly numbers or symbols"),
        (np.random.default_rng(0).bytes(600).decode("latin-1"), "binary data"),
        (np.random.default_rng(1).bytes(600).decode("utf-8", errors="replace"), "binary data"),
    ],
)
def test_unusable_notes_say_why(text: str, expected: str) -> None:
    reason = check_note(text)
    assert reason is not None and expected in reason
