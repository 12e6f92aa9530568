"""Clinical notes and the record of what de-identification changed in a text."""

from __future__ import annotations

import re
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


_HEADING = re.compile(r"^[ \t]{0,3}#{1,6}[ \t]+", re.MULTILINE)
_EMPHASIS = re.compile(
    r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1|(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\3(?![\w*])"
)
_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!])")


def plain_text_from_markdown(text: str) -> str:
    """The words of a note kept as Markdown, without its markup (what the model reads).

    Notes edited in the app are stored as Markdown (bold, italic, headings, lists); the model
    was trained on plain transcriptions, so heading marks, emphasis markers and backslash
    escapes are removed. List bullets and line breaks stay: they carry structure. Plain notes
    pass through unchanged (apart from a literal ``**word**``)."""
    out = _HEADING.sub("", text)
    previous = None
    while previous != out:  # nested emphasis (***word***) needs two passes
        previous = out
        out = _EMPHASIS.sub(lambda m: m.group(2) if m.group(1) else m.group(4), out)
    return _ESCAPE.sub(r"\1", out)
