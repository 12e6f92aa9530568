"""`clinic-app stats`: budgets and releases from the command line (acting as the system admin)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinic_app.cli import main


def stats(data_dir: Path, *args: str) -> int:
    return main(["--data-dir", str(data_dir), "stats", *args])


def test_budget_release_and_refusal(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stats(data_dir, "budget") == 0
    assert "clinical: no budget set" in capsys.readouterr().out

    assert stats(data_dir, "budget", "--set-epsilon", "3/10", "--set-delta", "0") == 0
    assert "clinical: epsilon 0 spent of 0.3 (0.3 left)" in capsys.readouterr().out

    for _ in range(3):
        assert stats(data_dir, "release", "age_histogram", "--epsilon", "0.1") == 0
    out = capsys.readouterr().out
    assert "Patients by age in 10-year bins (dataset clinical)" in out
    assert "discrete_laplace, epsilon 0.1" in out
    assert "Budget left for 'clinical': epsilon 0 of 0.3" in out

    assert stats(data_dir, "release", "age_histogram", "--epsilon", "1/10") == 1
    err = capsys.readouterr().err
    assert err.startswith("clinic-app: Releasing 'age_histogram' from dataset 'clinical' needs")
    assert "only epsilon 0 and delta 0 are left" in err

    assert stats(data_dir, "budget", "--dataset", "clinical", "--json") == 0
    budget = json.loads(capsys.readouterr().out)["clinical"]
    assert budget["epsilon_spent"] == "3/10"
    assert budget["epsilon_remaining"] == "0"
    assert budget["releases"] == 3


def test_release_as_json(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert stats(data_dir, "budget", "--set-epsilon", "1", "--set-delta", "1e-6") == 0
    capsys.readouterr()
    assert stats(data_dir, "release", "override_rate", "--epsilon", "0.5", "--json") == 0
    released = json.loads(capsys.readouterr().out)
    assert released["query"] == "override_rate"
    assert [row["measure"] for row in released["rows"]] == ["overrides", "decisions"]
    assert all(isinstance(row["count"], int) for row in released["rows"])
    assert released["noise"]["scale"] == "4"
    assert released["budget"]["epsilon_remaining"] == "1/2"


def test_user_errors_exit_with_their_codes(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert stats(data_dir, "release", "age_histogram", "--epsilon", "a lot") == 65
    assert "is not a number for --epsilon" in capsys.readouterr().err
    assert stats(data_dir, "budget", "--set-epsilon", "1", "--set-delta", "0") == 0
    assert stats(data_dir, "release", "suggested_diagnosis", "--epsilon", "0.1") == 65
    assert "needs a delta above 0" in capsys.readouterr().err
    assert stats(data_dir, "budget", "--set-epsilon", "1") == 65
