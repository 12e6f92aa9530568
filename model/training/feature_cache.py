"""Cache the outputs of frozen pretrained backbones during training.

A frozen backbone (EfficientNet-Lite0 for tiles, MiniLM for notes) gives the same output for
the same input every epoch, and on a CPU it costs far more than everything trained. While
training, each frozen backbone is swapped for a wrapper that remembers its output per input
row (keyed by a hash of the row's bytes); tile augmentation draws from a fixed set of views so
the cache stays small. The wrapper is not a registered submodule, so the backbone's weights
are invisible to the optimiser, DDP and Opacus; :func:`cached_backbones` restores the original
modules when training ends.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn


def _key(*rows: torch.Tensor) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for row in rows:
        digest.update(row.detach().cpu().contiguous().numpy().tobytes())
    return digest.digest()


class _Cache:
    def __init__(self, max_bytes: int) -> None:
        self.store: dict[bytes, torch.Tensor] = {}
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def put(self, key: bytes, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if self.bytes + size <= self.max_bytes:
            self.store[key] = value
            self.bytes += size


class _Frozen:
    backbone: nn.Module

    def eval(self) -> _Frozen:
        self.backbone.eval()
        return self

    def train(self, mode: bool = True) -> _Frozen:
        self.backbone.eval()  # a frozen backbone always runs in eval mode
        return self


class CachedImageBackbone(_Frozen):
    """Callable like the backbone: (n, 3, H, W) -> (n, features), memoised per tile."""

    def __init__(self, backbone: nn.Module, max_bytes: int) -> None:
        self.backbone = backbone
        self.cache = _Cache(max_bytes)

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        keys = [_key(row) for row in tiles]
        missing = [i for i, k in enumerate(keys) if k not in self.cache.store]
        self.cache.hits += len(keys) - len(missing)
        self.cache.misses += len(missing)
        if missing:
            with torch.no_grad():
                computed = self.backbone(tiles[missing])
            for i, row in zip(missing, computed, strict=True):
                self.cache.put(keys[i], row.detach().to(torch.float16).cpu())
        else:
            computed = None
        rows = []
        fresh = dict(zip(missing, computed, strict=True)) if computed is not None else {}
        for i, k in enumerate(keys):
            rows.append(fresh[i] if i in fresh else self.cache.store[k].to(tiles.device).float())
        return torch.stack([r.float() for r in rows])


class CachedTextBackbone(_Frozen):
    """Callable like a transformers encoder: returns ``.last_hidden_state``, memoised per row."""

    def __init__(self, backbone: nn.Module, max_bytes: int) -> None:
        self.backbone = backbone
        self.config = getattr(backbone, "config", None)
        self.cache = _Cache(max_bytes)

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        keys = [_key(i, m) for i, m in zip(input_ids, attention_mask, strict=True)]
        missing = [i for i, k in enumerate(keys) if k not in self.cache.store]
        self.cache.hits += len(keys) - len(missing)
        self.cache.misses += len(missing)
        fresh: dict[int, torch.Tensor] = {}
        if missing:
            with torch.no_grad():
                out = self.backbone(
                    input_ids=input_ids[missing], attention_mask=attention_mask[missing]
                ).last_hidden_state
            for i, row in zip(missing, out, strict=True):
                fresh[i] = row
                self.cache.put(keys[i], row.detach().to(torch.float16).cpu())
        rows = [
            fresh[i].float() if i in fresh else self.cache.store[k].to(input_ids.device).float()
            for i, k in enumerate(keys)
        ]
        return SimpleNamespace(last_hidden_state=torch.stack(rows))


def frozen_backbones(model: nn.Module) -> dict[str, nn.Module]:
    """modality -> frozen backbone module (only the encoders whose config freezes them)."""
    config: Any = getattr(model, "config")  # noqa: B009 - a FusionModel
    encoders: Any = getattr(model, "encoders")  # noqa: B009
    out: dict[str, nn.Module] = {}
    if "pathology" in encoders and config.image.freeze_backbone:
        out["pathology"] = encoders["pathology"].backbone
    if "note" in encoders and config.text.freeze:
        out["note"] = encoders["note"].backbone
    return out


@contextmanager
def cached_backbones(model: nn.Module, max_megabytes: int = 4096) -> Iterator[dict[str, Any]]:
    """Swap every frozen backbone of ``model`` for a caching wrapper; restore on exit.

    Yields modality -> wrapper (its ``.cache`` has hit/miss counts)."""
    originals = frozen_backbones(model)
    encoders: Any = getattr(model, "encoders")  # noqa: B009
    wrappers: dict[str, Any] = {}
    budget = max_megabytes * 1024 * 1024 // max(1, len(originals))
    for modality, backbone in originals.items():
        wrapper: Any = (
            CachedImageBackbone(backbone, budget)
            if modality == "pathology"
            else CachedTextBackbone(backbone, budget)
        )
        del encoders[modality]._modules["backbone"]
        object.__setattr__(encoders[modality], "backbone", wrapper)
        wrappers[modality] = wrapper
    try:
        yield wrappers
    finally:
        for modality, backbone in originals.items():
            object.__delattr__(encoders[modality], "backbone")
            encoders[modality].backbone = backbone
