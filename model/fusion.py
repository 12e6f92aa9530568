"""Fusion of M modalities: the product brief's z = w1·x + w2·y + Att(x, y), generalised.

- Att: a learned fusion token plus the tokens of every present modality (each tagged with a
  modality type embedding) pass through pre-norm transformer layers (self- and cross-modal
  attention); a key padding mask hides absent modalities, padded tiles, chunks and windows.
- w: softmax gates over the pooled embeddings of the PRESENT modalities (absent ones are set
  to -inf before the softmax, so their gate is exactly 0). The gates are the modality weights
  shown to the clinician.
- z = sum_m g_m * pooled_m + fusion_token_output.

The layers are written out (not nn.TransformerEncoder) because explanations need each layer's
attention weights, which nn.TransformerEncoder does not return.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


class FusionLayer(nn.Module):
    """Pre-norm transformer encoder layer that can return its attention weights."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attention = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(d_model, 4 * d_model),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(4 * d_model, d_model),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, padding_mask: torch.Tensor, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, d); padding_mask (B, T) True = ignore -> (x, weights (B, heads, T, T))."""
        normed = self.norm1(x)
        attended, weights = self.attention(
            normed,
            normed,
            normed,
            key_padding_mask=padding_mask,
            need_weights=need_weights,
            average_attn_weights=False,
        )
        x = x + self.dropout(attended)
        x = x + self.dropout(self.feed_forward(self.norm2(x)))
        return x, weights


@dataclass
class FusionResult:
    """What the fusion module computed for a batch."""

    fused: torch.Tensor  # (B, d): z
    gates: torch.Tensor  # (B, M) in config modality order; 0 for absent
    gate_scores: torch.Tensor  # (B, M) before the softmax (-inf for absent)
    fusion_token: torch.Tensor  # (B, d): the fusion token's output
    sequence_mask: torch.Tensor  # (B, T) True where a token is valid (position 0: fusion token)
    token_spans: dict[str, tuple[int, int]]  # modality -> [start, end) in the sequence
    attention: tuple[torch.Tensor, ...] | None  # per layer (B, heads, T, T)


class ModalityFusion(nn.Module):
    """Gated sum of pooled modality embeddings + a transformer fusion token."""

    def __init__(
        self,
        modalities: tuple[str, ...],
        d_model: int,
        heads: int,
        layers: int,
        dropout: float,
        gate_hidden: int,
    ) -> None:
        super().__init__()
        self.modalities = modalities
        self.type_embedding = nn.Parameter(torch.zeros(len(modalities), d_model))
        self.fusion_token = nn.Parameter(torch.zeros(1, 1, d_model))
        self.layers = nn.ModuleList(FusionLayer(d_model, heads, dropout) for _ in range(layers))
        self.final_norm = nn.LayerNorm(d_model)
        self.gate = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, gate_hidden),
            nn.Tanh(),
            nn.Linear(gate_hidden, 1),
        )
        nn.init.normal_(self.type_embedding, std=0.02)
        nn.init.normal_(self.fusion_token, std=0.02)

    def gate_scores(self, pooled: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """pooled (B, M, d), present (B, M) -> scores (B, M), -inf where absent."""
        scores: torch.Tensor = self.gate(pooled + self.type_embedding).squeeze(-1)
        return scores.masked_fill(~present, float("-inf"))

    def forward(
        self,
        tokens: dict[str, torch.Tensor],
        token_masks: dict[str, torch.Tensor],
        pooled: torch.Tensor,
        present: torch.Tensor,
        return_attention: bool = False,
    ) -> FusionResult:
        """tokens/token_masks for the modalities encoded in this batch (others absent);
        pooled (B, M, d) with zeros for absent; present (B, M) bool, every row non-empty."""
        batch = present.shape[0]
        sequence = [self.fusion_token.expand(batch, -1, -1)]
        valid = [present.new_ones(batch, 1)]
        spans: dict[str, tuple[int, int]] = {}
        position = 1
        for index, modality in enumerate(self.modalities):
            if modality not in tokens:
                continue
            mask = token_masks[modality].bool() & present[:, index : index + 1]
            sequence.append(tokens[modality] + self.type_embedding[index])
            valid.append(mask)
            spans[modality] = (position, position + mask.shape[1])
            position += mask.shape[1]
        x = torch.cat(sequence, dim=1)
        sequence_mask = torch.cat(valid, dim=1)
        x = x * sequence_mask.unsqueeze(-1)
        weights: list[torch.Tensor] = []
        for layer in self.layers:
            x, layer_weights = layer(x, ~sequence_mask, return_attention)
            if layer_weights is not None:
                weights.append(layer_weights)
        fusion_out = self.final_norm(x[:, 0])
        scores = self.gate_scores(pooled, present)
        gates = torch.softmax(scores, dim=1)
        fused = torch.einsum("bm,bmd->bd", gates, pooled) + fusion_out
        return FusionResult(
            fused=fused,
            gates=gates,
            gate_scores=scores,
            fusion_token=fusion_out,
            sequence_mask=sequence_mask,
            token_spans=spans,
            attention=tuple(weights) if return_attention else None,
        )
