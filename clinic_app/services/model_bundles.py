"""Which model bundle the app uses, and its verification (bundle errors become ModelError)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clinic_app.config.assets import shipped_bundles_dir
from clinic_app.config.settings import Settings
from clinic_app.domain.errors import ModelError
from model.bundle import METADATA_FILENAME, BundleInfo, critical_label_keys, verify_bundle
from model.errors import BundleError


@dataclass(frozen=True)
class BundleChoice:
    """A bundle folder and whether the settings named it (a named one must exist)."""

    path: Path | None
    explicit: bool


def choose_bundle(settings: Settings) -> BundleChoice:
    """The bundle named in the settings, else the first in the data dir's models/, else shipped."""
    if settings.model_bundle is not None:
        return BundleChoice(settings.model_bundle, explicit=True)
    for folder in (settings.models_dir, shipped_bundles_dir()):
        if folder.is_dir():
            candidates = sorted(p.parent for p in folder.glob(f"*/{METADATA_FILENAME}"))
            if candidates:
                return BundleChoice(candidates[0], explicit=False)
    return BundleChoice(None, explicit=False)


def verify_model_bundle(path: Path) -> BundleInfo:
    """Verify a bundle's hashes; raise ModelError with the reason if it cannot be trusted."""
    try:
        return verify_bundle(path)
    except BundleError as exc:
        raise ModelError(str(exc)) from exc


def critical_codes(bundle_dir: Path) -> frozenset[str]:
    """The "system|code" of the labels the bundle flags critical (the triage worklist's risk).

    Read from the verified metadata, so a hand-edited flag in an altered bundle is refused."""
    return critical_label_keys(verify_model_bundle(bundle_dir).metadata)
