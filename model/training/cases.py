"""Training cases: what the training loop, the evaluator and the demo builder pass around.

A :class:`TrainingCase` is one case already prepared by the same code the predictor runs at
inference (``model.predictor.prepare_input``), so training never sees inputs prepared another
way, plus its targets: one value per diagnosis label (1, 0, or NaN when the label is not known
for this case) and one class index per extra head (e.g. the note's specialty).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from model.preprocess import PreparedCase

SPLITS = ("train", "val", "test")


@dataclass
class TrainingCase:
    """One prepared case with its targets.

    ``targets`` (L,) float32: 1 positive, 0 negative, NaN unknown (excluded from the loss and
    from metrics). ``extra_targets``: head name -> class index; a head absent here has no
    target for this case. ``composite`` marks a case assembled from different real patients
    (one per modality); ``synthetic`` marks simulated inputs, which never enter the test split.
    ``sources``: modality -> where that input came from (file, record, window), for the data
    card and for auditing a composite case."""

    case_id: str
    group_id: str
    split: str
    prepared: PreparedCase
    targets: npt.NDArray[np.float32]
    extra_targets: dict[str, int] = field(default_factory=dict)
    composite: bool = False
    synthetic: bool = False
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(
                f"Case {self.case_id}: split must be one of {SPLITS}, not {self.split!r}."
            )
        if self.synthetic and self.split == "test":
            raise ValueError(
                f"Case {self.case_id} is synthetic; synthetic cases never enter the test split."
            )


def by_split(cases: Sequence[TrainingCase], split: str) -> list[TrainingCase]:
    """The cases of one split, in their given order."""
    return [case for case in cases if case.split == split]


def target_matrix(cases: Sequence[TrainingCase], labels: int) -> npt.NDArray[np.float32]:
    """(N, L) targets with NaN for unknown."""
    if not cases:
        return np.zeros((0, labels), dtype=np.float32)
    return np.stack([np.asarray(case.targets, dtype=np.float32) for case in cases])


def extra_target_vector(cases: Sequence[TrainingCase], head: str) -> npt.NDArray[np.int64]:
    """(N,) class indices of one extra head; -1 where the case has no target for it."""
    return np.asarray([case.extra_targets.get(head, -1) for case in cases], dtype=np.int64)
