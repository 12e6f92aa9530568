"""FusionModel: the encoders of the enabled modalities, the fusion module and the heads.

``FusionModel(config)`` is the only constructor (config-only, so a bundle rebuilds the network
from config.json). ``forward(FusionInputs)`` accepts any non-empty subset of modalities per row;
modalities missing from the whole batch are skipped, not encoded from zeros.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from model.config import FusionConfig
from model.ecg_features import ECG_FEATURE_NAMES
from model.encoders.ecg import EcgEncoder
from model.encoders.image import ImageEncoder
from model.encoders.tabular import TabularEncoder
from model.encoders.text import TextEncoder
from model.fusion import ModalityFusion
from model.preprocess import ModelInputError, PreparedCase


@dataclass
class FusionInputs:
    """A batch. Each modality's tensors are all set or all None; masks are True where valid.

    tiles (B, N, 3, H, W) float in [0, 1]; tile_mask (B, N).
    ecg (B, 12, S) mV at the config rate; ecg_lead_mask (B, 12); ecg_lengths (B,) valid samples;
    ecg_features / ecg_features_present (B, K) normalised measured features (ECG_FEATURE_NAMES).
    note_input_ids / note_attention_mask (B, C, L).
    tabular_values / tabular_present (B, F) in the config's feature order.
    """

    tiles: torch.Tensor | None = None
    tile_mask: torch.Tensor | None = None
    ecg: torch.Tensor | None = None
    ecg_lead_mask: torch.Tensor | None = None
    ecg_lengths: torch.Tensor | None = None
    ecg_features: torch.Tensor | None = None
    ecg_features_present: torch.Tensor | None = None
    note_input_ids: torch.Tensor | None = None
    note_attention_mask: torch.Tensor | None = None
    tabular_values: torch.Tensor | None = None
    tabular_present: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> FusionInputs:
        """A copy on ``device``."""
        moved = {
            f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device))
            for f in fields(self)
        }
        return FusionInputs(**moved)

    def batch_size(self) -> int:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                return int(value.shape[0])
        raise ModelInputError("The batch holds no input at all.")

    def row_presence(self) -> dict[str, torch.Tensor]:
        """modality -> (B,) bool, for the modalities this batch carries."""
        out: dict[str, torch.Tensor] = {}
        if self.tiles is not None:
            out["pathology"] = _need(self.tile_mask, "tile_mask").bool().any(dim=1)
        if self.ecg is not None:
            out["ecg"] = _need(self.ecg_lead_mask, "ecg_lead_mask").bool().any(dim=1)
        if self.note_input_ids is not None:
            mask = _need(self.note_attention_mask, "note_attention_mask")
            out["note"] = mask.bool().flatten(1).any(dim=1)
        if self.tabular_values is not None:
            out["tabular"] = _need(self.tabular_present, "tabular_present").bool().any(dim=1)
        return out


def _need(value: torch.Tensor | None, name: str) -> torch.Tensor:
    if value is None:
        raise ModelInputError(f"The batch lacks {name}, which its modality needs.")
    return value


@dataclass
class EncodedBranch:
    """One modality's encoder output for a batch: tokens (B, T, d), their validity mask
    (B, T), the pooled embedding (B, d) and, for slides, the MIL tile attention (B, N)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    attention: torch.Tensor | None = None


@dataclass
class FusionOutput:
    """Everything one forward pass computed (tensors keep the batch axis first)."""

    logits: torch.Tensor  # (B, labels) multi-label logits
    aux_logits: dict[str, torch.Tensor]  # modality -> (B, labels) from that modality alone
    extra_logits: dict[str, torch.Tensor]  # extra head name -> (B, classes)
    extra_available: dict[str, torch.Tensor]  # extra head name -> (B,) bool: an input it reads
    gates: torch.Tensor  # (B, M) modality weights, config order; 0 where absent, rows sum to 1
    present: torch.Tensor  # (B, M) bool
    modalities: tuple[str, ...]
    pooled: dict[str, torch.Tensor]  # modality -> (B, d) (zeros where absent)
    fused: torch.Tensor  # (B, d)
    tile_attention: torch.Tensor | None  # (B, N) MIL weights; rows sum to 1 where tiles exist
    token_spans: dict[str, tuple[int, int]]  # modality -> [start, end) in the fusion sequence
    sequence_mask: torch.Tensor  # (B, T) valid fusion tokens (0 = fusion token)
    fusion_attention: tuple[torch.Tensor, ...] | None  # per layer (B, heads, T, T) when asked


class FusionModel(nn.Module):
    """Multimodal multi-label classifier; build it with a FusionConfig only."""

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        if not isinstance(config, FusionConfig):
            raise TypeError("FusionModel takes a FusionConfig (see model.registry.create_model).")
        self.config = config
        d, drop = config.d_model, config.dropout
        self.encoders = nn.ModuleDict()
        for modality in config.modalities:
            if modality == "pathology":
                self.encoders[modality] = ImageEncoder(config.image, d, drop)
            elif modality == "ecg":
                self.encoders[modality] = EcgEncoder(config.ecg, d, drop, len(ECG_FEATURE_NAMES))
            elif modality == "note":
                self.encoders[modality] = TextEncoder(config.text, d, drop)
            else:
                self.encoders[modality] = TabularEncoder(config.tabular, d, drop)
        self.fusion = ModalityFusion(
            config.modalities, d, config.heads, config.layers, drop, config.gate_hidden
        )
        labels = len(config.labels)
        self.head = _head(d, labels, drop)
        self.aux_heads = nn.ModuleDict(
            {m: _head(d, labels, drop) for m in config.modalities} if config.aux_heads else {}
        )
        self.extra_heads = nn.ModuleDict(
            {h.name: _head(d, len(h.classes), drop) for h in config.extra_heads}
        )

    def provenance(self) -> dict[str, Any]:
        """Pretrained weights each branch started from (for the bundle's metadata)."""
        return {
            name: dict(getattr(encoder, "provenance", {}))
            for name, encoder in self.encoders.items()
            if getattr(encoder, "provenance", None)
        }

    def forward(self, inputs: FusionInputs, return_attention: bool = False) -> FusionOutput:
        encoded, present = self.encode(inputs)
        empty = (~present.any(dim=1)).nonzero(as_tuple=True)[0]
        if empty.numel():
            raise ModelInputError(
                f"Batch row {int(empty[0])} has no input for any modality; every case needs at "
                "least one of " + ", ".join(self.config.modalities) + "."
            )
        return self.fuse(encoded, present, return_attention)

    def encode(self, inputs: FusionInputs) -> tuple[dict[str, EncodedBranch], torch.Tensor]:
        """Run the encoder of every modality present in the batch -> (branches, present (B, M)).

        Split from ``fuse`` so that leave-one-modality-out and explanations re-fuse the same
        encodings with other modalities masked, instead of encoding every case again."""
        config = self.config
        rows = inputs.row_presence()
        for modality in rows:
            if modality not in config.modalities:
                raise ModelInputError(
                    f"This model does not read {modality} inputs (it reads "
                    f"{', '.join(config.modalities)})."
                )
        batch = inputs.batch_size()
        device = next(self.parameters()).device
        present = torch.zeros(batch, len(config.modalities), dtype=torch.bool, device=device)
        for index, modality in enumerate(config.modalities):
            if modality in rows:
                present[:, index] = rows[modality].to(device)
        encoded = {
            modality: self.encode_branch(inputs, modality)
            for modality in config.modalities
            if modality in rows and bool(rows[modality].any())
        }
        return encoded, present

    def encode_branch(self, inputs: FusionInputs, modality: str) -> EncodedBranch:
        """One modality's encoder over the batch (explanations re-run single branches)."""
        encoder = self.encoders[modality]
        if modality == "pathology":
            mask = _need(inputs.tile_mask, "tile_mask").bool()
            tok, attention, pool = encoder(_need(inputs.tiles, "tiles"), mask)
            return EncodedBranch(tok, mask, pool, attention)
        if modality == "ecg":
            tok, mask, pool = encoder(
                _need(inputs.ecg, "ecg"),
                _need(inputs.ecg_lead_mask, "ecg_lead_mask"),
                inputs.ecg_lengths,
                inputs.ecg_features,
                inputs.ecg_features_present,
            )
        elif modality == "note":
            tok, mask, pool = encoder(
                _need(inputs.note_input_ids, "note_input_ids"),
                _need(inputs.note_attention_mask, "note_attention_mask"),
            )
        else:
            tok, mask, pool = encoder(
                _need(inputs.tabular_values, "tabular_values"),
                _need(inputs.tabular_present, "tabular_present"),
            )
        return EncodedBranch(tok, mask, pool)

    def fuse(
        self,
        encoded: dict[str, EncodedBranch],
        present: torch.Tensor,
        return_attention: bool = False,
    ) -> FusionOutput:
        """Fusion and heads over encoded branches; ``present`` (B, M) says which modalities
        each row may use (a branch that is encoded but not present in a row is ignored).
        Every row needs at least one present modality."""
        config = self.config
        batch = present.shape[0]
        pooled = torch.zeros(batch, len(config.modalities), config.d_model, device=present.device)
        for index, modality in enumerate(config.modalities):
            if modality in encoded:
                branch = encoded[modality].pooled
                pooled[:, index] = branch.to(pooled.dtype) * present[:, index : index + 1]
        tokens = {m: e.tokens for m, e in encoded.items()}
        masks = {m: e.mask for m, e in encoded.items()}
        result = self.fusion(tokens, masks, pooled, present, return_attention)
        pooled_by_name = {m: pooled[:, i] for i, m in enumerate(config.modalities)}
        extra_logits: dict[str, torch.Tensor] = {}
        extra_available: dict[str, torch.Tensor] = {}
        for head in config.extra_heads:
            if set(head.modalities) == set(config.modalities):
                source, available = result.fused, present.any(dim=1)
            else:
                source, available = self._subset(result.gate_scores, pooled, head.modalities)
            extra_logits[head.name] = self.extra_heads[head.name](source)
            extra_available[head.name] = available
        pathology = encoded.get("pathology")
        return FusionOutput(
            logits=self.head(result.fused),
            aux_logits={m: self.aux_heads[m](pooled_by_name[m]) for m in self.aux_heads},
            extra_logits=extra_logits,
            extra_available=extra_available,
            gates=result.gates,
            present=present,
            modalities=config.modalities,
            pooled=pooled_by_name,
            fused=result.fused,
            tile_attention=pathology.attention if pathology is not None else None,
            token_spans=result.token_spans,
            sequence_mask=result.sequence_mask,
            fusion_attention=result.attention,
        )

    def _subset(
        self, scores: torch.Tensor, pooled: torch.Tensor, modalities: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gated sum over a subset of modalities (gates renormalised among the present ones)."""
        keep = torch.tensor([m in modalities for m in self.config.modalities], device=scores.device)
        masked = scores.masked_fill(~keep, float("-inf"))
        available = torch.isfinite(masked).any(dim=1)
        safe = torch.where(available.unsqueeze(1), masked, torch.zeros_like(masked))
        weights = torch.softmax(safe, dim=1) * torch.isfinite(masked) * available.unsqueeze(1)
        return torch.einsum("bm,bmd->bd", weights, pooled), available


def _head(d_model: int, outputs: int, dropout: float) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(d_model), nn.Dropout(dropout), nn.Linear(d_model, outputs))


def collate(cases: Sequence[PreparedCase], config: FusionConfig) -> FusionInputs:
    """Pad prepared cases into one batch; a modality no case has stays None."""
    if not cases:
        raise ModelInputError("There are no cases to analyse.")
    for case in cases:
        case.check(config)
    batch = len(cases)
    inputs = FusionInputs()
    enabled = set(config.modalities)
    if "pathology" in enabled and any(c.pathology is not None for c in cases):
        count = max(c.pathology.tiles.shape[0] for c in cases if c.pathology is not None)
        size = config.image.tile_size
        tiles = np.zeros((batch, count, size, size, 3), dtype=np.uint8)
        mask = np.zeros((batch, count), dtype=bool)
        for row, case in enumerate(cases):
            if case.pathology is not None:
                n = case.pathology.tiles.shape[0]
                tiles[row, :n], mask[row, :n] = case.pathology.tiles, True
        inputs.tiles = torch.from_numpy(tiles).permute(0, 1, 4, 2, 3).float().div(255.0)
        inputs.tile_mask = torch.from_numpy(mask)
    if "ecg" in enabled and any(c.ecg is not None for c in cases):
        samples = max(c.ecg.signal.shape[1] for c in cases if c.ecg is not None)
        signal = np.zeros((batch, 12, samples), dtype=np.float32)
        leads = np.zeros((batch, 12), dtype=bool)
        lengths = np.zeros(batch, dtype=np.int64)
        feats = np.zeros((batch, len(ECG_FEATURE_NAMES)), dtype=np.float32)
        feats_present = np.zeros_like(feats, dtype=bool)
        for row, case in enumerate(cases):
            if case.ecg is not None:
                n = case.ecg.signal.shape[1]
                signal[row, :, :n], leads[row], lengths[row] = (
                    case.ecg.signal,
                    case.ecg.lead_mask,
                    n,
                )
            if case.ecg_features is not None:
                feats[row], feats_present[row] = case.ecg_features
        inputs.ecg = torch.from_numpy(signal)
        inputs.ecg_lead_mask = torch.from_numpy(leads)
        inputs.ecg_lengths = torch.from_numpy(lengths)
        inputs.ecg_features = torch.from_numpy(feats)
        inputs.ecg_features_present = torch.from_numpy(feats_present)
    if "note" in enabled and any(c.note is not None for c in cases):
        chunks = max(c.note.input_ids.shape[0] for c in cases if c.note is not None)
        length = config.text.max_tokens_per_chunk
        ids = np.zeros((batch, chunks, length), dtype=np.int64)
        attention = np.zeros((batch, chunks, length), dtype=np.int64)
        for row, case in enumerate(cases):
            if case.note is not None:
                n = case.note.input_ids.shape[0]
                ids[row, :n], attention[row, :n] = case.note.input_ids, case.note.attention_mask
        inputs.note_input_ids = torch.from_numpy(ids)
        inputs.note_attention_mask = torch.from_numpy(attention)
    if "tabular" in enabled and any(c.tabular is not None for c in cases):
        features = len(config.tabular.features)
        values = np.zeros((batch, features), dtype=np.float32)
        present = np.zeros((batch, features), dtype=bool)
        for row, case in enumerate(cases):
            if case.tabular is not None:
                values[row], present[row] = case.tabular.values, case.tabular.present
        inputs.tabular_values = torch.from_numpy(values)
        inputs.tabular_present = torch.from_numpy(present)
    return inputs
