"""The learned PHI tagger (clinic_app/io/deid/ner.py) and its union with the scrubber's rules."""

from __future__ import annotations

import itertools
import logging
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

import numpy as np
import pytest

from clinic_app.io.deid import ner, text
from clinic_app.io.deid.text import scrub_text

pytest.importorskip("transformers")


def _tagged(note: str) -> list[tuple[str, str]]:
    return [(note[s.start : s.end], s.category) for s in ner.tag(note, text.tagger_word_lists())]


def test_shipped_head_is_small_and_matches_the_installed_encoder() -> None:
    files = resources.files("clinic_app.io.deid")
    assert len(files.joinpath(ner.HEAD_FILE).read_bytes()) < 1_000_000
    meta = ner.metadata()
    weights = ner.encoder_folder() / "model.safetensors"
    assert meta["encoder"]["sha256"] == ner.sha256_of(weights)
    assert 0.0 < meta["threshold"] < 1.0
    assert meta["validation"]["rules_alone"]["name_recall"] > 0
    assert meta["training_data"]["phi_heldout2"]["seed"] != 20240611  # not the test's seed


def test_windows_cover_every_token_with_overlap() -> None:
    assert ner.windows(0) == []
    assert ner.windows(10) == [(0, 10)]
    spans = ner.windows(1000)
    covered = np.zeros(1000, dtype=bool)
    for start, end in spans:
        assert end - start <= ner.WINDOW_TOKENS
        covered[start:end] = True
    assert covered.all()
    assert all(b[0] < a[1] for a, b in itertools.pairwise(spans))  # overlapping


def test_words_join_into_spans_across_initials_and_id_separators() -> None:
    note = "Seen by E. O'Donnell and Tupou L. today; RN: RX1 431663."
    words = [m.span() for m in ner.WORD.finditer(note)]
    probs = np.zeros((len(words), 3), dtype=np.float32)
    probs[:, 0] = 1.0
    for i, (a, b) in enumerate(words):
        if note[a:b] in ("E", "O'Donnell", "Tupou", "L"):
            probs[i] = (0.1, 0.9, 0.0)
        if note[a:b] in ("RX1", "431663"):
            probs[i] = (0.1, 0.0, 0.9)
    spans = ner.spans_from_probabilities(note, words, probs, 0.5)
    assert [(note[s.start : s.end], s.category) for s in spans] == [
        ("E. O'Donnell", "NAME"),
        ("Tupou L.", "NAME"),
        ("RX1 431663", "ID"),
    ]
    assert ner.spans_from_probabilities(note, words, probs, 0.95) == []


@pytest.mark.parametrize(
    ("note", "value"),
    [
        ("Chest pain since Tuesday. Mwangi Otieno reports it is worse on exertion.", "Otieno"),
        ("REFERRAL\nVAN DIJK, SVEN\nReason: palpitations.", "DIJK"),
        ("Spoke to Ngaire Tupou at the bedside, she agrees with the plan.", "Tupou"),
        ("Hospital no: QX 4418207 B\nHistory: COPD.", "4418207"),
    ],
)
def test_scrubber_with_tagger_removes_names_and_ids(note: str, value: str) -> None:
    output, replacements = scrub_text(note, date_shift_days=5)
    assert value not in output
    assert all(note[r.start : r.end].strip() for r in replacements)


def test_protected_terms_and_clinical_words_survive() -> None:
    note = (
        "Parkinson disease, stable. Foley catheter removed. Babinski sign negative. "
        "Metoprolol 25 mg twice daily. Troponin 0.03. SNOMED 49436004."
    )
    output, _ = scrub_text(note, date_shift_days=5)
    for kept in ("Parkinson disease", "Foley catheter", "Babinski sign", "Metoprolol", "49436004"):
        assert kept in output


def test_long_notes_are_read_in_windows_with_correct_offsets() -> None:
    filler = "The abdomen is soft and non-tender with normal bowel sounds. " * 120
    note = filler + "Seen with Aroha Ngata and her son Wiremu Ngata today. " + filler
    lists = text.tagger_word_lists()
    assert len(ner.tokenize(note, ner._load(lists).tokenizer, lists).ids) > 3 * ner.WINDOW_TOKENS
    tagged = _tagged(note)
    assert ("Aroha Ngata", "NAME") in tagged and ("Wiremu Ngata", "NAME") in tagged
    output, _ = scrub_text(note, date_shift_days=2)
    assert "Ngata" not in output and output.count("bowel sounds") == 240


def test_concurrent_calls_agree_with_serial_ones() -> None:
    notes = [
        f"Seen with {name} today. MRN {number}. Plan: review in clinic."
        for name, number in (("Aroha Ngata", "7781203"), ("Bui Thi Lan", "5520193"))
    ] * 3
    serial = [_tagged(n) for n in notes]
    with ThreadPoolExecutor(max_workers=3) as pool:
        assert list(pool.map(_tagged, notes)) == serial


def test_rules_alone_when_the_tagger_is_off_or_unavailable(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    note = "Dr. Okafor reviewed the ECG. MRN: 4471920."
    with_tagger = scrub_text(note, date_shift_days=3)
    monkeypatch.setattr(text, "USE_PHI_TAGGER", False)
    assert scrub_text(note, date_shift_days=3)[0] == "Dr. [NAME] reviewed the ECG. MRN: [ID]."
    monkeypatch.setattr(text, "USE_PHI_TAGGER", True)

    def unavailable(*_args: object, **_kwargs: object) -> list[ner.TaggedSpan]:
        raise ner.TaggerUnavailable("torch is not installed")

    monkeypatch.setattr(ner, "tag", unavailable)
    monkeypatch.setitem(text._TAGGER_STATE, "warned", False)
    with caplog.at_level(logging.WARNING, logger="clinic_app.io.deid.text"):
        assert scrub_text(note, date_shift_days=3) == with_tagger
    assert "rules only" in caplog.text
