"""The training loop on generated cases: it learns, resumes exactly, runs DP-SGD and DDP."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from model.preprocess import PreparedEcg, PreparedTiles
from model.training.augment import augment_ecg, augment_tiles, drop_modalities
from model.training.cases import TrainingCase
from model.training.feature_cache import cached_backbones
from model.training.losses import MultiLabelLoss, positive_weights
from model.training.trainer import (
    BEST_WEIGHTS,
    CHECKPOINT,
    TrainingError,
    TrainOptions,
    train_model,
)
from tests.model.training_data import generated_cases, tiny_config

FAST = TrainOptions(epochs=12, batch_size=8, lr=3e-3, patience=12, progress=False)


@pytest.fixture(scope="module")
def cases() -> list[TrainingCase]:
    return generated_cases(60)


def state_hash(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def test_training_learns_the_generated_labels_and_logs(
    cases: list[TrainingCase], tmp_path: Path
) -> None:
    result = train_model(tiny_config(), cases, FAST, tmp_path)
    assert result.best_val_macro_auroc is not None and result.best_val_macro_auroc >= 0.9
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.8 * losses[0]
    for name in (CHECKPOINT, BEST_WEIGHTS, "metrics.csv", "metrics.jsonl"):
        assert (tmp_path / name).is_file(), name
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(len(result.history)))
    assert "val_specialty_macro_f1" in rows[-1]
    assert any(key.startswith("ogm_coefficient_") for key in rows[-1])
    assert any((tmp_path / "tensorboard").iterdir())
    assert not result.model.training
    refit = result.history[-1]["extra_head_refit"]["specialty"]
    assert refit["val_macro_f1_after"] >= refit["val_macro_f1_before"]


def test_resume_repeats_the_uninterrupted_run(cases: list[TrainingCase], tmp_path: Path) -> None:
    options = replace(FAST, epochs=4, patience=10, tensorboard=False)
    full = train_model(tiny_config(), cases, options, tmp_path / "full")
    stopped = train_model(
        tiny_config(), cases, replace(options, max_minutes=1e-6), tmp_path / "part"
    )
    assert len(stopped.history) == 1 and stopped.history[0]["stopped"] == "time budget reached"
    resumed = train_model(tiny_config(), cases, options, tmp_path / "part", resume=True)
    assert [h["val_macro_auroc"] for h in resumed.history] == [
        h["val_macro_auroc"] for h in full.history
    ]
    assert state_hash(resumed.model) == state_hash(full.model)
    last_full = torch.load(tmp_path / "full" / CHECKPOINT, weights_only=True)["model"]
    last_resumed = torch.load(tmp_path / "part" / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(last_full[k], last_resumed[k]) for k in last_full)


def test_resume_refuses_without_checkpoint_or_with_another_config(
    cases: list[TrainingCase], tmp_path: Path
) -> None:
    with pytest.raises(TrainingError, match="no checkpoint"):
        train_model(tiny_config(), cases, FAST, tmp_path, resume=True)
    train_model(tiny_config(), cases, replace(FAST, epochs=1, tensorboard=False), tmp_path)
    other = tiny_config().replace(d_model=48)
    with pytest.raises(TrainingError, match="another model configuration"):
        train_model(other, cases, FAST, tmp_path, resume=True)


def test_training_refuses_missing_splits(cases: list[TrainingCase], tmp_path: Path) -> None:
    only_train = [c for c in cases if c.split == "train"]
    with pytest.raises(TrainingError, match="validation"):
        train_model(tiny_config(), only_train, FAST, tmp_path)


def test_dp_sgd_spends_at_most_the_target_epsilon(
    cases: list[TrainingCase], tmp_path: Path
) -> None:
    options = replace(FAST, epochs=2, dp_epsilon=3.0, tensorboard=False)
    from model.network import FusionModel

    torch.manual_seed(0)
    before = {
        name: buffer.clone()
        for name, buffer in FusionModel(tiny_config()).named_buffers()
        if "running_mean" in name
    }
    result = train_model(tiny_config(), cases, options, tmp_path)
    assert result.dp_epsilon_spent is not None
    assert 0.5 < result.dp_epsilon_spent <= 3.0 * 1.02
    assert result.dp_noise_multiplier is not None and result.dp_noise_multiplier > 0.3
    assert result.history[-1]["dp_epsilon_spent"] == pytest.approx(result.dp_epsilon_spent)
    after = dict(result.model.named_buffers())
    # BatchNorm statistics of the private cases never enter the model under DP-SGD
    assert all(torch.equal(before[name], after[name]) for name in before)


def test_losses_ignore_unknown_targets() -> None:
    targets = np.array([[1, 0], [0, np.nan], [0, 1], [0, 0]], dtype=np.float32)
    assert positive_weights(targets).tolist() == pytest.approx([3.0, 2.0])
    loss = MultiLabelLoss("bce", targets, use_pos_weight=False)
    logits = torch.zeros(4, 2)
    with_nan = torch.tensor(targets)
    value = float(loss(logits, with_nan))
    assert value == pytest.approx(math.log(2.0), rel=1e-5)
    logits[1, 1] = 1000.0  # an unknown target's logit does not matter
    assert float(loss(logits, with_nan)) == pytest.approx(value)
    for kind in ("focal", "class-balanced"):
        assert float(MultiLabelLoss(kind, targets)(torch.zeros(4, 2), with_nan)) > 0


def test_augmentation_keeps_shapes_and_at_least_one_lead(cases: list[TrainingCase]) -> None:
    rng = np.random.default_rng(0)
    ecg = cases[0].prepared.ecg
    tiles = cases[0].prepared.pathology
    assert isinstance(ecg, PreparedEcg) and isinstance(tiles, PreparedTiles)
    for _ in range(20):
        out = augment_ecg(ecg, rng, lead_dropout=0.9)
        assert out.signal.shape == ecg.signal.shape and out.lead_mask.sum() >= 1
        assert not np.any(out.signal[~out.lead_mask])
    subsets = [augment_ecg(ecg, rng, lead_subset=1.0, lead_dropout=0.0) for _ in range(20)]
    assert all(1 <= out.lead_mask.sum() <= 3 for out in subsets)
    assert len({tuple(np.flatnonzero(out.lead_mask)) for out in subsets}) > 5
    blank = augment_ecg(ecg, rng, waveform_dropout=1.0)
    assert not blank.signal.any() and blank.lead_mask.any()
    changed = augment_tiles(tiles, rng)
    assert changed.tiles.shape == tiles.tiles.shape and changed.tiles.dtype == np.uint8
    assert not np.array_equal(changed.tiles, tiles.tiles)
    assert abs(float(changed.tiles.mean()) - float(tiles.tiles.mean())) < 30
    for _ in range(20):
        dropped = drop_modalities(cases[0].prepared, rng, 0.9)
        assert dropped.modalities()
        if dropped.ecg is None:
            assert dropped.ecg_features is None


def test_feature_cache_returns_the_backbone_output_and_restores_it() -> None:
    config = tiny_config()
    config = config.replace(
        image=replace(config.image, freeze_backbone=True),
        text=replace(config.text, freeze=True),
    )
    from model.network import FusionModel

    model = FusionModel(config).eval()
    image_backbone = model.encoders["pathology"].backbone
    tiles = torch.rand(3, 3, 64, 64)
    expected = image_backbone(tiles)
    with cached_backbones(model) as wrappers:
        assert "backbone" not in dict(model.encoders["pathology"].named_children())
        first = model.encoders["pathology"].backbone(tiles)
        second = model.encoders["pathology"].backbone(tiles)
        assert torch.allclose(first, expected, atol=1e-5)
        assert torch.allclose(second, expected, atol=1e-2)  # cached as float16
        assert wrappers["pathology"].cache.hits == 3 and wrappers["pathology"].cache.misses == 3
        ids = torch.randint(1000, 2000, (2, 16))
        mask = torch.ones(2, 16, dtype=torch.long)
        out = model.encoders["note"].backbone(input_ids=ids, attention_mask=mask)
        assert out.last_hidden_state.shape[:2] == (2, 16)
    assert model.encoders["pathology"].backbone is image_backbone
    assert "encoders.pathology.backbone.stem.0.weight" in model.state_dict() or any(
        k.startswith("encoders.pathology.backbone.") for k in model.state_dict()
    )


DDP_SCRIPT = """
import hashlib, json, sys
sys.path.insert(0, {root!r})
from tests.model.training_data import generated_cases, tiny_config
from model.training.trainer import TrainOptions, train_model
from dataclasses import replace
cases = generated_cases(24)
for i, case in enumerate(cases):  # batches that lack a modality on one rank only
    if i % 3 == 0:
        case.prepared = replace(case.prepared, note=None)
    if i % 4 == 1:
        case.prepared = replace(case.prepared, pathology=None)
result = train_model(tiny_config(), cases, TrainOptions(epochs=2, batch_size=2,
    modality_dropout=0.5, progress=False, tensorboard=False), {run!r})
digest = hashlib.sha256()
for key, value in sorted(result.model.state_dict().items()):
    digest.update(key.encode()); digest.update(value.numpy().tobytes())
with open({out!r} + f"/rank{{result.rank}}.json", "w") as stream:
    json.dump({{"rank": result.rank, "world": result.world_size, "hash": digest.hexdigest(),
               "history": [h["val_macro_auroc"] for h in result.history]}}, stream)
"""


def test_ddp_two_cpu_processes_agree(tmp_path: Path) -> None:
    root = str(Path(__file__).resolve().parents[2])
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(root=root, run=str(tmp_path / "run"), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            str(29500 + os.getpid() % 1000),
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=root,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["hash"] == ranks[1]["hash"]
    assert ranks[0]["history"] == ranks[1]["history"]


def test_train_finalize_bundle_predict_and_reevaluate(
    cases: list[TrainingCase], tmp_path: Path
) -> None:
    """Tiny end to end: train -> calibrated bundle with cards -> Predictor -> evaluate again."""
    from model.bundle import verify_bundle
    from model.predictor import Predictor
    from model.training.evaluate import evaluate_bundle
    from model.training.finalize import finalize_bundle
    from tests.model.training_data import case_input

    result = train_model(tiny_config(), cases, replace(FAST, tensorboard=False), tmp_path / "run")
    info, _ = finalize_bundle(
        result, cases, tmp_path / "bundle", name="gen-test", version="0.1.0", bootstrap=50
    )
    verify_bundle(tmp_path / "bundle")
    metrics = json.loads((tmp_path / "bundle" / "metrics.json").read_text())
    assert metrics["test"]["macro"]["auroc"]["value"] >= 0.75
    assert metrics["calibration"]["same_cases"] is True  # 12 validation cases: too few to halve
    card = (tmp_path / "bundle" / "model_card.md").read_text()
    assert "research and demonstration only" in card and "Tachycardia (generated)" in card
    assert "n/a" not in card.split("## Test-split results")[1].split("## Limits")[0].split("\n")[6]
    data_card = (tmp_path / "bundle" / "data_card.md").read_text()
    assert "| test |" in data_card
    again = evaluate_bundle(
        tmp_path / "bundle",
        [c for c in cases if c.split == "test"],
        tmp_path / "eval",
        bootstrap=50,
    )
    stored = dict(metrics["test"])
    for report in (again, stored):
        report.pop("about", None)
        report["calibration"].pop("reliability_png")  # the bundle keeps no report files
    assert json.loads(json.dumps(again)) == stored
    predictor = Predictor(tmp_path / "bundle", device="cpu", explain=False)
    case, *_ = case_input(101, np.random.default_rng(5))
    prediction = predictor.predict([case])[0]
    by_code = {s.code: s for s in prediction.suggestions}
    assert set(by_code) == {"tachy", "tissue"}
    assert 0.0 <= by_code["tachy"].probability <= 1.0
    assert prediction.model.as_dict()["sha256"] == info.sha256
