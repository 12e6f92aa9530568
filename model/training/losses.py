"""Losses for multi-label diagnosis heads with unknown targets, and for the extra heads.

Targets are 1, 0 or NaN (unknown: the case's source did not assess that label); unknown
entries contribute nothing. Class imbalance: ``pos_weight`` (negatives/positives per label,
capped), focal loss (Lin et al. 2017) or class-balanced weights (Cui et al. 2019).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LOSSES = ("bce", "focal", "class-balanced")


def positive_weights(targets: np.ndarray, cap: float = 20.0) -> torch.Tensor:
    """Per label negatives/positives over the known training targets, in [1/cap, cap]."""
    known = ~np.isnan(targets)
    positives = np.nansum(targets, axis=0)
    negatives = known.sum(axis=0) - positives
    ratio = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    return torch.tensor(np.clip(ratio, 1.0 / cap, cap), dtype=torch.float32)


def class_balanced_weights(targets: np.ndarray, beta: float = 0.999) -> torch.Tensor:
    """Cui et al.'s effective-number weight for the positives of each label (mean 1)."""
    positives = np.maximum(np.nansum(targets, axis=0), 1.0)
    weights = (1.0 - beta) / (1.0 - np.power(beta, positives))
    weights = weights / weights.mean()
    return torch.tensor(weights, dtype=torch.float32)


class MultiLabelLoss:
    """Masked BCE / focal / class-balanced BCE over (B, L) logits and (B, L) 1/0/NaN targets."""

    def __init__(
        self,
        kind: str,
        train_targets: np.ndarray,
        *,
        use_pos_weight: bool = True,
        gamma: float = 2.0,
    ) -> None:
        if kind not in LOSSES:
            raise ValueError(f"Unknown loss {kind!r}; choose one of {', '.join(LOSSES)}.")
        self.kind = kind
        self.gamma = gamma
        self.pos_weight = positive_weights(train_targets) if use_pos_weight else None
        self.cb_weight = class_balanced_weights(train_targets) if kind == "class-balanced" else None

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        known = ~torch.isnan(targets)
        if not bool(known.any()):
            return logits.sum() * 0.0
        y = torch.nan_to_num(targets, nan=0.0)
        pos_weight = self.pos_weight.to(logits.device) if self.pos_weight is not None else None
        if self.kind == "class-balanced" and self.cb_weight is not None:
            pos_weight = self.cb_weight.to(logits.device) * (
                pos_weight if pos_weight is not None else 1.0
            )
        loss = F.binary_cross_entropy_with_logits(
            logits, y, pos_weight=pos_weight, reduction="none"
        )
        if self.kind == "focal":
            p = torch.sigmoid(logits)
            p_true = torch.where(y > 0.5, p, 1 - p)
            loss = loss * (1 - p_true).pow(self.gamma)
        return (loss * known).sum() / known.sum()


def extra_head_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    available: torch.Tensor,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy over rows that have both an input for the head and a target (>= 0)."""
    rows = available & (targets >= 0)
    if not bool(rows.any()):
        return logits.sum() * 0.0
    weight = class_weight.to(logits.device) if class_weight is not None else None
    return F.cross_entropy(logits[rows], targets[rows], weight=weight)


def inverse_sqrt_class_weights(targets: np.ndarray, classes: int) -> torch.Tensor:
    """1/sqrt(frequency) per class (mean 1 over the classes seen), for a softmax head."""
    counts = np.bincount(targets[targets >= 0], minlength=classes).astype(np.float64)
    weights = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1)), 0.0)
    seen = weights > 0
    if seen.any():
        weights[seen] /= weights[seen].mean()
    return torch.tensor(weights, dtype=torch.float32)
