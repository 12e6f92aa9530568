"""What the GUI and reports draw to show *why* the model suggested something.

A stored analysis keeps these in ``AnalysisInfo.outputs["explanation"]`` as plain JSON
(``to_json`` / ``from_json``), so a case re-opened later shows the same heatmaps and highlights
without running the model again. They explain the top suggestion (``label``). Stdlib only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: Key of the explanation inside ``AnalysisInfo.outputs``.
EXPLANATION_KEY = "explanation"


@dataclass(frozen=True)
class TileScore:
    """One slide tile read by the model: top-left corner in level-0 pixels and its relevance."""

    x: int
    y: int
    score: float  # MIL attention, normalised so the highest tile is 1.0


@dataclass(frozen=True)
class TileHeatmap:
    """Relevance over the slide's tiles (for the heatmap overlay and the top-tile list)."""

    input_sha256: str  # the stored slide input these coordinates belong to
    level0_width: int
    level0_height: int
    tile_size_level0: int  # side of every tile in level-0 pixels
    tiles: tuple[TileScore, ...]
    top: tuple[int, ...] = ()  # indices into ``tiles``, most relevant first

    def to_json(self) -> dict[str, Any]:
        return {
            "input_sha256": self.input_sha256,
            "level0_width": self.level0_width,
            "level0_height": self.level0_height,
            "tile_size_level0": self.tile_size_level0,
            "tiles": [[t.x, t.y, round(t.score, 6)] for t in self.tiles],
            "top": list(self.top),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TileHeatmap:
        return cls(
            input_sha256=str(data["input_sha256"]),
            level0_width=int(data["level0_width"]),
            level0_height=int(data["level0_height"]),
            tile_size_level0=int(data["tile_size_level0"]),
            tiles=tuple(TileScore(int(x), int(y), float(s)) for x, y, s in data["tiles"]),
            top=tuple(int(i) for i in data.get("top", ())),
        )


@dataclass(frozen=True)
class EcgRelevanceMap:
    """Relevance per lead over the recording's own time axis, in bins of ``bin_s`` seconds.

    ``values[lead][bin]`` is in [0, 1] (absolute relevance, 1 = the most relevant bin of any
    lead); bin ``k`` covers ``start_s + k * bin_s`` to ``start_s + (k + 1) * bin_s``."""

    input_sha256: str
    lead_names: tuple[str, ...]
    bin_s: float
    start_s: float
    values: tuple[tuple[float, ...], ...]
    lead_share: dict[str, float] = field(default_factory=dict)  # each lead's share (sum 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "input_sha256": self.input_sha256,
            "lead_names": list(self.lead_names),
            "bin_s": self.bin_s,
            "start_s": self.start_s,
            "values": [[round(v, 4) for v in row] for row in self.values],
            "lead_share": {k: round(v, 6) for k, v in self.lead_share.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EcgRelevanceMap:
        return cls(
            input_sha256=str(data["input_sha256"]),
            lead_names=tuple(str(n) for n in data["lead_names"]),
            bin_s=float(data["bin_s"]),
            start_s=float(data.get("start_s", 0.0)),
            values=tuple(tuple(float(v) for v in row) for row in data["values"]),
            lead_share={str(k): float(v) for k, v in data.get("lead_share", {}).items()},
        )


@dataclass(frozen=True)
class WordRelevance:
    """One word of the analysed note: character offsets into ``NoteHighlights.text``."""

    start: int
    end: int
    score: float  # signed; positive supports the suggestion

    @property
    def supports(self) -> bool:
        return self.score > 0


@dataclass(frozen=True)
class NoteHighlights:
    """The exact note text the model read, with its words' relevance."""

    note_version: int | None
    text_sha256: str
    text: str
    words: tuple[WordRelevance, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "note_version": self.note_version,
            "text_sha256": self.text_sha256,
            "text": self.text,
            "words": [[w.start, w.end, round(w.score, 6)] for w in self.words],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NoteHighlights:
        version = data.get("note_version")
        return cls(
            note_version=int(version) if version is not None else None,
            text_sha256=str(data["text_sha256"]),
            text=str(data["text"]),
            words=tuple(WordRelevance(int(s), int(e), float(v)) for s, e, v in data["words"]),
        )


@dataclass(frozen=True)
class AnalysisExplanation:
    """Everything the workspace shows about why the top suggestion scored as it did."""

    label: str  # "system|code" of the explained suggestion
    label_display: str
    #: How much each modality counted: drop of the explained label's probability when the
    #: modality is left out (None when it was the only input).
    contributions: dict[str, float | None]
    #: Fusion gate weights over the modalities used (sum 1).
    gates: dict[str, float]
    modalities_used: tuple[str, ...]
    modalities_missing: dict[str, str]  # modality -> reason
    slide: TileHeatmap | None = None
    ecg: EcgRelevanceMap | None = None
    note: NoteHighlights | None = None
    ecg_measurements: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "label_display": self.label_display,
            "contributions": dict(self.contributions),
            "gates": dict(self.gates),
            "modalities_used": list(self.modalities_used),
            "modalities_missing": dict(self.modalities_missing),
            "slide": self.slide.to_json() if self.slide else None,
            "ecg": self.ecg.to_json() if self.ecg else None,
            "note": self.note.to_json() if self.note else None,
            "ecg_measurements": self.ecg_measurements,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AnalysisExplanation:
        return cls(
            label=str(data["label"]),
            label_display=str(data.get("label_display", data["label"])),
            contributions={
                str(k): (float(v) if v is not None else None)
                for k, v in data.get("contributions", {}).items()
            },
            gates={str(k): float(v) for k, v in data.get("gates", {}).items()},
            modalities_used=tuple(str(m) for m in data.get("modalities_used", ())),
            modalities_missing={
                str(k): str(v) for k, v in data.get("modalities_missing", {}).items()
            },
            slide=TileHeatmap.from_json(data["slide"]) if data.get("slide") else None,
            ecg=EcgRelevanceMap.from_json(data["ecg"]) if data.get("ecg") else None,
            note=NoteHighlights.from_json(data["note"]) if data.get("note") else None,
            ecg_measurements=data.get("ecg_measurements"),
        )

    @classmethod
    def from_outputs(cls, outputs: dict[str, Any]) -> AnalysisExplanation | None:
        """The explanation stored with an analysis, or None for one stored without."""
        data = outputs.get(EXPLANATION_KEY)
        return cls.from_json(data) if isinstance(data, dict) else None
