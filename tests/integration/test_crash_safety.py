"""Writers killed with SIGKILL mid-transaction: nothing acknowledged is lost, nothing is half
written, the SQLite file stays intact and the audit chain verifies (bench/crash_safety.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.crash_safety import run


def test_random_kills_lose_nothing_acknowledged(database_url: str, tmp_path: Path) -> None:
    results = run(
        database_url,
        tmp_path,
        min_commits=10**9,  # i.e. run all three rounds
        writers=4,
        seed=7,
        min_round_s=0.5,
        max_round_s=1.5,
        max_rounds=3,
    )
    assert all(not r.problems for r in results), [r.problems for r in results]
    assert len(results) == 3
    assert results[-1].acknowledged > 0
    assert results[-1].audit_events >= results[-1].acknowledged


@pytest.mark.slow
def test_25000_acknowledged_commits_survive_random_kills(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.sqlite3'}"
    results = run(url, tmp_path, min_commits=25_000, writers=4, seed=11, max_rounds=400)
    assert all(not r.problems for r in results), [r.problems for r in results if r.problems]
    assert results[-1].acknowledged >= 25_000
    print(f"{len(results)} rounds, {results[-1].acknowledged} acknowledged commits")
