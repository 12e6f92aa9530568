"""Note files in any common encoding, binary files refused, size caps checked before reading."""

from __future__ import annotations

import codecs
import random
import time
import zlib
from pathlib import Path

import pytest

from clinic_app.domain.errors import InputError
from clinic_app.domain.notes import MAX_NOTE_CHARS, ClinicalNote
from clinic_app.io.limits import ReadLimits
from clinic_app.io.notes import note_from_text, read_note

NOTE = (
    "History: 67-year-old with chest pain since Tuesday.\n"
    "Medication: “Metoprolol” 50 µg… twice daily – café au lait spots noted.\n"
    "Temperature 38.2 °C, résumé of care given.\n"
)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_utf8(tmp_path: Path) -> None:
    note = read_note(_write(tmp_path, "note.txt", NOTE.encode("utf-8")))
    assert isinstance(note, ClinicalNote)
    assert note.text == NOTE
    assert (note.encoding, note.replaced_bytes, note.source) == ("utf-8", 0, "note.txt")


@pytest.mark.parametrize(
    ("bom", "codec", "expected"),
    [
        (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16-be"),
        (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be", "utf-32-be"),
    ],
)
def test_byte_order_marks(tmp_path: Path, bom: bytes, codec: str, expected: str) -> None:
    note = read_note(_write(tmp_path, "bom.txt", bom + NOTE.encode(codec)))
    assert note.text == NOTE
    assert note.encoding == expected
    assert note.replaced_bytes == 0


def test_utf16_without_bom(tmp_path: Path) -> None:
    note = read_note(_write(tmp_path, "wide.txt", NOTE.encode("utf-16-le")))
    assert note.text == NOTE
    assert note.encoding == "utf-16-le"


def test_cp1252_smart_quotes_and_micro(tmp_path: Path) -> None:
    text = (
        "Patient states “I feel dizzy” after the new dose.\n"
        "Digoxin 125 µg daily – levels pending… see ‘plan’ below.\n"
        "Plan: continue current medication, recheck levels in one week.\n"
    )
    data = text.encode("cp1252")
    assert b"\x93" in data and b"\xb5" in data
    note = read_note(_write(tmp_path, "win.txt", data))
    assert note.text == text
    assert note.replaced_bytes == 0


def test_latin1_degrees(tmp_path: Path) -> None:
    text = "Fièvre à 39 °C depuis deux jours; température contrôlée à 37,5 °C ce matin.\n"
    note = read_note(_write(tmp_path, "latin.txt", text.encode("latin-1")))
    assert note.text == text
    assert note.replaced_bytes == 0


@pytest.mark.parametrize(
    ("codec", "text"),
    [
        (
            "shift_jis",
            "患者は胸痛を訴えて来院した。心電図では洞調律、ST上昇は認めない。経過観察とする。\n",
        ),
        ("gb18030", "患者主诉胸痛三天,心电图显示窦性心律,未见ST段抬高。建议门诊随访观察。\n"),
    ],
)
def test_east_asian_encodings(tmp_path: Path, codec: str, text: str) -> None:
    note = read_note(_write(tmp_path, f"{codec}.txt", text.encode(codec)))
    assert note.text == text
    assert note.replaced_bytes == 0


def test_bad_bytes_are_replaced_and_counted(tmp_path: Path) -> None:
    rng = random.Random(7)
    data = bytearray(NOTE.encode("utf-8") * 4)
    positions = sorted(rng.sample(range(len(data)), 6))
    for position in positions:  # lone continuation bytes: never valid UTF-8 on their own
        data[position : position + 1] = b"\x80\x80\xff" if position % 2 else b"\xfe"
    note = read_note(_write(tmp_path, "damaged.txt", bytes(data)))
    assert note.encoding == "utf-8"
    assert note.replaced_bytes > 0
    assert "\ufffd" in note.text
    assert "chest pain" in note.text


def test_random_garbage_never_crashes(tmp_path: Path) -> None:
    rng = random.Random(11)
    for index in range(40):
        body = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 4000)))
        path = _write(tmp_path, f"junk{index}.txt", body)
        try:
            note = read_note(path)
        except InputError as error:
            assert f"junk{index}.txt" in str(error)
        else:
            assert "\x00" not in note.text and "\r" not in note.text


def test_newlines_and_nul_normalised(tmp_path: Path) -> None:
    note = read_note(_write(tmp_path, "crlf.txt", b"line one\r\nline two\rline\x00 three\n"))
    assert note.text == "line one\nline two\nline three\n"


@pytest.mark.parametrize(
    ("name", "data", "kind"),
    [
        ("report.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\n", "PDF"),
        ("scan.png", None, "PNG"),
        ("letter.docx", b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 40, "Word"),
    ],
)
def test_binary_files_refused(tmp_path: Path, name: str, data: bytes | None, kind: str) -> None:
    if data is None:
        from PIL import Image

        Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / name)
        path = tmp_path / name
    else:
        path = _write(tmp_path, name, data)
    with pytest.raises(InputError, match=rf"{name} is not a text file \(it looks like .*{kind}"):
        read_note(path)


def test_nul_heavy_binary_refused(tmp_path: Path) -> None:
    data = zlib.compress(b"x" * 10_000) + bytes(range(256)) * 4
    with pytest.raises(InputError, match=r"blob.txt is not a text file"):
        read_note(_write(tmp_path, "blob.txt", data))


def test_oversize_refused_with_clear_message(tmp_path: Path) -> None:
    path = _write(tmp_path, "notes.txt", b"a" * int(3.1 * 1024 * 1024))
    with pytest.raises(InputError) as caught:
        read_note(path)
    assert str(caught.value) == (
        "notes.txt is 3.1 MB; the limit is 2 MB: split it or attach a summary."
    )


def test_sparse_3gb_file_refused_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.txt"
    with path.open("wb") as handle:
        handle.truncate(3 * 1024**3)
    started = time.perf_counter()
    with pytest.raises(InputError, match=r"huge.txt is 3072 MB; the limit is 2 MB"):
        read_note(path)
    assert time.perf_counter() - started < 1.0  # reading 3 GB of zeros would take seconds


def test_custom_limit(tmp_path: Path) -> None:
    path = _write(tmp_path, "n.txt", b"x" * 2048)
    with pytest.raises(InputError, match="limit"):
        read_note(path, ReadLimits(max_note_bytes=1024))


def test_too_many_characters(tmp_path: Path) -> None:
    path = _write(tmp_path, "long.txt", b"word " * (MAX_NOTE_CHARS // 5 + 1))
    with pytest.raises(InputError, match=r"long.txt has 200,005 characters; the limit is 200,000"):
        read_note(path)


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"gone\.txt is missing"):
        read_note(tmp_path / "gone.txt")
    with pytest.raises(InputError, match="is not a file"):
        read_note(tmp_path)


def test_typed_notes_are_the_same_type() -> None:
    note = note_from_text("BP 120/80\r\nno\x00 distress\x07\r")
    assert isinstance(note, ClinicalNote)
    assert (note.text, note.source, note.replaced_bytes) == ("BP 120/80\nno distress\n", "typed", 0)
    with pytest.raises(InputError, match="The typed note has 200,001 characters"):
        note_from_text("x" * (MAX_NOTE_CHARS + 1))
    with pytest.raises(InputError, match="the typed note is not a text file"):
        note_from_text("\x01\x02\x03\x04" * 100 + "text")
