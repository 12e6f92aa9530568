"""Vitals and demographics -> one token: each value normalised, plus a missing indicator, so
"not measured" is information the network can use rather than a made-up number."""

from __future__ import annotations

import torch
from torch import nn

from model.config import TabularConfig


class TabularEncoder(nn.Module):
    """values (B, F) + present (B, F) -> token (B, 1, d), mask (B, 1), pooled (B, d)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, config: TabularConfig, d_model: int, dropout: float) -> None:
        super().__init__()
        count = len(config.features)
        self.register_buffer(
            "mean", torch.tensor([f.mean for f in config.features]), persistent=False
        )
        self.register_buffer(
            "std", torch.tensor([f.std for f in config.features]), persistent=False
        )
        self.mlp = nn.Sequential(
            nn.Linear(2 * count, config.hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(config.hidden, d_model),
            nn.LayerNorm(d_model),
        )

    def forward(
        self, values: torch.Tensor, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        present = present.bool()
        scaled = (torch.nan_to_num(values.float()) - self.mean) / self.std
        scaled = torch.where(present, scaled, torch.zeros_like(scaled)).clamp(-10.0, 10.0)
        row_present = present.any(dim=1, keepdim=True)
        pooled = self.mlp(torch.cat([scaled, present.float()], dim=1)) * row_present
        return pooled.unsqueeze(1), row_present, pooled
