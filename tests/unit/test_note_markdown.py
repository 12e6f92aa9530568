"""The model reads a note's words, not its Markdown markup."""

from __future__ import annotations

from clinic_app.domain.notes import plain_text_from_markdown


def test_headings_emphasis_and_escapes_are_removed_lists_and_lines_stay() -> None:
    note = (
        "# Cardiology consult\n\n**Background.** Palpitations, *worse* at night; __no__ "
        "syncope.\n- aspirin 75 mg\n- ***ramipril*** 5 mg\n\nSeen by \\[NAME\\]."
    )
    assert plain_text_from_markdown(note) == (
        "Cardiology consult\n\nBackground. Palpitations, worse at night; no syncope.\n"
        "- aspirin 75 mg\n- ramipril 5 mg\n\nSeen by [NAME]."
    )


def test_plain_text_and_arithmetic_pass_unchanged() -> None:
    text = "BP 120/80, dose 2*3*4 mg, file_name_v2 and a #hashtag inside a line."
    assert plain_text_from_markdown(text) == text
