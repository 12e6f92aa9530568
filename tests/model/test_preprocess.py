"""Array-level preprocessing: ECG leads and rates, tiles, note chunks with offsets, vitals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.config import EcgConfig, ImageConfig, TabularConfig, TextConfig
from model.encoders.text import load_tokenizer
from model.network import collate
from model.preprocess import (
    ModelInputError,
    PreparedCase,
    map_to_standard_leads,
    prepare_ecg,
    prepare_note,
    prepare_tabular,
    standard_lead_index,
    tile_image,
)
from model.registry import variant_config


def test_lead_names_map_to_standard_rows() -> None:
    assert standard_lead_index("Lead I (Einthoven)") == 0
    assert standard_lead_index("AVR") == 3
    assert standard_lead_index("v6") == 11
    # Holter modified limb leads (MIT-BIH's MLII) and European D1-D3 stand in for I-III
    assert standard_lead_index("MLII") == 1 and standard_lead_index("DIII") == 2
    assert standard_lead_index("PLETH") is None and standard_lead_index("vx") is None


def test_missing_limb_leads_are_derived_from_two() -> None:
    rng = np.random.default_rng(0)
    lead_1, lead_2 = rng.normal(size=(2, 50)).astype(np.float32)
    out, mask, derived = map_to_standard_leads(np.stack([lead_1, lead_2]), ["I", "II"])
    assert derived == ("III", "aVR", "aVL", "aVF")
    assert mask.tolist() == [True] * 6 + [False] * 6
    np.testing.assert_allclose(out[2], lead_2 - lead_1)
    np.testing.assert_allclose(out[3] + out[4] + out[5], 0, atol=1e-6)  # Goldberger
    assert not out[6:].any()


def test_prepare_ecg_resamples_and_caps_windows() -> None:
    config = EcgConfig(sampling_rate_hz=100, window_s=2.0, max_windows=3, highpass_hz=0.5)
    seconds = np.arange(0, 20, 1 / 360)
    tone = np.sin(2 * np.pi * 1.2 * seconds).astype(np.float32) * 1000  # in microvolts
    prepared = prepare_ecg(np.stack([tone, tone]), 360, ["II", "V5"], config, units="uV")
    assert prepared.signal.shape == (12, 3 * 200)
    assert prepared.lead_mask[[1, 10]].all() and prepared.lead_mask.sum() == 2
    assert prepared.window_starts_s == (0.0, 8.0, 18.0)  # evenly spaced of 10 windows
    assert np.abs(prepared.signal[1]).max() == pytest.approx(1.0, abs=0.1)  # mV
    with pytest.raises(ModelInputError, match="none of the 12 standard leads"):
        prepare_ecg(np.stack([tone]), 360, ["PLETH"], config)


def test_small_image_becomes_a_grid_of_tissue_tiles() -> None:
    image = np.full((150, 200, 3), 255, dtype=np.uint8)
    image[:64, :64] = (180, 60, 150)  # stained tissue in the top-left corner
    image[64:128, 128:192] = (120, 40, 110)
    config = ImageConfig(encoder="small-cnn", pretrained=False, tile_size=64, max_tiles=8)
    tiles = tile_image(image, config)
    assert tiles.tiles.shape == (2, 64, 64, 3)
    assert tiles.coords.tolist() == [[0, 0], [128, 64]]
    assert tiles.candidates == 2
    half = tile_image(image, config, microns_per_pixel=0.25)  # 2x finer: tiles cover 128 px
    assert half.source_tile_size == 128
    assert half.tiles.shape[1:] == (64, 64, 3)


def test_tile_cap_is_deterministic_and_spread(shared_data: Path) -> None:
    from PIL import Image

    path = shared_data / "pathology" / "images" / "tiatoolbox-he-target.png"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    image = np.asarray(Image.open(path).convert("RGB"))
    config = ImageConfig(encoder="small-cnn", pretrained=False, tile_size=64, max_tiles=10)
    first, second = tile_image(image, config), tile_image(image, config)
    assert first.tiles.shape == (10, 64, 64, 3)
    assert first.candidates > 10
    assert np.array_equal(first.coords, second.coords)
    assert first.coords[:, 1].max() - first.coords[:, 1].min() > image.shape[0] / 2


def test_long_note_is_chunked_with_character_offsets() -> None:
    config = TextConfig(pretrained=False, max_tokens_per_chunk=32, chunk_overlap=8, max_chunks=3)
    tokenizer = load_tokenizer(config)
    text = "Chest pain radiating to the left arm since this morning. " * 10
    note = prepare_note(text, tokenizer, config)
    assert note.input_ids.shape == (3, 32)
    assert note.truncated
    assert (note.input_ids[:, 0] == tokenizer.cls_token_id).all()
    start, end = note.offsets[0, 1]
    assert text[start:end].lower() == "chest"
    # overlapping chunks: the second chunk starts 22 tokens (30 - 8) into the note
    assert tuple(note.offsets[1, 1]) == tuple(note.offsets[0, 23])
    with pytest.raises(ModelInputError, match="note is empty"):
        prepare_note("  ", tokenizer, config)


def test_vitals_keep_missing_values_missing() -> None:
    prepared = prepare_tabular(
        {"age": 61, "sex": "F", "heart_rate_bpm": 110.0, "spo2_percent": None, "colour": 3},
        TabularConfig(),
    )
    names = TabularConfig().feature_names
    assert prepared.values[names.index("age_years")] == 61
    assert prepared.present[names.index("sex_male")] and prepared.values[1] == 0.0
    assert not prepared.present[names.index("spo2_percent")]
    assert prepared.ignored == ("colour",)
    with pytest.raises(ModelInputError, match="heart_rate_bpm must be a number"):
        prepare_tabular({"heart_rate_bpm": "fast"}, TabularConfig())


def test_collate_pads_cases_with_different_inputs() -> None:
    config = variant_config("fusion-tiny")
    tokenizer = load_tokenizer(config.text)
    image = np.full((64, 128, 3), (170, 70, 140), dtype=np.uint8)
    signal = np.random.default_rng(0).normal(size=(2, 300)).astype(np.float32)
    cases = [
        PreparedCase(pathology=tile_image(image, config.image)),
        PreparedCase(
            ecg=prepare_ecg(signal, 100, ["I", "II"], config.ecg),
            note=prepare_note("Palpitations.", tokenizer, config.text),
        ),
    ]
    batch = collate(cases, config)
    assert batch.tiles is not None and batch.tiles.shape == (2, 2, 3, 64, 64)
    assert batch.tile_mask is not None and batch.tile_mask.tolist() == [
        [True, True],
        [False, False],
    ]
    assert batch.ecg is not None and batch.ecg.shape == (2, 12, 300)
    assert batch.tabular_values is None
    with pytest.raises(ModelInputError, match="none of the inputs"):
        collate([PreparedCase()], config)
