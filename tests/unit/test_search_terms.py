from __future__ import annotations

from clinic_app.domain.search import query_words, search_terms


def test_terms_are_lower_case_words_and_whole_ids() -> None:
    assert search_terms("C-7KQ2M9XW4T", "P-ABCDEF123456", "Chest pain, 2nd episode", None) == {
        "c",
        "7kq2m9xw4t",
        "c-7kq2m9xw4t",
        "p",
        "abcdef123456",
        "p-abcdef123456",
        "chest",
        "pain",
        "2nd",
        "episode",
    }


def test_query_words_are_deduplicated_and_keep_ids_whole() -> None:
    assert query_words("  Atrial FIB atrial ") == ["atrial", "fib"]
    assert query_words("c-7kq2") == ["c-7kq2"]
    assert query_words("%_") == []
