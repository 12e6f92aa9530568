"""Augmentation on prepared inputs (what the network sees), one function per modality.

Tiles: the 8 flips/rotations and a stain/colour jitter in optical-density space (HED-like
scaling of the haematoxylin and eosin channels, after Tellez et al. 2018), plus brightness.
The jitter is drawn from ``views`` fixed settings per tile so that a frozen backbone's output
can be cached (model/training/feature_cache.py) without losing the augmentation.
ECG: amplitude scaling, baseline wander, Gaussian noise and lead dropout (at least one lead
stays). Notes are not augmented. ``ecg_features`` (measured on the raw record) are kept.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from model.preprocess import PreparedCase, PreparedEcg, PreparedTiles

# Ruifrok & Johnston H&E-DAB stain vectors (rows: H, E, residual), as used by skimage.rgb2hed.
_RGB_FROM_HED = np.array(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=np.float64
)
_RGB_FROM_HED /= np.linalg.norm(_RGB_FROM_HED, axis=1, keepdims=True)
_HED_FROM_RGB = np.linalg.inv(_RGB_FROM_HED)


def _tile_view_rng(tile: np.ndarray, view: int) -> np.random.Generator:
    digest = hashlib.blake2b(tile.tobytes(), digest_size=8).digest()
    return np.random.default_rng([int.from_bytes(digest, "little"), view])


def stain_jitter(tile: np.ndarray, rng: np.random.Generator, strength: float = 0.05) -> np.ndarray:
    """Scale and shift the H, E and residual optical densities of one RGB uint8 tile."""
    rgb = np.clip(tile.astype(np.float64) / 255.0, 1e-6, 1.0)
    od = -np.log(rgb) @ _HED_FROM_RGB
    alpha = rng.uniform(1 - strength, 1 + strength, size=3)
    beta = rng.uniform(-strength, strength, size=3)
    od = od * alpha + beta
    out = np.exp(-(od @ _RGB_FROM_HED)) * rng.uniform(0.93, 1.07)  # brightness
    return np.asarray(np.clip(out * 255.0, 0, 255), dtype=np.uint8)


_VIEW_CACHE: dict[tuple[bytes, int], np.ndarray] = {}
_VIEW_CACHE_MAX = 20_000


def tile_view(tile: np.ndarray, view: int) -> np.ndarray:
    """View ``view`` of a tile: a fixed flip/rotation and stain jitter (memoised: the same
    tile and view always give the same pixels, so the work is done once per run)."""
    digest = hashlib.blake2b(tile.tobytes(), digest_size=16).digest()
    key = (digest, view)
    cached = _VIEW_CACHE.get(key)
    if cached is not None:
        return cached
    local = _tile_view_rng(tile, view)
    turned = np.rot90(tile, k=int(local.integers(4)))
    if local.random() < 0.5:
        turned = turned[:, ::-1]
    out = stain_jitter(np.ascontiguousarray(turned), local)
    if len(_VIEW_CACHE) < _VIEW_CACHE_MAX:
        _VIEW_CACHE[key] = out
    return out


def augment_tiles(tiles: PreparedTiles, rng: np.random.Generator, views: int = 8) -> PreparedTiles:
    """Each tile: one of ``views`` fixed (flip/rotation + stain jitter) settings, at random."""
    out = np.empty_like(tiles.tiles)
    for index, tile in enumerate(tiles.tiles):
        out[index] = tile_view(tile, int(rng.integers(views)))
    return replace(tiles, tiles=out)


def augment_ecg(
    ecg: PreparedEcg,
    rng: np.random.Generator,
    *,
    amplitude: tuple[float, float] = (0.8, 1.2),
    wander_mv: float = 0.1,
    noise_mv: float = 0.02,
    lead_dropout: float = 0.1,
    lead_subset: float = 0.5,
    waveform_dropout: float = 0.0,
) -> PreparedEcg:
    """Amplitude, baseline wander (0.05-0.5 Hz), white noise and lead dropout on one ECG.

    With probability ``lead_subset`` only 1-3 of the recorded leads are kept, as a Holter or
    monitor would record: records from different devices then do not differ by their lead
    set alone, which a network otherwise learns as a shortcut for the source (and its labels).
    """
    signal = ecg.signal.astype(np.float32, copy=True)
    leads, samples = signal.shape
    mask = ecg.lead_mask.copy()
    signal *= rng.uniform(*amplitude, size=(leads, 1)).astype(np.float32)
    t = np.arange(samples, dtype=np.float32) / float(ecg.sampling_rate_hz)
    frequency = rng.uniform(0.05, 0.5)
    phase = rng.uniform(0, 2 * np.pi, size=(leads, 1))
    signal += (rng.uniform(0, wander_mv) * np.sin(2 * np.pi * frequency * t + phase)).astype(
        np.float32
    )
    signal += rng.normal(0.0, rng.uniform(0, noise_mv), size=signal.shape).astype(np.float32)
    recorded = np.flatnonzero(mask)
    if recorded.size > 1 and rng.random() < lead_subset:
        keep = rng.choice(
            recorded, size=int(rng.integers(1, min(3, recorded.size) + 1)), replace=False
        )
        mask[:] = False
        mask[keep] = True
    elif recorded.size > 1:
        drop = recorded[rng.random(recorded.size) < lead_dropout]
        if drop.size >= recorded.size:
            drop = drop[:-1]
        mask[drop] = False
    signal *= mask[:, None]
    if rng.random() < waveform_dropout:
        signal[:] = 0.0
    return replace(ecg, signal=signal, lead_mask=mask)


def augment_case(
    case: PreparedCase, rng: np.random.Generator, views: int = 8, waveform_dropout: float = 0.0
) -> PreparedCase:
    """A new PreparedCase with its tiles and ECG augmented (inputs are not modified)."""
    return replace(
        case,
        pathology=augment_tiles(case.pathology, rng, views) if case.pathology is not None else None,
        ecg=(
            augment_ecg(case.ecg, rng, waveform_dropout=waveform_dropout)
            if case.ecg is not None
            else None
        ),
    )


def drop_modalities(
    case: PreparedCase, rng: np.random.Generator, probability: float
) -> PreparedCase:
    """Modality dropout: each present modality is removed with ``probability``; one stays."""
    present = list(case.modalities())
    if probability <= 0 or len(present) < 2:
        return case
    keep = [m for m in present if rng.random() >= probability]
    if not keep:
        keep = [present[int(rng.integers(len(present)))]]
    changes: dict[str, object] = {}
    for modality in present:
        if modality not in keep:
            changes[modality] = None
            if modality == "ecg":
                changes["ecg_features"] = None
    return replace(case, **changes)  # type: ignore[arg-type]
