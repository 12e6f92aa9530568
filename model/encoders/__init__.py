"""Per-modality encoders: each turns one modality's arrays into d-dim tokens, a token mask and a
pooled embedding, the common currency of the fusion module."""

from __future__ import annotations
