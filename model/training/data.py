"""Manifest rows -> prepared TrainingCases, through the predictor's own preparation.

Preparing a case (tiling, ECG resampling and measurement, tokenising) costs far more than a
training step of the small heads, so every case is prepared once, up front, in a thread pool,
and augmentation then works on the prepared arrays (model/training/augment.py). A row whose
files cannot be read stops the build with every such row listed: a long run never starts on
half the data.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from model.config import FusionConfig
from model.errors import ModelPackageError
from model.training.cases import TrainingCase

if TYPE_CHECKING:
    from model.predictor import CaseInput
    from model.training.manifest import Manifest, ManifestRow

CaseLoader = Callable[["ManifestRow"], "CaseInput"]


class CaseBuildError(ModelPackageError, ValueError):
    """Some manifest rows could not be turned into model inputs; the message lists them all."""


@dataclass
class BuildReport:
    """What preparing the cases left out, for the data card."""

    cases: int = 0
    modality_counts: dict[str, int] = field(default_factory=dict)
    dropped_inputs: dict[str, Counter[str]] = field(default_factory=dict)  # modality -> reasons

    def as_dict(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "modality_counts": dict(sorted(self.modality_counts.items())),
            "dropped_inputs": {m: dict(c.most_common()) for m, c in self.dropped_inputs.items()},
        }


def targets_for(row: ManifestRow, label_names: Sequence[str]) -> np.ndarray:
    """(L,) float32: 1 for the row's labels, NaN for its unknown ones, 0 otherwise."""
    positive, unknown = set(row.labels), set(row.unknown)
    values = [
        1.0 if name in positive else (math.nan if name in unknown else 0.0) for name in label_names
    ]
    return np.asarray(values, dtype=np.float32)


def extra_targets_for(row: ManifestRow, config: FusionConfig) -> dict[str, int]:
    out: dict[str, int] = {}
    for head in config.extra_heads:
        value = row.heads.get(head.name)
        if value is not None and value in head.classes:
            out[head.name] = head.classes.index(value)
    return out


def build_cases(
    manifest: Manifest,
    config: FusionConfig,
    loader: CaseLoader,
    *,
    tokenizer: Any = None,
    workers: int = 2,
    progress: bool = True,
    report: BuildReport | None = None,
) -> list[TrainingCase]:
    """Every manifest row (which must all have a split) as a prepared TrainingCase, in order."""
    from model.predictor import prepare_input
    from model.preprocess import ModelInputError

    if tokenizer is None and "note" in config.modalities:
        from model.encoders.text import load_tokenizer

        tokenizer = load_tokenizer(config.text)
    unsplit = [row for row in manifest.rows if row.split is None]
    if unsplit:
        raise CaseBuildError(
            f"{len(unsplit)} manifest rows have no split (first: line {unsplit[0].line}); "
            "assign splits first."
        )
    label_names = config.label_names
    report = report if report is not None else BuildReport()

    def one(row: ManifestRow) -> TrainingCase | str:
        try:
            prepared = prepare_input(loader(row), config, tokenizer)
        except (ModelInputError, ValueError, OSError) as exc:
            return f"line {row.line} (case {row.case_id}): {exc}"
        for modality, reason in prepared.missing.items():
            if reason != "not provided":
                report.dropped_inputs.setdefault(modality, Counter())[reason[:120]] += 1
        assert row.split is not None
        return TrainingCase(
            case_id=row.case_id,
            group_id=row.group_id,
            split=row.split,
            prepared=prepared.case,
            targets=targets_for(row, label_names),
            extra_targets=extra_targets_for(row, config),
            composite=row.composite,
            synthetic=row.synthetic,
            sources=dict(row.sources),
        )

    rows = list(manifest.rows)
    bar = _progress(len(rows), "preparing cases", progress)
    results: list[TrainingCase | str] = []
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="prepare-case") as pool:
        for result in pool.map(one, rows):
            results.append(result)
            bar.update(1)
    bar.close()
    failures = [r for r in results if isinstance(r, str)]
    if failures:
        shown = "\n  ".join(failures[:50])
        more = f"\n  ... and {len(failures) - 50} more" if len(failures) > 50 else ""
        raise CaseBuildError(
            f"{len(failures)} of {len(rows)} manifest rows could not be prepared; nothing was "
            f"trained:\n  {shown}{more}"
        )
    cases = [r for r in results if isinstance(r, TrainingCase)]
    report.cases = len(cases)
    for case in cases:
        for modality in case.prepared.modalities():
            report.modality_counts[modality] = report.modality_counts.get(modality, 0) + 1
    return cases


class _NoBar:
    def update(self, _n: int) -> None:
        return None

    def close(self) -> None:
        return None


def _progress(total: int, description: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=description, unit="case", leave=False)
