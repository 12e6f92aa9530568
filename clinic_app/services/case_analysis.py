"""Analyse a stored case with the model and record the result; open a case's inputs for viewing.

``analyse_case`` is an Orange3-style long job: a plain function that reports
``progress(fraction, message)`` and checks ``cancel()`` between its steps, so the GUI runs it
in a worker and a test calls it directly. Inputs are read from the case store only after their
sha256 is checked again (``CaseService.stored_input``); they were de-identified and validated
when imported, so they are read in-process. Nothing is stored unless the whole run succeeds.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from clinic_app.config.settings import Settings
from clinic_app.domain.cases import (
    AnalysisInfo,
    CaseDetail,
    InputInfo,
    NewAnalysis,
    NewSuggestion,
    NoteInfo,
)
from clinic_app.domain.errors import Cancelled, InputError
from clinic_app.domain.explanations import (
    EXPLANATION_KEY,
    AnalysisExplanation,
    EcgRelevanceMap,
    NoteHighlights,
    TileHeatmap,
    TileScore,
    WordRelevance,
)
from clinic_app.domain.notes import plain_text_from_markdown
from clinic_app.domain.pathology import SlideSource
from clinic_app.domain.records import Modality
from clinic_app.domain.signals import EcgRecording
from clinic_app.io.limits import DEFAULT_LIMITS, ReadLimits
from clinic_app.services.cases import CaseService
from clinic_app.services.context import Actor

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from clinic_app.services.model_host import ModelHost
    from model.predictor import CaseInput, Prediction

Progress = Callable[[float, str], None]
CancelCheck = Callable[[], bool]

#: Smallest ECG relevance bin (40 ms = one small square of the ECG grid at 25 mm/s).
ECG_BIN_S = 0.04
#: At most this many bins per lead, so a stored explanation stays small (tens of kB).
MAX_ECG_BINS = 500
#: Characters of context either side of a relevant note word in a suggestion's evidence.
SNIPPET_CONTEXT = 40
#: How many note words / tiles a suggestion's evidence lists.
EVIDENCE_ITEMS = 5

# Which ECG measurements are evidence for which SNOMED CT finding (others: all of them).
_SNOMED = "http://snomed.info/sct"
_RATE = ("heart_rate_bpm", "rr_mean_ms", "pr_ms", "beat_count", "measured_seconds")
_IRREGULARITY = ("heart_rate_bpm", "rr_cv", "sdnn_ms", "rmssd_ms", "beat_count")
_RELEVANT_MEASUREMENTS: dict[str, tuple[str, ...]] = {
    "426783006": _RATE,  # sinus rhythm
    "427084000": _RATE,  # sinus tachycardia
    "426177001": _RATE,  # sinus bradycardia
    "164889003": _IRREGULARITY,  # atrial fibrillation
    "284470004": (*_IRREGULARITY, "pr_ms"),  # premature atrial contraction
    "427172004": (*_IRREGULARITY, "qrs_ms"),  # premature ventricular contractions
    "363346000": (),  # malignant neoplastic disease: the ECG is no evidence
}


# -- what the viewers need -------------------------------------------------------------------
@dataclass(frozen=True)
class CaseViews:
    """A case's inputs opened for the viewers. The caller closes ``slide`` (or calls close())."""

    case: CaseDetail
    slide: SlideSource | None
    slide_input: InputInfo | None
    ecg: EcgRecording | None
    ecg_input: InputInfo | None
    note: NoteInfo | None
    vitals: dict[str, Any] | None

    def close(self) -> None:
        if self.slide is not None:
            self.slide.close()


def latest_input(detail: CaseDetail, modality: Modality) -> InputInfo | None:
    """The most recently added input of one modality (the one the viewers and model use)."""
    matching = [item for item in detail.inputs if item.modality is modality]
    return max(matching, key=lambda item: item.id) if matching else None


def _open_slide_file(path: Path, item: InputInfo, case_uid: str, limits: ReadLimits) -> SlideSource:
    from clinic_app.io.slides import open_slide

    try:
        return open_slide(path, limits)
    except InputError as exc:
        raise InputError(
            f"The stored slide {item.original_name} of case {case_uid} cannot be read: {exc}"
        ) from exc


def _read_ecg_file(path: Path, item: InputInfo, case_uid: str, limits: ReadLimits) -> EcgRecording:
    from clinic_app.services.ingest import load_stored

    try:
        loaded = load_stored(path, limits)
    except InputError as exc:
        raise InputError(
            f"The stored ECG {item.original_name} of case {case_uid} cannot be read: {exc}"
        ) from exc
    if not isinstance(loaded, EcgRecording):
        raise InputError(
            f"The stored ECG {item.original_name} of case {case_uid} is not an ECG recording."
        )
    return loaded


def load_case_views(
    cases: CaseService, actor: Actor, case_uid: str, *, limits: ReadLimits = DEFAULT_LIMITS
) -> CaseViews:
    """Open the latest slide and ECG of a case (verified against their sha256), its latest note
    and vitals. Slow (file reads): call it off the GUI thread."""
    detail = cases.get_case(actor, case_uid)
    slide_item = latest_input(detail, Modality.PATHOLOGY)
    ecg_item = latest_input(detail, Modality.ECG)
    slide = None
    if slide_item is not None:
        _, slide_path = cases.stored_input(actor, case_uid, slide_item.id)
        slide = _open_slide_file(slide_path, slide_item, case_uid, limits)
    try:
        ecg = None
        if ecg_item is not None:
            _, ecg_path = cases.stored_input(actor, case_uid, ecg_item.id)
            ecg = _read_ecg_file(ecg_path, ecg_item, case_uid, limits)
    except BaseException:
        if slide is not None:
            slide.close()
        raise
    return CaseViews(
        case=detail,
        slide=slide,
        slide_input=slide_item,
        ecg=ecg,
        ecg_input=ecg_item,
        note=detail.latest_note,
        vitals=dict(detail.vitals[-1]) if detail.vitals else None,
    )


# -- analysis --------------------------------------------------------------------------------
class _Steps:
    """Monotone progress and the cancel check between steps."""

    def __init__(self, progress: Progress | None, cancel: CancelCheck | None) -> None:
        self._progress = progress
        self._cancel = cancel
        self._fraction = 0.0

    def step(self, fraction: float, message: str) -> None:
        if self._cancel is not None and self._cancel():
            raise Cancelled()
        self._fraction = max(self._fraction, min(1.0, fraction))
        if self._progress is not None:
            self._progress(self._fraction, message)

    def done(self, message: str) -> None:
        """The last step: reported even if cancel turned true after the result was stored."""
        self._cancel = None
        self.step(1.0, message)


def _model_vitals(detail: CaseDetail) -> dict[str, Any] | None:
    """The latest vitals plus the patient's age and sex, as the model's tabular input names."""
    values: dict[str, Any] = {}
    if detail.birth_year is not None:
        values["age_years"] = float(datetime.now(UTC).year - detail.birth_year)
    if detail.sex:
        values["sex"] = detail.sex
    if detail.vitals:
        latest = detail.vitals[-1]
        values.update({k: v for k, v in latest.items() if k != "measured_at" and v is not None})
    return values or None


@dataclass(frozen=True)
class ExplainContext:
    """What turning a Prediction into stored results needs to know about the inputs, as plain
    (picklable) values, so it runs wherever the model ran: in-process or in the model host."""

    slide_sha256: str | None = None
    slide_size: tuple[int, int] | None = None  # level-0 width, height
    ecg_sha256: str | None = None
    ecg_lead_names: tuple[str, ...] = ()
    ecg_duration_s: float = 0.0
    note_version: int | None = None
    note_text: str | None = None


@dataclass(frozen=True)
class ConvertedPrediction:
    """A Prediction as app objects (no model classes: unpickling those would import torch)."""

    model_name: str
    model_version: str
    bundle_sha256: str
    device: str
    suggestions: list[NewSuggestion]
    outputs: dict[str, Any]
    timings_ms: dict[str, float]
    modalities_used: tuple[str, ...]


def convert_prediction(
    prediction: Prediction,
    context: ExplainContext,
    *,
    window_s: float,
    calibrated: bool,
    device: str,
) -> ConvertedPrediction:
    """Suggestions with their evidence and the outputs (with the explanation) to store."""
    explanation = build_explanation(prediction, context, window_s=window_s)
    outputs = prediction.as_dict()
    outputs.pop("explanation", None)
    outputs[EXPLANATION_KEY] = explanation.to_json() if explanation is not None else None
    return ConvertedPrediction(
        model_name=prediction.model.name,
        model_version=prediction.model.version,
        bundle_sha256=prediction.model.sha256,
        device=device,
        suggestions=_suggestions(prediction, explanation, calibrated),
        outputs=outputs,
        timings_ms=dict(prediction.timings_ms),
        modalities_used=tuple(prediction.modalities_used),
    )


def predictor_facts(predictor: Any) -> tuple[float, bool, str]:
    """(ECG window seconds, whether probabilities are calibrated, device text) of a Predictor."""
    loaded = predictor.load()
    plan = predictor.plan
    device = plan.device + (f" ({plan.autocast_dtype})" if plan.autocast_dtype else "")
    return float(loaded.config.ecg.window_s), loaded.calibration is not None, device


def convert_in_model_host(prediction: Prediction, request: Any) -> ConvertedPrediction:
    """``ModelHost.predict``'s converter: runs in the model process, next to the predictor."""
    from clinic_app.services.analysis import get_predictor

    predictor = get_predictor(Path(request.bundle_dir), request.device, explain=True)
    window_s, calibrated, device = predictor_facts(predictor)
    context: ExplainContext = request.extra["context"]
    return convert_prediction(
        prediction, context, window_s=window_s, calibrated=calibrated, device=device
    )


@dataclass(frozen=True)
class CaseRequest:
    """One case as the model reads it: its latest inputs (once opened: the verified slide and
    ECG) and what storing the result needs. Shared by ``analyse_case`` and the batch worker."""

    case_uid: str
    slide_item: InputInfo | None
    ecg_item: InputInfo | None
    note: NoteInfo | None
    vitals: dict[str, Any] | None
    slide: SlideSource | None = None
    slide_path: Path | None = None
    recording: EcgRecording | None = None
    ecg_path: Path | None = None
    context: ExplainContext = ExplainContext()

    def model_input(self) -> CaseInput:
        """The model's input (call after ``open_case_request``; imports the model package)."""
        from model.predictor import CaseInput, EcgInput

        ecg = None
        if self.recording is not None:
            ecg = EcgInput(
                self.recording.samples,
                self.recording.sampling_rate_hz,
                tuple(self.recording.lead_names),
                self.recording.units,
            )
        return CaseInput(
            image=self.slide,
            ecg=ecg,
            note=self.context.note_text,
            vitals=self.vitals,
            case_id=self.case_uid,
        )


def case_request(detail: CaseDetail) -> CaseRequest:
    """What of the case the model reads; InputError when there is nothing to analyse."""
    case_uid = detail.summary.case_uid
    request = CaseRequest(
        case_uid=case_uid,
        slide_item=latest_input(detail, Modality.PATHOLOGY),
        ecg_item=latest_input(detail, Modality.ECG),
        note=detail.latest_note,
        vitals=_model_vitals(detail),
    )
    if (
        request.slide_item is None
        and request.ecg_item is None
        and request.note is None
        and not request.vitals
    ):
        raise InputError(
            f"Case {case_uid} has nothing to analyse yet.",
            hint="Add a slide or image, an ECG, a note or vital signs first.",
        )
    return request


def open_case_request(
    cases: CaseService,
    actor: Actor,
    request: CaseRequest,
    limits: ReadLimits,
    stack: ExitStack,
    step: Progress | None = None,
) -> CaseRequest:
    """Check the stored files against their sha256 and open them (the slide is closed by
    ``stack``); ``step(fraction, message)`` is called before each file."""
    case_uid = request.case_uid
    slide = slide_path = None
    if request.slide_item is not None:
        if step is not None:
            step(0.05, "Checking and opening the slide…")
        _, slide_path = cases.stored_input(actor, case_uid, request.slide_item.id)
        slide = _open_slide_file(slide_path, request.slide_item, case_uid, limits)
        stack.callback(slide.close)
    recording = ecg_path = None
    if request.ecg_item is not None:
        if step is not None:
            step(0.12, "Checking and reading the ECG…")
        _, ecg_path = cases.stored_input(actor, case_uid, request.ecg_item.id)
        recording = _read_ecg_file(ecg_path, request.ecg_item, case_uid, limits)
    note = request.note
    context = ExplainContext(
        slide_sha256=request.slide_item.sha256 if request.slide_item is not None else None,
        slide_size=slide.info.dimensions if slide is not None else None,
        ecg_sha256=request.ecg_item.sha256 if request.ecg_item is not None else None,
        ecg_lead_names=tuple(recording.lead_names) if recording is not None else (),
        ecg_duration_s=recording.duration_s if recording is not None else 0.0,
        note_version=note.version if note is not None else None,
        note_text=plain_text_from_markdown(note.text) if note is not None else None,
    )
    return replace(
        request,
        slide=slide,
        slide_path=slide_path,
        recording=recording,
        ecg_path=ecg_path,
        context=context,
    )


def store_converted(
    cases: CaseService,
    actor: Actor,
    request: CaseRequest,
    converted: ConvertedPrediction,
    timings_ms: Mapping[str, float],
    *,
    extra_outputs: Mapping[str, Any] | None = None,
    in_transaction: Callable[[Session, int], None] | None = None,
) -> AnalysisInfo:
    """Record the model's converted result for the case, with which inputs it read (audited);
    ``in_transaction(session, analysis_id)`` runs inside the same commit (batch items)."""
    used = set(converted.modalities_used)
    inputs: dict[str, dict[str, Any]] = {}
    hashes: list[str] = []
    if request.slide_item is not None:
        inputs["pathology"] = _input_entry(request.slide_item, "pathology" in used)
        hashes.append(request.slide_item.sha256)
    if request.ecg_item is not None:
        inputs["ecg"] = _input_entry(request.ecg_item, "ecg" in used)
        hashes.append(request.ecg_item.sha256)
    note = request.note
    if note is not None:
        inputs["note"] = {"version": note.version, "sha256": note.sha256, "used": "note" in used}
        hashes.append(note.sha256)
    if request.vitals:
        inputs["tabular"] = {"fields": sorted(request.vitals), "used": "tabular" in used}
    new = NewAnalysis(
        model_name=converted.model_name,
        model_version=converted.model_version,
        bundle_sha256=converted.bundle_sha256,
        input_sha256s=hashes,
        device=converted.device,
        suggestions=converted.suggestions,
        timings_ms=dict(timings_ms),
        outputs={**converted.outputs, "inputs": inputs, **(extra_outputs or {})},
    )
    return cases.record_analysis(actor, request.case_uid, new, in_transaction=in_transaction)


def analyse_case(
    cases: CaseService,
    settings: Settings,
    actor: Actor,
    case_uid: str,
    *,
    bundle: Path | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    cancel: CancelCheck | None = None,
    host: ModelHost | None = None,
) -> AnalysisInfo:
    """Run the model (with explanations) on the case's latest slide, ECG, note and vitals and
    store the analysis. Raises Cancelled when ``cancel()`` turns true between steps; on any
    failure nothing is stored.

    With ``host`` (``services.model_host.model_host()``) the model runs in that child process
    and this process never imports torch (the desktop app's choice); without, in-process."""
    from clinic_app.services.analysis import resolve_bundle
    from clinic_app.services.ingest import read_limits

    steps = _Steps(progress, cancel)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    steps.step(0.0, "Opening the case…")
    request = case_request(cases.get_case(actor, case_uid))
    limits = read_limits(settings)
    bundle_dir = resolve_bundle(settings, bundle)
    with ExitStack() as stack:
        clock = time.perf_counter()
        request = open_case_request(cases, actor, request, limits, stack, steps.step)
        timings["read_inputs"] = _ms(clock)
        if host is not None:
            stack.close()  # the model process reads the verified files itself
            converted = _run_in_host(host, steps, timings, bundle_dir, device, request, cancel)
        else:
            converted = _run_in_process(steps, timings, bundle_dir, device, request)

    steps.step(0.95, "Saving the analysis…")
    timings_ms = {**converted.timings_ms, **timings, "total_ms": _ms(started)}
    info = store_converted(cases, actor, request, converted, timings_ms)
    steps.done("Analysis done.")
    return info


def _run_in_process(
    steps: _Steps,
    timings: dict[str, float],
    bundle_dir: Path,
    device: str,
    request: CaseRequest,
) -> ConvertedPrediction:
    from clinic_app.services.analysis import get_predictor, model_errors

    steps.step(0.2, "Loading the model…")
    clock = time.perf_counter()
    predictor = get_predictor(bundle_dir, device, explain=True)
    with model_errors():
        window_s, calibrated, device_text = predictor_facts(predictor)
    timings["load_model"] = _ms(clock)

    steps.step(0.35, "Analysing the case and explaining the result…")
    case_input = request.model_input()
    clock = time.perf_counter()
    with model_errors():
        prediction = predictor.predict([case_input])[0]
    timings["predict"] = _ms(clock)
    steps.step(0.9, "Preparing the explanation…")
    return convert_prediction(
        prediction, request.context, window_s=window_s, calibrated=calibrated, device=device_text
    )


def _run_in_host(
    host: ModelHost,
    steps: _Steps,
    timings: dict[str, float],
    bundle_dir: Path,
    device: str,
    request: CaseRequest,
    cancel: CancelCheck | None,
) -> ConvertedPrediction:
    from clinic_app.services.model_host import ModelRequest

    steps.step(0.2, "Loading the model…")
    clock = time.perf_counter()
    host.load(bundle_dir, device, cancel=cancel)
    timings["load_model"] = _ms(clock)
    steps.step(0.35, "Analysing the case and explaining the result…")
    model_request = ModelRequest(
        bundle_dir=str(bundle_dir),
        device=device,
        image_path=str(request.slide_path) if request.slide_path is not None else None,
        ecg_path=str(request.ecg_path) if request.ecg_path is not None else None,
        note=request.context.note_text,
        vitals=request.vitals,
        case_id=request.case_uid,
        explain=True,
        extra={"context": request.context},
    )
    clock = time.perf_counter()
    converted: ConvertedPrediction = host.predict(
        model_request, convert=convert_in_model_host, cancel=cancel
    )
    timings["predict"] = _ms(clock)
    steps.step(0.9, "Preparing the explanation…")
    return converted


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)


def _input_entry(item: InputInfo, used: bool) -> dict[str, Any]:
    return {
        "input_id": item.id,
        "name": item.original_name,
        "sha256": item.sha256,
        "used": used,
    }


# -- explanation -----------------------------------------------------------------------------
def build_explanation(
    prediction: Prediction, context: ExplainContext, *, window_s: float
) -> AnalysisExplanation | None:
    """The model's Explanation as the domain object the workspace draws (None without one)."""
    explained = prediction.explanation
    if explained is None:
        return None
    label = str(explained.label)
    display = next(
        (s.display for s in prediction.suggestions if f"{s.system}|{s.code}" == label), label
    )
    heatmap = None
    if (
        explained.tiles is not None
        and context.slide_size is not None
        and context.slide_sha256 is not None
    ):
        heatmap = _tile_heatmap(explained.tiles, context.slide_size, context.slide_sha256)
    ecg_map = None
    if explained.ecg is not None and context.ecg_sha256 is not None and context.ecg_lead_names:
        ecg_map = ecg_relevance_map(
            explained.ecg,
            context.ecg_lead_names,
            context.ecg_duration_s,
            context.ecg_sha256,
            window_s,
        )
    highlights = None
    text = context.note_text
    if explained.note is not None and text is not None:
        highlights = NoteHighlights(
            note_version=context.note_version,
            text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            text=text,
            words=tuple(
                WordRelevance(int(span.start), int(span.end), float(span.score))
                for span in explained.note
                if 0 <= int(span.start) < int(span.end) <= len(text)
            ),
        )
    return AnalysisExplanation(
        label=label,
        label_display=display,
        contributions=dict(prediction.contributions),
        gates=dict(prediction.modality_weights),
        modalities_used=tuple(prediction.modalities_used),
        modalities_missing=dict(prediction.modalities_missing),
        slide=heatmap,
        ecg=ecg_map,
        note=highlights,
        ecg_measurements=(
            dict(prediction.ecg_measurements) if prediction.ecg_measurements else None
        ),
    )


def _tile_heatmap(tiles: Any, size: tuple[int, int], sha256: str) -> TileHeatmap:
    coords = np.asarray(tiles.coords_level0, dtype=np.int64).reshape(-1, 2)
    attention = np.asarray(tiles.attention, dtype=np.float64).reshape(-1)
    peak = float(attention.max()) if attention.size else 0.0
    scores = attention / peak if peak > 0 else np.zeros_like(attention)
    width, height = size
    return TileHeatmap(
        input_sha256=sha256,
        level0_width=int(width),
        level0_height=int(height),
        tile_size_level0=round(float(tiles.tile_size_level0)),
        tiles=tuple(
            TileScore(int(x), int(y), float(s)) for (x, y), s in zip(coords, scores, strict=True)
        ),
        top=tuple(int(i) for i in tiles.top_tiles),
    )


def ecg_relevance_map(
    relevance: Any,
    lead_names: Sequence[str],
    duration_s: float,
    sha256: str,
    window_s: float,
) -> EcgRelevanceMap:
    """Integrated-gradients relevance (12 standard leads at the model's rate, over the windows
    the model read) on the recording's own leads and time axis, in bins, scaled to [0, 1]."""
    from model.preprocess import standard_lead_index

    values = np.abs(np.asarray(relevance.relevance, dtype=np.float64))
    rate = float(relevance.sampling_rate_hz)
    samples = values.shape[1]
    window = max(1, round(window_s * rate))
    starts = tuple(relevance.window_starts_s) or (0.0,)
    index = np.arange(samples)
    which = np.minimum(index // window, len(starts) - 1)
    times = np.asarray(starts)[which] + (index - which * window) / rate
    inside = times < duration_s
    span_start = float(min(starts))
    span_end = float(min(duration_s, max(starts) + window_s))
    span = max(span_end - span_start, 1.0 / rate)
    bin_s = max(ECG_BIN_S, span / MAX_ECG_BINS)
    bin_s = math.ceil(bin_s / ECG_BIN_S - 1e-9) * ECG_BIN_S  # whole 40 ms squares
    bins = max(1, math.ceil(span / bin_s - 1e-9))
    slot = np.clip(((times - span_start) / bin_s).astype(np.int64), 0, bins - 1)
    sums = np.zeros((values.shape[0], bins))
    counts = np.zeros(bins)
    for lead in range(values.shape[0]):
        np.add.at(sums[lead], slot[inside], values[lead, inside])
    np.add.at(counts, slot[inside], 1.0)
    means = sums / np.maximum(counts, 1.0)
    rows: list[np.ndarray] = []
    totals: list[float] = []
    taken: set[int] = set()
    for name in lead_names:
        row_index = standard_lead_index(name)
        if row_index is None or row_index in taken or row_index >= means.shape[0]:
            rows.append(np.zeros(bins))
            totals.append(0.0)
            continue
        taken.add(row_index)
        rows.append(means[row_index])
        totals.append(float(sums[row_index].sum()))
    stacked = np.vstack(rows) if rows else np.zeros((0, bins))
    peak = float(stacked.max()) if stacked.size else 0.0
    scaled = stacked / peak if peak > 0 else stacked
    total = sum(totals)
    share = (
        {name: value / total for name, value in zip(lead_names, totals, strict=True)}
        if total > 0
        else {}
    )
    return EcgRelevanceMap(
        input_sha256=sha256,
        lead_names=tuple(lead_names),
        bin_s=round(bin_s, 6),
        start_s=round(span_start, 6),
        values=tuple(tuple(float(v) for v in row) for row in scaled),
        lead_share=share,
    )


# -- suggestions and their evidence ------------------------------------------------------------
def _snippets(highlights: NoteHighlights) -> list[dict[str, Any]]:
    text = highlights.text
    best = sorted((w for w in highlights.words if w.supports), key=lambda w: -w.score)
    out = []
    for word in best[:EVIDENCE_ITEMS]:
        start = max(0, word.start - SNIPPET_CONTEXT)
        end = min(len(text), word.end + SNIPPET_CONTEXT)
        out.append(
            {
                "word": text[word.start : word.end],
                "start": word.start,
                "end": word.end,
                "score": round(word.score, 6),
                "snippet": ("…" if start > 0 else "")
                + " ".join(text[start:end].split())
                + ("…" if end < len(text) else ""),
            }
        )
    return out


def _top_tiles(heatmap: TileHeatmap) -> list[dict[str, Any]]:
    order = heatmap.top or tuple(
        sorted(range(len(heatmap.tiles)), key=lambda i: -heatmap.tiles[i].score)
    )
    return [
        {
            "x": heatmap.tiles[i].x,
            "y": heatmap.tiles[i].y,
            "size": heatmap.tile_size_level0,
            "score": round(heatmap.tiles[i].score, 6),
        }
        for i in order[:EVIDENCE_ITEMS]
        if 0 <= i < len(heatmap.tiles)
    ]


def _relevant_measurements(
    code: str, system: str, measurements: Mapping[str, Any] | None
) -> dict[str, Any]:
    if not measurements:
        return {}
    keys: Sequence[str] | None = _RELEVANT_MEASUREMENTS.get(code) if system == _SNOMED else None
    if keys is None:
        return dict(measurements)
    return {k: measurements[k] for k in keys if k in measurements}


def _suggestions(
    prediction: Prediction, explanation: AnalysisExplanation | None, calibrated: bool
) -> list[NewSuggestion]:
    out = []
    for suggestion in prediction.suggestions:
        label = f"{suggestion.system}|{suggestion.code}"
        evidence: dict[str, Any] = {"critical": True} if suggestion.critical else {}
        measured = _relevant_measurements(
            suggestion.code, suggestion.system, prediction.ecg_measurements
        )
        if measured:
            evidence["ecg_measurements"] = measured
        if explanation is not None and explanation.label == label:
            evidence["explained"] = True
            if explanation.slide is not None:
                evidence["top_tiles"] = _top_tiles(explanation.slide)
            if explanation.note is not None:
                evidence["note_snippets"] = _snippets(explanation.note)
            if explanation.ecg is not None and explanation.ecg.lead_share:
                leads = sorted(explanation.ecg.lead_share.items(), key=lambda kv: -kv[1])
                evidence["ecg_leads"] = {k: round(v, 4) for k, v in leads[:EVIDENCE_ITEMS]}
            evidence["contributions"] = dict(explanation.contributions)
        probability = min(1.0, max(0.0, float(suggestion.probability)))
        out.append(
            NewSuggestion(
                code_system=suggestion.system,
                code=suggestion.code,
                display=suggestion.display,
                probability=probability,
                calibrated_probability=probability if calibrated else None,
                abstained=bool(suggestion.abstained),
                evidence=evidence,
            )
        )
    return out
