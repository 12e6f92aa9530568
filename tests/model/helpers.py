"""Batches built straight from a config, for network tests."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model.config import MODALITIES, FusionConfig
from model.ecg_features import ECG_FEATURE_NAMES
from model.network import FusionInputs


def make_inputs(
    config: FusionConfig,
    rows: Sequence[Sequence[str]],
    *,
    tile_px: int = 64,
    tiles: int = 3,
    seed: int = 0,
) -> FusionInputs:
    """One batch row per entry of ``rows``, each holding the modalities it names."""
    generator = torch.Generator().manual_seed(seed)
    batch = len(rows)
    wanted = {m for row in rows for m in row}
    inputs = FusionInputs()

    def has(modality: str) -> torch.Tensor:
        return torch.tensor([modality in row for row in rows])

    if "pathology" in wanted:
        inputs.tiles = torch.rand(batch, tiles, 3, tile_px, tile_px, generator=generator)
        mask = has("pathology").unsqueeze(1).expand(batch, tiles).clone()
        mask[:, -1] &= torch.arange(batch) % 2 == 0  # some rows have a padded tile
        inputs.tile_mask = mask
    if "ecg" in wanted:
        samples = round(config.ecg.window_s * config.ecg.sampling_rate_hz)
        inputs.ecg = torch.randn(batch, 12, samples, generator=generator) * 0.3
        leads = has("ecg").unsqueeze(1).expand(batch, 12).clone()
        leads[::2, 6:] = False  # limb leads only in some rows
        inputs.ecg_lead_mask = leads
        inputs.ecg_features = torch.randn(batch, len(ECG_FEATURE_NAMES), generator=generator)
        inputs.ecg_features_present = leads[:, :1].expand(batch, len(ECG_FEATURE_NAMES))
    if "note" in wanted:
        length = config.text.max_tokens_per_chunk
        ids = torch.randint(1000, 20000, (batch, 2, length), generator=generator)
        ids[:, :, 0] = 101
        attention = torch.zeros(batch, 2, length, dtype=torch.long)
        attention[:, 0, : length // 2] = 1
        attention[1::2, 1, :] = 1
        inputs.note_input_ids = ids
        inputs.note_attention_mask = attention * has("note").view(batch, 1, 1)
    if "tabular" in wanted:
        count = len(config.tabular.features)
        inputs.tabular_values = torch.randn(batch, count, generator=generator) * 10 + 60
        present = has("tabular").unsqueeze(1).expand(batch, count).clone()
        present[:, 1] = False
        inputs.tabular_present = present
    return inputs


ALL = tuple(MODALITIES)
