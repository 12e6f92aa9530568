"""Explanation reports: gather one case's ``ReportData`` and export it as PDF, DICOM
Encapsulated PDF or FHIR R4 JSON, one case or many (folder or .zip with a manifest).

``build_report_data`` reads the case (the audited ``case.read`` of ``get_case``), its latest
analysis and stored explanation, the analysed inputs again after their sha256 is checked
(``stored_input``: slide thumbnail and top tiles, the ECG) and the model card of the bundle the
analysis names. The writers in ``clinic_app.reporting`` turn it into bytes; here each file is
written atomically (temp file + ``os.replace`` in the target folder) and registered with
``CaseService.record_report`` (its sha256 stored and audited). Batch export builds each case's
data once for every format and reads a bundle's model card once per bundle sha256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clinic_app._version import __version__
from clinic_app.config.assets import shipped_bundles_dir
from clinic_app.config.settings import Settings
from clinic_app.domain.cases import AnalysisInfo, CaseDetail, InputInfo, NoteInfo
from clinic_app.domain.errors import ClinicError, InputError, StorageError
from clinic_app.domain.explanations import (
    AnalysisExplanation,
    EcgRelevanceMap,
    NoteHighlights,
    TileHeatmap,
)
from clinic_app.domain.notes import plain_text_from_markdown
from clinic_app.domain.pathology import SlideSource
from clinic_app.domain.permissions import Permission
from clinic_app.domain.records import AuditAction, Modality, ReportKind
from clinic_app.domain.signals import EcgRecording
from clinic_app.reporting.data import (
    INTENDED_USE,
    EcgFigure,
    InputLine,
    ModelSummary,
    ReportData,
    ReportDecision,
    ReportSignOff,
    ReportSuggestion,
    SlideFigure,
)
from clinic_app.services.authorization import authorize
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
CancelCheck = Callable[[], bool]

#: File name endings per report kind (a folder export names files ``<case>-v<version><ext>``).
EXTENSIONS: dict[ReportKind, str] = {
    ReportKind.PDF: ".pdf",
    ReportKind.DICOM_PDF: ".dcm",
    ReportKind.FHIR: ".fhir.json",
}
MANIFEST_NAME = "manifest.json"
#: Longer side of the slide thumbnail in the report, in pixels.
THUMBNAIL_PX = 1000
#: How many of the most relevant tiles the report shows, and their side in pixels at most.
TOP_TILES = 4
TILE_PX = 256
_METADATA = "metadata.json"
_MODEL_CARD = "model_card.md"
_DATA_CARD = "data_card.md"
_METRICS = "metrics.json"


# -- results ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExportedReport:
    """One report file written and registered (its sha256 is in the reports table)."""

    path: Path  # the file, or the .zip that holds it (then ``member`` names it)
    kind: ReportKind
    sha256: str
    case_uid: str
    case_version: int = 0
    size_bytes: int = 0
    member: str | None = None

    @property
    def file_name(self) -> str:
        return self.member or self.path.name


@dataclass(frozen=True)
class ExportFailure:
    """A case whose reports could not be made, with the reason a person can act on."""

    case_uid: str
    reason: str


@dataclass(frozen=True)
class ExportSummary:
    """What a batch export did: files written, cases that failed, whether it was cancelled."""

    out: Path  # the folder or the .zip
    manifest: Path  # manifest.json in the folder, or the .zip that holds it
    reports: tuple[ExportedReport, ...]
    failures: tuple[ExportFailure, ...]
    cancelled: bool
    seconds: float
    cases_requested: int
    cases_exported: int = 0


# -- the model card ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _ModelCard:
    """The parts of a bundle's model card, metrics and data card a report shows."""

    intended_use: str
    training_data: str
    metrics: tuple[tuple[str, str], ...]
    limits: tuple[str, ...]
    calibration: str
    critical: frozenset[str] = frozenset()


_lock = threading.Lock()
#: Model cards by bundle sha256 (the sha256 of metadata.json, which pins the card files).
_cards: dict[str, _ModelCard] = {}
#: sha256 of a candidate bundle's metadata.json, by (path, mtime_ns, size).
_bundle_hashes: dict[tuple[str, int, int], str] = {}


def _bundle_candidates(settings: Settings) -> list[Path]:
    """Every bundle this installation knows: the configured one, the clinic's, the shipped."""
    found: list[Path] = []
    if settings.model_bundle is not None:
        found.append(settings.model_bundle)
    for folder in (settings.models_dir, shipped_bundles_dir()):
        if folder.is_dir():
            found.extend(sorted(p.parent for p in folder.glob(f"*/{_METADATA}")))
    return found


def _metadata_sha256(folder: Path) -> str | None:
    path = folder / _METADATA
    try:
        stat = path.stat()
    except OSError:
        return None
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _lock:
        known = _bundle_hashes.get(key)
    if known is None:
        try:
            known = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return None
        with _lock:
            _bundle_hashes[key] = known
    return known


def find_bundle(settings: Settings, bundle_sha256: str) -> Path | None:
    """The installed bundle folder whose metadata.json has this sha256 (None: not installed)."""
    for folder in _bundle_candidates(settings):
        if _metadata_sha256(folder) == bundle_sha256:
            return folder
    return None


def model_summary(settings: Settings, analysis: AnalysisInfo) -> ModelSummary:
    """The analysis's model with its card summary; says so when the bundle is not found."""
    card = _model_card(settings, analysis.bundle_sha256)
    return ModelSummary(
        name=analysis.model_name,
        version=analysis.model_version,
        bundle_sha256=analysis.bundle_sha256,
        device=analysis.device,
        intended_use=card.intended_use,
        training_data=card.training_data,
        metrics=card.metrics,
        limits=card.limits,
        calibration=card.calibration,
    )


def _model_card(settings: Settings, bundle_sha256: str) -> _ModelCard:
    with _lock:
        cached = _cards.get(bundle_sha256)
    if cached is not None:
        return cached
    folder = find_bundle(settings, bundle_sha256)
    if folder is None:
        return _missing_card(
            f"The model bundle with sha256 {bundle_sha256[:12]}… is not installed here, so its "
            "model card (training data, test metrics, limits) cannot be shown."
        )
    try:
        card = _read_card(folder)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("Cannot read the model card of %s: %s", folder, exc)
        return _missing_card(f"The model card of the bundle {folder.name} cannot be read ({exc}).")
    with _lock:
        _cards[bundle_sha256] = card
    return card


def _missing_card(reason: str) -> _ModelCard:
    return _ModelCard(
        intended_use=INTENDED_USE,
        training_data=reason,
        metrics=(),
        limits=(reason,),
        calibration="Unknown: the model card is not available",
    )


def _verified_text(folder: Path, name: str, files: Mapping[str, Any]) -> str | None:
    """A card file's text, only if it still has the sha256 metadata.json records for it."""
    path = folder / name
    if name not in files or not path.is_file():
        return None
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != str(files[name]).lower():
        raise ValueError(f"{name} does not match its recorded sha256; reinstall the bundle")
    return data.decode("utf-8")


def _read_card(folder: Path) -> _ModelCard:
    metadata = json.loads((folder / _METADATA).read_text(encoding="utf-8"))
    files = metadata.get("files", {})
    card_text = _verified_text(folder, _MODEL_CARD, files) or ""
    data_text = _verified_text(folder, _DATA_CARD, files) or ""
    metrics_text = _verified_text(folder, _METRICS, files)
    metrics: dict[str, Any] = json.loads(metrics_text) if metrics_text else {}
    critical = frozenset(
        f"{label['system']}|{label['code']}"
        for label in metadata.get("labels", ())
        if isinstance(label, Mapping) and label.get("critical") is True
    )
    return _ModelCard(
        intended_use=_intended_use(card_text),
        training_data=_training_data(metrics, data_text),
        metrics=_metrics(metrics),
        limits=_limits(card_text),
        calibration=_calibration(metrics),
        critical=critical,
    )


def _section(markdown: str, title: str) -> str:
    """The body of the ``## title`` section (up to the next heading of level 1 or 2)."""
    match = re.search(
        rf"^##\s+{re.escape(title)}\s*$(.*?)(?=^#{{1,2}}\s|\Z)", markdown, re.M | re.S | re.I
    )
    return match.group(1) if match else ""


def _intended_use(card: str) -> str:
    match = re.search(r"\*\*Intended use\.\*\*\s*(.+?)(?:\n\s*\n|\Z)", card, re.S)
    return " ".join(match.group(1).split()) if match else INTENDED_USE


def _limits(card: str) -> tuple[str, ...]:
    limits = [
        " ".join(line[2:].split())
        for line in _section(card, "Limits").splitlines()
        if line.startswith("- ")
    ]
    # Goals the bundle did not meet on its test split are limits a reader must see.
    for line in _section(card, "Goals of the demo bundle against the test split").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and "not met" in cells[3].lower():
            measured = (
                f" (target {cells[1]}, measured {cells[2]})"
                if any(ch.isdigit() for ch in cells[2])
                else ""
            )
            limits.append(f"Goal not met on the test split: {cells[0]}{measured}.")
    return tuple(limits)


def _interval(entry: Any) -> str | None:
    """``0.727 (95 % CI 0.503–0.794)`` from ``{"value": ..., "ci": [lo, hi]}``."""
    if not isinstance(entry, Mapping) or entry.get("value") is None:
        return None
    value = float(entry["value"])
    if not math.isfinite(value):
        return None
    text = f"{value:.3f}"
    ci = entry.get("ci")
    if isinstance(ci, Sequence) and len(ci) == 2 and all(v is not None for v in ci):
        text += f" (95 % CI {float(ci[0]):.3f}–{float(ci[1]):.3f})"
    return text


def _metrics(metrics: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    test = metrics.get("test")
    if not isinstance(test, Mapping):
        return ()
    out: list[tuple[str, str]] = []
    cases = test.get("cases", {}) if isinstance(test.get("cases"), Mapping) else {}
    n = cases.get("n")
    where = f"test, {int(n):,} cases" if isinstance(n, int) else "test"
    macro = test.get("macro", {})
    for key, name in (("auroc", "Macro AUROC"), ("auprc", "Macro AUPRC"), ("f1", "Macro F1")):
        text = _interval(macro.get(key)) if isinstance(macro, Mapping) else None
        if text:
            out.append((f"{name} ({where})", text))
    for label in test.get("labels", ()):
        if not isinstance(label, Mapping):
            continue
        text = _interval(label.get("auroc"))
        if text:
            counts = ""
            if label.get("positives") is not None and label.get("n") is not None:
                counts = f", {int(label['positives']):,} positive of {int(label['n']):,}"
            out.append((f"AUROC {label.get('display', label.get('label'))}{counts}", text))
    calibration = test.get("calibration")
    if isinstance(calibration, Mapping) and calibration.get("ece_raw") is not None:
        ece = f"{float(calibration['ece_raw']):.3f} before calibration"
        if calibration.get("ece_calibrated") is not None:
            ece += f", {float(calibration['ece_calibrated']):.3f} after"
        out.append(("Expected calibration error (test)", ece))
    for name, head in (test.get("extra_heads") or {}).items():
        if isinstance(head, Mapping):
            text = _interval(head.get("macro_f1"))
            if text:
                out.append((f"Macro F1 of the {name} head (test)", text))
    return tuple(out)


_CALIBRATION_METHODS = {
    "platt": "Platt scaling",
    "isotonic": "isotonic regression",
    "temperature": "temperature scaling",
}


def _calibration(metrics: Mapping[str, Any]) -> str:
    calibration = metrics.get("calibration")
    if not isinstance(calibration, Mapping) or not calibration.get("method"):
        return "Not calibrated: probabilities are the model's raw outputs"
    method = str(calibration["method"])
    text = f"{_CALIBRATION_METHODS.get(method, method).capitalize()} per label"
    if calibration.get("calibration_cases"):
        text += f" on {int(calibration['calibration_cases']):,} validation cases"
    if calibration.get("conformal_cases"):
        coverage = calibration.get("conformal_coverage")
        target = f" ({float(coverage) * 100:.0f} % target coverage)" if coverage else ""
        text += (
            f"; abstention by split-conformal sets{target} on "
            f"{int(calibration['conformal_cases']):,} validation cases"
        )
    return text


def _training_data(metrics: Mapping[str, Any], data_card: str) -> str:
    splits = metrics.get("splits")
    parts: list[str] = []
    if isinstance(splits, Mapping) and splits:
        counts = {name: split for name, split in splits.items() if isinstance(split, Mapping)}

        def cases(name: str) -> int:
            return int(counts.get(name, {}).get("cases", 0) or 0)

        composite = sum(int(s.get("composite", 0) or 0) for s in counts.values())
        synthetic = sum(int(s.get("synthetic", 0) or 0) for s in counts.values())
        total = sum(cases(name) for name in counts)
        parts.append(
            f"{total:,} cases: {cases('train'):,} for training, {cases('val'):,} for "
            f"validation and calibration, {cases('test'):,} for testing."
        )
        if composite:
            parts.append(
                f"{composite:,} are composite cases (slide, ECG and note from different real "
                "people, paired at random), so no case is one patient."
            )
        if synthetic:
            parts.append(f"{synthetic:,} are synthetic.")
    sources = _sources(data_card)
    if sources:
        parts.append(f"Public sources: {', '.join(sources)}.")
    return " ".join(parts) or "The model card does not describe its training data."


def _sources(data_card: str) -> list[str]:
    """The first column of the data card's sources table, without parenthesised details."""
    match = re.search(r"^#+\s*Sources.*?$(.*?)(?=^#|\Z)", data_card, re.M | re.S | re.I)
    if not match:
        return []
    names = []
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0] or cells[0] in ("source",) or set(cells[0]) <= {"-"}:
            continue
        names.append(" ".join(re.sub(r"\([^)]*\)", "", cells[0]).split()))
    return names


# -- building the report data --------------------------------------------------------------------
def build_report_data(
    cases: CaseService,
    settings: Settings,
    actor: Actor,
    case_uid: str,
    *,
    generated_at: datetime | None = None,
) -> ReportData:
    """Everything one case's explanation report shows (latest version, latest analysis).

    A case without an analysis still gets a report (``model`` None). An input whose stored file
    no longer matches its sha256 raises StorageError naming the case: a report never shows a
    file other than the one the case recorded."""
    detail = cases.get_case(actor, case_uid)
    summary = detail.summary
    analysis = detail.latest_analysis
    explanation = AnalysisExplanation.from_outputs(analysis.outputs) if analysis else None
    outputs: dict[str, Any] = dict(analysis.outputs) if analysis else {}
    analysed_inputs: dict[str, Any] = outputs.get("inputs") or {}
    model = model_summary(settings, analysis) if analysis is not None else None
    critical = _model_card(settings, analysis.bundle_sha256).critical if analysis else frozenset()

    slide_item = _analysed_input(detail, Modality.PATHOLOGY, analysed_inputs.get("pathology"))
    ecg_item = _analysed_input(detail, Modality.ECG, analysed_inputs.get("ecg"))
    slide_figure = None
    if slide_item is not None:
        heatmap = explanation.slide if explanation is not None else None
        slide_figure = _read_slide(
            cases, settings, actor, case_uid, slide_item, heatmap, settings.report_include_heatmaps
        )
    ecg_figure = None
    if ecg_item is not None:
        relevance = explanation.ecg if explanation is not None else None
        measurements = (
            explanation.ecg_measurements if explanation is not None else None
        ) or outputs.get("ecg_measurements")
        ecg_figure = _read_ecg(cases, settings, actor, case_uid, ecg_item, relevance, measurements)

    note = None
    if settings.report_include_note_highlights:
        note = _note(detail.latest_note, explanation)

    decided: dict[int, str] = {}
    for decision in detail.decisions:  # in the order made: the last one per suggestion wins
        if decision.suggestion_id is not None:
            decided[decision.suggestion_id] = decision.action.value
    displays = {s.id: s.display for a in detail.analyses for s in a.suggestions}
    suggestions = (
        tuple(
            ReportSuggestion(
                rank=s.rank,
                code_system=s.code_system,
                code=s.code,
                display=s.display,
                probability=s.probability,
                calibrated_probability=s.calibrated_probability,
                abstained=s.abstained,
                critical=bool(s.evidence.get("critical"))
                or f"{s.code_system}|{s.code}" in critical,
                decision=decided.get(s.id),
            )
            for s in sorted(analysis.suggestions, key=lambda item: item.rank)
        )
        if analysis is not None
        else ()
    )
    decisions = tuple(
        ReportDecision(
            action=d.action.value,
            suggestion_display=displays.get(d.suggestion_id) if d.suggestion_id else None,
            reason=d.reason,
            override_code_system=d.override_code_system,
            override_code=d.override_code,
            override_display=d.override_display,
            user=d.user,
            decided_at=d.decided_at,
        )
        for d in detail.decisions
    )
    sign_off = (
        ReportSignOff(
            final_impression=detail.sign_off.final_impression,
            meaning=detail.sign_off.meaning,
            user=detail.sign_off.user,
            signed_at=detail.sign_off.signed_at,
            content_sha256=detail.sign_off.content_sha256,
        )
        if detail.sign_off is not None
        else None
    )
    missing = (
        dict(explanation.modalities_missing)
        if explanation is not None
        else {str(k): str(v) for k, v in (outputs.get("modalities_missing") or {}).items()}
    )
    contributions = (
        dict(explanation.contributions)
        if explanation is not None
        else dict(outputs.get("contributions") or {})
    )
    gates = (
        dict(explanation.gates)
        if explanation is not None
        else {str(k): float(v) for k, v in (outputs.get("modality_weights") or {}).items()}
    )
    extra: dict[str, Any] = {}
    if analysis is not None:
        extra = {
            "analysis_id": analysis.id,
            "input_sha256s": list(analysis.input_sha256s),
            "model_notes": [str(n) for n in outputs.get("notes") or ()],
        }
    return ReportData(
        case_uid=summary.case_uid,
        case_version=summary.version,
        patient_pseudonym=summary.patient_pseudonym,
        title=summary.title,
        status=summary.status.value,
        is_composite_demo=summary.is_composite_demo,
        created_at=summary.created_at,
        analysed_at=analysis.created_at if analysis is not None else None,
        generated_at=generated_at or datetime.now(UTC),
        generated_by=actor.username,
        model=model,
        inputs=_input_lines(detail, analysis, analysed_inputs, slide_item, ecg_item),
        inputs_missing=missing,
        suggestions=suggestions,
        explained_label=explanation.label_display if explanation is not None else None,
        contributions=contributions,
        gates=gates,
        slide=slide_figure,
        ecg=ecg_figure,
        note=note,
        decisions=decisions,
        sign_off=sign_off,
        institution=settings.report_institution,
        footer=settings.report_footer,
        include_heatmaps=settings.report_include_heatmaps,
        include_note_highlights=settings.report_include_note_highlights,
        extra=extra,
    )


def _analysed_input(
    detail: CaseDetail, modality: Modality, analysed: Mapping[str, Any] | None
) -> InputInfo | None:
    """The input the analysis read (by its id), else the case's latest of that modality."""
    matching = [item for item in detail.inputs if item.modality is modality]
    if not matching:
        return None
    if analysed and analysed.get("input_id") is not None:
        for item in matching:
            if item.id == analysed["input_id"]:
                return item
        for item in matching:  # an amended version copies the rows: match by content
            if item.sha256 == analysed.get("sha256"):
                return item
    return max(matching, key=lambda item: item.id)


def _verified_path(cases: CaseService, actor: Actor, case_uid: str, item: InputInfo) -> Path:
    try:
        _, path = cases.stored_input(actor, case_uid, item.id)
    except StorageError as exc:
        raise StorageError(
            f"The report of case {case_uid} cannot be made: {exc.message}", hint=exc.hint
        ) from exc
    return path


def _read_slide(
    cases: CaseService,
    settings: Settings,
    actor: Actor,
    case_uid: str,
    item: InputInfo,
    heatmap: TileHeatmap | None,
    include_heatmaps: bool,
) -> SlideFigure:
    from clinic_app.io.slides import open_slide
    from clinic_app.services.ingest import read_limits

    path = _verified_path(cases, actor, case_uid, item)
    try:
        slide = open_slide(path, read_limits(settings))
    except InputError as exc:
        raise InputError(
            f"The stored slide {item.original_name} of case {case_uid} cannot be read for the "
            f"report: {exc}"
        ) from exc
    try:
        width, height = slide.info.dimensions
        if heatmap is not None and (
            heatmap.input_sha256 != item.sha256
            or (heatmap.level0_width, heatmap.level0_height) != (width, height)
        ):
            heatmap = None  # explains another file than the one shown
        if not include_heatmaps:
            heatmap = None
        mpp = slide.info.microns_per_pixel
        return SlideFigure(
            thumbnail=np.ascontiguousarray(slide.thumbnail(THUMBNAIL_PX)),
            level0_width=width,
            level0_height=height,
            microns_per_pixel=float(mpp[0]) if mpp else None,
            heatmap=heatmap,
            top_tiles=_top_tiles(slide, heatmap) if heatmap is not None else (),
        )
    finally:
        slide.close()


def _top_tiles(
    slide: SlideSource, heatmap: TileHeatmap
) -> tuple[tuple[npt.NDArray[np.uint8], float, int, int], ...]:
    """The most relevant tiles as RGB crops (at most TILE_PX a side), most relevant first."""
    order = heatmap.top or tuple(
        sorted(range(len(heatmap.tiles)), key=lambda i: -heatmap.tiles[i].score)
    )
    size = max(1, heatmap.tile_size_level0)
    levels = slide.info.levels
    # The coarsest level that still gives TILE_PX pixels across a tile.
    level = 0
    for index, candidate in enumerate(levels):
        if candidate.downsample <= size / TILE_PX:
            level = index
    downsample = levels[level].downsample
    out = []
    for index in order[:TOP_TILES]:
        if not 0 <= index < len(heatmap.tiles):
            continue
        tile = heatmap.tiles[index]
        side = max(1, math.ceil(size / downsample))
        crop = slide.read_region(
            level, int(tile.x / downsample), int(tile.y / downsample), side, side
        )
        if side > TILE_PX:
            from PIL import Image

            crop = np.asarray(
                Image.fromarray(crop).resize((TILE_PX, TILE_PX), Image.Resampling.BILINEAR),
                dtype=np.uint8,
            )
        out.append((np.ascontiguousarray(crop), float(tile.score), tile.x, tile.y))
    return tuple(out)


def _read_ecg(
    cases: CaseService,
    settings: Settings,
    actor: Actor,
    case_uid: str,
    item: InputInfo,
    relevance: EcgRelevanceMap | None,
    measurements: Mapping[str, Any] | None,
) -> EcgFigure:
    from clinic_app.services.ingest import load_stored, read_limits

    path = _verified_path(cases, actor, case_uid, item)
    try:
        recording = load_stored(path, read_limits(settings))
    except InputError as exc:
        raise InputError(
            f"The stored ECG {item.original_name} of case {case_uid} cannot be read for the "
            f"report: {exc}"
        ) from exc
    if not isinstance(recording, EcgRecording):
        raise InputError(
            f"The stored ECG {item.original_name} of case {case_uid} is not an ECG recording."
        )
    if relevance is not None and (
        relevance.input_sha256 != item.sha256
        or tuple(relevance.lead_names) != tuple(recording.lead_names)
    ):
        relevance = None
    return EcgFigure(
        recording=recording,
        relevance=relevance,
        measurements=format_measurements(measurements or {}),
    )


#: ECG measurement key -> (name in the report, unit, decimals).
_MEASUREMENTS: tuple[tuple[str, str, str, int], ...] = (
    ("heart_rate_bpm", "Heart rate", "bpm", 0),
    ("rr_mean_ms", "Mean RR interval", "ms", 0),
    ("pr_ms", "PR interval", "ms", 0),
    ("qrs_ms", "QRS duration", "ms", 0),
    ("qt_ms", "QT interval", "ms", 0),
    ("qtc_bazett_ms", "QTc (Bazett)", "ms", 0),
    ("qtc_fridericia_ms", "QTc (Fridericia)", "ms", 0),
    ("sdnn_ms", "SDNN", "ms", 0),
    ("rmssd_ms", "RMSSD", "ms", 0),
    ("rr_cv", "RR variability (CV)", "%", 1),
    ("beat_count", "Beats detected", "beats", 0),
    ("measured_seconds", "Measured over", "s", 1),
)


def format_measurements(values: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """The ECG measurements as (value text, unit), in reading order; unmeasurable ones say so."""
    out: dict[str, tuple[str, str]] = {}
    for key, name, unit, decimals in _MEASUREMENTS:
        if key not in values:
            continue
        value = values[key]
        if value is None or not isinstance(value, int | float) or not math.isfinite(value):
            out[name] = ("not measurable", "")
            continue
        number = float(value) * (100.0 if key == "rr_cv" else 1.0)
        out[name] = (f"{number:,.{decimals}f}", unit)
    return out


def _note(note: NoteInfo | None, explanation: AnalysisExplanation | None) -> NoteHighlights | None:
    """The highlighted note the model read; without an explanation, the latest note plainly."""
    if explanation is not None and explanation.note is not None:
        return explanation.note
    if note is None:
        return None
    text = plain_text_from_markdown(note.text)
    return NoteHighlights(
        note_version=note.version,
        text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        text=text,
        words=(),
    )


def _input_lines(
    detail: CaseDetail,
    analysis: AnalysisInfo | None,
    analysed: Mapping[str, Any],
    slide_item: InputInfo | None,
    ecg_item: InputInfo | None,
) -> tuple[InputLine, ...]:
    lines: list[InputLine] = []

    def used(modality: str, sha256: str | None) -> bool:
        entry = analysed.get(modality)
        return bool(
            isinstance(entry, Mapping)
            and entry.get("used")
            and (sha256 is None or entry.get("sha256") == sha256)
        )

    for item in (slide_item, ecg_item):
        if item is not None:
            modality = item.modality.value
            lines.append(
                InputLine(modality, _describe(item), used(modality, item.sha256), item.sha256)
            )
    for item in detail.inputs:  # inputs added after the analysis, not part of it
        if item not in (slide_item, ecg_item) and item.modality in (
            Modality.PATHOLOGY,
            Modality.ECG,
        ):
            lines.append(
                InputLine(
                    item.modality.value,
                    f"{_describe(item)} (not analysed: another input of this kind was)",
                    False,
                    item.sha256,
                )
            )
    note = detail.latest_note
    if note is not None:
        words = len(plain_text_from_markdown(note.text).split())
        entry = analysed.get("note")
        text = f"Clinical note, version {note.version}, {words:,} words"
        if isinstance(entry, Mapping) and entry.get("sha256") not in (None, note.sha256):
            text += f" (the analysis read version {entry.get('version')})"
        lines.append(InputLine("note", text, used("note", None), note.sha256))
    tabular = analysed.get("tabular")
    if isinstance(tabular, Mapping):
        fields = ", ".join(
            _VITAL_NAMES.get(str(f), str(f).replace("_", " ")) for f in tabular.get("fields", ())
        )
        lines.append(
            InputLine("tabular", f"Vital signs and demographics: {fields}", used("tabular", None))
        )
    elif detail.vitals:
        lines.append(InputLine("tabular", "Vital signs", False))
    if analysis is None:
        lines = [InputLine(ln.modality, ln.description, False, ln.sha256) for ln in lines]
    return tuple(lines)


_VITAL_NAMES = {
    "age_years": "age",
    "heart_rate_bpm": "heart rate",
    "systolic_mmhg": "systolic pressure",
    "diastolic_mmhg": "diastolic pressure",
    "spo2_percent": "SpO2",
    "temperature_c": "temperature",
    "respiratory_rate_per_min": "respiratory rate",
}


def _describe(item: InputInfo) -> str:
    meta = item.metadata
    parts = [item.original_name]
    if item.modality is Modality.PATHOLOGY:
        if meta.get("width") and meta.get("height"):
            parts.append(f"{int(meta['width']):,} × {int(meta['height']):,} px")
        mpp = meta.get("microns_per_pixel")
        if isinstance(mpp, Sequence) and mpp and mpp[0]:
            parts.append(f"{float(mpp[0]):.3f} µm/px")
        if int(meta.get("levels", 1) or 1) > 1:
            parts.append(f"{int(meta['levels'])} levels")
    elif item.modality is Modality.ECG:
        if meta.get("leads"):
            parts.append(f"{len(meta['leads'])} leads")
        if meta.get("sampling_rate_hz"):
            parts.append(f"{float(meta['sampling_rate_hz']):g} Hz")
        if meta.get("duration_s"):
            parts.append(f"{float(meta['duration_s']):.1f} s")
    return ", ".join(parts)


# -- rendering and writing -----------------------------------------------------------------------
def render(data: ReportData, kinds: Iterable[ReportKind]) -> dict[ReportKind, bytes]:
    """The report in each asked format; the PDF is rendered once (DICOM and FHIR carry it)."""
    from clinic_app.reporting.pdf import render_pdf

    wanted = list(dict.fromkeys(kinds))
    pdf = render_pdf(data)
    out: dict[ReportKind, bytes] = {}
    for kind in wanted:
        if kind is ReportKind.PDF:
            out[kind] = pdf
        elif kind is ReportKind.DICOM_PDF:
            from clinic_app.reporting.dicom import encapsulated_pdf

            out[kind] = encapsulated_pdf(pdf, data)
        elif kind is ReportKind.FHIR:
            from clinic_app.reporting.fhir import diagnostic_report

            resource = diagnostic_report(data, pdf=pdf)
            out[kind] = (json.dumps(resource, indent=2, ensure_ascii=False) + "\n").encode()
        else:  # pragma: no cover - ReportKind is closed
            raise InputError(f"Unknown report format {kind}.")
    return out


def report_file_name(case_uid: str, version: int, kind: ReportKind) -> str:
    return f"{case_uid}-v{version}{EXTENSIONS[kind]}"


def _write_atomic(target: Path, data: bytes, *, overwrite: bool) -> None:
    """Write ``data`` to ``target`` through a temp file in its folder; refuse to overwrite
    unless asked (os.link makes the no-overwrite case atomic where the file system allows)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not overwrite and target.exists():
        raise _exists(target)
    handle, temp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part"
    )
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if overwrite:
            temp.replace(target)
            return
        try:
            os.link(temp, target)
        except FileExistsError as exc:
            raise _exists(target) from exc
        except OSError:  # no hard links here (some network or FAT volumes)
            if target.exists():
                raise _exists(target) from None
            temp.replace(target)
    except OSError as exc:
        raise StorageError(
            f"The report {target} cannot be written ({exc.strerror or exc}).",
            hint="Choose a folder you can write to with enough free space.",
        ) from exc
    finally:
        temp.unlink(missing_ok=True)


def _exists(target: Path) -> InputError:
    return InputError(
        f"{target} exists already; it was not overwritten.",
        hint="Choose another name or folder, or pass --overwrite to replace it.",
    )


def _require_export(cases: CaseService, actor: Actor, case_uid: str | None) -> None:
    """Refuse (audited) before any work when the actor may not export reports."""
    authorize(
        cases.database,
        actor,
        Permission.REPORT_EXPORT,
        "report.export",
        AuditAction.EXECUTE,
        case_uid=case_uid,
    )


def _is_folder_target(out: Path) -> bool:
    return out.is_dir() or str(out).endswith(("/", os.sep))


def export_report(
    cases: CaseService,
    settings: Settings,
    actor: Actor,
    case_uid: str,
    kind: ReportKind,
    out: Path,
    *,
    overwrite: bool = False,
    generated_at: datetime | None = None,
) -> ExportedReport:
    """Render one case's report as ``kind`` into the file ``out`` (or, when ``out`` is a
    folder, ``<case>-v<version>.<ext>`` in it), then record its sha256 (audited)."""
    _require_export(cases, actor, case_uid)
    data = build_report_data(cases, settings, actor, case_uid, generated_at=generated_at)
    out = Path(out)
    target = (
        out / report_file_name(data.case_uid, data.case_version, kind)
        if (_is_folder_target(out))
        else out
    )
    if not overwrite and target.exists():
        raise _exists(target)
    payload = render(data, [kind])[kind]
    _write_atomic(target, payload, overwrite=overwrite)
    return _record(cases, actor, data, kind, target, payload)


def _record(
    cases: CaseService,
    actor: Actor,
    data: ReportData,
    kind: ReportKind,
    path: Path,
    payload: bytes,
    member: str | None = None,
    container: Path | None = None,
) -> ExportedReport:
    """Register a written file; if that fails the file is removed (no unrecorded reports)."""
    try:
        location = f"{container}!{member}" if container is not None and member else None
        sha = cases.record_report(actor, data.case_uid, kind, path, location=location)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return ExportedReport(
        path=container or path,
        kind=kind,
        sha256=sha,
        case_uid=data.case_uid,
        case_version=data.case_version,
        size_bytes=len(payload),
        member=member,
    )


@dataclass
class _Manifest:
    generated_at: datetime
    generated_by: str
    kinds: tuple[ReportKind, ...]
    cases_requested: int
    reports: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    cancelled: bool = False

    def add(self, report: ExportedReport, data: ReportData) -> None:
        model = data.model
        self.reports.append(
            {
                "case_uid": report.case_uid,
                "version": report.case_version,
                "kind": report.kind.value,
                "file": report.file_name,
                "sha256": report.sha256,
                "bytes": report.size_bytes,
                "generated_at": data.generated_at.isoformat(),
                "model": (
                    {
                        "name": model.name,
                        "version": model.version,
                        "bundle_sha256": model.bundle_sha256,
                    }
                    if model is not None
                    else None
                ),
                "composite_demo": data.is_composite_demo,
                "status": data.status,
            }
        )

    def to_bytes(self) -> bytes:
        body = {
            "format": 1,
            "generator": f"ClinicFusion {__version__}",
            "generated_at": self.generated_at.isoformat(),
            "generated_by": self.generated_by,
            "kinds": [kind.value for kind in self.kinds],
            "cases_requested": self.cases_requested,
            "cases_exported": len({r["case_uid"] for r in self.reports}),
            "cancelled": self.cancelled,
            "reports": self.reports,
            "failures": self.failures,
            "intended_use": INTENDED_USE,
        }
        return (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def export_reports(
    cases: CaseService,
    settings: Settings,
    actor: Actor,
    case_uids: Sequence[str],
    out: Path,
    *,
    kinds: Sequence[ReportKind] = (ReportKind.PDF,),
    overwrite: bool = False,
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
    generated_at: datetime | None = None,
) -> ExportSummary:
    """Export many cases' reports into a folder, or a .zip when ``out`` ends with .zip, with
    ``manifest.json`` (files, sha256s, models, failures). A case that fails is listed with its
    reason and the others go on; ``cancel()`` is checked between cases (what is done stays)."""
    started = time.perf_counter()
    out = Path(out)
    kinds = tuple(dict.fromkeys(kinds))
    if not kinds:
        raise InputError("No report format was chosen.", hint="Choose pdf, dicom or fhir.")
    uids = list(dict.fromkeys(case_uids))
    if not uids:
        raise InputError("No cases were chosen for the report export.")
    _require_export(cases, actor, None)
    as_zip = out.suffix.lower() == ".zip"
    stamp = generated_at or datetime.now(UTC)
    manifest = _Manifest(stamp, actor.username, kinds, len(uids))
    written: list[ExportedReport] = []
    if as_zip:
        if out.exists() and not overwrite:
            raise _exists(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
        zip_temp = staging / out.name
        archive: zipfile.ZipFile | None = zipfile.ZipFile(zip_temp, "w")
        folder = staging
    else:
        folder = out
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / MANIFEST_NAME).exists() and not overwrite:
            raise _exists(folder / MANIFEST_NAME)
        archive = None
        staging = None
    try:
        for position, case_uid in enumerate(uids):
            if cancel is not None and cancel():
                manifest.cancelled = True
                break
            if progress is not None:
                progress(position / len(uids), f"Report of case {case_uid}…")
            try:
                data = build_report_data(cases, settings, actor, case_uid, generated_at=stamp)
                payloads = render(data, kinds)
                for kind, payload in payloads.items():
                    name = report_file_name(data.case_uid, data.case_version, kind)
                    if archive is not None:
                        staged = folder / name
                        _write_atomic(staged, payload, overwrite=True)
                        report = _record(cases, actor, data, kind, staged, payload, name, out)
                        info = zipfile.ZipInfo(name, date_time=_zip_time(stamp))
                        compress = (
                            zipfile.ZIP_DEFLATED
                            if kind is ReportKind.FHIR
                            else (zipfile.ZIP_STORED)
                        )
                        archive.writestr(info, payload, compress_type=compress)
                        staged.unlink()
                    else:
                        target = folder / name
                        _write_atomic(target, payload, overwrite=overwrite)
                        report = _record(cases, actor, data, kind, target, payload)
                    written.append(report)
                    manifest.add(report, data)
            except ClinicError as exc:
                manifest.failures.append({"case_uid": case_uid, "reason": str(exc)})
            except Exception as exc:  # a bug in one case must not lose the other 999
                log.exception("Unexpected error exporting the report of %s", case_uid)
                manifest.failures.append(
                    {
                        "case_uid": case_uid,
                        "reason": f"Unexpected error ({type(exc).__name__}: {exc}); "
                        "see the log file.",
                    }
                )
        body = manifest.to_bytes()
        if archive is not None:
            info = zipfile.ZipInfo(MANIFEST_NAME, date_time=_zip_time(stamp))
            archive.writestr(info, body, compress_type=zipfile.ZIP_DEFLATED)
            archive.close()
            archive = None
            with zip_temp.open("rb+") as handle:
                os.fsync(handle.fileno())
            if not overwrite and out.exists():
                raise _exists(out)
            zip_temp.replace(out)
            manifest_path = out
        else:
            manifest_path = folder / MANIFEST_NAME
            _write_atomic(manifest_path, body, overwrite=True)
    finally:
        if archive is not None:
            archive.close()
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    if progress is not None:
        progress(1.0, "Reports exported.")
    return ExportSummary(
        out=out,
        manifest=manifest_path,
        reports=tuple(written),
        failures=tuple(ExportFailure(f["case_uid"], f["reason"]) for f in manifest.failures),
        cancelled=manifest.cancelled,
        seconds=round(time.perf_counter() - started, 3),
        cases_requested=len(uids),
        cases_exported=len({r.case_uid for r in written}),
    )


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    utc = moment.astimezone(UTC)
    year = min(max(utc.year, 1980), 2107)
    return (year, utc.month, utc.day, utc.hour, utc.minute, utc.second)


def clear_caches() -> None:
    """Forget the cached model cards and bundle hashes (tests; a bundle reinstalled in place)."""
    with _lock:
        _cards.clear()
        _bundle_hashes.clear()
