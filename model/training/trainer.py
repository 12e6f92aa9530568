"""The training loop: joint fused + auxiliary losses, modality dropout, imbalance handling,
OGM-GE, augmentation, early stopping, checkpoints/resume, DDP and DP-SGD.

One function, :func:`train_model`, serves one CPU, one GPU and many (``torchrun`` sets
``WORLD_SIZE``; the same command then runs DistributedDataParallel, gloo on CPU, NCCL on GPU).
Every rank validates on the whole validation split with identical weights, so all ranks take
the same early-stopping decision without extra communication.

Loss per batch: ``L = L_fused + sum_m lambda_m * L_aux_m + sum_h L_head_h`` where ``L_aux_m``
is the multi-label loss of modality m's auxiliary head on the rows where m is present, and
``L_head_h`` the cross-entropy of each extra head (e.g. specialty) on rows with a target.

Modality imbalance (OGM-GE, Peng et al., CVPR 2022): each step, each modality's confidence on
the true targets (from its auxiliary head) is compared with the mean of the others'; the
gradient of a dominant modality's encoder is scaled by ``1 - tanh(alpha * (ratio - 1))`` and
gets Gaussian noise of the gradient's own spread (the "generalisation enhancement").

DP-SGD (``dp_epsilon``): exact per-sample gradients (one backward per case, so any layer
works, BatchNorm included since each case is alone), clipped and noised by Opacus' DPOptimizer,
Poisson sampling, noise multiplier from Opacus' RDP accountant for the target epsilon; the
epsilon actually spent is returned. One process only.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.config import FusionConfig
from model.errors import ModelPackageError
from model.network import FusionInputs, FusionModel, FusionOutput, collate
from model.training.augment import augment_case, drop_modalities
from model.training.cases import TrainingCase, by_split, extra_target_vector, target_matrix
from model.training.feature_cache import cached_backbones
from model.training.losses import (
    LOSSES,
    MultiLabelLoss,
    extra_head_loss,
    inverse_sqrt_class_weights,
)

CHECKPOINT = "checkpoint.pt"
BEST_WEIGHTS = "best.safetensors"


class TrainingError(ModelPackageError, ValueError):
    """Training cannot start or go on; the message says what to change."""


@dataclass(frozen=True)
class TrainOptions:
    """Everything that shapes a training run (saved with every checkpoint)."""

    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    deterministic: bool = True
    aux_weight: float = 0.5
    modality_dropout: float = 0.3
    loss: str = "bce"
    pos_weight: bool = True
    balanced_sampling: bool = False
    ogm_ge: bool = True
    ogm_alpha: float = 0.5
    augment: bool = True
    augment_views: int = 8
    ecg_waveform_dropout: float = 0.0
    refit_head_epochs: int = 200
    patience: int = 6
    max_minutes: float | None = None
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0
    progress: bool = True
    tensorboard: bool = True
    cache_megabytes: int = 4096

    def check(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise TrainingError("Epochs and batch size must be at least 1.")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise TrainingError("Modality dropout must be in [0, 1).")
        if self.loss not in LOSSES:
            raise TrainingError(f"Unknown loss {self.loss!r}; choose one of {', '.join(LOSSES)}.")
        if self.lr <= 0 or self.aux_weight < 0:
            raise TrainingError("The learning rate must be positive and aux weight not negative.")
        if self.dp_epsilon is not None and not (self.dp_epsilon > 0 and 0 < self.dp_delta < 1):
            raise TrainingError("DP-SGD needs epsilon > 0 and 0 < delta < 1.")


@dataclass
class TrainResult:
    """The trained model (best validation epoch) and how the run went."""

    model: FusionModel
    best_epoch: int
    best_val_macro_auroc: float | None
    history: list[dict[str, Any]]
    seconds: float
    dp_epsilon_spent: float | None
    dp_delta: float | None
    world_size: int
    rank: int
    run_dir: Path
    options: TrainOptions = field(default_factory=TrainOptions)
    dp_noise_multiplier: float | None = None
    cache_stats: dict[str, dict[str, int]] = field(default_factory=dict)


# -- distribution ------------------------------------------------------------------------------
@dataclass
class _Dist:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            torch.distributed.barrier()

    def sync_buffers(self, model: nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm statistics), so validation agrees."""
        if self.world_size > 1:
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.SUM)
        return tensor


def _distribution(device: str | None) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = bool(torch.cuda.is_available()) and device != "cpu"
    if world <= 1:
        chosen = torch.device(device) if device else torch.device("cuda" if cuda else "cpu")
        return _Dist(device=chosen)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    initialised = False
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend="nccl" if cuda else "gloo")
        initialised = True
    if cuda:
        torch.cuda.set_device(local)
    return _Dist(
        world,
        rank,
        local,
        torch.device(f"cuda:{local}" if cuda else "cpu"),
        initialised,
    )


# -- helpers -----------------------------------------------------------------------------------
def _seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():  # type: ignore[no-untyped-call]
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True


def _trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor of the state dict except frozen backbones (they come from the wheels)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _load_state(model: FusionModel, state: dict[str, torch.Tensor], what: str) -> None:
    result = model.load_state_dict(state, strict=False)
    frozen = ("encoders.pathology.backbone.", "encoders.note.backbone.")
    missing = [k for k in result.missing_keys if not k.startswith(frozen)]
    if missing or result.unexpected_keys:
        raise TrainingError(
            f"The {what} does not fit this model configuration (missing {missing[:3]}, "
            f"unexpected {list(result.unexpected_keys)[:3]})."
        )


def _macro_auroc(targets: np.ndarray, scores: np.ndarray) -> float | None:
    from model.training.metrics import auroc

    values = []
    for j in range(targets.shape[1]):
        known = ~np.isnan(targets[:, j])
        value = auroc(targets[known, j], scores[known, j])
        if value is not None:
            values.append(value)
    return float(np.mean(values)) if values else None


def _macro_f1(targets: np.ndarray, predicted: np.ndarray) -> float | None:
    from model.training.metrics import macro_f1

    rows = targets >= 0
    return macro_f1(targets[rows], predicted[rows]) if rows.any() else None


@torch.no_grad()
def predict_logits(
    model: FusionModel, cases: Sequence[TrainingCase], batch_size: int = 32
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Fused logits (N, L) and extra-head logits {name: (N, C)} of cases, in eval mode."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    fused: list[np.ndarray] = []
    extra: dict[str, list[np.ndarray]] = {h.name: [] for h in model.config.extra_heads}
    try:
        for start in range(0, len(cases), batch_size):
            chunk = [c.prepared for c in cases[start : start + batch_size]]
            out = model(collate(chunk, model.config).to(device))
            fused.append(out.logits.float().cpu().numpy())
            for name in extra:
                extra[name].append(out.extra_logits[name].float().cpu().numpy())
    finally:
        model.train(was_training)
    labels = len(model.config.labels)
    return (
        np.concatenate(fused) if fused else np.zeros((0, labels), np.float32),
        {k: np.concatenate(v) for k, v in extra.items() if v},
    )


class _Progress:
    def __init__(self, total: int, description: str, enabled: bool) -> None:
        self.bar: Any = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=description, unit="batch", leave=False)
            except ImportError:
                self.bar = None

    def update(self, loss: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class _MetricsLog:
    """metrics.csv + metrics.jsonl (+ TensorBoard when installed) in the run folder."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.writer: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tensorboard"))
            except ImportError:
                self.writer = None

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with (self.run_dir / "metrics.jsonl").open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(row, sort_keys=True) + "\n")
        path = self.run_dir / "metrics.csv"
        scalar = {k: v for k, v in row.items() if isinstance(v, int | float | type(None))}
        new = not path.exists()
        with path.open("a", encoding="utf-8", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=sorted(scalar), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(scalar)
        if self.writer is not None:
            for key, value in scalar.items():
                if value is not None and key != "epoch":
                    self.writer.add_scalar(key, value, row["epoch"])
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# -- the step ----------------------------------------------------------------------------------
class _Objective:
    """Fused + auxiliary + extra-head losses for one batch."""

    def __init__(self, model: FusionModel, train: Sequence[TrainingCase], options: TrainOptions):
        config = model.config
        targets = target_matrix(train, len(config.labels))
        self.multi = MultiLabelLoss(options.loss, targets, use_pos_weight=options.pos_weight)
        self.aux_weight = options.aux_weight
        self.head_weights = {
            head.name: inverse_sqrt_class_weights(
                extra_target_vector(train, head.name), len(head.classes)
            )
            for head in config.extra_heads
        }

    def __call__(
        self, out: FusionOutput, targets: torch.Tensor, extra: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        parts: dict[str, float] = {}
        loss = self.multi(out.logits, targets)
        parts["fused"] = float(loss.detach())
        for index, modality in enumerate(out.modalities):
            if modality not in out.aux_logits:
                continue
            rows = out.present[:, index]
            if bool(rows.any()) and self.aux_weight > 0:
                aux = self.multi(out.aux_logits[modality][rows], targets[rows])
                loss = loss + self.aux_weight * aux
                parts[f"aux_{modality}"] = float(aux.detach())
            else:
                # Zero, but it keeps the head in the graph: DDP expects every output it
                # returned to reach the loss, also when this batch lacks the modality.
                loss = loss + 0.0 * out.aux_logits[modality].sum()
        for name, logits in out.extra_logits.items():
            head = extra_head_loss(
                logits, extra[name], out.extra_available[name], self.head_weights.get(name)
            )
            loss = loss + head
            parts[f"head_{name}"] = float(head.detach())
        return loss, parts


def _confidence_scores(out: FusionOutput, targets: torch.Tensor) -> torch.Tensor:
    """(M, 2): per modality, summed probability of the true outcome and its count."""
    scores = torch.zeros(len(out.modalities), 2, device=targets.device)
    known = ~torch.isnan(targets)
    y = torch.nan_to_num(targets)
    for index, modality in enumerate(out.modalities):
        if modality not in out.aux_logits:
            continue
        rows = out.present[:, index].unsqueeze(1) & known
        if not bool(rows.any()):
            continue
        p = torch.sigmoid(out.aux_logits[modality].detach().float())
        p_true = torch.where(y > 0.5, p, 1 - p)
        scores[index, 0] = p_true[rows].sum()
        scores[index, 1] = rows.sum()
    return scores


def _ogm_ge(
    model: FusionModel, scores: torch.Tensor, alpha: float, generator: torch.Generator
) -> dict[str, float]:
    """Scale (and noise) the encoder gradients of dominant modalities; returns coefficients."""
    counts = scores[:, 1]
    mean = torch.where(counts > 0, scores[:, 0] / counts.clamp(min=1), torch.zeros_like(counts))
    active = [i for i in range(len(mean)) if counts[i] > 0]
    coefficients: dict[str, float] = {}
    if len(active) < 2:
        return coefficients
    for i in active:
        others = [mean[j] for j in active if j != i]
        ratio = float(mean[i] / (torch.stack(others).mean() + 1e-8))
        coefficient = 1.0 - math.tanh(alpha * max(0.0, ratio - 1.0))
        modality = model.config.modalities[i]
        coefficients[modality] = coefficient
        if coefficient >= 1.0:
            continue
        for parameter in model.encoders[modality].parameters():
            if parameter.grad is None:
                continue
            grad = parameter.grad
            spread = float(grad.std()) if grad.numel() > 1 else 0.0
            noise = torch.randn(grad.shape, generator=generator, device="cpu").to(grad.device)
            parameter.grad = grad * coefficient + noise * (spread + 1e-8)
    return coefficients


def _batch_inputs(
    cases: Sequence[TrainingCase],
    config: FusionConfig,
    options: TrainOptions,
    rng: np.random.Generator,
    device: torch.device,
) -> tuple[FusionInputs, torch.Tensor, dict[str, torch.Tensor]]:
    prepared = []
    for case in cases:
        item = case.prepared
        if options.augment:
            item = augment_case(item, rng, options.augment_views, options.ecg_waveform_dropout)
        item = drop_modalities(item, rng, options.modality_dropout)
        prepared.append(item)
    inputs = collate(prepared, config).to(device)
    targets = torch.from_numpy(target_matrix(cases, len(config.labels))).to(device)
    extra = {
        head.name: torch.from_numpy(extra_target_vector(cases, head.name)).to(device)
        for head in config.extra_heads
    }
    return inputs, targets, extra


def _epoch_order(
    train: Sequence[TrainingCase], options: TrainOptions, epoch: int, labels: int
) -> list[int]:
    """The same order on every rank: a seeded permutation, or balanced sampling."""
    rng = np.random.default_rng([options.seed, epoch, 7])
    n = len(train)
    if not options.balanced_sampling:
        return [int(i) for i in rng.permutation(n)]
    targets = target_matrix(train, labels)
    prevalence = np.nanmean(np.where(np.isnan(targets), np.nan, targets), axis=0)
    prevalence = np.where(np.isfinite(prevalence) & (prevalence > 0), prevalence, 1.0)
    weights = np.ones(n)
    for i in range(n):
        positive = np.flatnonzero(np.nan_to_num(targets[i]) > 0.5)
        if positive.size:
            weights[i] = float(np.max(1.0 / prevalence[positive]))
    weights = np.sqrt(weights)  # soften: inverse sqrt prevalence
    return [int(i) for i in rng.choice(n, size=n, replace=True, p=weights / weights.sum())]


# -- DP-SGD --------------------------------------------------------------------------------------
class _PrivateSGD:
    """Per-sample gradients + Opacus DPOptimizer + RDP accountant, Poisson sampling."""

    def __init__(
        self,
        model: FusionModel,
        optimizer: torch.optim.Optimizer,
        n_train: int,
        options: TrainOptions,
    ) -> None:
        try:
            from opacus.accountants import RDPAccountant
            from opacus.accountants.utils import get_noise_multiplier
            from opacus.optimizers import DPOptimizer
        except ImportError as exc:  # pragma: no cover - opacus is in the train extra
            raise TrainingError("DP-SGD needs Opacus: pip install 'clinicfusion[train]'.") from exc
        assert options.dp_epsilon is not None
        self.sample_rate = min(1.0, options.batch_size / max(1, n_train))
        self.steps_per_epoch = max(1, int(1.0 / self.sample_rate))
        # The noise is sized for exactly the steps the loop will take, so the epsilon spent
        # after the last epoch does not exceed the target.
        self.noise_multiplier = float(
            get_noise_multiplier(
                target_epsilon=options.dp_epsilon,
                target_delta=options.dp_delta,
                sample_rate=self.sample_rate,
                steps=self.steps_per_epoch * options.epochs,
                accountant="rdp",
            )
        )
        self.optimizer = DPOptimizer(
            optimizer,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=options.dp_max_grad_norm,
            expected_batch_size=options.batch_size,
            loss_reduction="mean",
        )
        self.accountant = RDPAccountant()
        self.delta = options.dp_delta
        self.params = [p for p in model.parameters() if p.requires_grad]

    def poisson_batches(self, n: int, rng: np.random.Generator) -> Iterator[list[int]]:
        for _ in range(self.steps_per_epoch):
            yield [int(i) for i in np.flatnonzero(rng.random(n) < self.sample_rate)]

    def step(self, per_sample: list[list[torch.Tensor | None]]) -> None:
        for index, parameter in enumerate(self.params):
            grads: list[torch.Tensor] = []
            for sample in per_sample:
                grad = sample[index]
                grads.append(grad if grad is not None else torch.zeros_like(parameter))
            parameter.grad_sample = (  # type: ignore[attr-defined]
                torch.stack(grads)
                if grads
                else torch.zeros((0, *parameter.shape), device=parameter.device)
            )
            parameter.grad = torch.zeros_like(parameter)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    def epsilon(self) -> float:
        return float(self.accountant.get_epsilon(delta=self.delta))


# -- the loop ----------------------------------------------------------------------------------
def _check_cases(config: FusionConfig, cases: Sequence[TrainingCase]) -> None:
    labels = len(config.labels)
    if labels == 0:
        raise TrainingError("The model configuration has no labels to train.")
    for case in cases:
        if case.targets.shape != (labels,):
            raise TrainingError(
                f"Case {case.case_id} has {case.targets.shape[0]} targets; the model has {labels}."
            )
    if not by_split(cases, "train"):
        raise TrainingError("There are no training cases (split 'train').")
    if not by_split(cases, "val"):
        raise TrainingError(
            "There are no validation cases (split 'val'); early stopping and calibration need them."
        )


@contextmanager
def _maybe_cache(model: FusionModel, megabytes: int, enabled: bool) -> Iterator[dict[str, Any]]:
    if not enabled:
        yield {}
        return
    with cached_backbones(model, megabytes) as wrappers:
        yield wrappers


def train_model(
    config: FusionConfig,
    cases: Sequence[TrainingCase],
    options: TrainOptions,
    run_dir: str | Path,
    *,
    resume: bool = False,
    init_state: dict[str, torch.Tensor] | None = None,
    device: str | None = None,
) -> TrainResult:
    """Train ``config`` on the train split, early-stop on validation macro-AUROC, and return
    the best epoch's model. ``run_dir`` holds checkpoints and logs (``resume`` continues)."""
    options.check()
    _check_cases(config, cases)
    run = Path(run_dir)
    dist = _distribution(device)
    if options.dp_epsilon is not None and dist.world_size > 1:
        raise TrainingError("DP-SGD runs in one process; start it without torchrun.")
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    started = time.perf_counter()
    _seed_everything(options.seed, options.deterministic)
    model = FusionModel(config)
    if init_state is not None:
        _load_state(model, init_state, "starting weights")
    model.to(dist.device)
    train = by_split(cases, "train")
    val = by_split(cases, "val")
    labels = len(config.labels)
    objective = _Objective(model, train, options)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=options.lr, weight_decay=options.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=options.epochs)
    private = _PrivateSGD(model, optimizer, len(train), options) if options.dp_epsilon else None

    start_epoch, best_score, best_epoch, stale = 0, -math.inf, -1, 0
    history: list[dict[str, Any]] = []
    best_state = _trainable_state(model)
    checkpoint_path = run / CHECKPOINT
    if resume:
        if not checkpoint_path.exists():
            raise TrainingError(f"There is no checkpoint to resume in {run}.")
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        if saved["config"] != config.to_json():
            raise TrainingError("The checkpoint was made with another model configuration.")
        _load_state(model, saved["model"], "checkpoint")
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        best_state = saved["best_state"]
        start_epoch = int(saved["epoch"]) + 1
        best_score = float(saved["best_score"])
        best_epoch = int(saved["best_epoch"])
        stale = int(saved["stale"])
        history = json.loads(saved["history"])
        if private is not None:
            private.accountant.history = [tuple(h) for h in json.loads(saved["dp_history"])]

    runner: nn.Module = model
    if dist.world_size > 1:
        runner = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[dist.local_rank] if dist.device.type == "cuda" else None,
            find_unused_parameters=True,
        )
    log = _MetricsLog(run, dist.main, options.tensorboard)
    noise_generator = torch.Generator().manual_seed(options.seed + 1)
    cache_stats: dict[str, dict[str, int]] = {}
    val_targets = target_matrix(val, labels)
    epoch = start_epoch - 1
    with _maybe_cache(model, options.cache_megabytes, True) as wrappers:
        for epoch in range(start_epoch, options.epochs):
            # Every random stream is seeded per epoch, so a resumed run repeats exactly what
            # the uninterrupted run would have done from that epoch on.
            noise_generator.manual_seed(options.seed * 100_003 + epoch)
            torch.manual_seed(options.seed * 100_019 + epoch * 7 + dist.rank)
            model.train()
            if private is not None:
                _freeze_batch_norm(model)
            rng = np.random.default_rng([options.seed, epoch, dist.rank, 11])
            epoch_start = time.perf_counter()
            losses: list[float] = []
            coefficients: dict[str, list[float]] = {}
            if private is not None:
                batches = list(private.poisson_batches(len(train), rng))
            else:
                order = _epoch_order(train, options, epoch, labels)
                per_rank = math.ceil(len(order) / dist.world_size)
                order = (order * 2)[: per_rank * dist.world_size]  # equal steps on every rank
                mine = order[dist.rank :: dist.world_size]
                batches = [
                    mine[i : i + options.batch_size]
                    for i in range(0, len(mine), options.batch_size)
                ]
            bar = _Progress(
                len(batches), f"epoch {epoch + 1}/{options.epochs}", options.progress and dist.main
            )
            for batch in batches:
                chosen = [train[i] for i in batch]
                if private is not None:
                    per_sample: list[list[torch.Tensor | None]] = []
                    batch_loss = 0.0
                    for case in chosen:
                        inputs, targets, extra = _batch_inputs(
                            [case], config, options, rng, dist.device
                        )
                        out = runner(inputs)
                        loss, _ = objective(out, targets, extra)
                        grads = torch.autograd.grad(loss, private.params, allow_unused=True)
                        per_sample.append(list(grads))
                        batch_loss += float(loss.detach())
                    private.step(per_sample)
                    losses.append(batch_loss / max(1, len(chosen)))
                    bar.update(losses[-1])
                    continue
                inputs, targets, extra = _batch_inputs(chosen, config, options, rng, dist.device)
                out = runner(inputs)
                loss, _ = objective(out, targets, extra)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                if options.ogm_ge:
                    scores = dist.all_reduce_sum(_confidence_scores(out, targets))
                    for modality, value in _ogm_ge(
                        model, scores, options.ogm_alpha, noise_generator
                    ).items():
                        coefficients.setdefault(modality, []).append(value)
                optimizer.step()
                losses.append(float(loss.detach()))
                bar.update(losses[-1])
            bar.close()
            scheduler.step()
            dist.sync_buffers(model)
            logits, extra_logits = predict_logits(model, val)
            score = _macro_auroc(val_targets, logits)
            row: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)) if losses else None,
                "val_macro_auroc": score,
                "lr": float(optimizer.param_groups[0]["lr"]),
                "seconds": round(time.perf_counter() - epoch_start, 2),
            }
            for head in config.extra_heads:
                if head.name in extra_logits:
                    row[f"val_{head.name}_macro_f1"] = _macro_f1(
                        extra_target_vector(val, head.name),
                        extra_logits[head.name].argmax(axis=1),
                    )
            for modality, values in coefficients.items():
                row[f"ogm_coefficient_{modality}"] = float(np.mean(values))
            if private is not None:
                row["dp_epsilon_spent"] = private.epsilon()
            current = score if score is not None else -float(row["train_loss"] or 0.0)
            if current > best_score + 1e-6:
                best_score, best_epoch, stale = current, epoch, 0
                best_state = _trainable_state(model)
                if dist.main:
                    _save_weights(best_state, run / BEST_WEIGHTS)
            else:
                stale += 1
            row["best_epoch"] = best_epoch
            history.append(row)
            log.write(row)
            if dist.main:
                _save_checkpoint(
                    checkpoint_path,
                    config,
                    options,
                    model,
                    optimizer,
                    scheduler,
                    best_state,
                    epoch,
                    best_score,
                    best_epoch,
                    stale,
                    history,
                    private,
                )
            dist.barrier()
            elapsed = (time.perf_counter() - started) / 60.0
            if stale >= options.patience:
                break
            if options.max_minutes is not None and elapsed >= options.max_minutes:
                history[-1]["stopped"] = "time budget reached"
                break
        for modality, wrapper in wrappers.items():
            cache_stats[modality] = {
                "hits": wrapper.cache.hits,
                "misses": wrapper.cache.misses,
                "megabytes": wrapper.cache.bytes // (1024 * 1024),
            }
    log.close()
    _load_state(model, best_state, "best weights")
    model.to("cpu").eval()
    # Not under DP-SGD: a refit outside the private optimiser would void the guarantee.
    refit = options.refit_head_epochs > 0 and private is None
    head_refits = refit_extra_heads(model, train, val, options) if refit else {}
    if head_refits and history:
        history[-1]["extra_head_refit"] = head_refits
    result = TrainResult(
        model=model,
        best_epoch=best_epoch,
        best_val_macro_auroc=best_score if best_score > -math.inf and best_score >= 0 else None,
        history=history,
        seconds=round(time.perf_counter() - started, 1),
        dp_epsilon_spent=private.epsilon() if private is not None else None,
        dp_delta=options.dp_delta if private is not None else None,
        world_size=dist.world_size,
        rank=dist.rank,
        run_dir=run,
        options=options,
        dp_noise_multiplier=private.noise_multiplier if private is not None else None,
        cache_stats=cache_stats,
    )
    if dist.initialised_here:
        torch.distributed.destroy_process_group()
    return result


@torch.no_grad()
def _head_inputs(
    model: FusionModel, cases: Sequence[TrainingCase], head_name: str, batch_size: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """What an extra head reads (its modality's pooled embedding, or the fused vector) for
    the cases that have its input and a target -> (features (n, d), targets (n,))."""
    head = next(h for h in model.config.extra_heads if h.name == head_name)
    features, targets = [], []
    for start in range(0, len(cases), batch_size):
        chunk = cases[start : start + batch_size]
        out = model(collate([c.prepared for c in chunk], model.config))
        source = out.pooled[head.modalities[0]] if len(head.modalities) == 1 else out.fused
        wanted = torch.from_numpy(extra_target_vector(chunk, head_name))
        rows = out.extra_available[head_name] & (wanted >= 0)
        features.append(source[rows])
        targets.append(wanted[rows])
    return torch.cat(features), torch.cat(targets)


def refit_extra_heads(
    model: FusionModel,
    train: Sequence[TrainingCase],
    val: Sequence[TrainingCase],
    options: TrainOptions,
) -> dict[str, dict[str, float | int | None]]:
    """Refit each extra head (e.g. specialty) on the frozen trained encoders, early-stopped on
    its own validation macro-F1.

    The joint run stops when the diagnosis labels stop improving on validation, which can be
    long before a many-class head has converged; refitting the head alone (a probe on fixed
    features: every other weight is unchanged) lets each output stop at its own best point.
    Only heads that read one modality or the whole fusion are refitted."""
    from model.training.metrics import macro_f1

    model.eval()
    report: dict[str, dict[str, float | int | None]] = {}
    generator = torch.Generator().manual_seed(options.seed + 17)
    torch.manual_seed(options.seed + 23)  # the heads' dropout: the same on every rank and run
    for head in model.config.extra_heads:
        if len(head.modalities) != 1 and set(head.modalities) != set(model.config.modalities):
            continue
        x_train, y_train = _head_inputs(model, train, head.name)
        x_val, y_val = _head_inputs(model, val, head.name)
        if len(y_train) == 0 or len(y_val) == 0:
            continue
        module = model.extra_heads[head.name]

        def score(
            module: nn.Module = module, x: torch.Tensor = x_val, y: torch.Tensor = y_val
        ) -> float:
            module.eval()
            with torch.no_grad():
                predicted = module(x).argmax(dim=1).numpy()
            return float(macro_f1(y.numpy(), predicted) or 0.0)

        before = score()
        best, best_state, best_epoch = (
            before,
            {k: v.clone() for k, v in module.state_dict().items()},
            -1,
        )
        weights = inverse_sqrt_class_weights(y_train.numpy(), len(head.classes))
        optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3, weight_decay=1e-3)
        stale = 0
        for epoch in range(options.refit_head_epochs):
            module.train()
            order = torch.randperm(len(y_train), generator=generator)
            for start in range(0, len(order), 256):
                rows = order[start : start + 256]
                loss = torch.nn.functional.cross_entropy(
                    module(x_train[rows]), y_train[rows], weight=weights
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
            current = score()
            if current > best + 1e-6:
                best, best_epoch, stale = current, epoch, 0
                best_state = {k: v.clone() for k, v in module.state_dict().items()}
            else:
                stale += 1
                if stale >= 20:
                    break
        module.load_state_dict(best_state)
        module.eval()
        report[head.name] = {
            "val_macro_f1_before": before,
            "val_macro_f1_after": best,
            "best_refit_epoch": best_epoch,
        }
    return report


def _freeze_batch_norm(model: nn.Module) -> None:
    """Under DP-SGD BatchNorm keeps its initial running statistics (eval mode): statistics
    gathered from the private cases would leak them outside the privacy guarantee."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def _save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def _save_checkpoint(
    path: Path,
    config: FusionConfig,
    options: TrainOptions,
    model: FusionModel,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    best_state: dict[str, torch.Tensor],
    epoch: int,
    best_score: float,
    best_epoch: int,
    stale: int,
    history: list[dict[str, Any]],
    private: _PrivateSGD | None,
) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint."""
    payload = {
        "config": config.to_json(),
        "options": json.dumps(asdict(options), sort_keys=True),
        "model": _trainable_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "best_state": best_state,
        "epoch": epoch,
        "best_score": best_score,
        "best_epoch": best_epoch,
        "stale": stale,
        "history": json.dumps(history),
        "dp_history": json.dumps(private.accountant.history if private is not None else []),
    }
    partial = path.with_suffix(".partial")
    torch.save(payload, partial)
    partial.replace(path)


__all__ = [
    "TrainOptions",
    "TrainResult",
    "TrainingError",
    "predict_logits",
    "train_model",
]
