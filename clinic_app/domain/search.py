"""Words a case can be found by in the case list (prefix search)."""

from __future__ import annotations

import re

_WORD = re.compile(r"[0-9a-z]+")
MAX_TERM_LENGTH = 100


def search_terms(*texts: str | None) -> set[str]:
    """Lower-case words of the given texts, plus each hyphenated id whole (``c-7kq2m9xw4t``)."""
    terms: set[str] = set()
    for text in texts:
        if not text:
            continue
        lowered = text.lower()
        terms.update(_WORD.findall(lowered))
        terms.update(part for part in lowered.split() if "-" in part)
    return {term[:MAX_TERM_LENGTH] for term in terms}


def query_words(text: str) -> list[str]:
    """The words of a search box entry; a case matches when each is a prefix of one of its terms."""
    return sorted({word[:MAX_TERM_LENGTH] for word in re.findall(r"[0-9a-z-]+", text.lower())})
