"""The note editor: rich text kept as Markdown, undo, dirty state, save through the real
IngestService (PHI scrubbed, changes shown and marked), versions and the model's relevance view."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QTextCursor

from clinic_app.domain.cases import NoteInfo
from clinic_app.domain.explanations import NoteHighlights, WordRelevance
from clinic_app.domain.records import Role
from clinic_app.gui.note_editor import (
    NoteEditor,
    markdown_for_editor,
    scrubbed_spans_in_saved_text,
    tidy_markdown,
    utf16_offsets,
)
from clinic_app.services.cases import CaseService
from clinic_app.services.ingest import IngestService
from clinic_app.storage.engine import Database
from tests.services.test_cases import make_actor

pytestmark = pytest.mark.gui

SAVED = datetime(2026, 11, 12, 14, 2, tzinfo=UTC)


def _note(version: int, text: str, scrubbed: list[dict[str, object]] | None = None) -> NoteInfo:
    sha = hashlib.sha256(text.encode()).hexdigest()
    return NoteInfo(version, text, sha, scrubbed or [], "dr_lee", SAVED)


@pytest.fixture
def editor(qtbot) -> NoteEditor:  # type: ignore[no-untyped-def]
    widget = NoteEditor()
    qtbot.addWidget(widget)
    widget.resize(760, 520)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def _type_at_end(qtbot, editor: NoteEditor, text: str) -> None:  # type: ignore[no-untyped-def]
    editor.editor.setFocus()
    editor.editor.moveCursor(QTextCursor.MoveOperation.End)
    qtbot.keyClicks(editor.editor, text)


def test_formatting_is_kept_as_markdown(qtbot, editor: NoteEditor) -> None:  # type: ignore[no-untyped-def]
    editor.set_note(None, read_only=False)
    _type_at_end(qtbot, editor, "Assessment")
    qtbot.keyClick(
        editor.editor,
        Qt.Key.Key_2,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier,
    )
    qtbot.keyClick(editor.editor, Qt.Key.Key_Return)  # a normal paragraph follows a heading
    qtbot.keyClick(editor.editor, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(editor.editor, "Palpitations")
    qtbot.keyClick(editor.editor, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClicks(editor.editor, " for 5 days.")
    qtbot.keyClick(editor.editor, Qt.Key.Key_Return)
    qtbot.keyClick(
        editor.editor,
        Qt.Key.Key_8,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    qtbot.keyClicks(editor.editor, "irregular pulse")
    qtbot.keyClick(editor.editor, Qt.Key.Key_Return)
    qtbot.keyClicks(editor.editor, "no syncope")
    markdown = editor.markdown()
    assert markdown == (
        "## Assessment\n\n**Palpitations** for 5 days.\n\n- irregular pulse\n- no syncope\n"
    )
    assert editor.is_dirty()


def test_undo_redo_and_dirty_state(qtbot, editor: NoteEditor) -> None:  # type: ignore[no-untyped-def]
    editor.set_note(_note(1, "Chest pain since Monday.\n"), read_only=False)
    assert not editor.is_dirty() and "Saved" in editor.dirty_label.text()
    _type_at_end(qtbot, editor, " Worse on exertion.")
    assert editor.is_dirty() and "Unsaved" in editor.dirty_label.text()
    assert editor.markdown() == "Chest pain since Monday. Worse on exertion.\n"
    qtbot.keyClick(editor.editor, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert editor.markdown() == "Chest pain since Monday.\n"
    assert not editor.is_dirty()  # back at the saved text
    qtbot.keyClick(
        editor.editor,
        Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    assert editor.markdown() == "Chest pain since Monday. Worse on exertion.\n"
    assert editor.is_dirty()
    # Loading a note clears the undo history: undo cannot bring back another case's text.
    editor.set_note(_note(2, "Other note.\n"), read_only=False)
    assert not editor.editor.document().isUndoAvailable()


def test_plain_text_note_files_keep_their_lines() -> None:
    text = "Referral from GP\nPalpitations x5 days\n- no chest pain\n- no syncope\n"
    loaded = markdown_for_editor(text)
    assert loaded == ("Referral from GP\n\nPalpitations x5 days\n- no chest pain\n- no syncope\n")
    wrapped = "word " * 30
    qt_output = wrapped[:79].rstrip() + "\n" + wrapped[79:] + "\n\nSeen by \\[NAME] today.\n\n"
    assert tidy_markdown(qt_output) == wrapped.strip() + "\n\nSeen by [NAME] today.\n"
    assert tidy_markdown("a link \\[see](x)\n") == "a link \\[see](x)\n"


def test_round_trip_is_stable(qtbot, editor: NoteEditor) -> None:  # type: ignore[no-untyped-def]
    text = (
        "## Impression\n\nSeen by [NAME] on 03/04/2021. "
        + "Long sentence. " * 12
        + "\n\n- a\n- b\n"
    )
    editor.set_note(_note(1, text), read_only=False)
    assert editor.markdown() == text.replace(". \n", ".\n")
    assert not editor.is_dirty()


def test_ctrl_s_saves_through_ingest_and_shows_what_was_scrubbed(  # type: ignore[no-untyped-def]
    qtbot, editor: NoteEditor, database: Database, tmp_path: Path
) -> None:
    clinician = make_actor(database, "dr_lee", Role.CLINICIAN)
    cases = CaseService(database, tmp_path / "inputs")
    ingest = IngestService(cases, b"k" * 32)
    case = cases.create_case(clinician, title="Palpitations")
    saved_notes: list[NoteInfo] = []

    def save(markdown: str) -> None:  # what the lead wires (on the writer thread there)
        result = ingest.save_typed_note(clinician, case.case_uid, markdown)
        assert result.note is not None
        saved_notes.append(result.note)
        editor.show_saved(result.note)

    editor.saveRequested.connect(save)
    editor.set_note(None, read_only=False)
    assert "No note yet" in editor.version_label.text()
    _type_at_end(
        qtbot,
        editor,
        "Seen by Dr. Jonathan Smithers on 03/14/2021. MRN: 00482913. Palpitations, 5 days.",
    )
    with qtbot.waitSignal(editor.saveRequested, timeout=10_000):
        qtbot.keyClick(editor.editor, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    note = saved_notes[-1]
    shown = editor.editor.toPlainText()
    assert "Smithers" not in shown and "00482913" not in shown  # the scrubbed text is reloaded
    assert shown == note.text.strip()
    assert not editor.is_dirty()
    assert editor.version_label.text().startswith("Version 1 \u00b7 saved by dr_lee \u00b7 ")

    assert editor.phi_panel.isVisible()
    title = editor.phi_title.text()
    assert f"PHI removed on save: {len(note.scrubbed)}" in title
    rows = [editor.phi_list.item(i).text() for i in range(editor.phi_list.count())]
    categories = {entry["category"] for entry in note.scrubbed}
    assert {"NAME", "ID"} <= categories
    assert any(row.startswith("NAME \u2192 [NAME]") for row in rows)
    assert any(row.startswith("ID \u2192 [ID]") for row in rows)
    # Each replacement is marked where it now stands in the saved text.
    spans = editor.phi_highlight_spans()
    assert len(spans) == len(note.scrubbed)
    marked = [shown[a:b] for a, b in spans]
    assert marked == [
        entry["replacement"] for entry in sorted(note.scrubbed, key=lambda e: e["start"])
    ]
    assert len(editor.editor.extraSelections()) == len(spans)
    # Clicking an entry selects it in the note.
    editor.phi_list.setCurrentRow(1)
    assert editor.editor.textCursor().selectedText() == marked[1]

    # A second save makes version 2 and keeps the history.
    _type_at_end(qtbot, editor, " Plan: Holter.")
    editor.save()
    assert saved_notes[-1].version == 2
    assert editor.history_list.count() == 2
    assert editor.history_list.item(0).text().startswith("Version 2")
    assert "2 versions" in editor.version_label.text()
    assert "PHI removed on save: none found" in editor.phi_title.text() or saved_notes[-1].scrubbed
    detail = cases.get_case(clinician, case.case_uid)
    assert [n.version for n in detail.notes] == [1, 2]
    assert "Plan: Holter." in detail.notes[-1].text


def test_saved_offsets_move_with_earlier_replacements() -> None:
    original = "Dr. Jonathan Smithers saw him; MRN 00482913."
    scrubbed = [
        {"start": 4, "end": 21, "category": "NAME", "replacement": "[NAME]"},
        {"start": 35, "end": 43, "category": "ID", "replacement": "[ID]"},
    ]
    saved = "Dr. [NAME] saw him; MRN [ID]."
    spans = scrubbed_spans_in_saved_text(scrubbed)
    assert [saved[a:b] for a, b, _, _ in spans] == ["[NAME]", "[ID]"]
    assert original[35:43] == "00482913"


def test_read_only_for_signed_cases(qtbot, editor: NoteEditor) -> None:  # type: ignore[no-untyped-def]
    editor.set_note(_note(3, "Final note.\n"), read_only=True)
    assert editor.editor.isReadOnly() and editor.is_read_only()
    assert not editor.action("save").isEnabled() and not editor.action("bold").isEnabled()
    with qtbot.assertNotEmitted(editor.saveRequested):
        qtbot.keyClick(editor.editor, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
        editor.save()
    _type_at_end(qtbot, editor, "xyz")
    assert editor.markdown() == "Final note.\n"
    assert "Read-only" in editor.dirty_label.text()


def _highlights(text: str) -> NoteHighlights:
    def span(word: str, score: float) -> WordRelevance:
        start = text.rindex(word)
        return WordRelevance(start, start + len(word), score)

    return NoteHighlights(
        note_version=1,
        text_sha256=hashlib.sha256(text.encode()).hexdigest(),
        text=text,
        words=(span("palpitations", 0.42), span("irregular", 0.123), span("regular.", -0.2)),
    )


def test_model_view_shades_words_and_explains_on_hover(  # type: ignore[no-untyped-def]
    qtbot, editor: NoteEditor
) -> None:
    text = "Patient reports palpitations \U0001f494; pulse irregular. Previously regular.\n"
    editor.set_note(_note(1, text), read_only=False)
    editor.set_highlights(_highlights(text), "Atrial fibrillation")
    assert editor.tabs.currentIndex() == editor.model_tab_index
    view = editor.model_view
    assert view.toPlainText() == text.rstrip("\n") or view.toPlainText() == text
    assert not editor.model_notice.isVisible()
    offsets = utf16_offsets(text)
    irregular = offsets[text.index("irregular")]  # after a non-BMP emoji: UTF-16 positions
    assert view.tooltip_at_position(irregular + 2) == (
        "relevance +0.123 (supports Atrial fibrillation)"
    )
    regular = offsets[text.rindex("regular.")]
    assert view.tooltip_at_position(regular) == (
        "relevance -0.200 (argues against Atrial fibrillation)"
    )
    assert view.tooltip_at_position(offsets[text.index("pulse")]) is None
    cursor = QTextCursor(view.document())
    cursor.setPosition(irregular + 1)
    warm = cursor.charFormat().background().color()
    cursor.setPosition(regular + 1)
    cool = cursor.charFormat().background().color()
    assert warm.red() > warm.blue() and cool.blue() > cool.red()
    cursor.setPosition(offsets[text.index("palpitations")] + 1)
    assert cursor.charFormat().background().color().alpha() > warm.alpha()  # stronger word

    # Editing the note after the analysis is flagged.
    editor.tabs.setCurrentIndex(editor.edit_tab_index)
    _type_at_end(qtbot, editor, " New line.")
    editor.tabs.setCurrentIndex(editor.model_tab_index)
    assert editor.model_notice.isVisible()
    assert "changed since this analysis" in editor.model_notice.text()
    editor.set_highlights(None)
    assert not editor.tabs.isTabEnabled(editor.model_tab_index)
    assert editor.tabs.currentIndex() == editor.edit_tab_index


def test_grab_for_review(qtbot, editor: NoteEditor, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = "## Assessment\n\nPatient reports palpitations; pulse irregular, previously regular.\n"
    scrubbed = [{"start": 0, "end": 0, "category": "NAME", "replacement": "[NAME]"}]
    editor.set_note(_note(2, text, []), read_only=False)
    editor.set_versions([_note(1, "Earlier.\n", scrubbed), _note(2, text)])
    editor.set_highlights(_highlights(text), "Atrial fibrillation")
    image = editor.grab()
    assert not image.isNull() and image.width() >= 700
    assert image.save(str(tmp_path / "note_model_view.png"))
    assert [k for k, _ in editor.shortcuts()][:2] == ["Ctrl+S", "Ctrl+B"]


def test_refreshing_the_same_version_keeps_unsaved_edits(qtbot, editor: NoteEditor) -> None:  # type: ignore[no-untyped-def]
    note = _note(4, "Dyspnoea.\n")
    editor.set_note(note, read_only=False)
    _type_at_end(qtbot, editor, " On exertion.")
    editor.set_note(note, read_only=False)  # the workspace reloads the case after a vitals save
    assert editor.is_dirty() and "On exertion." in editor.markdown()
    editor.set_note(_note(5, "Newer.\n"), read_only=False)
    assert editor.markdown() == "Newer.\n" and not editor.is_dirty()
