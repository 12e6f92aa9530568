"""Explanations: shapes and coordinates, IG completeness, rollout, leave-one-out, and the
sanity checks (deletion, model randomisation) on a small model trained on real data
(tests/model/trained.py).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from model.explain import (
    Explanation,
    _encode,
    _fuse,
    _present,
    deletion_check,
    explain_case,
    gradcam_from_activations,
    randomisation_check,
)
from model.network import FusionInputs, FusionModel, collate
from model.preprocess import PreparedCase
from tests.model import trained as T

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: on a busy 2-core machine two threads are many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def real_data() -> T.RealData:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (see ../shared/data/README.md)")
    return T.load_real_data(SHARED_DATA, T.trained_config())


@pytest.fixture(scope="session")
def trained(real_data: T.RealData, tmp_path_factory: pytest.TempPathFactory) -> FusionModel:
    """Trained once per session; the weights are cached as safetensors in a session tmp dir."""
    from safetensors.torch import load_file, save_file

    path = tmp_path_factory.getbasetemp() / "explain-trained.safetensors"
    model = FusionModel(real_data.config)
    if path.exists():
        model.load_state_dict(load_file(str(path)))
        return model.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = T.train(real_data)
    finally:
        torch.set_num_threads(threads)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return model


def _positive_case(data: T.RealData, k: int = 0) -> tuple[FusionInputs, PreparedCase, str]:
    ecg = [i for i, (_, y) in enumerate(data.ecgs) if y][3 * k]
    note = [i for i, (_, _, y) in enumerate(data.notes) if y][k]
    inputs, prepared, _ = T.single_case(data, ecg, note, tissue=True, seed=k)
    return inputs, prepared, data.notes[note][0]


def _untrained_case() -> tuple[FusionModel, FusionInputs, PreparedCase]:
    """fusion-tiny (random weights) on a generated case with all four modalities."""
    from model.encoders.text import load_tokenizer
    from model.preprocess import prepare_ecg, prepare_note, prepare_tabular, tile_image
    from model.registry import create_model

    torch.manual_seed(0)
    model = create_model("fusion-tiny").eval()
    config = model.config
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, size=(150, 200, 3), dtype=np.uint8)
    t = np.arange(0, 8, 1 / 250)
    ecg = np.stack([np.sin(2 * np.pi * 1.2 * t) * (i + 1) / 6 for i in range(6)])
    note = "Chest pain on exertion; ECG shows sinus tachycardia. No prior cardiac history."
    prepared = PreparedCase(
        pathology=tile_image(image, config.image, microns_per_pixel=1.0),
        ecg=prepare_ecg(ecg, 250, ["I", "II", "III", "aVR", "aVL", "aVF"], config.ecg),
        note=prepare_note(note, load_tokenizer(config.text), config.text),
        tabular=prepare_tabular({"age": 61, "heart_rate_bpm": 112}, config.tabular),
    )
    return model, collate([prepared], config), prepared


@pytest.fixture(scope="module")
def untrained() -> tuple[FusionModel, FusionInputs, PreparedCase]:
    return _untrained_case()


# -- structure (no real data needed) -------------------------------------------------------------
def test_encode_and_fuse_mirror_the_model_forward(untrained: tuple) -> None:
    model, inputs, _ = untrained
    with torch.no_grad():
        expected = model(inputs).logits
        present = _present(model, inputs)
        encoded = {m: _encode(model, inputs, m) for m in ("pathology", "ecg", "note", "tabular")}
        logits, _ = _fuse(model, encoded, present)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=1e-5)


def test_explanation_shapes_and_coordinates(untrained: tuple) -> None:
    model, inputs, prepared = untrained
    text = "Chest pain on exertion; ECG shows sinus tachycardia. No prior cardiac history."
    explanation = explain_case(model, inputs, prepared, 1, top_tiles=2, ig_steps=8, note_text=text)
    assert isinstance(explanation, Explanation)
    assert explanation.label == model.config.label_names[1]
    tiles = explanation.tiles
    assert tiles is not None
    count = prepared.pathology.tiles.shape[0]
    assert tiles.coords_level0.shape == (count, 2)
    np.testing.assert_array_equal(tiles.coords_level0, prepared.pathology.coords)
    # 64-px model tiles at 0.5 um/px from a 1.0 um/px image: 32 source pixels per tile
    assert tiles.tile_size_level0 == 32
    assert tiles.attention.shape == (count,)
    assert tiles.attention.sum() == pytest.approx(1.0, abs=1e-5)
    assert len(tiles.top_tiles) == 2
    assert tiles.attention[tiles.top_tiles[0]] == tiles.attention.max()
    assert set(tiles.gradcam) == set(tiles.top_tiles)
    for heat in tiles.gradcam.values():
        assert heat.shape == (64, 64)
        assert heat.min() >= 0.0 and heat.max() <= 1.0
    ecg = explanation.ecg
    assert ecg is not None
    assert ecg.relevance.shape == (12, prepared.ecg.signal.shape[1])
    assert ecg.sampling_rate_hz == model.config.ecg.sampling_rate_hz
    assert ecg.lead_names[:3] == ("I", "II", "III") and len(ecg.lead_names) == 12
    missing = ~prepared.ecg.lead_mask
    assert missing.any() and not ecg.relevance[missing].any()
    assert explanation.note
    words = [text[s.start : s.end] for s in explanation.note]
    assert "tachycardia" in words and "Chest" in words  # word pieces merged into words
    assert all(w.strip() == w and w for w in words)
    assert ";" in words and "." in words  # with the text, punctuation stays apart
    assert set(explanation.gates) == set(model.config.modalities)
    assert sum(explanation.gates.values()) == pytest.approx(1.0, abs=1e-5)
    assert sum(explanation.cross_modal.values()) == pytest.approx(1.0, abs=1e-5)
    assert all(v > 0 for v in explanation.cross_modal.values())
    assert set(explanation.leave_one_out) == set(model.config.modalities)
    assert explanation.timings_ms["total"] > 0


def test_gradcam_maths_equals_monai(untrained: tuple) -> None:
    """Our Grad-CAM reproduces monai.visualize.GradCAM on a plain CNN (same maths)."""
    from monai.visualize import GradCAM

    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 3),
    ).eval()
    x = torch.rand(2, 3, 24, 24)
    cam = GradCAM(nn_module=net, target_layers="2", postprocessing=lambda m: m)
    expected = cam(x, class_idx=1)[:, 0].detach()
    acts: list[torch.Tensor] = []
    handle = net[2].register_forward_hook(lambda _m, _i, o: acts.append(o))
    logits = net(x)
    handle.remove()
    (grads,) = torch.autograd.grad(logits[:, 1].sum(), acts)
    ours = gradcam_from_activations(acts[0].detach(), grads, (24, 24))
    for a, b in zip(ours, expected, strict=True):
        assert float(b.max() - b.min()) > 0
        np.testing.assert_allclose(
            a.numpy(), ((b - b.min()) / (b.max() - b.min())).numpy(), atol=1e-5
        )


def test_subset_of_modalities_and_absent_leave_one_out(untrained: tuple) -> None:
    model, _, prepared = untrained
    subset = PreparedCase(ecg=prepared.ecg, note=prepared.note)
    explanation = explain_case(model, collate([subset], model.config), subset, 0, ig_steps=4)
    assert explanation.tiles is None
    assert explanation.ecg is not None and explanation.note
    for absent in ("pathology", "tabular"):
        assert explanation.leave_one_out[absent] == 0.0
        assert explanation.gates[absent] == 0.0
        assert explanation.cross_modal[absent] == 0.0
    assert sum(explanation.cross_modal.values()) == pytest.approx(1.0, abs=1e-5)
    only = PreparedCase(note=prepared.note)
    single = explain_case(model, collate([only], model.config), only, 0, ig_steps=4)
    assert single.cross_modal["note"] == pytest.approx(1.0)
    assert single.gates["note"] == pytest.approx(1.0)
    assert np.isfinite(single.leave_one_out["note"])  # versus the fusion token alone


def test_leave_one_out_matches_a_rerun_without_the_modality(untrained: tuple) -> None:
    model, inputs, prepared = untrained
    explanation = explain_case(model, inputs, prepared, 2, ig_steps=4)
    without_ecg = PreparedCase(
        pathology=prepared.pathology, note=prepared.note, tabular=prepared.tabular
    )
    with torch.no_grad():
        full = torch.sigmoid(model(inputs).logits[0, 2])
        rest = torch.sigmoid(model(collate([without_ecg], model.config)).logits[0, 2])
    assert explanation.leave_one_out["ecg"] == pytest.approx(float(full - rest), abs=1e-5)
    assert explanation.probability == pytest.approx(float(full), abs=1e-5)


def test_explain_refuses_batches_and_bad_labels(untrained: tuple) -> None:
    from model.preprocess import ModelInputError

    model, _, prepared = untrained
    two = collate([prepared, prepared], model.config)
    with pytest.raises(ModelInputError, match="one case at a time"):
        explain_case(model, two, prepared, 0)
    with pytest.raises(ModelInputError, match="out of range"):
        explain_case(model, collate([prepared], model.config), prepared, 99)


# -- on the model trained on real data --------------------------------------------------------
@pytest.mark.data
def test_trained_model_learned_each_modality(trained: FusionModel, real_data: T.RealData) -> None:
    accuracy = T.accuracy(trained, real_data)
    assert accuracy.min() >= 0.85, accuracy


@pytest.mark.data
def test_integrated_gradients_are_complete(trained: FusionModel, real_data: T.RealData) -> None:
    inputs, prepared, text = _positive_case(real_data)
    explanation = explain_case(trained, inputs, prepared, T.TACHYCARDIA, note_text=text)
    ecg = explanation.ecg
    assert ecg is not None
    assert abs(ecg.logit_difference) > 0.5
    assert float(ecg.relevance.sum()) == pytest.approx(ecg.logit_difference, rel=0.05, abs=0.05)
    assert ecg.relevance.sum() - ecg.logit_difference == pytest.approx(
        ecg.completeness_gap, abs=1e-3
    )


@pytest.mark.data
@pytest.mark.parametrize(
    ("modality", "label"),
    [("ecg", T.TACHYCARDIA), ("pathology", T.TISSUE), ("note", T.CARDIO_NOTE)],
)
def test_deletion_beats_random(
    trained: FusionModel, real_data: T.RealData, modality: str, label: int
) -> None:
    for k in range(2):
        inputs, prepared, _ = _positive_case(real_data, k)
        result = deletion_check(trained, inputs, prepared, label, modality, seed=k)
        assert result.removed == max(1, round(0.2 * result.units))
        assert len(result.random_logits) == 8
        assert result.passed, result
        assert result.top_drop > result.random_drop


@pytest.mark.data
def test_tile_attention_finds_the_tissue_tiles(trained: FusionModel, real_data: T.RealData) -> None:
    bag, slots = T.make_bag(real_data, True, random.Random(7))
    case = PreparedCase(pathology=bag, ecg=real_data.ecgs[0][0])
    explanation = explain_case(trained, collate([case], real_data.config), case, T.TISSUE)
    assert explanation.tiles is not None
    assert set(explanation.tiles.top_tiles[: len(slots)]) == set(slots)


@pytest.mark.data
def test_randomisation_changes_the_maps(trained: FusionModel, real_data: T.RealData) -> None:
    inputs, prepared, _ = _positive_case(real_data)
    reference = explain_case(trained, inputs, prepared, T.TACHYCARDIA)
    result = randomisation_check(trained, inputs, prepared, T.TACHYCARDIA)
    assert [stage for stage, _ in result.stages] == ["heads", "fusion", "encoders"]
    # the MIL attention sits below the heads and the fusion: untouched until the encoders go
    assert result.stages[0][1]["tiles"] == pytest.approx(1.0)
    assert set(result.signed) == {"tiles", "gradcam", "ecg", "note"}
    assert result.passed, result
    full = randomisation_check(trained, inputs, prepared, T.TACHYCARDIA, mode="full")
    assert full.passed, full
    # the trained model is left as it was
    again = explain_case(trained, inputs, prepared, T.TACHYCARDIA)
    np.testing.assert_array_equal(again.ecg.relevance, reference.ecg.relevance)


def test_note_gradient_x_input_gives_the_same_words(untrained: tuple) -> None:
    model, inputs, prepared = untrained
    ig = explain_case(model, inputs, prepared, 0, ig_steps=4)
    fast = explain_case(model, inputs, prepared, 0, note_method="gradient_x_input")
    assert ig.note and fast.note
    assert [(s.start, s.end) for s in fast.note] == [(s.start, s.end) for s in ig.note]
    assert any(s.score != 0 for s in fast.note)
