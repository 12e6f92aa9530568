"""Clinical notes from text files or typed in the app -> :class:`ClinicalNote`.

A note file comes from outside, so it is checked before it is read (size cap), refused when it is
not text (PDF, images, Word files, binary), decoded whatever its encoding (byte-order marks, UTF-8,
then charset-normalizer for cp1252, latin-1, UTF-16 without a BOM, Shift-JIS, GB18030, ...) and
never crashes on bad bytes: they become U+FFFD and are counted. Typed notes go through the same
clean-up and checks, so both arrive as the same type.
"""

from __future__ import annotations

import codecs
import re
import threading
import unicodedata
from pathlib import Path

from clinic_app.domain.errors import InputError
from clinic_app.domain.notes import MAX_NOTE_CHARS, ClinicalNote
from clinic_app.io.limits import DEFAULT_LIMITS, ReadLimits

__all__ = ["note_from_text", "read_note"]

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: it starts with the same two bytes
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

#: File signatures of formats people attach by mistake, and what to call them in the error.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF-", "PDF"),
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"GIF87a", "a GIF image"),
    (0, b"GIF89a", "a GIF image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (0, b"BM", "a BMP image"),
    (128, b"DICM", "DICOM"),
    (0, b"PK\x03\x04", "a ZIP archive or a Word/OpenDocument file"),
    (0, b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office file"),
    (0, b"{\\rtf", "RTF: save it as plain text"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"Rar!", "a RAR archive"),
    (0, b"\x7fELF", "a program"),
    (0, b"MZ", "a Windows program"),
    (0, b"SQLite format 3\x00", "an SQLite database"),
    (0, b"fLaC", "a FLAC audio file"),
    (0, b"RIFF", "a RIFF audio or video file"),
)

#: C0/C1 control characters other than tab and newline, removed from every note.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
#: More control characters than this share of the text: it is not a note.
_MAX_CONTROL_SHARE = 0.05
_NEWLINES = re.compile(r"\r\n?|[\u2028\u2029\x85]")

#: Among equally plausible single-byte code pages, the ones notes are most often written in.
_PREFERRED = ("cp1252", "iso8859-1", "iso8859-15")

_ERROR_HANDLER = "clinicfusion.count-replace"
_counter = threading.local()


def _count_replace(error: UnicodeError) -> tuple[str, int]:
    """Replace each undecodable span with one U+FFFD and count the bytes it held."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    _counter.value = getattr(_counter, "value", 0) + (error.end - error.start)
    return "\ufffd", error.end


codecs.register_error(_ERROR_HANDLER, _count_replace)


def _decode(data: bytes, encoding: str) -> tuple[str, int]:
    """Decode with replacement; return the text and how many bytes were undecodable."""
    _counter.value = 0
    try:
        text = data.decode(encoding, errors=_ERROR_HANDLER)
    finally:
        replaced = int(_counter.value)
        _counter.value = 0
    return text, replaced


def _megabytes(size: int) -> str:
    value = size / (1024 * 1024)
    return f"{value:.0f} MB" if value == int(value) else f"{value:.1f} MB"


def _sniff_binary(data: bytes) -> str | None:
    """What a non-text file looks like (for the error), or None when it may be text."""
    for offset, magic, kind in _MAGIC:
        if data[offset : offset + len(magic)] == magic:
            return kind
    return None


def _utf16_without_bom(data: bytes) -> str | None:
    """UTF-16 text without a BOM has a NUL in every other byte (for mostly-Latin text)."""
    if len(data) < 4 or len(data) % 2:
        return None
    even, odd = data[0::2], data[1::2]
    pairs = len(even)
    if odd.count(0) > 0.4 * pairs and even.count(0) < 0.05 * pairs:
        return "utf-16-le"
    if even.count(0) > 0.4 * pairs and odd.count(0) < 0.05 * pairs:
        return "utf-16-be"
    return None


def _mostly_utf8(data: bytes) -> bool:
    """True when the bytes are UTF-8 with a few damaged bytes rather than another encoding:
    it holds valid multi-byte sequences and the invalid bytes are fewer than those."""
    text, replaced = _decode(data, "utf-8")
    multibyte = sum(1 for char in text if ord(char) > 0x7F and char != "\ufffd")
    return multibyte > 0 and replaced <= max(multibyte, len(data) // 200)


def _detect(data: bytes) -> tuple[str, int, str]:
    """Decode ``data``: returns (text, undecodable byte count, encoding name)."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text, replaced = _decode(data[len(bom) :], encoding)
            return text, replaced, "utf-8-sig" if encoding == "utf-8" else encoding
    try:
        return data.decode("utf-8"), 0, "utf-8"
    except UnicodeDecodeError:
        pass
    wide = _utf16_without_bom(data)
    if wide is not None:
        text, replaced = _decode(data, wide)
        return text, replaced, wide
    if _mostly_utf8(data):
        text, replaced = _decode(data, "utf-8")
        return text, replaced, "utf-8"
    from charset_normalizer import from_bytes  # ~20 ms import; only for non-UTF-8 files

    matches = from_bytes(data)
    best = matches.best()
    encoding = "cp1252"
    if best is not None:
        encoding = best.encoding
        tied = {
            codecs.lookup(match.encoding).name
            for match in matches
            if match.chaos <= best.chaos + 0.01 and match.coherence >= best.coherence - 0.01
        }
        # Short Western texts fit several code pages equally well: prefer the common ones.
        encoding = next((name for name in _PREFERRED if name in tied), encoding)
    try:
        encoding = codecs.lookup(encoding).name
    except LookupError:
        encoding = "cp1252"
    text, replaced = _decode(data, encoding)
    return text, replaced, encoding


def _clean(text: str, source: str) -> str:
    """Normalise newlines, drop NUL and other control characters; refuse binary-looking text."""
    text = _NEWLINES.sub("\n", text).removeprefix("\ufeff")
    controls = len(_CONTROL.findall(text))
    if controls > max(16, _MAX_CONTROL_SHARE * len(text)):
        where = "the typed note" if source == "typed" else source
        raise InputError(
            f"{where} is not a text file (it contains {controls:,} control characters in "
            f"{len(text):,}).",
            hint="Save the note as plain text and try again.",
        )
    text = _CONTROL.sub("", text)
    if len(text) > MAX_NOTE_CHARS:
        where = "The typed note" if source == "typed" else source
        raise InputError(
            f"{where} has {len(text):,} characters; the limit is {MAX_NOTE_CHARS:,}: "
            "split it or attach a summary."
        )
    return unicodedata.normalize("NFC", text)


def note_from_text(text: str, source: str = "typed") -> ClinicalNote:
    """A note typed in the app (or text from elsewhere), cleaned and checked like a file."""
    return ClinicalNote(text=_clean(text, source), source=source)


def read_note(path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> ClinicalNote:
    """Read a note file: size cap before reading, binary files refused, encoding detected."""
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise InputError(f"{name} is not a file.", hint="Choose a text file with the note.")
    except FileNotFoundError as error:
        raise InputError(f"note file {name} is missing.") from error
    except OSError as error:
        raise InputError(f"{name} cannot be read: {error.strerror or error}.") from error
    if size > limits.max_note_bytes:
        raise InputError(
            f"{name} is {_megabytes(size)}; the limit is {_megabytes(limits.max_note_bytes)}: "
            "split it or attach a summary."
        )
    try:
        with path.open("rb") as handle:
            data = handle.read(limits.max_note_bytes + 1)  # the file may have grown since stat
    except OSError as error:
        raise InputError(f"{name} cannot be read: {error.strerror or error}.") from error
    if len(data) > limits.max_note_bytes:
        raise InputError(
            f"{name} is larger than {_megabytes(limits.max_note_bytes)}: "
            "split it or attach a summary."
        )
    kind = _sniff_binary(data)
    if kind is not None:
        raise InputError(f"{name} is not a text file (it looks like {kind}).")
    has_bom = any(data.startswith(bom) for bom, _ in _BOMS)
    nuls = data.count(0)
    if (
        nuls
        and not has_bom
        and _utf16_without_bom(data) is None
        and nuls > max(16, 0.01 * len(data))
    ):
        raise InputError(
            f"{name} is not a text file (it contains binary data: {nuls:,} NUL bytes).",
            hint="Save the note as plain text and try again.",
        )
    text, replaced, encoding = _detect(data)
    return ClinicalNote(
        text=_clean(text, name), source=name, encoding=encoding, replaced_bytes=replaced
    )
