"""ECG branch: 12-lead signal at the configured rate -> windows -> residual 1-D CNN -> time
tokens, plus one token for the measured features (heart rate, intervals) that the clinician
also sees. Missing leads are zeroed and their mask is embedded, so the network knows them.

Long records: the signal is cut into fixed windows (``window_s``); each window gives
``tokens_per_window`` tokens. ``aggregation="concat"`` keeps every valid window's tokens (at most
``max_windows`` windows, so the token count is capped); ``"mean"`` averages the windows' tokens
position by position. The pooled embedding is the mean over valid tokens in both cases.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import EcgConfig

LEAD_COUNT = 12


class ResidualBlock1d(nn.Module):
    """conv-BN-ReLU-conv-BN with a (strided 1x1) shortcut; halves the time axis."""

    def __init__(self, channels: int, kernel: int, dropout: float) -> None:
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(channels, channels, kernel, stride=2, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=pad, bias=False)
        self.bn2 = nn.BatchNorm1d(channels)
        self.shortcut = nn.Sequential(
            nn.Conv1d(channels, channels, 1, stride=2, bias=False), nn.BatchNorm1d(channels)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(self.dropout(out)))
        return F.relu(out + self.shortcut(x))


class EcgEncoder(nn.Module):
    """(B, 12, S) signal + (B, 12) lead mask [+ valid lengths, measured features] -> tokens."""

    def __init__(self, config: EcgConfig, d_model: int, dropout: float, feature_count: int) -> None:
        super().__init__()
        self.config = config
        self.window_samples = round(config.window_s * config.sampling_rate_hz)
        channels = config.channels
        self.stem = nn.Sequential(
            nn.Conv1d(LEAD_COUNT, channels, 15, stride=2, padding=7, bias=False),
            nn.BatchNorm1d(channels),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(
            *(ResidualBlock1d(channels, config.kernel_size, dropout) for _ in range(config.blocks))
        )
        self.to_tokens = nn.AdaptiveAvgPool1d(config.tokens_per_window)
        self.project = nn.Linear(channels, d_model)
        self.position = nn.Parameter(torch.zeros(1, config.tokens_per_window, d_model))
        self.lead_embedding = nn.Linear(LEAD_COUNT, d_model, bias=False)
        self.feature_count = feature_count
        self.feature_token = nn.Sequential(
            nn.Linear(2 * feature_count, d_model), nn.GELU(), nn.Linear(d_model, d_model)
        )
        self.norm = nn.LayerNorm(d_model)
        nn.init.normal_(self.position, std=0.02)

    @property
    def tokens_per_record(self) -> int:
        """Time tokens per record (without the measurement token)."""
        windows = 1 if self.config.aggregation == "mean" else self.config.max_windows
        return windows * self.config.tokens_per_window

    def _windows(
        self, signal: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 12, S) -> windows (B, W, 12, win) and validity (B, W); W <= max_windows."""
        batch, _, samples = signal.shape
        win = self.window_samples
        count = max(1, -(-samples // win))
        padded = F.pad(signal, (0, count * win - samples))
        windows = padded.view(batch, LEAD_COUNT, count, win).permute(0, 2, 1, 3)
        starts = torch.arange(count, device=signal.device) * win
        valid = starts.unsqueeze(0) < lengths.unsqueeze(1)
        if count > self.config.max_windows:  # evenly spaced, deterministic
            pick = torch.linspace(0, count - 1, self.config.max_windows).round().long()
            windows, valid = windows[:, pick.to(signal.device)], valid[:, pick.to(signal.device)]
        return windows, valid

    def forward(
        self,
        signal: torch.Tensor,
        lead_mask: torch.Tensor,
        lengths: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        features_present: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> tokens (B, T, d), token mask (B, T) True where valid, pooled (B, d).

        The last token is the measured-feature token; rows whose every lead is masked get no
        valid token and a zero embedding."""
        batch, _, samples = signal.shape
        lead_mask = lead_mask.bool()
        row_has_signal = lead_mask.any(dim=1)
        if lengths is None:
            lengths = torch.full((batch,), samples, device=signal.device, dtype=torch.long)
        lengths = torch.where(row_has_signal, lengths, torch.zeros_like(lengths))
        clean = torch.nan_to_num(signal.float()) * lead_mask.unsqueeze(-1)
        windows, valid = self._windows(clean, lengths)
        count = windows.shape[1]
        flat = windows.reshape(batch * count, LEAD_COUNT, self.window_samples)
        selected = valid.reshape(-1).nonzero(as_tuple=True)[0]
        per_window = self.config.tokens_per_window
        d_model = self.project.out_features
        tokens = flat.new_zeros(batch * count, per_window, d_model)
        if selected.numel():
            hidden = self.to_tokens(self.blocks(self.stem(flat.index_select(0, selected))))
            encoded = self.project(hidden.transpose(1, 2)) + self.position
            tokens = tokens.index_copy(0, selected, encoded.to(tokens.dtype))
        tokens = tokens.view(batch, count, per_window, d_model)
        tokens = tokens + self.lead_embedding(lead_mask.float()).view(batch, 1, 1, d_model)
        if self.config.aggregation == "mean":
            weight = valid.float().unsqueeze(-1).unsqueeze(-1)
            tokens = (tokens * weight).sum(1) / weight.sum(1).clamp(min=1.0)
            token_mask = valid.any(dim=1, keepdim=True).expand(batch, per_window)
        else:
            if count < self.config.max_windows:  # fixed token count per record
                extra = self.config.max_windows - count
                tokens = F.pad(tokens, (0, 0, 0, 0, 0, extra))
                valid = F.pad(valid, (0, extra))
            tokens = tokens.reshape(batch, -1, d_model)
            token_mask = valid.repeat_interleave(per_window, dim=1)
        if features is None or features_present is None:
            features = tokens.new_zeros(batch, self.feature_count)
            features_present = torch.zeros_like(features, dtype=torch.bool)
        present = features_present.bool()
        values = torch.where(present, torch.nan_to_num(features.float()), 0.0).clamp(-10, 10)
        feature_token = self.feature_token(torch.cat([values, present.float()], dim=1))
        tokens = torch.cat([tokens, feature_token.unsqueeze(1)], dim=1)
        token_mask = torch.cat([token_mask, row_has_signal.unsqueeze(1)], dim=1)
        tokens = self.norm(tokens) * token_mask.unsqueeze(-1)
        weight = token_mask.float().unsqueeze(-1)
        pooled = (tokens * weight).sum(1) / weight.sum(1).clamp(min=1.0)
        return tokens, token_mask, pooled
