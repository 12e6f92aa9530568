"""Mutated real files never crash, hang or exhaust memory: each ends in a result or InputError.

The default run mutates a few hundred files; the slow run (CI, `-m slow`) at least 2,000.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.io.fuzz import build_seeds, run_campaign

pytestmark = pytest.mark.skipif(os.name != "posix", reason="memory caps need POSIX rlimits")


def _campaign(tmp_path: Path, count: int, seed: int) -> None:
    seeds = build_seeds(tmp_path / "seeds")
    kinds = {s.target.rsplit(".", 1)[-1] for s in seeds}
    assert {"dcm", "hea"} <= kinds and kinds & {"svs", "tiff"}, kinds
    result = run_campaign(
        seeds, count, tmp_path / "mutants", seed=seed, workers=os.cpu_count() or 2
    )
    print(result.summary())
    assert result.cases == count
    assert not result.failures, "\n".join(result.failures[:20])
    assert result.over_cap == 0
    assert result.outcomes["uncaught"] == 0
    assert result.outcomes["read"] > 0 and result.outcomes["clear error"] > 0


def test_mutated_files_fail_cleanly(tmp_path: Path) -> None:
    _campaign(tmp_path, 240, seed=11)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_thousand_mutations(tmp_path: Path) -> None:
    _campaign(tmp_path, 2000, seed=int(os.environ.get("CF_FUZZ_SEED", "2026")))
