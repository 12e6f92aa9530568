"""Clinical notes and the record of what de-identification changed in a text."""

from __future__ import annotations

from dataclasses import dataclass

#: A note longer than this is refused with a clear error (about 80 pages of text).
MAX_NOTE_CHARS = 200_000


@dataclass(frozen=True, slots=True)
class PhiReplacement:
    """One span de-identification replaced: where it was in the original text, its category
    ("NAME", "DATE", "ID", "PHONE", "ADDRESS", "EMAIL", "URL", "AGE>89") and the replacement.
    The original words are deliberately not kept."""

    start: int
    end: int
    category: str
    replacement: str


@dataclass(frozen=True, slots=True)
class ClinicalNote:
    """A note as text, from a file or typed in the app (``source`` "typed" or a file name).

    ``encoding`` is what the file was decoded from ("utf-8", "cp1252", ...); ``replaced_bytes``
    counts undecodable bytes that became U+FFFD. ``scrubbed`` lists what de-identification
    changed (empty until it ran).
    """

    text: str
    source: str = "typed"
    encoding: str = "utf-8"
    replaced_bytes: int = 0
    scrubbed: tuple[PhiReplacement, ...] = ()
