"""Report data built by hand from real inputs (pydicom's 12-lead ECG, scikit-image's IHC image).

Shared by tests/reporting and bench/report_pdf.py. The explanation parts (tile heatmap, ECG
relevance, note word scores) are made here from the real signals, as a model's would look.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.data import get_testdata_file

from clinic_app.domain.explanations import (
    EcgRelevanceMap,
    NoteHighlights,
    TileHeatmap,
    TileScore,
    WordRelevance,
)
from clinic_app.domain.signals import EcgRecording
from clinic_app.io.ecg_dicom import read_dicom_ecg
from clinic_app.reporting.data import (
    EcgFigure,
    InputLine,
    ModelSummary,
    ReportData,
    ReportDecision,
    ReportSignOff,
    ReportSuggestion,
    SlideFigure,
)

SNOMED = "http://snomed.info/sct"
MODEL_VERSION = "1.0.0-test.7"

NOTE = (
    "CARDIOLOGY CLINIC NOTE\n"
    "HISTORY: 67-year-old man referred for palpitations and exertional chest pressure over the "
    "last three weeks, relieved by rest within minutes. He denies syncope or presyncope. Known "
    "hypertension treated with a β-blocker (bisoprolol 5 mg daily) and ramipril 10 mg. No "
    "prior myocardial infarction.\n"
    "MEDICATIONS: bisoprolol, ramipril, atorvastatin 40 mg, cyanocobalamin 1000 µg monthly.\n"
    "EXAMINATION: Pulse regular at 61/min, blood pressure 138/84 mmHg. Heart sounds normal, "
    "no murmur. Chest clear. No peripheral oedema.\n"
    "INVESTIGATIONS: hs-troponin T 9 ng/L, Δ over 3 h 1 ng/L (below the α threshold of the "
    "assay). Potassium 4.2 ± 0.1 mmol/L on repeat. Colonoscopy last year: biopsy of a 12 mm "
    "sessile polyp in the sigmoid colon, reported as tubular adenoma with focal high-grade "
    "dysplasia; immunohistochemistry requested.\n"
    "ASSESSMENT: Palpitations without documented arrhythmia; resting ECG shows sinus rhythm. "
    "Atrial fibrillation not excluded given intermittent symptoms. Colonic lesion under "
    "follow-up by gastroenterology.\n"
    "PLAN: 7-day ambulatory ECG monitor. Continue β-blocker. Review pathology when the "
    "immunohistochemistry is reported. Return in 6 weeks."
)

#: word -> relevance for the explained label (sinus rhythm): positive supports it.
NOTE_WORDS = {
    "sinus rhythm": 0.92,
    "Pulse regular": 0.71,
    "palpitations": -0.55,
    "Atrial fibrillation": -0.48,
    "β-blocker": 0.34,
    "intermittent": -0.30,
    "61/min": 0.41,
    "syncope": 0.12,
    "ambulatory ECG": -0.22,
    "Heart sounds normal": 0.18,
}


def ecg_path() -> Path:
    path = get_testdata_file("waveform_ecg.dcm")
    assert path is not None
    return Path(path)


@cache
def ecg_recording() -> EcgRecording:
    return read_dicom_ecg(ecg_path())


def ecg_relevance(recording: EcgRecording, bin_s: float = 0.25) -> EcgRelevanceMap:
    """Relevance per lead and bin from the signal's slope energy (QRS complexes stand out)."""
    fs = recording.sampling_rate_hz
    per_bin = round(bin_s * fs)
    slope = np.abs(np.diff(np.nan_to_num(recording.samples.astype(np.float64)), axis=1))
    bins = slope.shape[1] // per_bin
    energy = slope[:, : bins * per_bin].reshape(slope.shape[0], bins, per_bin).sum(axis=2)
    energy = (energy / energy.max()) ** 2
    share = energy.sum(axis=1) / energy.sum()
    return EcgRelevanceMap(
        input_sha256=hashlib.sha256(ecg_path().read_bytes()).hexdigest(),
        lead_names=recording.lead_names,
        bin_s=bin_s,
        start_s=0.0,
        values=tuple(tuple(float(v) for v in row) for row in energy),
        lead_share={n: float(v) for n, v in zip(recording.lead_names, share, strict=True)},
    )


@cache
def ihc_image() -> npt.NDArray[np.uint8]:
    import skimage.data

    return np.asarray(skimage.data.immunohistochemistry(), dtype=np.uint8)


def slide_figure(tile: int = 64, microns_per_pixel: float | None = 0.5) -> SlideFigure:
    """The IHC micrograph as level 0, scored per tile by its brown (DAB) stain."""
    image = ihc_image()
    height, width = image.shape[:2]
    rgb = image.astype(np.float64)
    brown = np.clip((rgb[..., 0] - rgb[..., 2]) / 255.0, 0.0, 1.0)
    tiles: list[TileScore] = []
    for y in range(0, height - tile + 1, tile):
        for x in range(0, width - tile + 1, tile):
            tiles.append(TileScore(x, y, float(brown[y : y + tile, x : x + tile].mean())))
    top_score = max(t.score for t in tiles)
    tiles = [TileScore(t.x, t.y, t.score / top_score) for t in tiles]
    order = tuple(sorted(range(len(tiles)), key=lambda i: -tiles[i].score)[:6])
    heatmap = TileHeatmap(
        input_sha256=hashlib.sha256(image.tobytes()).hexdigest(),
        level0_width=width,
        level0_height=height,
        tile_size_level0=tile,
        tiles=tuple(tiles),
        top=order,
    )
    top_tiles = tuple(
        (
            np.ascontiguousarray(
                image[tiles[i].y : tiles[i].y + tile, tiles[i].x : tiles[i].x + tile]
            ),
            tiles[i].score,
            tiles[i].x,
            tiles[i].y,
        )
        for i in order
    )
    return SlideFigure(
        thumbnail=image,
        level0_width=width,
        level0_height=height,
        microns_per_pixel=microns_per_pixel,
        heatmap=heatmap,
        top_tiles=top_tiles,
    )


def note_highlights() -> NoteHighlights:
    words = []
    for phrase, score in NOTE_WORDS.items():
        start = NOTE.find(phrase)
        assert start >= 0, phrase
        words.append(WordRelevance(start, start + len(phrase), score))
    # every other word gets a small score, as a real explanation would
    cursor = 0
    for token in NOTE.split():
        start = NOTE.find(token, cursor)
        cursor = start + len(token)
        if not any(w.start <= start < w.end for w in words):
            words.append(WordRelevance(start, cursor, 0.01 * ((start % 7) - 3)))
    words.sort(key=lambda w: w.start)
    return NoteHighlights(
        note_version=2,
        text_sha256=hashlib.sha256(NOTE.encode()).hexdigest(),
        text=NOTE,
        words=tuple(words),
    )


def model_summary() -> ModelSummary:
    return ModelSummary(
        name="clinicfusion-demo",
        version=MODEL_VERSION,
        bundle_sha256=hashlib.sha256(b"bundle").hexdigest(),
        device="cpu",
        intended_use=(
            "For research and demonstration only. Not a medical device; suggestions must be "
            "reviewed by a qualified clinician."
        ),
        training_data=(
            "2,204 cases (1,544 train, 329 validation, 331 test), 2,036 of them composite: "
            "PTB-XL and MIT-BIH ECGs, TCGA slides and MTSamples notes from different people."
        ),
        metrics=(
            ("Macro AUROC (test)", "0.727 (0.50–0.79)"),
            ("Macro AUPRC (test)", "0.420 (0.27–0.74)"),
            ("ECE after calibration", "0.158 (before: 0.196)"),
        ),
        limits=(
            "Composite training cases: the modalities of one case come from different people.",
            "Not validated on any clinical population; calibration may not transfer.",
            "Slides at 20× (≈ 0.5 µm/px) only; other magnifications are resampled.",
        ),
        calibration="Platt scaling per label on 217 validation cases",
    )


def suggestions() -> tuple[ReportSuggestion, ...]:
    return (
        ReportSuggestion(
            1, SNOMED, "426783006", "Sinus rhythm", 0.88, 0.91, False, False, "accept"
        ),
        ReportSuggestion(2, SNOMED, "164889003", "Atrial fibrillation", 0.31, 0.22, True, True),
        ReportSuggestion(
            3,
            SNOMED,
            "363346000",
            "Malignant neoplastic disease",
            0.44,
            0.38,
            True,
            True,
            "override",
        ),
        ReportSuggestion(
            4, SNOMED, "427172004", "Premature ventricular contractions", 0.07, 0.04, False
        ),
    )


WHEN = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
OVERRIDE_REASON = "Biopsy shows adenoma with high-grade dysplasia, not invasive carcinoma"
FINAL_IMPRESSION = (
    "Sinus rhythm at 61/min with normal intervals. Tubular adenoma with focal high-grade "
    "dysplasia (no invasive malignancy on this material); β-blocker continued."
)


def report_data(
    *,
    composite: bool = True,
    signed: bool = True,
    slide: bool = True,
    ecg: bool = True,
    note: bool = True,
    analysed: bool = True,
) -> ReportData:
    """A typical report (all parts) or a variant without some of them."""
    recording = ecg_recording()
    inputs = [
        InputLine("pathology", "ihc.png, 512 × 512 px, 0.5 µm/px (IHC, DAB)", slide, "ab" * 32),
        InputLine("ecg", "waveform_ecg.dcm, 12 leads, 10 s at 1000 Hz", ecg, "cd" * 32),
        InputLine("note", "Cardiology clinic note, version 2 (1,431 characters)", note, "ef" * 32),
    ]
    missing = {"tabular": "no vital signs were entered"}
    for line in inputs:
        if not line.used:
            missing[line.modality] = "not in this case"
    inputs = [line for line in inputs if line.used]
    decisions = (
        ReportDecision("accept", "Sinus rhythm", None, None, None, None, "dr.rossi", WHEN),
        ReportDecision(
            "override",
            "Malignant neoplastic disease",
            OVERRIDE_REASON,
            SNOMED,
            "1156654007",
            "Benign tubular adenoma",
            "dr.rossi",
            WHEN,
        ),
    )
    sign_off = (
        ReportSignOff(
            final_impression=FINAL_IMPRESSION,
            meaning="Reviewed and approved",
            user="dr.rossi",
            signed_at=WHEN.replace(minute=45),
            content_sha256=hashlib.sha256(b"content").hexdigest(),
        )
        if signed
        else None
    )
    contributions: dict[str, float | None] = {"pathology": 0.021, "ecg": 0.412, "note": -0.034}
    gates = {"pathology": 0.18, "ecg": 0.57, "note": 0.25}
    for name in ("pathology", "ecg", "note"):
        if name in missing:
            contributions.pop(name, None)
            gates.pop(name, None)
    measurements = {
        "Heart rate": ("61", "bpm"),
        "RR interval": ("982 ± 21", "ms"),
        "PR interval": ("156", "ms"),
        "QRS duration": ("75", "ms"),
        "QT / QTc (Bazett)": ("398 / 402", "ms"),
        "QRS axis": ("52", "°"),
    }
    return ReportData(
        case_uid="c-7f3a9e21-5b8d",
        case_version=3,
        patient_pseudonym="PSN-4471-KQ",
        title="Palpitations and colonic polyp – combined review",
        status="signed" if signed else "analysed",
        is_composite_demo=composite,
        created_at=datetime(2026, 3, 1, 14, 5, tzinfo=UTC),
        analysed_at=datetime(2026, 3, 1, 14, 7, tzinfo=UTC) if analysed else None,
        generated_at=datetime(2026, 3, 2, 10, 0, 12, tzinfo=UTC),
        generated_by="dr.rossi",
        model=model_summary() if analysed else None,
        inputs=tuple(inputs),
        inputs_missing=missing,
        suggestions=suggestions() if analysed else (),
        explained_label="Sinus rhythm" if analysed else None,
        contributions=contributions if analysed else {},
        gates=gates if analysed else {},
        slide=slide_figure() if slide else None,
        ecg=(
            EcgFigure(recording, ecg_relevance(recording) if analysed else None, measurements)
            if ecg
            else None
        ),
        note=note_highlights() if note else None,
        decisions=decisions if analysed else (),
        sign_off=sign_off,
        institution="Ospedale Demo – Cardiology and Pathology",
        footer="ClinicFusion research installation · not for clinical use",
    )


def replace(data: ReportData, **changes: object) -> ReportData:
    return dataclasses.replace(data, **changes)  # type: ignore[arg-type]
