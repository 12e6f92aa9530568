"""Predictor on a tiny bundle with real inputs: every modality subset, quality failures,
batching, determinism, threads, device choice, int8 and pruning."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file

from model.predictor import (
    CaseFailure,
    CaseInput,
    EcgInput,
    Prediction,
    Predictor,
    choose_device,
)
from model.preprocess import ModelInputError
from tests.conftest import SHARED_DATA
from tests.model.test_bundle_roundtrip import make_tiny_bundle

MODALITIES = ("pathology", "ecg", "note", "tabular")
SUBSETS = [s for r in range(1, 5) for s in itertools.combinations(MODALITIES, r)]
NOTE = (
    "62 year old woman with palpitations and light-headedness for two days; known "
    "hypertension treated with ramipril. No chest pain. Examination: irregular pulse."
)
VITALS = {"age": 62, "sex": "F", "heart_rate_bpm": 104, "systolic_mmhg": 148}


def _dicom_ecg() -> EcgInput:
    """pydicom's real 12-lead DICOM ECG (10 s at 1000 Hz), in mV."""
    dataset = pydicom.dcmread(get_testdata_file("waveform_ecg.dcm"))
    group = dataset.WaveformSequence[0]
    samples = dataset.waveform_array(0).T.astype(np.float64) / 1000.0  # uV -> mV
    names = tuple(c.ChannelSourceSequence[0].CodeMeaning for c in group.ChannelDefinitionSequence)
    return EcgInput(samples, float(group.SamplingFrequency), names)


def _tissue_image() -> npt.NDArray[np.uint8]:
    """A real H&E tile (Kather CRC / TCGA) from ../shared/data, else a real photograph."""
    folder = SHARED_DATA / "pathology" / "tiles" / "kather"
    if folder.is_dir():
        from PIL import Image

        first = sorted(folder.glob("*.*"))[0]
        return np.asarray(Image.open(first).convert("RGB"))
    from sklearn.datasets import load_sample_image

    return np.asarray(load_sample_image("flower.jpg"))[:224, :224]


def _blank_slide_tile() -> npt.NDArray[np.uint8]:
    """pydicom's TCGA H&E tile: a background region of the slide, almost no tissue."""
    return np.asarray(
        pydicom.dcmread(get_testdata_file("SC_jpeg_no_color_transform.dcm")).pixel_array
    )


def make_case(subset: tuple[str, ...], case_id: str | None = None) -> CaseInput:
    return CaseInput(
        image=_tissue_image() if "pathology" in subset else None,
        ecg=_dicom_ecg() if "ecg" in subset else None,
        note=NOTE if "note" in subset else None,
        vitals=dict(VITALS) if "tabular" in subset else None,
        case_id=case_id or "+".join(subset),
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bundle(tmp_path_factory.mktemp("predictor") / "tiny")


@pytest.fixture(scope="module")
def predictor(bundle: Path) -> Predictor:
    return Predictor(bundle, "cpu", explain=False, max_batch=32)


@pytest.fixture(scope="module")
def all_subsets(predictor: Predictor) -> list[Prediction]:
    return predictor.predict([make_case(s) for s in SUBSETS])


def _probabilities(prediction: Prediction) -> dict[str, float]:
    return {s.code: s.probability for s in prediction.suggestions}


@pytest.mark.parametrize("index", range(len(SUBSETS)), ids=["+".join(s) for s in SUBSETS])
def test_every_subset_of_modalities(all_subsets: list[Prediction], index: int) -> None:
    subset = SUBSETS[index]
    prediction = all_subsets[index]
    assert prediction.case_id == "+".join(subset)
    assert set(prediction.modalities_used) == set(subset)
    assert prediction.modalities_missing == {
        m: "not provided" for m in MODALITIES if m not in subset
    }
    assert set(prediction.modality_weights) == set(subset)
    assert sum(prediction.modality_weights.values()) == pytest.approx(1.0, abs=1e-4)
    assert len(prediction.suggestions) == 9
    probabilities = [s.probability for s in prediction.suggestions]
    assert probabilities == sorted(probabilities, reverse=True)
    assert all(0.0 < p < 1.0 for p in probabilities)
    assert set(prediction.contributions) == set(subset)
    if len(subset) == 1:
        assert prediction.contributions == {subset[0]: None}
    else:
        assert all(isinstance(v, float) for v in prediction.contributions.values())
    specialty = prediction.extra_heads["specialty"]
    assert specialty.available == ("note" in subset)
    if specialty.available:
        assert specialty.probabilities is not None
        assert sum(specialty.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
    if "ecg" in subset:
        measured = prediction.ecg_measurements
        assert measured is not None and measured["heart_rate_bpm"] == pytest.approx(61, abs=5)
    else:
        assert prediction.ecg_measurements is None
    assert prediction.model.name == "fusion-tiny-test" and len(prediction.model.sha256) == 64
    assert prediction.timings_ms["forward"] >= 0 and prediction.timings_ms["total"] > 0
    assert prediction.as_dict()["specialty"] == specialty.top


def test_a_modality_failing_its_quality_check_is_missing_with_the_reason(
    predictor: Predictor,
) -> None:
    ecg = _dicom_ecg()
    flat = EcgInput(np.zeros_like(np.asarray(ecg.samples)), ecg.sampling_rate_hz, ecg.lead_names)
    case = CaseInput(image=_blank_slide_tile(), ecg=flat, note="   ", vitals=VITALS)
    (prediction,) = predictor.predict([case])
    assert prediction.modalities_used == ("tabular",)
    assert "no tissue" in prediction.modalities_missing["pathology"]
    assert "flat" in prediction.modalities_missing["ecg"]
    assert "empty" in prediction.modalities_missing["note"]


def test_a_case_with_nothing_usable_fails_alone(predictor: Predictor) -> None:
    bad = CaseInput(note="", case_id="bad")
    good = make_case(("ecg", "note"), "good")
    results = predictor.predict_or_fail([bad, good])
    assert isinstance(results[0], CaseFailure) and results[0].case_id == "bad"
    assert "no input the model can use" in results[0].message
    assert isinstance(results[1], Prediction) and results[1].case_id == "good"
    with pytest.raises(ModelInputError, match="note: the note is empty"):
        predictor.predict([bad])


def test_a_batch_of_eight_equals_the_per_case_loop(predictor: Predictor) -> None:
    cases = [make_case(s) for s in SUBSETS[3:11]]
    batched = predictor.predict(cases)
    looped = [predictor.predict([case])[0] for case in cases]
    for one, other in zip(batched, looped, strict=True):
        assert one.modalities_used == other.modalities_used
        for code, p in _probabilities(one).items():
            assert p == pytest.approx(_probabilities(other)[code], abs=1e-5)
        for modality, weight in one.modality_weights.items():
            assert weight == pytest.approx(other.modality_weights[modality], abs=1e-5)


def test_small_max_batch_gives_the_same_results(
    bundle: Path, all_subsets: list[Prediction]
) -> None:
    small = Predictor(bundle, "cpu", explain=False, max_batch=4)
    results = small.predict([make_case(s) for s in SUBSETS])
    for one, other in zip(results, all_subsets, strict=True):
        for code, p in _probabilities(one).items():
            assert p == pytest.approx(_probabilities(other)[code], abs=1e-5)


def test_two_predictors_are_deterministic(bundle: Path, all_subsets: list[Prediction]) -> None:
    again = Predictor(bundle, "cpu", explain=False).predict([make_case(s) for s in SUBSETS])
    assert [r.suggestions for r in again] == [r.suggestions for r in all_subsets]
    assert [r.modality_weights for r in again] == [r.modality_weights for r in all_subsets]


def test_concurrent_threads_get_the_same_results(bundle: Path) -> None:
    shared = Predictor(bundle, "cpu", explain=False)  # loads lazily, inside a thread
    cases = [make_case(s) for s in SUBSETS[:6]]
    results: dict[int, list[Prediction]] = {}

    def work(index: int) -> None:
        results[index] = shared.predict(cases)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert set(results) == {0, 1}
    assert [r.suggestions for r in results[0]] == [r.suggestions for r in results[1]]


def test_the_gpu_path_is_selected_when_cuda_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    plan = choose_device("auto")
    assert (plan.device, plan.autocast_dtype) == ("cuda", "bfloat16")
    assert plan.torch_dtype() is torch.bfloat16
    # Lazy: choosing the device reads no bundle (this folder does not even exist).
    assert Predictor(tmp_path / "not-loaded", "auto").plan.device == "cuda"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert choose_device("cuda").autocast_dtype == "float16"
    # int8 runs on the CPU only: auto falls back to it.
    assert Predictor(tmp_path / "x", "auto", quantize_int8=True).plan.device == "cpu"


def test_cpu_is_chosen_without_accelerators(monkeypatch: pytest.MonkeyPatch) -> None:
    from model.errors import DeviceUnavailableError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert choose_device("auto").device == "cpu"
    assert choose_device("auto").autocast_dtype is None
    with pytest.raises(DeviceUnavailableError, match="sees no NVIDIA GPU"):
        choose_device("cuda")


def test_int8_and_pruned_models_run_close_to_fp32(
    bundle: Path, all_subsets: list[Prediction]
) -> None:
    cases = [make_case(s) for s in SUBSETS]
    int8 = Predictor(bundle, "cpu", explain=False, quantize_int8=True).predict(cases)
    pruned = Predictor(bundle, "cpu", explain=False, prune_amount=0.2).predict(cases)
    for variant in (int8, pruned):
        worst = max(
            abs(p - _probabilities(ref)[code])
            for got, ref in zip(variant, all_subsets, strict=True)
            for code, p in _probabilities(got).items()
        )
        assert worst < 0.1  # the measured figure is in bench/model_latency.py
        assert worst > 0.0  # the transform really changed the network


def test_explanation_of_the_top_suggestion(bundle: Path) -> None:
    explaining = Predictor(bundle, "cpu", explain=True)
    (prediction,) = explaining.predict([make_case(("pathology", "ecg", "note"))])
    explanation = prediction.explanation
    assert explanation is not None
    top = prediction.suggestions[0]
    assert explanation.label == f"{top.system}|{top.code}"
    assert explanation.tiles is not None and explanation.note
    summary = prediction.as_dict()["explanation"]
    assert summary["top_tiles"] and summary["note_spans"]
    assert prediction.timings_ms["explain"] > 0
    assert prediction.contributions == {
        m: round(explanation.leave_one_out[m], 6) for m in ("pathology", "ecg", "note")
    }
