"""Held-out recall of the note scrubber on tests/io/phi_heldout.py (issue 3: names and record
numbers >= 0.95). The set was written without reading the scrubber or its tuning corpus.

Run with ``-s`` to print the table of figures.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from clinic_app.domain.notes import PhiReplacement
from clinic_app.io.deid.text import scrub_text
from tests.io.phi_heldout import HeldoutNote, PlantedSpan, generate_heldout

_PHI = ("NAME", "ID", "DATE", "PHONE", "EMAIL", "ADDRESS", "AGE>89")
_SHIFT_DAYS = 23


@dataclass(slots=True)
class Tally:
    """Caught / planted for one group."""

    caught: int = 0
    planted: int = 0
    misses: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return self.caught / self.planted if self.planted else float("nan")


@dataclass(slots=True)
class Scores:
    """Everything measured on the held-out set."""

    recall: dict[str, dict[str, Tally]] = field(default_factory=lambda: defaultdict(dict))
    replacements: Counter[tuple[str, str]] = field(default_factory=Counter)
    false_positives: list[str] = field(default_factory=list)
    clinical_hits: list[str] = field(default_factory=list)
    clinical_total: int = 0
    partial: int = 0
    offset_only_leaks: int = 0

    def add(self, table: str, group: str, caught: bool, miss: str) -> None:
        tally = self.recall[table].setdefault(group, Tally())
        tally.planted += 1
        tally.caught += caught
        if not caught:
            tally.misses.append(miss)


def _covered(span: PlantedSpan, replaced: list[tuple[int, int]]) -> tuple[int, int]:
    """(non-space characters of ``span`` inside some replacement, non-space characters)."""
    wanted = [i for i in range(span.start, span.end) if not span.value[i - span.start].isspace()]
    inside = sum(any(a <= i < b for a, b in replaced) for i in wanted)
    return inside, len(wanted)


def _leaks(span: PlantedSpan, note: HeldoutNote, output: str) -> bool:
    """Whether the planted value still shows in the output more often than it shows in the
    note's text outside planted spans of the same value (so "Long QT" does not count for Long)."""
    pattern = re.compile(rf"(?<!\w){re.escape(span.value)}(?!\w)")
    innocent = sum(
        not any(s.start <= m.start() < s.end and s.category in _PHI for s in note.spans)
        for m in pattern.finditer(note.text)
    )
    return len(pattern.findall(output)) > innocent


def _overlaps(a: int, b: int, spans: Iterable[PlantedSpan]) -> list[PlantedSpan]:
    return [s for s in spans if s.start < b and a < s.end]


def score(notes: list[HeldoutNote]) -> Scores:
    """Scrub every note and score recall per category/subgroup and false positives."""
    scores = Scores()
    for index, note in enumerate(notes):
        output, replacements = scrub_text(note.text, date_shift_days=_SHIFT_DAYS)
        replaced = [(r.start, r.end) for r in replacements]
        for span in note.spans:
            if span.category == "KEEP":
                scores.clinical_total += 1
                if _overlaps(span.start, span.end, _as_planted(replacements)):
                    scores.clinical_hits.append(f"{span.value!r} ({span.kind}) in note {index}")
                continue
            if span.category not in _PHI:
                continue
            inside, total = _covered(span, replaced)
            by_offset = inside == total
            # dates are shifted in place and ages become "90+", so only offsets can tell for them
            leaked = span.category not in ("DATE", "AGE>89") and _leaks(span, note, output)
            scores.partial += 0 < inside < total
            scores.offset_only_leaks += by_offset and leaked
            caught = by_offset and not leaked
            line = note.text[max(0, span.start - 30) : span.end + 15].replace("\n", " / ")
            miss = f"[{span.kind}|{span.context or '-'}|{span.origin or '-'}] {span.value!r}"
            miss += f" (covered {inside}/{total}) in: ...{line}..."
            scores.add("category", span.category, caught, miss)
            if span.category == "NAME":
                explicit = "in context (title/label)"
                implicit = "no context (bare/relation word)"
                scores.add("name context", explicit if span.context in ("title", "label")
                           else implicit, caught, miss)  # fmt: skip
                scores.add("name context detail", span.context, caught, miss)
                scores.add("name origin", span.origin, caught, miss)
                scores.add("name role", span.role, caught, miss)
                scores.add("name format", span.kind, caught, miss)
            else:
                scores.add(f"{span.category} format", span.kind, caught, miss)
        for r in replacements:
            hit = _overlaps(r.start, r.end, note.spans)
            if any(s.category in _PHI for s in hit):
                scores.replacements[(r.category, "tp")] += 1
            elif hit and all(s.category == "NEUTRAL" for s in hit):
                scores.replacements[(r.category, "neutral")] += 1
            else:
                scores.replacements[(r.category, "fp")] += 1
                scores.false_positives.append(
                    f"{r.category} {note.text[r.start : r.end]!r} in note {index} "
                    f"({note.style}): ...{note.text[max(0, r.start - 25) : r.end + 15]!r}..."
                )
    return scores


def _as_planted(replacements: tuple[PhiReplacement, ...]) -> list[PlantedSpan]:
    return [PlantedSpan(r.start, r.end, r.category, "") for r in replacements]


def render(scores: Scores, n_notes: int) -> str:
    """A plain-text table of every figure, plus the misses and false positives."""
    lines = [f"Held-out PHI set: {n_notes} notes, date shift {_SHIFT_DAYS} days"]
    for table, groups in scores.recall.items():
        lines.append(f"\n{table:<34} {'caught':>7} {'planted':>8} {'recall':>7}")
        caught = planted = 0
        for group in sorted(groups):
            t = groups[group]
            caught, planted = caught + t.caught, planted + t.planted
            lines.append(f"  {group:<32} {t.caught:>7} {t.planted:>8} {t.recall:>7.3f}")
        if table == "category":
            lines.append(f"  {'ALL PHI':<32} {caught:>7} {planted:>8} {caught / planted:>7.3f}")
    lines.append(f"\npartially covered spans (counted as missed): {scores.partial}")
    lines.append(f"covered by offsets but value still in output: {scores.offset_only_leaks}")
    lines.append(
        f"\n{'replacement category':<22} {'true':>6} {'false':>6} {'neutral':>8} {'prec':>6}"
    )
    for category in sorted({c for c, _ in scores.replacements}):
        tp, fp = scores.replacements[(category, "tp")], scores.replacements[(category, "fp")]
        neutral = scores.replacements[(category, "neutral")]
        lines.append(f"  {category:<20} {tp:>6} {fp:>6} {neutral:>8} {tp / (tp + fp):>6.3f}")
    lines.append(
        f"\nclinical terms wrongly scrubbed: {len(scores.clinical_hits)} / {scores.clinical_total}"
    )
    lines.extend(f"  {hit}" for hit in scores.clinical_hits[:40])
    lines.append(f"\nfalse positives ({len(scores.false_positives)}):")
    lines.extend(f"  {fp}" for fp in scores.false_positives[:60])
    for category in _PHI:
        tally = scores.recall["category"].get(category)
        if tally and tally.misses:
            lines.append(f"\nmisses {category} ({len(tally.misses)}):")
            lines.extend(f"  {m}" for m in tally.misses[:80])
    return "\n".join(lines)


@pytest.fixture(scope="module")
def heldout() -> list[HeldoutNote]:
    return generate_heldout()


@pytest.fixture(scope="module")
def scores(heldout: list[HeldoutNote]) -> Scores:
    return score(heldout)


def test_heldout_set_is_well_formed(heldout: list[HeldoutNote]) -> None:
    """At least 300 notes; each planted span is where it says it is; enough of each kind."""
    assert len(heldout) >= 300
    assert heldout[0].text == generate_heldout()[0].text  # seeded
    counts: Counter[str] = Counter()
    for note in heldout:
        for span in note.spans:
            assert note.text[span.start : span.end] == span.value
            counts[span.category] += 1
    assert counts["NAME"] >= 500 and counts["ID"] >= 200 and counts["KEEP"] >= 300
    origins = Counter(s.origin for n in heldout for s in n.spans if s.category == "NAME")
    assert min(origins["intl"], origins["us"], origins["word"]) >= 100


def test_heldout_report(scores: Scores, heldout: list[HeldoutNote]) -> None:
    """Prints every figure (run with -s); the assertions are in the tests below."""
    print("\n" + render(scores, len(heldout)))
    assert scores.recall["category"]


def test_heldout_clinical_terms_survive(scores: Scores) -> None:
    """Drug names, eponyms, anatomy, ages <= 89 and name-like words (Brown urine, Long QT) are
    not PHI: at most 3% of them may be scrubbed (12 / 698 at the time of writing)."""
    assert len(scores.clinical_hits) <= 0.03 * scores.clinical_total


def test_heldout_titled_names_and_contact_details(scores: Scores) -> None:
    """What the scrubber already does on held-out text, kept from regressing: names after a
    title, e-mail addresses and ages over 89 are all caught."""
    assert scores.recall["name context detail"]["title"].recall == 1.0
    assert scores.recall["category"]["EMAIL"].recall == 1.0
    assert scores.recall["category"]["AGE>89"].recall == 1.0


def test_heldout_name_recall(scores: Scores) -> None:
    """Issue 3: names >= 0.95 recall (0.990 with the learned tagger, which was trained on new
    seeds of this generator's templates, so this set is no longer held out; see held-out 3)."""
    assert scores.recall["category"]["NAME"].recall >= 0.95


def test_heldout_record_number_recall(scores: Scores) -> None:
    """Issue 3: record numbers >= 0.95 recall on the held-out set."""
    assert scores.recall["category"]["ID"].recall >= 0.95
