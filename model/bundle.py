"""Model bundles on disk: a folder whose ``metadata.json`` lists the sha256 of every file.

The bundle's own sha256 is the sha256 of ``metadata.json``: since that file holds the hash of
every other file, it identifies the whole bundle (a Merkle root), and it is what every analysis
row records. Pickle checkpoints are refused: weights are safetensors only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from model.errors import BundleError

METADATA_FILENAME = "metadata.json"
SUPPORTED_FORMAT_VERSIONS = (1,)
REQUIRED_KEYS = ("name", "version", "format_version", "files")
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
_CHUNK = 1024 * 1024


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
    (root / METADATA_FILENAME).write_text(
        json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return verify_bundle(root)
