"""Generated training cases with a learnable signal, prepared by the predictor's own code.

ECG: a synthetic 12-lead sinus rhythm (Gaussian P-QRS-T complexes) at a heart rate drawn per
case; label "tachycardia" when the rate is above 100 bpm. Image: a patch of dense purple
(nuclei-rich) or pale pink tissue on white; label "tissue" when the patch is purple. Note: a
short text that mentions palpitations or a fracture; specialty head "Cardio" / "Ortho".
"""

from __future__ import annotations

import numpy as np

from model.config import ExtraHead, LabelSpec
from model.predictor import CaseInput, EcgInput, prepare_input
from model.registry import variant_config
from model.training.cases import TrainingCase

SYSTEM = "urn:clinicfusion:test"
LABELS = (
    LabelSpec(SYSTEM, "tachy", "Tachycardia (generated)"),
    LabelSpec(SYSTEM, "tissue", "Tissue (generated)"),
)
SPECIALTY = ExtraHead("specialty", ("Cardio", "Ortho"), ("note",))


def tiny_config():  # type: ignore[no-untyped-def]
    base = variant_config("fusion-tiny")
    return base.replace(
        name="fusion-tiny-train-test",
        labels=LABELS,
        extra_heads=(SPECIALTY,),
        modalities=("pathology", "ecg", "note"),
    )


def synthetic_ecg(rate_bpm: float, rng: np.random.Generator, seconds: float = 10.0) -> np.ndarray:
    fs = 250
    t = np.arange(int(seconds * fs)) / fs
    beats = np.arange(0.3, seconds, 60.0 / rate_bpm)
    wave = np.zeros_like(t)
    for b in beats:
        wave += 0.15 * np.exp(-(((t - b + 0.16) / 0.025) ** 2))  # P
        wave += 1.2 * np.exp(-(((t - b) / 0.012) ** 2))  # R
        wave -= 0.25 * np.exp(-(((t - b - 0.03) / 0.01) ** 2))  # S
        wave += 0.3 * np.exp(-(((t - b - 0.3) / 0.05) ** 2))  # T
    gains = rng.uniform(0.5, 1.2, size=(12, 1))
    return (wave[None, :] * gains + rng.normal(0, 0.02, size=(12, t.size))).astype(np.float32)


def tissue_image(positive: bool, rng: np.random.Generator) -> np.ndarray:
    size = 128
    image = np.full((size, size, 3), 242, dtype=np.uint8)
    image += rng.integers(0, 8, size=image.shape, dtype=np.uint8)
    y, x = rng.integers(0, size - 64, size=2)
    patch = rng.integers(0, 60, size=(64, 64, 3)).astype(np.int16)
    # dense purple (nuclei-rich) tissue when positive, pale pink stroma when negative
    colour = np.array([150, 80, 170] if positive else [230, 150, 190], dtype=np.int16)
    image[y : y + 64, x : x + 64] = np.clip(colour + patch - 30, 0, 255).astype(np.uint8)
    return image


NOTES = {
    "Cardio": "Patient reports palpitations and chest discomfort; cardiology follow up.",
    "Ortho": "Fall with wrist fracture; cast applied by orthopedics.",
}


def case_input(index: int, rng: np.random.Generator) -> tuple[CaseInput, bool, bool, str]:
    tachy = bool(index % 2)
    tissue = bool((index // 2) % 2)
    specialty = "Cardio" if rng.random() < 0.5 else "Ortho"
    rate = rng.uniform(110, 150) if tachy else rng.uniform(55, 90)
    case = CaseInput(
        image=tissue_image(tissue, rng),
        microns_per_pixel=0.5,
        ecg=EcgInput(
            synthetic_ecg(rate, rng),
            250.0,
            tuple(["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]),
        ),
        note=NOTES[specialty],
        case_id=f"gen-{index}",
    )
    return case, tachy, tissue, specialty


def generated_cases(count: int = 48, seed: int = 0) -> list[TrainingCase]:
    """``count`` cases split 60/20/20 (each case its own group)."""
    from model.encoders.text import load_tokenizer

    config = tiny_config()
    tokenizer = load_tokenizer(config.text)
    rng = np.random.default_rng(seed)
    cases = []
    for index in range(count):
        case, tachy, tissue, specialty = case_input(index, rng)
        prepared = prepare_input(case, config, tokenizer).case
        split = "train" if index % 5 < 3 else ("val" if index % 5 == 3 else "test")
        cases.append(
            TrainingCase(
                case_id=f"gen-{index}",
                group_id=f"g{index}",
                split=split,
                prepared=prepared,
                targets=np.asarray([tachy, tissue], dtype=np.float32),
                extra_targets={"specialty": SPECIALTY.classes.index(specialty)},
            )
        )
    return cases
