"""FusionConfig: everything needed to build a FusionModel, as a dataclass that round-trips to
``config.json``. The model's constructor takes only this, so a bundle rebuilds its network from
the file alone (the timm/transformers pattern). Validation names the field that is wrong.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Self

from model.errors import ModelPackageError

#: The modalities, in the fixed order of gates, type embeddings and output columns.
MODALITIES: tuple[str, ...] = ("pathology", "ecg", "note", "tabular")
IMAGE_ENCODERS = (
    "efficientnet-lite0",
    "small-cnn",
    "monai-densenet121",
    "monai-efficientnet-b0",
    "monai-resnet18",
)
TEXT_ENCODERS = ("all-minilm-l6-v2",)
ECG_AGGREGATIONS = ("concat", "mean")
#: Default tabular features: names match clinic_app's Vitals fields plus age and sex;
#: (mean, std) are adult reference values used to normalise, not fitted statistics.
DEFAULT_TABULAR = (
    ("age_years", 55.0, 20.0),
    ("sex_male", 0.5, 0.5),
    ("heart_rate_bpm", 80.0, 20.0),
    ("systolic_mmhg", 125.0, 20.0),
    ("diastolic_mmhg", 78.0, 12.0),
    ("spo2_percent", 96.0, 3.0),
    ("temperature_c", 37.0, 0.7),
    ("respiratory_rate_per_min", 16.0, 4.0),
)


class FusionConfigError(ModelPackageError, ValueError):
    """A model configuration is invalid; the message names the field."""


def _fail(path: str, message: str) -> FusionConfigError:
    return FusionConfigError(f"Model configuration field '{path}' {message}")


def _check_int(path: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"must be an integer, not {value!r}.")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise _fail(path, f"must be {bound}; got {value}.")


def _check_float(path: str, value: Any, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(path, f"must be a finite number, not {value!r}.")
    if value < low or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise _fail(path, f"must be {bound}; got {value:g}.")


def _check_bool(path: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _fail(path, f"must be true or false, not {value!r}.")


def _check_choice(path: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _fail(path, f"must be one of {', '.join(choices)}; got {value!r}.")


def _build(cls: type[Any], data: Any, path: str) -> Any:
    """Construct dataclass ``cls`` from a dict, refusing unknown keys by name."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise _fail(path, f"must be an object, not {type(data).__name__}.")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _fail(f"{path}.{unknown[0]}" if path else unknown[0], "is not a known setting.")
    return cls(**data)


@dataclass(frozen=True)
class LabelSpec:
    """One diagnosis output: a code in a code system, with its display text."""

    system: str
    code: str
    display: str
    #: A finding that should not wait (e.g. atrial fibrillation, malignancy): the triage
    #: worklist ranks cases by the highest calibrated probability of a critical label.
    critical: bool = False


@dataclass(frozen=True)
class ExtraHead:
    """An additional classification head (e.g. suggested specialty from the note)."""

    name: str
    classes: tuple[str, ...]
    modalities: tuple[str, ...] = ("note",)
    multi_label: bool = False


@dataclass(frozen=True)
class ImageConfig:
    """Pathology branch: tiling, backbone, MIL pooling."""

    encoder: str = "efficientnet-lite0"
    pretrained: bool = True
    freeze_backbone: bool = True
    tile_size: int = 224
    target_mpp: float = 0.5  # microns per pixel the tiles are read at (0.5 ~ 20x)
    max_tiles: int = 64
    min_tissue_fraction: float = 0.25
    attention_hidden: int = 128
    small_cnn_width: int = 16


@dataclass(frozen=True)
class EcgConfig:
    """ECG branch: sampling, windowing, residual 1-D CNN."""

    sampling_rate_hz: int = 500
    window_s: float = 10.0
    max_windows: int = 6
    aggregation: str = "concat"  # "concat": all windows' tokens; "mean": mean over windows
    channels: int = 64
    blocks: int = 4
    kernel_size: int = 7
    tokens_per_window: int = 20
    highpass_hz: float = 0.5


@dataclass(frozen=True)
class TextConfig:
    """Note branch: a local sentence-transformer, chunked notes."""

    model_key: str = "all-minilm-l6-v2"
    pretrained: bool = True
    freeze: bool = True
    max_tokens_per_chunk: int = 256
    chunk_overlap: int = 32
    max_chunks: int = 4
    # Size of the randomly initialised BERT used when pretrained is false (tests only).
    tiny_hidden: int = 32
    tiny_layers: int = 1


@dataclass(frozen=True)
class TabularFeature:
    """One demographic or vital-sign input with the constants that normalise it."""

    name: str
    mean: float
    std: float


@dataclass(frozen=True)
class TabularConfig:
    """Vitals and demographics: each value + a missing indicator -> one token."""

    features: tuple[TabularFeature, ...] = tuple(
        TabularFeature(name, mean, std) for name, mean, std in DEFAULT_TABULAR
    )
    hidden: int = 64

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(feature.name for feature in self.features)


@dataclass(frozen=True)
class FusionConfig:
    """The whole network: sizes, labels, heads, branches and which modalities it accepts."""

    name: str = "fusion"
    d_model: int = 256
    heads: int = 4
    layers: int = 2
    dropout: float = 0.1
    labels: tuple[LabelSpec, ...] = ()
    extra_heads: tuple[ExtraHead, ...] = ()
    modalities: tuple[str, ...] = MODALITIES
    aux_heads: bool = True
    gate_hidden: int = 64
    image: ImageConfig = field(default_factory=ImageConfig)
    ecg: EcgConfig = field(default_factory=EcgConfig)
    text: TextConfig = field(default_factory=TextConfig)
    tabular: TabularConfig = field(default_factory=TabularConfig)

    def __post_init__(self) -> None:
        self.validate()

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))  # type: ignore[no-any-return]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Build and validate from a dict; an unknown or malformed field raises naming it."""
        if not isinstance(data, dict):
            raise _fail("", "must be a JSON object.")
        raw = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise _fail(unknown[0], "is not a known setting.")
        try:
            if "labels" in raw:
                raw["labels"] = tuple(
                    _build(LabelSpec, item, f"labels[{i}]")
                    for i, item in enumerate(_as_list(raw["labels"], "labels"))
                )
            if "extra_heads" in raw:
                heads = []
                for i, item in enumerate(_as_list(raw["extra_heads"], "extra_heads")):
                    head = dict(item) if isinstance(item, dict) else item
                    if isinstance(head, dict):
                        for key in ("classes", "modalities"):
                            if key in head:
                                head[key] = tuple(_as_list(head[key], f"extra_heads[{i}].{key}"))
                    heads.append(_build(ExtraHead, head, f"extra_heads[{i}]"))
                raw["extra_heads"] = tuple(heads)
            if "modalities" in raw:
                raw["modalities"] = tuple(_as_list(raw["modalities"], "modalities"))
            for key, sub in (("image", ImageConfig), ("ecg", EcgConfig), ("text", TextConfig)):
                if key in raw:
                    raw[key] = _build(sub, raw[key], key)
            if "tabular" in raw:
                tab = raw["tabular"]
                if isinstance(tab, dict):
                    tab = dict(tab)
                    if "features" in tab:
                        tab["features"] = tuple(
                            _build(TabularFeature, item, f"tabular.features[{i}]")
                            for i, item in enumerate(_as_list(tab["features"], "tabular.features"))
                        )
                raw["tabular"] = _build(TabularConfig, tab, "tabular")
            return cls(**raw)
        except TypeError as exc:  # a required key of a nested object is missing
            raise FusionConfigError(f"Model configuration is incomplete: {exc}.") from exc

    @classmethod
    def from_json(cls, text: str) -> Self:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FusionConfigError(f"Model configuration is not valid JSON ({exc}).") from exc
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))

    def replace(self, **changes: Any) -> FusionConfig:
        """A copy with some top-level fields changed (validated again)."""
        return replace(self, **changes)

    # -- validation ----------------------------------------------------------------------
    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(f"{label.system}|{label.code}" for label in self.labels)

    def validate(self) -> None:
        """Raise FusionConfigError naming the first wrong field."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise _fail("name", "must be a non-empty string.")
        _check_int("d_model", self.d_model, 8, 4096)
        _check_int("heads", self.heads, 1, 64)
        if self.d_model % self.heads:
            raise _fail("heads", f"must divide d_model ({self.d_model}); got {self.heads}.")
        _check_int("layers", self.layers, 0, 24)
        _check_float("dropout", self.dropout, 0.0, 0.9)
        _check_bool("aux_heads", self.aux_heads)
        _check_int("gate_hidden", self.gate_hidden, 1)
        if not self.labels:
            raise _fail("labels", "must list at least one diagnosis label.")
        seen: set[tuple[str, str]] = set()
        for i, label in enumerate(self.labels):
            for attr in ("system", "code", "display"):
                value = getattr(label, attr)
                if not isinstance(value, str) or not value.strip():
                    raise _fail(f"labels[{i}].{attr}", "must be a non-empty string.")
            if (label.system, label.code) in seen:
                raise _fail(f"labels[{i}].code", f"repeats {label.system} {label.code}.")
            seen.add((label.system, label.code))
        if not self.modalities:
            raise _fail("modalities", "must enable at least one modality.")
        for i, modality in enumerate(self.modalities):
            _check_choice(f"modalities[{i}]", modality, MODALITIES)
        if len(set(self.modalities)) != len(self.modalities):
            raise _fail("modalities", "lists a modality twice.")
        names: set[str] = set()
        for i, head in enumerate(self.extra_heads):
            if not isinstance(head.name, str) or not head.name.isidentifier():
                raise _fail(f"extra_heads[{i}].name", "must be an identifier like 'specialty'.")
            if head.name in names:
                raise _fail(f"extra_heads[{i}].name", f"repeats {head.name!r}.")
            names.add(head.name)
            if len(head.classes) < 2 or not all(isinstance(c, str) and c for c in head.classes):
                raise _fail(f"extra_heads[{i}].classes", "must list at least two class names.")
            if len(set(head.classes)) != len(head.classes):
                raise _fail(f"extra_heads[{i}].classes", "lists a class twice.")
            if not head.modalities:
                raise _fail(f"extra_heads[{i}].modalities", "must name at least one modality.")
            for j, modality in enumerate(head.modalities):
                if modality not in self.modalities:
                    raise _fail(
                        f"extra_heads[{i}].modalities[{j}]",
                        f"must be an enabled modality ({', '.join(self.modalities)}); "
                        f"got {modality!r}.",
                    )
            _check_bool(f"extra_heads[{i}].multi_label", head.multi_label)
        self._validate_image()
        self._validate_ecg()
        self._validate_text()
        self._validate_tabular()

    def _validate_image(self) -> None:
        image = self.image
        _check_choice("image.encoder", image.encoder, IMAGE_ENCODERS)
        _check_bool("image.pretrained", image.pretrained)
        _check_bool("image.freeze_backbone", image.freeze_backbone)
        if image.pretrained and image.encoder != "efficientnet-lite0":
            raise _fail(
                "image.pretrained",
                f"is only available for efficientnet-lite0 (no offline weights for "
                f"{image.encoder}); set it to false.",
            )
        _check_int("image.tile_size", image.tile_size, 32, 1024)
        _check_float("image.target_mpp", image.target_mpp, 0.05, 64.0)
        _check_int("image.max_tiles", image.max_tiles, 1, 4096)
        _check_float("image.min_tissue_fraction", image.min_tissue_fraction, 0.0, 1.0)
        _check_int("image.attention_hidden", image.attention_hidden, 1)
        _check_int("image.small_cnn_width", image.small_cnn_width, 1, 512)

    def _validate_ecg(self) -> None:
        ecg = self.ecg
        _check_int("ecg.sampling_rate_hz", ecg.sampling_rate_hz, 50, 10000)
        _check_float("ecg.window_s", ecg.window_s, 0.5, 120.0)
        _check_int("ecg.max_windows", ecg.max_windows, 1, 1000)
        _check_choice("ecg.aggregation", ecg.aggregation, ECG_AGGREGATIONS)
        _check_int("ecg.channels", ecg.channels, 4, 2048)
        _check_int("ecg.blocks", ecg.blocks, 1, 16)
        _check_int("ecg.kernel_size", ecg.kernel_size, 1, 63)
        if ecg.kernel_size % 2 == 0:
            raise _fail("ecg.kernel_size", f"must be odd; got {ecg.kernel_size}.")
        _check_int("ecg.tokens_per_window", ecg.tokens_per_window, 1, 1000)
        _check_float("ecg.highpass_hz", ecg.highpass_hz, 0.0, 5.0)
        if ecg.highpass_hz >= ecg.sampling_rate_hz / 2:
            raise _fail("ecg.highpass_hz", "must be below half the sampling rate.")

    def _validate_text(self) -> None:
        text = self.text
        _check_choice("text.model_key", text.model_key, TEXT_ENCODERS)
        _check_bool("text.pretrained", text.pretrained)
        _check_bool("text.freeze", text.freeze)
        _check_int("text.max_tokens_per_chunk", text.max_tokens_per_chunk, 8, 512)
        _check_int("text.chunk_overlap", text.chunk_overlap, 0, text.max_tokens_per_chunk - 3)
        _check_int("text.max_chunks", text.max_chunks, 1, 256)
        _check_int("text.tiny_hidden", text.tiny_hidden, 8, 1024)
        _check_int("text.tiny_layers", text.tiny_layers, 1, 12)

    def _validate_tabular(self) -> None:
        tabular = self.tabular
        if not tabular.features:
            raise _fail("tabular.features", "must list at least one feature.")
        names: set[str] = set()
        for i, feature in enumerate(tabular.features):
            if not isinstance(feature.name, str) or not feature.name.isidentifier():
                raise _fail(f"tabular.features[{i}].name", "must be an identifier.")
            if feature.name in names:
                raise _fail(f"tabular.features[{i}].name", f"repeats {feature.name!r}.")
            names.add(feature.name)
            _check_float(f"tabular.features[{i}].mean", feature.mean, -1e9)
            _check_float(f"tabular.features[{i}].std", feature.std, 1e-9)
        _check_int("tabular.hidden", tabular.hidden, 1)


def _as_list(value: Any, path: str) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    raise _fail(path, f"must be a list, not {type(value).__name__}.")
