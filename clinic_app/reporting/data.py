"""What an explanation report shows, as plain values: the one input of every report writer.

``services.reports`` gathers a ``ReportData`` from the case store, the stored analysis and its
explanation, and the model bundle; the writers (``reporting.pdf``, ``reporting.dicom``,
``reporting.fhir``) turn it into files. Nothing here reads a database, a file or a widget, so
the writers run headless and are tested with values built in the test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from clinic_app.domain.explanations import EcgRelevanceMap, NoteHighlights, TileHeatmap
from clinic_app.domain.signals import EcgRecording

#: The statement every report carries (FDA 2022 CDS guidance: device software until cleared).
INTENDED_USE = (
    "For research and demonstration only. ClinicFusion is not a validated or cleared medical "
    "device. Its suggestions support a qualified clinician who reviews the evidence; they are "
    "not diagnoses and not directives."
)

#: Shown wherever a composite demo case appears: its inputs come from different real people.
COMPOSITE_NOTICE = (
    "Composite demo case: the slide, ECG and note come from different public sources and "
    "different people. No real patient has this combination."
)


@dataclass(frozen=True)
class ReportSuggestion:
    """One row of the suggestions table."""

    rank: int
    code_system: str  # e.g. "http://snomed.info/sct"
    code: str
    display: str
    probability: float  # raw model probability
    calibrated_probability: float | None
    abstained: bool  # the model declined to call this label (conformal set unsure)
    critical: bool = False  # flagged critical in the model bundle (triage risk)
    #: The clinician's decision on this suggestion, if any ("accept", "override", "reject").
    decision: str | None = None


@dataclass(frozen=True)
class ReportDecision:
    """One decision the clinician recorded."""

    action: str  # "accept" | "override" | "reject"
    suggestion_display: str | None  # the suggestion it concerns (None: a free diagnosis)
    reason: str | None
    override_code_system: str | None
    override_code: str | None
    override_display: str | None
    user: str
    decided_at: datetime


@dataclass(frozen=True)
class ReportSignOff:
    final_impression: str
    meaning: str  # e.g. "Reviewed and approved"
    user: str
    signed_at: datetime
    content_sha256: str


@dataclass(frozen=True)
class ModelSummary:
    """The model that produced the analysis and the summary of its model card."""

    name: str
    version: str
    bundle_sha256: str
    device: str  # where the analysis ran, e.g. "cpu", "cuda:0"
    intended_use: str
    training_data: str  # one paragraph: sources, sizes, composite cases
    #: (metric name, value text with its 95 % CI), e.g. ("Macro AUROC (test)", "0.81 (0.76-0.86)").
    metrics: tuple[tuple[str, str], ...] = ()
    limits: tuple[str, ...] = ()
    calibration: str = ""  # e.g. "Platt scaling on 217 validation cases"


@dataclass(frozen=True)
class InputLine:
    """One input of the case: what it is and whether the model used it. The input an analysis
    considered comes first of its modality (``ReportData.inputs_missing`` explains it)."""

    modality: str  # "pathology" | "ecg" | "note" | "tabular"
    description: str  # e.g. "slide.svs, 2,220 x 2,967 px, 0.499 µm/px"
    used: bool
    sha256: str | None = None


@dataclass(frozen=True)
class SlideFigure:
    """The slide thumbnail (RGB uint8, whole slide downsampled) and its heatmap."""

    thumbnail: npt.NDArray[np.uint8]  # (H, W, 3)
    level0_width: int
    level0_height: int
    microns_per_pixel: float | None  # at level 0, when the file says
    heatmap: TileHeatmap | None  # tile coordinates in level-0 pixels
    #: The most relevant tiles as RGB crops, most relevant first: (crop, score, x0, y0).
    top_tiles: tuple[tuple[npt.NDArray[np.uint8], float, int, int], ...] = ()


@dataclass(frozen=True)
class EcgFigure:
    """The ECG as recorded (calibrated in its units) with relevance and measurements."""

    recording: EcgRecording
    relevance: EcgRelevanceMap | None
    #: name -> (value text, unit), e.g. {"Heart rate": ("72", "bpm"), "QTc": ("412", "ms")}.
    measurements: dict[str, tuple[str, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportData:
    """Everything one case's explanation report shows."""

    case_uid: str  # the pseudonymous case id; never a record number
    case_version: int
    patient_pseudonym: str
    title: str
    status: str  # CaseStatus value
    is_composite_demo: bool
    created_at: datetime
    analysed_at: datetime | None
    generated_at: datetime
    generated_by: str  # the clinician (username) exporting the report
    model: ModelSummary | None  # None: the case has no analysis yet
    inputs: tuple[InputLine, ...]
    inputs_missing: dict[str, str]  # modality -> why it was not used
    suggestions: tuple[ReportSuggestion, ...]
    explained_label: str | None  # display name of the suggestion the explanation is about
    contributions: dict[str, float | None]  # modality -> drop in probability without it
    gates: dict[str, float]  # modality -> fusion gate weight (sum 1)
    slide: SlideFigure | None = None
    ecg: EcgFigure | None = None
    note: NoteHighlights | None = None
    decisions: tuple[ReportDecision, ...] = ()
    sign_off: ReportSignOff | None = None
    institution: str = ""
    footer: str = ""
    include_heatmaps: bool = True
    include_note_highlights: bool = True
    intended_use: str = INTENDED_USE
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def composite_notice(self) -> str | None:
        return COMPOSITE_NOTICE if self.is_composite_demo else None
