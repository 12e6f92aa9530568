"""evaluate() on a tiny untrained model whose outputs the test controls: labels built from the
model's own logits (AUROC 1), a head row zeroed (constant logit: AUROC 1/2, AP = prevalence),
a one-class label (None with a reason); subsets checked against separate forward passes."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from model.bundle import save_bundle
from model.calibration import Calibration, ConformalAbstainer, LabelCalibration
from model.config import ExtraHead, FusionConfig, LabelSpec
from model.network import FusionModel, collate
from model.preprocess import PreparedCase, prepare_ecg, prepare_tabular, tile_image
from model.registry import SNOMED, variant_config
from model.training import metrics as M
from model.training.cases import TrainingCase
from model.training.evaluate import (
    JSON_NAME,
    MARKDOWN_NAME,
    RELIABILITY_NAME,
    EvaluationError,
    evaluate,
    evaluate_bundle,
)

N_CASES = 24
CONSTANT_BIAS = 0.3  # label 1's logit for every case
PERFECT, CONSTANT, ONE_CLASS = (f"{SNOMED}|{code}" for code in ("111", "222", "333"))


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config() -> FusionConfig:
    return variant_config("fusion-tiny").replace(
        name="eval-tiny",
        modalities=("pathology", "ecg", "tabular"),
        labels=(
            LabelSpec(SNOMED, "111", "Perfectly ranked"),
            LabelSpec(SNOMED, "222", "Constant score"),
            LabelSpec(SNOMED, "333", "Only negatives"),
        ),
        extra_heads=(ExtraHead("specialty", ("A", "B", "C"), ("tabular",)),),
    )


def _prepared(config: FusionConfig, index: int, modalities: tuple[str, ...]) -> PreparedCase:
    rng = np.random.default_rng(index)
    parts: dict[str, Any] = {}
    if "pathology" in modalities:
        image = rng.integers(40, 200, size=(96, 128, 3), dtype=np.uint8)
        parts["pathology"] = tile_image(image, config.image, microns_per_pixel=1.0)
    if "ecg" in modalities:
        t = np.arange(0, 4, 1 / 250)
        rate = 0.8 + 0.1 * index
        ecg = np.stack([np.sin(2 * np.pi * rate * t) * (k + 1) / 3 for k in range(3)])
        ecg = ecg + 0.05 * rng.normal(size=ecg.shape)
        parts["ecg"] = prepare_ecg(ecg, 250, ["I", "II", "V1"], config.ecg)
    if "tabular" in modalities:
        vitals = {"age": 30 + 2 * index, "heart_rate_bpm": 50 + 3 * index}
        parts["tabular"] = prepare_tabular(vitals, config.tabular)
    return PreparedCase(**parts)


def _modalities(index: int) -> tuple[str, ...]:
    if index >= N_CASES - 2:
        return ("pathology",)
    if index >= N_CASES - 4:
        return ("ecg", "tabular")
    return ("pathology", "ecg", "tabular")


@dataclasses.dataclass
class Setup:
    model: FusionModel
    cases: list[TrainingCase]
    logits: np.ndarray  # forward pass, all modalities
    specialty: np.ndarray  # argmax of the specialty head (forward)
    calibration: Calibration
    abstainer: ConformalAbstainer


@pytest.fixture(scope="module")
def setup() -> Setup:
    config = _config()
    torch.manual_seed(0)
    model = FusionModel(config).eval()
    with torch.no_grad():
        linear = model.head[2]
        linear.weight[1].zero_()
        linear.bias[1] = CONSTANT_BIAS
    prepared = [_prepared(config, i, _modalities(i)) for i in range(N_CASES)]
    with torch.no_grad():
        out = model(collate(prepared, config))
    logits = out.logits.numpy().astype(np.float64)
    specialty = out.extra_logits["specialty"].argmax(dim=1).numpy()
    perfect = (logits[:, 0] > np.median(logits[:, 0])).astype(np.float32)
    constant = (np.arange(N_CASES) % 3 == 0).astype(np.float32)  # 8 of 24 positive
    one_class = np.zeros(N_CASES, dtype=np.float32)
    one_class[:5] = np.nan  # unknown for five cases
    cases = []
    for i in range(N_CASES):
        extra = {"specialty": int(specialty[i])} if i % 4 != 3 else {}
        cases.append(
            TrainingCase(
                case_id=f"c{i}",
                group_id=f"p{i // 2}",
                split="test",
                prepared=prepared[i],
                targets=np.array([perfect[i], constant[i], one_class[i]], dtype=np.float32),
                extra_targets=extra,
                composite=i < 6,
            )
        )
    calibration = Calibration(
        config.label_names,
        (
            LabelCalibration("platt", 2.0, 0.1),
            LabelCalibration("platt", 1.5, -0.2),
            LabelCalibration("identity", 1.0, 0.0),
        ),
    )
    # qhat 0.5: every probability but exactly 0.5 gives a single class (no abstention);
    # label 1's probability is about 0.55 for every case: with qhat 0.3 neither class fits
    abstainer = ConformalAbstainer(0.9, (0.5, 0.3, 0.5))
    return Setup(model, cases, logits, specialty, calibration, abstainer)


@pytest.fixture(scope="module")
def report(setup: Setup, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out_dir = tmp_path_factory.mktemp("evaluation")
    result = evaluate(
        setup.model,
        setup.cases,
        calibration=setup.calibration,
        abstainer=setup.abstainer,
        bootstrap=200,
        seed=0,
        batch_size=7,  # several batches, one of them short
        faithfulness_cases=2,
        out_dir=out_dir,
    )
    return result, out_dir


def _label(result: dict, name: str) -> dict:
    return next(entry for entry in result["labels"] if entry["label"] == name)


def test_known_per_label_answers(report: tuple[dict, Path]) -> None:
    result, _ = report
    perfect = _label(result, PERFECT)
    assert perfect["n"] == N_CASES and perfect["positives"] == N_CASES // 2
    assert perfect["auroc"]["value"] == 1.0
    assert perfect["auprc"]["value"] == 1.0
    lo, hi = perfect["auroc"]["ci"]
    assert lo == hi == 1.0  # every resample with both classes is perfectly ranked

    constant = _label(result, CONSTANT)
    positives, negatives = 8, 16
    assert (constant["positives"], constant["negatives"]) == (positives, negatives)
    assert constant["auroc"]["value"] == 0.5
    assert constant["auprc"]["value"] == pytest.approx(positives / N_CASES)
    # calibrated p = sigmoid(1.5 * 0.3 - 0.2) = 0.562 >= 0.5: every case called positive
    assert constant["f1"]["value"] == pytest.approx(2 * positives / (2 * positives + negatives))
    assert constant["abstention_rate"] == 1.0
    assert perfect["abstention_rate"] == 0.0

    one_class = _label(result, ONE_CLASS)
    assert one_class["n"] == N_CASES - 5
    assert one_class["auroc"]["value"] is None and one_class["auprc"]["value"] is None
    assert "only one class" in one_class["reason"]
    assert result["macro"]["labels"] == [PERFECT, CONSTANT]
    assert result["macro"]["not_evaluated"] == [ONE_CLASS]
    assert result["macro"]["auroc"]["value"] == pytest.approx(0.75)
    macro_lo, macro_hi = result["macro"]["auroc"]["ci"]
    assert macro_lo <= 0.75 <= macro_hi
    assert result["macro"]["auroc"]["resamples"] > 150


def test_calibration_and_the_reliability_png(setup: Setup, report: tuple[dict, Path]) -> None:
    result, out_dir = report
    calibration = result["calibration"]
    targets = np.stack([case.targets for case in setup.cases])
    raw = 1 / (1 + np.exp(-setup.logits))
    assert calibration["pairs"] == int((~np.isnan(targets)).sum())
    assert calibration["ece_raw"] == pytest.approx(
        M.expected_calibration_error(targets, raw), abs=1e-6
    )
    calibrated = setup.calibration.apply(setup.logits)
    assert calibration["ece_calibrated"] == pytest.approx(
        M.expected_calibration_error(targets, calibrated), abs=1e-6
    )
    png = out_dir / RELIABILITY_NAME
    assert calibration["reliability_png"] == RELIABILITY_NAME
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_modality_matrix_has_every_subset(setup: Setup, report: tuple[dict, Path]) -> None:
    result, _ = report
    matrix = result["missing_modality"]
    assert matrix["modalities"] == ["pathology", "ecg", "tabular"]
    subsets = [tuple(entry["modalities"]) for entry in matrix["subsets"]]
    assert len(subsets) == 7 and len(set(subsets)) == 7
    by_subset = {tuple(entry["modalities"]): entry for entry in matrix["subsets"]}
    assert by_subset[("pathology",)]["n"] == N_CASES - 2  # the ecg+tabular cases lack it
    assert by_subset[("ecg", "tabular")]["n"] == N_CASES - 2
    assert by_subset[("pathology", "ecg", "tabular")]["n"] == N_CASES - 4
    full = by_subset[("pathology", "ecg", "tabular")]
    assert full["cost"] == pytest.approx(0.0) and full["missing"] == []
    for entry in matrix["subsets"]:
        constant = entry["per_label"][CONSTANT]
        assert constant["auroc"] == 0.5 and constant["drop"] == 0.0
        assert constant["abstention_rate"] == 1.0 and constant["acceptable"] is True
        assert entry["per_label"][ONE_CLASS]["auroc"] is None
        assert entry["cost"] == pytest.approx(entry["full_macro_auroc"] - entry["macro_auroc"])
    assert set(matrix["one_missing_acceptable"]) == {"pathology", "ecg", "tabular"}


def test_subsets_and_aux_heads_equal_separate_forward_passes(
    setup: Setup, report: tuple[dict, Path]
) -> None:
    """The encode-once, re-fuse-per-subset path gives what a forward pass on cases that hold
    only those modalities gives."""
    result, _ = report
    config = setup.model.config
    targets = np.stack([case.targets for case in setup.cases])[:, 0]
    rows = [i for i in range(N_CASES) if "ecg" in _modalities(i)]
    only_ecg = [
        dataclasses.replace(setup.cases[i].prepared, pathology=None, tabular=None) for i in rows
    ]
    with torch.no_grad():
        out = setup.model(collate(only_ecg, config))
        full = setup.model(collate([setup.cases[i].prepared for i in rows], config))
    alone = setup.calibration.apply(out.logits.numpy())[:, 0]
    expected = M.auroc(targets[rows], alone)
    entry = next(e for e in result["missing_modality"]["subsets"] if e["modalities"] == ["ecg"])
    assert entry["per_label"][PERFECT]["auroc"] == pytest.approx(expected)
    ecg = result["modalities"]["per_modality"]["ecg"]
    assert ecg["n"] == len(rows)
    assert ecg["alone"]["per_label_auroc"][PERFECT] == pytest.approx(expected)
    aux = full.aux_logits["ecg"].numpy()[:, 0]
    assert ecg["aux"]["per_label_auroc"][PERFECT] == pytest.approx(M.auroc(targets[rows], aux))
    assert ecg["fused"]["per_label_auroc"][PERFECT] == 1.0
    assert ecg["fusion_gain_over_alone"] == pytest.approx(
        ecg["fused"]["macro_auroc"] - ecg["alone"]["macro_auroc"]
    )
    assert result["modalities"]["fusion_gain"] is not None


def test_extra_head_and_faithfulness(setup: Setup, report: tuple[dict, Path]) -> None:
    result, _ = report
    head = result["extra_heads"]["specialty"]
    with_target = [i for i in range(N_CASES) if i % 4 != 3]
    readable = [i for i in with_target if "tabular" in _modalities(i)]
    assert head["n"] == len(readable)
    assert head["without_input"] == len(with_target) - len(readable)
    assert head["accuracy"]["value"] == 1.0 and head["macro_f1"]["value"] == 1.0
    assert head["accuracy"]["ci"] == [1.0, 1.0]
    faithfulness = result["faithfulness"]
    assert set(faithfulness) == {"pathology", "ecg"}  # tabular has no deletion units
    for entry in faithfulness.values():
        assert entry["cases"] + len(entry["skipped"]) == 2
        if entry["cases"]:
            assert 0.0 <= entry["fraction_top_greater"] <= 1.0
            assert entry["mean_top_drop"] == pytest.approx(
                np.mean([case["top_drop"] for case in entry["per_case"]])
            )
    assert faithfulness["ecg"]["cases"] == 2


def test_report_files_round_trip(report: tuple[dict, Path]) -> None:
    result, out_dir = report
    text = (out_dir / JSON_NAME).read_text(encoding="utf-8")
    assert json.loads(text) == result
    assert json.dumps(result, sort_keys=True, indent=2, allow_nan=False, ensure_ascii=False) in text
    markdown = (out_dir / MARKDOWN_NAME).read_text(encoding="utf-8")
    assert "research and demonstration software" in markdown
    assert "6 of 24 cases are composite" in markdown
    assert re.search(r"1\.000 \(1\.00\u20131\.00\)", markdown)
    assert re.search(r"0\.750 \(\d\.\d\d\u2013\d\.\d\d\)", markdown)
    assert "Only negatives: not evaluated: only one class" in markdown
    assert "![Reliability diagram](reliability.png)" in markdown
    assert result["cases"]["composite"] == 6
    assert result["cases"]["modalities"] == {"pathology": 22, "ecg": 22, "tabular": 22}


def test_thresholds_no_bootstrap_and_bad_settings(setup: Setup) -> None:
    result = evaluate(
        setup.model,
        setup.cases,
        thresholds={"222": 0.6},
        bootstrap=0,
        faithfulness_cases=0,
    )
    constant = _label(result, CONSTANT)
    # uncalibrated p = sigmoid(0.3) = 0.574 < 0.6: nothing called positive
    assert constant["f1"] == {"value": 0.0, "ci": None, "resamples": 0}
    assert constant["threshold"] == 0.6 and _label(result, PERFECT)["threshold"] == 0.5
    assert constant["abstention_rate"] is None
    assert result["faithfulness"] == {}
    assert result["calibration"]["ece_raw"] == result["calibration"]["ece_calibrated"]
    with pytest.raises(EvaluationError, match="does not have"):
        evaluate(setup.model, setup.cases, thresholds={"999": 0.5}, bootstrap=0)
    with pytest.raises(EvaluationError, match="no cases"):
        evaluate(setup.model, [], bootstrap=0)
    wrong = Calibration.identity(["a|1", "a|2", "a|3"])
    with pytest.raises(EvaluationError, match="calibration's labels"):
        evaluate(setup.model, setup.cases, calibration=wrong, bootstrap=0)


def test_evaluate_bundle_uses_the_bundles_calibration(
    setup: Setup, report: tuple[dict, Path], tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    info = save_bundle(
        setup.model,
        bundle,
        name="eval-tiny",
        version="0.0.1",
        calibration=setup.calibration,
        abstainer=setup.abstainer,
        metrics={},
        model_card="# eval-tiny\n\nResearch and demonstration only.\n",
        data_card="# Data\n\nGenerated.\n",
    )
    result = evaluate_bundle(
        bundle, setup.cases, tmp_path / "out", bootstrap=200, faithfulness_cases=0
    )
    assert result["about"]["bundle"]["sha256"] == info.sha256
    expected, _ = report
    assert result["labels"] == expected["labels"]
    assert result["missing_modality"] == expected["missing_modality"]
    assert (tmp_path / "out" / JSON_NAME).is_file()
    assert "Bundle: eval-tiny 0.0.1" in (tmp_path / "out" / MARKDOWN_NAME).read_text("utf-8")
