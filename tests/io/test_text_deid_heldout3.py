"""Held-out set 3 for the note scrubber (issue 3): names and record numbers must reach 0.95
recall and at most 3 % of planted clinical terms may be scrubbed. Run with -s for the table.

The set (tests/io/phi_heldout3.py) was written without reading the scrubber or its word lists;
do not tune the scrubber against it, or it stops measuring anything.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from clinic_app.domain.notes import PhiReplacement
from clinic_app.io.deid.text import scrub_text
from tests.io.phi_heldout3 import (
    ORIGINS,
    STYLES,
    Note,
    Score,
    build_corpus,
    format_table,
    name_count,
    score_note,
)

RECALL_FLOOR = 0.95
TERM_FP_CEILING = 0.03
DATE_SHIFT_DAYS = 23


@pytest.fixture(scope="module")
def corpus() -> list[Note]:
    return build_corpus()


@pytest.fixture(scope="module")
def measured(corpus: list[Note]) -> Score:
    score = Score()
    started = time.perf_counter()
    for note in corpus:
        out, reps = scrub_text(note.text, date_shift_days=DATE_SHIFT_DAYS)
        score_note(note, out, reps, score)
    print("\n" + format_table(score, corpus, time.perf_counter() - started))
    return score


def test_the_set_is_large_varied_and_reproducible(corpus: list[Note]) -> None:
    assert len(corpus) >= 400
    assert len({n.style for n in corpus}) == len(STYLES) >= 10
    assert len(ORIGINS) >= 12 and name_count() >= 300
    assert [n.text for n in build_corpus()[:20]] == [n.text for n in corpus[:20]]
    for note in corpus:
        for p in note.phi:
            assert note.text[p.start : p.end] == p.value == p.value.strip()
            assert p.halo_start <= p.start < p.end <= p.halo_end
        for t in note.terms:
            assert note.text[t.start : t.end] == t.value
    planted = Counter(p.category for n in corpus for p in n.phi)
    assert planted["NAME"] >= 2000 and planted["ID"] >= 500
    assert {"DATE", "PHONE", "EMAIL", "ADDRESS", "AGE>89"} <= set(planted)
    assert sum(len(n.terms) for n in corpus) >= 2000


@pytest.mark.xfail(
    strict=True, reason="held-out-3 name recall 0.935 (2622/2803) below 0.95 (rules alone 0.846)"
)
def test_names_recall(measured: Score) -> None:
    recall = measured.by_category["NAME"].recall
    assert recall >= RECALL_FLOOR, f"held-out-3 name recall {recall:.3f}"


@pytest.mark.xfail(strict=True, reason="held-out-3 record-number recall 0.912 (625/685) below 0.95")
def test_record_numbers_recall(measured: Score) -> None:
    recall = measured.by_category["ID"].recall
    assert recall >= RECALL_FLOOR, f"held-out-3 record-number recall {recall:.3f}"


@pytest.mark.xfail(
    strict=True,
    reason="held-out-3: 3.9 % (131/3348) of clinical terms scrubbed with the learned tagger "
    "(2.7 % with rules alone); recall was preferred over precision",
)
def test_clinical_terms_are_rarely_scrubbed(measured: Score) -> None:
    rate = measured.term_fp_rate
    assert rate <= TERM_FP_CEILING, f"held-out-3 clinical-term false-positive rate {rate:.3f}"


def test_the_scoring_rewards_an_oracle_and_nothing_else(corpus: list[Note]) -> None:
    oracle, echo, silent = Score(), Score(), Score()
    for note in corpus[:60]:
        reps = [PhiReplacement(p.start, p.end, p.category, f"[{p.category}]") for p in note.phi]
        rebuilt = note.text
        for r in sorted(reps, key=lambda r: -r.start):
            rebuilt = rebuilt[: r.start] + r.replacement + rebuilt[r.end :]
        score_note(note, rebuilt, reps, oracle)
        echoes = [PhiReplacement(p.start, p.end, p.category, p.value) for p in note.phi]
        score_note(note, note.text, echoes, echo)
        score_note(note, note.text, (), silent)
    assert oracle.by_category["NAME"].recall == oracle.precision == 1.0
    assert oracle.term_fp_rate == 0.0
    assert echo.by_category["NAME"].recall == echo.by_category["ID"].recall == 0.0
    assert echo.by_category["DATE"].recall == 1.0
    assert silent.by_category["NAME"].recall == silent.by_category["DATE"].recall == 0.0
