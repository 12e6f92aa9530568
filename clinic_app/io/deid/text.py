"""Rule-based removal of protected health information (PHI) from note text and WFDB comments.

Offline and explainable: regular expressions for dates, ages over 89, record numbers (labelled,
or any letter-digit token with five or more digits), phone numbers (North American, "+" and
trunk-0 international), addresses, e-mail, URLs and IP addresses. Person names come from explicit
contexts (titles, labels, relation words such as "son", "d/w", "per", credentials such as
", RN"), the "LAST, First M." shape, gazetteers (US Census and, from Faker's MIT lists,
international given names and surnames; lower-case given names only in a name position such as
"hi jutta" or "triaged by irina"), and, with no context, from capitalised words that are
neither English words (SCOWL) nor medical vocabulary (a drug list, MTSamples words, medical
endings): in clinical text such a word is nearly always a name. Dates (with a weekday or a
time written next to them) are shifted by a per-patient number of days keeping their format,
so intervals between dates survive; everything else becomes a category tag ("[NAME]", "[ID]").

Codes after a terminology name ("SNOMED 49436004") are kept. Limits: English only; a name that
is also an English word or a drug name with no verb, possessive or other context ("Hope",
"Allegra") is missed, and a rare device or place name may be taken for a name. A small learned
tagger (``ner.py``, frozen MiniLM + a trained head) adds the NAME and ID spans it finds to the
rules' (``USE_PHI_TAGGER``; rules alone when torch or its weights are missing).
"""

from __future__ import annotations

import calendar
import datetime as dt
import gzip
import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources

from clinic_app.domain.notes import PhiReplacement
from clinic_app.io.deid import ner

__all__ = ["date_shift_for", "scrub_text"]

_log = logging.getLogger(__name__)

# -- word lists --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Lexicon:
    first_strong: frozenset[str]
    first_weak: frozenset[str]  # given names that are also English words ("Will", "Rose")
    first_common: frozenset[str]  # the most frequent given names, words or not ("John")
    last_strong: frozenset[str]
    last_weak: frozenset[str]
    last_common: frozenset[str]  # the most frequent surnames ("Smith", "Brown")
    english: frozenset[str]
    protected: frozenset[str]
    medical: frozenset[str]  # drug names, clinical vocabulary, nationalities: never names


def _read_list(name: str) -> list[str]:
    data = resources.files("clinic_app.io.deid").joinpath("wordlists", name).read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    return [
        line.strip()
        for line in data.decode("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]


@cache
def _lexicon() -> _Lexicon:
    """The gazetteers, loaded once (about 30 ms)."""

    def split(names: list[str]) -> tuple[frozenset[str], frozenset[str]]:
        strong = frozenset(n.lower() for n in names if not n.startswith("~"))
        weak = frozenset(n[1:].lower() for n in names if n.startswith("~"))
        return strong, weak

    firsts = _read_list("first_names.txt") + _read_list("given_names_intl.txt")
    lasts = _read_list("surnames.txt") + _read_list("surnames_intl.txt")
    first_strong, first_weak = split(firsts)
    last_strong, last_weak = split(lasts)
    return _Lexicon(
        first_strong=first_strong,
        first_weak=first_weak,
        first_common=frozenset(n.lstrip("~").lower() for n in firsts[:150]),
        last_strong=last_strong,
        last_weak=last_weak,
        last_common=frozenset(n.lstrip("~").lower() for n in lasts[:300]),
        english=frozenset(_read_list("english_words.txt.gz")),
        protected=frozenset(_read_list("protected_terms.txt")),
        medical=frozenset(_read_list("medical_terms.txt.gz")),
    )


# -- date shift --------------------------------------------------------------------------------


def date_shift_for(patient_key: bytes, secret: bytes) -> int:
    """Days to shift every date of one patient: in [-365, -1] or [1, 365], never 0.

    A keyed HMAC of the patient key, so the same patient always shifts by the same number of
    days while nobody without ``secret`` can recover the shift from the key."""
    digest = hmac.new(secret, b"clinicfusion-date-shift\x00" + patient_key, hashlib.sha256)
    value = int.from_bytes(digest.digest()[:8], "big") % 730
    return value - 365 if value < 365 else value - 364


# -- spans -------------------------------------------------------------------------------------

#: When spans overlap, the lower number wins (then the longer span).
_PRIORITY = {
    "EMAIL": 0,
    "URL": 1,
    "IP": 2,
    "ID": 3,
    "PHONE": 4,
    "DATE": 5,
    "AGE>89": 6,
    "ADDRESS": 7,
    "NAME": 8,
}
_TAGS = {
    "EMAIL": "[EMAIL]",
    "URL": "[URL]",
    "IP": "[IP]",
    "ID": "[ID]",
    "PHONE": "[PHONE]",
    "ADDRESS": "[ADDRESS]",
    "NAME": "[NAME]",
}


@dataclass(frozen=True, slots=True)
class _Span:
    start: int
    end: int
    category: str
    replacement: str


def _resolve(spans: list[_Span], length: int) -> list[_Span]:
    """Keep non-overlapping spans, preferring higher-priority categories, then longer spans."""
    chosen: list[_Span] = []
    taken = bytearray(length)  # 1 where a chosen span already covers the character
    for span in sorted(spans, key=lambda s: (_PRIORITY[s.category], s.start - s.end, s.start)):
        if span.end <= span.start or taken.find(1, span.start, span.end) != -1:
            continue
        chosen.append(span)
        taken[span.start : span.end] = b"\x01" * (span.end - span.start)
    return sorted(chosen, key=lambda s: s.start)


# -- e-mail, URL, IP, phone, record numbers ----------------------------------------------------

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
_URL = re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"'()\[\]]+", re.IGNORECASE)
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"(?<![\d.]){_OCTET}(?:\.{_OCTET}){{3}}(?![\d.]*\d)")
_IPV6 = re.compile(
    r"(?<![\w:])(?:(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}"
    r"|(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*)?"
    r"|::(?:[0-9A-Fa-f]{1,4}:){0,6}[0-9A-Fa-f]{1,4})(?![\w:])"
)
_PHONE = re.compile(
    r"(?<![\w/.+-])(?:\+?1[ .-]?)?(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}"
    r"(?:\s*(?:x|ext\.?|extension)\s*\d{1,6})?(?![\w/-])",
    re.IGNORECASE,
)
_PHONE_INTL = re.compile(r"(?<![\w/+])\+\d{1,3}(?:[ .-]?\(?\d{1,5}\)?){2,5}(?![\w/-])")
_PHONE_LABELLED = re.compile(
    r"\b(?:phone|telephone|tel|fax|facsimile|pager|beeper|cell(?:\s*phone)?|mobile|ph|contact"
    r"(?:\s+number)?|call(?:\s+back)?(?:\s+at)?)\.?\s*(?:no\.?|number|#)?\s*[:#]?\s*"
    r"(?P<value>\+?\(?\d[\d().\s-]{5,18}\d(?:\s*(?:x|ext\.?)\s*\d{1,6})?)",
    re.IGNORECASE,
)
_SSN = re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])")
_ID_LABEL = (
    r"MRN|M\.R\.N\.?|MR\s*#|MR\s+(?:no|number)|med(?:ical)?\s+rec(?:ord)?s?(?:\s+(?:number|no|num))?"
    r"|hospital\s+(?:number|no)|record\s+(?:number|no|num)|chart\s+(?:number|no)|unit\s+(?:number|no)"
    r"|patient\s+(?:id|identifier|number|no)|pt\s+(?:id|no)|acct|account(?:\s+(?:number|no|num))?"
    r"|SSN|SS\s*#|social\s+security(?:\s+(?:number|no))?|accession(?:\s+(?:number|no))?|acc\s*#"
    r"|encounter(?:\s+(?:id|number|no))?|visit\s+(?:id|number|no)|admission\s+(?:id|number|no)"
    r"|CSN|FIN|HAR|member\s+(?:id|number|no)|subscriber\s+(?:id|number|no)"
    r"|policy(?:\s+(?:id|number|no))?|group\s+(?:number|no)|insurance\s+(?:id|number|no)"
    r"|health\s*plan(?:\s+(?:id|number|no|beneficiary\s+number))?|beneficiary\s+(?:id|number|no)"
    r"|medicaid(?:\s+(?:id|number|no))?|medicare(?:\s+(?:id|number|no))?|MBI|HICN"
    r"|NHS\s+(?:number|no)|serial(?:\s+(?:number|no))?|S/N|device\s+(?:id|serial)|lot\s+(?:number|no)"
    r"|licen[cs]e(?:\s+(?:number|no))?|DEA(?:\s+(?:number|no))?|NPI|UPIN"
    r"|specimen(?:\s+(?:id|number|no))?|case\s+(?:id|number|no)|surgical\s+pathology\s+(?:number|no)"
    r"|order\s+(?:id|number|no)|requisition(?:\s+(?:number|no))?|lab\s+(?:id|number|no)"
    r"|reference\s+(?:number|no)|ref\.?\s*(?:no|#)|claim\s+(?:number|no)|certificate\s+(?:number|no)"
    r"|vehicle\s+(?:id|number)|VIN|plate\s+(?:number|no)|study\s+(?:id|number)|patient\s+ID|ID"
    r"|identifier|biometric\s+id"
)
_ID_LABELLED = re.compile(
    rf"\b(?:{_ID_LABEL})\.?\s*(?:number|no\.?|num|#)?\s*(?:[:=#]|is|was|of)?\s*[:#]?\s*"
    r"(?P<value>(?=[A-Za-z0-9./-]*\d)[A-Za-z0-9](?:[A-Za-z0-9./-]*[A-Za-z0-9])?"
    r"(?:[ ](?=\d)\d{2,}){0,3})",
    re.IGNORECASE,
)
_LONG_NUMBER = re.compile(r"(?<![\w.,/-])(?:[A-Z]{1,3}-?)?\d{7,}(?![\w/-]|[.,]\d)")
_HASH_NUMBER = re.compile(r"(?<![\w#])#\s?(?P<value>\d{5,})(?!\w)")
#: Labels that name a record number only when a number with 4+ digits follows ("Case 15-SP-7532",
#: "Rx# ORD217434", "ref ORD755968"); alone they are ordinary words ("order 500 mg").
_ID_WEAK_LABELLED = re.compile(
    r"\b(?:case|rx|enc|encounter|order|ord|ref|reference|member|req|requisition|job|sample"
    r"|specimen|slide|block|episode|referral|auth(?:ori[sz]ation)?|claim|ticket|report|file"
    r"|booking|confirmation|invoice|receipt|kit|barcode|tube|container|voucher|registration)"
    r"\b\.?[ \t]*(?:number|no\.?|num|id|#)?[ \t]*[:#=]?[ \t]*"
    r"(?P<value>[A-Za-z0-9][A-Za-z0-9/-]*(?:[ ]\d{2,}){0,3})",
    re.IGNORECASE,
)
#: Any token of letters, digits, "-" and "/": one with a letter and 5+ digits, or digit groups
#: with 7+ digits, is a record number ("LV431654", "H18/47041", "(015-239-759)").
_TOKEN = re.compile(r"(?<![\w/.-])[A-Za-z0-9][A-Za-z0-9/-]*")
_UNIT_NUMBER = re.compile(
    r"\d+(?:mg|mcg|ug|g|kg|ml|l|iu|u|units?|mm|cm|m|ms|hz|khz|mhz|k|mmhg|meq|mmol|pg|ng|cc|bpm)",
    re.IGNORECASE,
)
_YEAR_RANGE = re.compile(r"(?:19|20)\d\d(?:[-/](?:19|20)\d\d)+")


def _simple(
    pattern: re.Pattern[str], category: str, text: str, group: int | str = 0
) -> list[_Span]:
    spans = []
    for match in pattern.finditer(text):
        trimmed = match.group(group).rstrip(".,;:!?)'\"")
        start = match.start(group)
        spans.append(_Span(start, start + len(trimmed), category, _TAGS[category]))
    return spans


#: A terminology name before a number: the number is a clinical code, not a record number.
_CODE_BEFORE = re.compile(
    r"\b(?:SNOMED(?:[ -]?CT)?|SCTID|ICD(?:-?(?:9|10|11))?(?:-?(?:CM|PCS))?|LOINC|CPT|HCPCS|RxNorm"
    r"|RXCUI|NDC|MeSH|UMLS|CUI|OMIM|HGNC|ATC|DSM(?:-?(?:IV|5))?|OPCS|MedDRA|concept(?:[ ]id)?)"
    r"(?:[ ]+(?:code|id|concept))?[ \t]*[:#=]?[ \t]*"
    r"(?:\(?[A-Za-z0-9.-]+\)?[ \t]*[,;/|][ \t]*){0,6}$",
    re.IGNORECASE,
)


def _clinical_code(text: str, start: int) -> bool:
    """True when the token at ``start`` follows a terminology name ("SNOMED 49436004")."""
    return _CODE_BEFORE.search(text[max(0, start - 120) : start]) is not None


def _ids(text: str) -> list[_Span]:
    return [s for s in _ids_all(text) if not _clinical_code(text, s.start)]


def _ids_all(text: str) -> list[_Span]:
    spans = _simple(_SSN, "ID", text)
    for match in _ID_LABELLED.finditer(text):
        value = match.group("value")
        if (
            match.group().startswith("ID")
            and re.fullmatch(r"\d{5}(?:-\d{4})?", value)
            and re.search(r"[A-Za-z],[ ]?$", text[max(0, match.start() - 40) : match.start()])
        ):
            continue  # the state Idaho before a ZIP code ("Boise, ID 83702")
        digits = sum(ch.isdigit() for ch in value)
        if digits < 2 or len(value) < 3:
            continue
        start = match.start("value")
        trimmed = value.rstrip(".-/")
        spans.append(_Span(start, start + len(trimmed), "ID", "[ID]"))
    spans += _simple(_LONG_NUMBER, "ID", text)
    spans += _simple(_HASH_NUMBER, "ID", text, "value")
    for match in _ID_WEAK_LABELLED.finditer(text):
        value = match.group("value").rstrip(".-/")
        if sum(ch.isdigit() for ch in value) >= 4 and not _UNIT_NUMBER.fullmatch(value):
            start = match.start("value")
            spans.append(_Span(start, start + len(value), "ID", "[ID]"))
    return spans


def _token_ids(text: str) -> list[_Span]:
    """Unlabelled record numbers: mixed letter-digit tokens with 5+ digits, long digit groups."""
    spans = []
    for match in _TOKEN.finditer(text):
        token = match.group().rstrip("-/")
        digits = sum(ch.isdigit() for ch in token)
        letters = sum(ch.isalpha() for ch in token)
        if letters:
            keep = (
                digits >= 5
                and not _UNIT_NUMBER.fullmatch(token)
                and not re.fullmatch(r"[A-Za-z]{1,5}\d{2,3}/\d{2,3}", token)  # "BP117/72"
            )
        else:
            groups = re.split(r"[-/]", token)
            keep = (
                digits >= 7
                and len(groups) >= 2
                and max(map(len, groups)) >= 3
                and not _YEAR_RANGE.fullmatch(token)
            )
        if keep and not _clinical_code(text, match.start()):
            spans.append(_Span(match.start(), match.start() + len(token), "ID", "[ID]"))
    return spans


#: National numbers with a trunk 0 (UK "07828 494873", "020 7946 0958", "(0161) 496 0000").
_PHONE_TRUNK = re.compile(
    r"(?<![\w/.+-])(?:\(0\d{2,4}\)|0\d{2,4})[ -]?\d{3,4}[ -]?\d{3,4}(?![\w/-]|\.\d)"
)


def _phones(text: str) -> list[_Span]:
    spans = _simple(_PHONE, "PHONE", text) + _simple(_PHONE_LABELLED, "PHONE", text, "value")
    for match in _PHONE_TRUNK.finditer(text):
        if 10 <= sum(ch.isdigit() for ch in match.group()) <= 11:
            spans.append(_Span(match.start(), match.end(), "PHONE", "[PHONE]"))
    for match in _PHONE_INTL.finditer(text):
        if 8 <= sum(ch.isdigit() for ch in match.group()) <= 15:
            spans.append(_Span(match.start(), match.end(), "PHONE", "[PHONE]"))
    return [s for s in spans if sum(ch.isdigit() for ch in text[s.start : s.end]) >= 7]


# -- dates -------------------------------------------------------------------------------------

_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_MONTH = (
    r"(?P<mon>Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)(?P<dot>\.)?"
)
_DAY = r"(?P<day>[0-3]?\d)(?P<suf>st|nd|rd|th)?"
_YEAR = r"(?P<year>(?:1[89]|20)\d\d|'?\d\d)"
_YEAR4 = r"(?P<year>(?:1[89]|20)\d\d)"
_B = r"(?<![\w/.-])"
_E = r"(?![\w/-]|\.\d)"
_DATE_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(pattern, re.IGNORECASE)
    for pattern in (
        # 2021-03-14, 2021/03/14, 2021.03.14 (and 2021-03-14T10:22)
        rf"{_B}(?P<year>(?:1[89]|20)\d\d)(?P<s>[-/.])(?P<mnum>[01]?\d)(?P=s)(?P<day>[0-3]?\d)"
        r"(?![\d/-]|\.\d)",
        # 03/14/2021, 14.03.2021, 3-14-21
        rf"{_B}(?P<a>[0-3]?\d)(?P<s>[-/.])(?P<b>[0-3]?\d)(?P=s)(?P<year>(?:1[89]|20)\d\d|\d\d){_E}",
        # March 14, 2021 / Mar 14th 2021 / March 14 / Mar. 3rd
        rf"\b{_MONTH}\s+{_DAY}(?:(?P<sep>,\s*|\s+){_YEAR})?(?![\w:]|\.\d)",
        # 14 March 2021 / 3rd of May, 2021 / the 3rd of May
        rf"\b{_DAY}(?:\s+of)?\s+{_MONTH}(?:(?P<sep>,\s*|\s+){_YEAR})?(?![\w:]|\.\d)",
        # 14-Mar-2021, 29-Sep-90, 14/Mar/2021
        rf"{_B}{_DAY}(?P<s>[-/ ]){_MONTH}(?P=s){_YEAR}{_E}",
        # Mar-14-21
        rf"\b{_MONTH}(?P<s>[-/]){_DAY}(?P=s){_YEAR}{_E}",
        # March 2021 / Mar 2021 / 03/2021
        rf"\b{_MONTH}(?P<sep>,?\s+){_YEAR4}{_E}",
        rf"{_B}(?P<mnum>[01]?\d)/{_YEAR4}{_E}",
        # Feb-23, Feb '23, Mar/2023 (a month and a year)
        rf"\b{_MONTH}(?P<s>[-/]|[ ]?['’])(?P<year>(?:19|20)\d\d|\d\d){_E}",
        # 25JUN2021, 3Mar21 (ddMONyyyy)
        rf"{_B}{_DAY}(?P<s>){_MONTH}{_YEAR}{_E}",
        # a bare month/day after a word that announces a date: "see 8/15", "Collected: 3/2"
        r"\b(?P<pre>(?:see|seen|on|collected|received|dated|since|until|till|from|admitted"
        r"|discharged|scheduled|due|next|last|by|before|after|cxr|xr|x-ray|ct|cta|ctpa|mri|mra"
        r"|us|uss|echo|tte|tee|ecg|ekg|eeg|emg|pet|dexa|mammo(?:gram)?|colonoscopy|endoscopy|ogd"
        r"|egd|bx|biopsy|labs?|bloods|cbc|fbc|bmp|cmp|lfts?|u&e|inr|hba1c|a1c|culture|cx|swab"
        r"|visit|appt|appointment|review|op|surgery|adm|d/c|f/u|fu|started|stopped|restarted"
        r"|held)[:]?[ \t]+)"
        r"(?P<mnum>[01]?\d)/(?P<day>[0-3]?\d)(?![\w/]|\.\d|[ \t]*(?:of|tabs?|tablets?|dose))",
    )
)
#: Lowercase month abbreviations that are ordinary words ("may", "mar").
_AMBIGUOUS_LOWER = frozenset({"may", "mar", "jan", "jun", "jul", "dec", "sep", "oct", "nov", "aug"})


def _century(two_digits: int) -> int:
    return 2000 + two_digits if two_digits <= 29 else 1900 + two_digits


def _month_word(original: str, month: int, *, compact: bool) -> str:
    """The month ``month`` written like ``original`` (full or abbreviated, same letter case)."""
    full = _MONTHS[month - 1]
    low = original.lower()
    if low == "sept":
        word = "sept" if month == 9 else full[:3]
    elif len(low) == 3 and (low != "may" or compact):
        word = full[:3]
    else:  # a full name; "May" counts as one in prose ("May 3, 2021"), not in "03-May-21"
        word = full
    if original.isupper():
        return word.upper()
    if original[0].isupper():
        return word.capitalize()
    return word


def _number(value: int, padded: bool) -> str:
    return f"{value:02d}" if padded else str(value)


def _ordinal(original: str, day: int) -> str:
    if not original:
        return ""
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return suffix.upper() if original.isupper() else suffix


def _shift_date(match: re.Match[str], days: int) -> str | None:
    """The matched date shifted by ``days``, written in its own format; None if not a date."""
    groups = match.groupdict()
    text = match.group()
    base = match.start()
    edits: dict[str, str] = {}
    mon_text = groups.get("mon")
    if mon_text is not None:
        if mon_text.islower() and mon_text in _AMBIGUOUS_LOWER:
            return None
        month = next(i for i, m in enumerate(_MONTHS, 1) if m.startswith(mon_text.lower()[:3]))
    elif groups.get("mnum") is not None:
        month = int(groups["mnum"])
    else:
        first, second = int(groups["a"]), int(groups["b"])
        day_first = groups["s"] == "." or first > 12
        month, day = (second, first) if day_first else (first, second)
    day_text = groups.get("day") if groups.get("a") is None else None
    has_day = groups.get("a") is not None or day_text is not None
    if day_text is not None:
        day = int(day_text)
    elif not has_day:
        day = 15
    year_text = groups.get("year")
    if year_text is None:
        year = 2000  # leap year: keeps 29 February valid when no year is written
    else:
        digits = year_text.lstrip("'")
        year = int(digits) if len(digits) == 4 else _century(int(digits))
    if (
        groups.get("s") == "."
        and year_text is not None
        and len(year_text) == 2
        and groups.get("a") is not None
        and (len(groups["a"]) != 2 or len(groups["b"]) != 2)
    ):
        return None  # "3.4.12" is more likely a version or a score than a date
    if not (1 <= month <= 12) or not (1 <= day <= calendar.monthrange(year, month)[1]):
        return None
    if has_day:
        new = dt.date(year, month, day) + dt.timedelta(days=days)
    else:  # a month and year: move by whole months (at least one), so the month always changes
        months = round(days / 30.44) or (1 if days > 0 else -1)
        index = year * 12 + month - 1 + months
        new = dt.date(index // 12, index % 12 + 1, 15)
    numeric = [groups[n] for n in ("a", "b", "mnum", "day") if groups.get(n) is not None]
    padded = any(n.startswith("0") for n in numeric) or (
        len(numeric) >= 2 and all(len(n) == 2 for n in numeric)
    )
    if groups.get("a") is not None:
        first_is_day = groups["s"] == "." or int(groups["a"]) > 12
        edits["a"] = _number(new.day if first_is_day else new.month, padded)
        edits["b"] = _number(new.month if first_is_day else new.day, padded)
    if day_text is not None:
        edits["day"] = _number(new.day, padded)
        if groups.get("suf"):
            edits["suf"] = _ordinal(groups["suf"], new.day)
    if mon_text is not None:
        compact = groups.get("s") is not None or groups.get("dot") is not None
        edits["mon"] = _month_word(mon_text, new.month, compact=compact)
    if groups.get("mnum") is not None:
        edits["mnum"] = _number(new.month, padded)
    if year_text is not None:
        digits = year_text.lstrip("'")
        value = f"{new.year:04d}" if len(digits) == 4 else f"{new.year % 100:02d}"
        edits["year"] = year_text[: len(year_text) - len(digits)] + value
    pieces = sorted(
        (
            (match.start(name) - base, match.end(name) - base, value)
            for name, value in edits.items()
        ),
        reverse=True,
    )
    for start, end, value in pieces:
        text = text[:start] + value + text[end:]
    return text


_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WEEKDAY_BEFORE = re.compile(
    r"\b(?P<wd>mon(?:day)?|tue(?:s(?:day)?)?|wed(?:nesday)?|thu(?:r(?:s(?:day)?)?)?|fri(?:day)?"
    r"|sat(?:urday)?|sun(?:day)?)\.?,?[ ]+(?:the[ ]+)?$",
    re.IGNORECASE,
)
#: A time of day written after a date ("2025-01-14 14:21", "03/04/2024 1422", "... at 9:05 pm").
_TIME_AFTER = re.compile(
    r"(?:[ ]?[T@][ ]?|,?[ ]+(?:at[ ]+)?)"
    r"(?:(?:[01]?\d|2[0-3])[:.h][0-5]\d(?::[0-5]\d(?:\.\d+)?)?(?:[ ]?[AaPp]\.?[Mm]\.?)?"
    r"|(?:[01]\d|2[0-3])[0-5]\d(?:[ ]?(?:h|hrs|hours))?)"
    r"(?![\w:]|[.]\d|[ ]?(?:mg|mcg|ml|mL|cc|units?|g|kg|mmol|mls|x)\b)",
)


def _weekday_word(original: str, index: int) -> str:
    """Weekday ``index`` written like ``original`` ("Thu", "THURSDAY", "Tues")."""
    full = _WEEKDAYS[index]
    word = full if len(original) > 4 else full[: len(original)]
    if original.isupper():
        return word.upper()
    return word.capitalize() if original[0].isupper() else word


def _dates(text: str, days: int) -> list[_Span]:
    spans = []
    for pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            shifted = _shift_date(match, days)
            if shifted is None or shifted == match.group():
                continue
            skip = len(match.group("pre")) if "pre" in pattern.groupindex else 0
            start, end, replacement = match.start() + skip, match.end(), shifted[skip:]
            has_day = match.groupdict().get("day") is not None or "a" in pattern.groupindex
            if has_day:
                weekday = _WEEKDAY_BEFORE.search(text[max(0, start - 16) : start])
                if weekday is not None:
                    name = weekday.group("wd")
                    index = next(
                        i for i, w in enumerate(_WEEKDAYS) if w.startswith(name[:3].lower())
                    )
                    gap = weekday.group()[len(name) :]
                    start -= len(weekday.group())
                    replacement = _weekday_word(name, (index + days) % 7) + gap + replacement
                time = _TIME_AFTER.match(text, end)
                if time is not None:
                    replacement += time.group()
                    end = time.end()
            spans.append(_Span(start, end, "DATE", replacement))
    return spans


# -- ages over 89 ------------------------------------------------------------------------------

_AGES = (
    re.compile(
        r"(?<![\d.])(?P<n>\d{2,3})\s*-?\s*(?:years?|yrs?|y/?o|y\.o\.|yo|year-old|y)"
        r"(?:\s*-?\s*old)?(?![a-z])",
        re.IGNORECASE,
    ),
    re.compile(r"\b(?:aged?|age\s+of|age\s+is)\s*[:=]?\s*(?P<n>\d{2,3})(?!\d|\.\d)", re.IGNORECASE),
    re.compile(r"(?<![\d.])(?P<n>\d{2,3})\s*(?:yo|y/o)\b", re.IGNORECASE),
)


_UNITS_WORDS = r"one|two|three|four|five|six|seven|eight|nine"
_AGE_WORDS = re.compile(
    rf"\b(?P<n>(?:ninety(?:[ -](?:{_UNITS_WORDS}))?|(?:a|one)[ -]hundred(?:[ -](?:and[ -])?"
    rf"(?:{_UNITS_WORDS}|ten|eleven|twelve))?))(?:[ -](?:and[ -]a[ -]half))?"
    r"(?=[ -]+(?:years?|yrs?|y/?o)\b|[ -]+year-old)"
    rf"|\b(?:aged?|age[ ]+of)[ :]+(?P<m>ninety(?:[ -](?:{_UNITS_WORDS}))?|(?:a|one)[ -]hundred)\b",
    re.IGNORECASE,
)


def _ages(text: str) -> list[_Span]:
    spans = []
    for match in _AGE_WORDS.finditer(text):
        group = "n" if match.group("n") is not None else "m"
        spans.append(_Span(match.start(group), match.end(group), "AGE>89", "90+"))
    for pattern in _AGES:
        for match in pattern.finditer(text):
            if 90 <= int(match.group("n")) < 200:
                spans.append(_Span(match.start("n"), match.end("n"), "AGE>89", "90+"))
    return spans


# -- addresses ---------------------------------------------------------------------------------

_STATES = (
    r"AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH"
    r"|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR"
    r"|Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia"
    r"|Hawaii|Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts"
    r"|Michigan|Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New\s+Hampshire"
    r"|New\s+Jersey|New\s+Mexico|New\s+York|North\s+Carolina|North\s+Dakota|Ohio|Oklahoma|Oregon"
    r"|Pennsylvania|Rhode\s+Island|South\s+Carolina|South\s+Dakota|Tennessee|Texas|Utah|Vermont"
    r"|Virginia|Washington|West\s+Virginia|Wisconsin|Wyoming"
)
_SUFFIX = (
    r"Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace"
    r"|Ter|Circle|Cir|Highway|Hwy|Parkway|Pkwy|Square|Sq|Trail|Trl|Alley|Row|Crescent|Close|Grove"
    r"|Pike|Plaza|Loop|Run|Path|Walk|Gardens|Mews|Heights"
)
_CAP = r"[A-Z](?:[^\W\d_]|['.-])*"
_CITY = rf"{_CAP}(?:[ ]{_CAP}){{0,2}}"
_STREET = re.compile(
    rf"\b\d{{1,6}}[A-Z]?[ ](?:[NSEW]\.?[ ]|North[ ]|South[ ]|East[ ]|West[ ])?"
    rf"(?:(?:{_CAP}|\d+(?:st|nd|rd|th))[ ]){{1,4}}(?:{_SUFFIX})\b\.?"
    r"(?:,?[ ](?:Apt|Apartment|Suite|Ste|Unit|Room|Rm|Floor|Fl|#)\.?[ ]?#?[A-Za-z0-9-]+)?"
    rf"(?:,[ ]?{_CITY})?(?:,?[ ](?:{_STATES}))?(?:,?[ ]\d{{5}}(?:-\d{{4}})?)?(?!\w)"
)
_CITY_STATE_ZIP = re.compile(rf"\b{_CITY},[ ]?(?:{_STATES})[ ]+\d{{5}}(?:-\d{{4}})?(?!\w)")
_STATE_ZIP = re.compile(rf"\b(?:{_STATES})[ ]+\d{{5}}(?:-\d{{4}})?(?!\w)")
_ZIP_LABELLED = re.compile(
    r"\b(?:zip|postal|post)\s*(?:code)?\s*[:#]?\s*(?P<value>\d{5}(?:-\d{4})?|[A-Z]\d[A-Z]\s?\d[A-Z]\d)",
    re.IGNORECASE,
)
#: Streets whose type comes first ("Calle de Alcala", "Rue du Bac"), numbered roads, units.
_STREET_PREFIXED = re.compile(
    r"\b\d{1,6}[A-Z]?,?[ ](?:Calle|Carrer|Avenida|Av\.|Rua|Rue|Via|Viale|Piazza|Strada|Camino"
    r"|Paseo|Plaza|Ulica|ul\.|Boulevard|Chemin|Allee|Estrada|Travessa)"
    rf"(?:[ ](?:de|del|la|las|los|da|das|do|dos|du|des|di|della|le){{1,2}})?(?:[ ]{_CAP}){{1,3}}"
)
_NUMBERED_ROAD = re.compile(
    r"\b(?:(?:\d{1,6}[ ])?(?:County|State|Farm|Rural|US|U\.S\.|Interstate)[ ]"
    r"(?:Road|Rd|Route|Rte|Highway|Hwy)|Route|Highway|Hwy|Rural[ ]Route)[ ]\d{1,4}[A-Z]?\b"
)
_UNIT = re.compile(r"\b(?:Apt|Apartment|Flat|Suite|Ste)\.?[ ]?#?\d{1,5}[A-Za-z]?\b")
#: Postcodes of other countries: UK ("SW1A 1AA"), Canada ("K1A 0B1"), India after a town
#: (", Bengaluru 560022"), and continental Europe before a town (", 75008 Paris").
_POSTCODES = (
    re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?[ ]\d[ABD-HJLNP-UW-Z]{2}\b"),
    re.compile(r"\b[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z][ -]\d[ABCEGHJ-NPRSTV-Z]\d\b"),
    re.compile(
        rf",[ ]?(?P<city>{_CAP}(?:[ ]{_CAP})?)[ ,-]+(?P<value>[1-9]\d{{2}}[ ]?\d{{3}})"
        r"(?![\w.,]\d|\w)"
    ),
    re.compile(
        r"(?:^|,)[ ]?(?P<value>(?:[A-Z]{1,2}-)?\d{4,5}[ ][A-Z][a-zà-ÿ]{2,}(?:[ ][A-Z][a-zà-ÿ]+)?)"
        r"(?![\w-])",
        re.MULTILINE,
    ),
)
_PO_BOX = re.compile(r"\bP\.?\s?O\.?\s*Box\s+\d+", re.IGNORECASE)
_ADDRESS_LABELLED = re.compile(
    r"\b(?:(?:home|mailing|street|current|permanent)\s+)?(?:address|residence)\s*:[ \t]*"
    r"(?P<value>[A-Z0-9][^\n;]{0,79}?)(?=\.\s|\.?$|;|\n)",
    re.IGNORECASE | re.MULTILINE,
)
_PLACE_LABELLED = re.compile(
    r"\b(?i:city|town|hometown|birthplace|place\s+of\s+birth|hospital|facility|institution"
    rf"|employer|school)\s*:[ \t]*(?P<value>(?:St\.?[ ])?{_CAP}(?:[ ](?:of[ ])?{_CAP}){{0,4}})"
)
_LIVES_IN = re.compile(
    rf"\b(?:lives|lived|living|resides|resided|residing|moved|relocated|born)\s+(?:in|at|to|from)"
    rf"\s+(?:the\s+)?(?P<value>{_CITY}(?:,[ ]?(?:{_STATES}))?)"
)
_INSTITUTION = re.compile(
    rf"\b(?:St\.?[ ])?(?:{_CAP}[ ]){{1,4}}(?:Hospital|Medical[ ]Cent(?:er|re)|Clinic"
    r"|Health[ ]System|Healthcare|Infirmary|Hospice|Nursing[ ]Home|Rehabilitation[ ]Cent(?:er|re)"
    r"|Care[ ]Cent(?:er|re)|University|College|Institute)\b"
)
#: Words that make a department, not a named institution ("Pain Management Clinic").
_DEPARTMENT_WORDS = frozenset(
    """
    podiatry podiatric ophthalmology optometry ent audiology gastroenterology hepatology
    nephrology hematology rheumatology obstetrics gynecology ob/gyn prenatal anticoagulation
    coumadin cardiothoracic plastic vein spine pain management pediatric paediatric urology
    outpatient inpatient physiatry
    rehabilitation rehab general medical community emergency surgical surgery cardiology
    cardiac heart vascular cancer oncology neurology neuroscience orthopedic orthopaedic
    spine sports wellness family internal medicine women's children's childrens womens
    maternity eye ear nose throat dental dermatology skin sleep diabetes endocrine kidney
    renal dialysis liver transplant behavioral mental health psychiatric psychiatry primary
    care urgent walk-in day county state regional university teaching veterans memorial
    specialty specialist wound infusion imaging radiology allergy asthma lung pulmonary
    chest fertility breast digestive gi hand foot ankle joint trauma burn stroke geriatric
    senior student occupational physical therapy speech hearing vision clinic center centre
    hospital the a an of and at our this same outside local
    """.split()  # noqa: SIM905
)
_GENERIC_PLACE_WORDS = frozenset(
    {
        "the",
        "this",
        "our",
        "your",
        "his",
        "her",
        "their",
        "general",
        "emergency",
        "outside",
        "local",
        "community",
        "county",
        "state",
        "regional",
        "university",
        "teaching",
        "a",
        "an",
        "same",
        "other",
    }
)


def _addresses(text: str) -> list[_Span]:
    spans = _simple(_STREET, "ADDRESS", text)
    spans += _simple(_CITY_STATE_ZIP, "ADDRESS", text)
    spans += _simple(_STATE_ZIP, "ADDRESS", text)
    spans += _simple(_ZIP_LABELLED, "ADDRESS", text, "value")
    spans += _simple(_PO_BOX, "ADDRESS", text)
    for pattern in _POSTCODES:
        group = "value" if "value" in pattern.groupindex else 0
        found = _simple(pattern, "ADDRESS", text, group)
        if "city" in pattern.groupindex:
            found += _simple(pattern, "ADDRESS", text, "city")
        for span in found:
            last = text[span.start : span.end].split()[-1].lower()
            if last not in _STOP and last not in _lexicon().medical:
                spans.append(span)
    spans += _simple(_STREET_PREFIXED, "ADDRESS", text)
    spans += _simple(_NUMBERED_ROAD, "ADDRESS", text)
    spans += _simple(_UNIT, "ADDRESS", text)
    spans += [  # "moved to RV outflow tract" is not a place
        s for s in _simple(_LIVES_IN, "ADDRESS", text, "value") if len(text[s.start : s.end]) > 3
    ]
    for pattern in (_ADDRESS_LABELLED, _PLACE_LABELLED):
        for match in pattern.finditer(text):
            value = match.group("value").rstrip(" .,\t")
            if value and value.split()[0].lower() not in _STOP | {"n/a", "na", "none", "unknown"}:
                start = match.start("value")
                spans.append(_Span(start, start + len(value), "ADDRESS", "[ADDRESS]"))
    for match in _INSTITUTION.finditer(text):
        if _EPONYM_NOUN.match(text, match.end()):
            continue  # "King's College criteria", "Mayo Clinic classification"
        words = match.group().split()
        while words and words[0].lower().rstrip(".") in _GENERIC_PLACE_WORDS:
            words.pop(0)
        # "Riverside General Hospital" but not "Pain Management Clinic": one word must be a
        # name or not an ordinary word.
        named = (
            any(
                w.lower() not in _DEPARTMENT_WORDS
                for w in words[:-1]
                if w.rstrip(".").lower() != "st"
            )
            or words[0].rstrip(".") == "St"
        )
        if len(words) >= 2 and named:
            start = match.end() - len(" ".join(words))
            spans.append(_Span(start, match.end(), "ADDRESS", "[ADDRESS]"))
    return spans


# -- names -------------------------------------------------------------------------------------

_PARTICLES = r"(?:van|von|de|del|della|der|den|di|da|du|la|le|bin|ibn|al|el|dos|das|ter|ten)"
_LETTER = r"[^\W\d_]"
_NAME_WORD = re.compile(
    rf"(?:{_PARTICLES}[ ](?:{_PARTICLES}[ ])?)?"
    rf"(?P<word>(?:[A-Z]['’](?={_LETTER}))?{_LETTER}+(?:['’]{_LETTER}{{2,}})?(?:-{_LETTER}+)*)"
    r"(?P<initial>\.)?"
)
_TITLE = re.compile(
    r"\b(?P<title>Dr|Drs|Doctor|Mr|Mrs|Ms|Miss|Mx|Prof|Professor|Rev|Nurse|Sister|Madam|Sir)"
    r"(?:\.|\b)[ \t]+(?=[^\W\d_a-z])"
)
_PATIENT_TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "madam", "sir"})
_LABEL = re.compile(
    r"(?:^|(?<=[\n;|.,(\t])|(?<=[ ]))[ \t]*"
    r"(?P<label>(?:patient(?:'s)?|pt)(?:[ \t]+(?:full[ \t]+)?name)?"
    r"|name|caller|reported|reporter|witness(?:ed[ \t]+by)?|chaperone|translator|scribe|registrar"
    r"|(?:confirmed|submitted|entered|completed|recorded|cosigned|co-signed|received|sent|seen"
    r"|referred|attended|supervised|authori[sz]ed|released|addendum|amended|edited|taken)[ \t]+by"
    r"|gp|clinician|practitioner|dietitian|dietician|physiotherapist|surrogate|proxy|poa|hcp"
    r"|subscriber|guarantor|insured|relative|carer|client|supervisor|staff|on[ \t]+call"
    r"|full[ \t]+name|attending(?:[ \t]+(?:physician|doctor|surgeon))?|physician|surgeon"
    r"|assistant|co-?surgeon|anesthesiologist|anesthetist|anaesthetist|pathologist|radiologist"
    r"|cardiologist|resident|fellow|intern|nurse|rn|provider|pcp|primary[ \t]+care(?:[ \t]+"
    r"(?:physician|provider|doctor))?|referring(?:[ \t]+(?:physician|doctor|provider|clinician))?"
    r"|consultant|consulting(?:[ \t]+physician)?|guardian|mother|father|parent|spouse|wife|husband"
    r"|partner|son|daughter|sister|brother|next[ \t]+of[ \t]+kin|nok|emergency[ \t]+contact|contact"
    r"|informant|caregiver|witness|interpreter|pharmacist|therapist|social[ \t]+worker"
    r"|case[ \t]+manager|chaplain|midwife|technician|tech|technologist|sonographer|dictated[ \t]+by"
    r"|transcribed[ \t]+by|transcriptionist|signed(?:[ \t]+by)?|electronically[ \t]+signed[ \t]+by"
    r"|reviewed[ \t]+by|verified[ \t]+by|interpreted[ \t]+by|read[ \t]+by|reported[ \t]+by"
    r"|approved[ \t]+by|performed[ \t]+by|prepared[ \t]+by|ordered[ \t]+by|requested[ \t]+by"
    r"|collected[ \t]+by|author|from|to|attn|re|cc|c\.c\.|copy[ \t]+to|copies[ \t]+to"
    r"|scrub(?:[ \t]+(?:nurse|tech|technician|practitioner))?|circulat(?:or|ing(?:[ \t]+nurse)?)"
    r"|(?:first|second|surgical)[ \t]+assistant|an(?:a?e)sthetic[ \t]+(?:nurse|assistant)"
    r"|anesthesia[ \t]+provider|(?:triaged|booked|checked|given|administered|escorted"
    r"|accompanied|handed[ \t]+over|discussed|seen)[ \t]+(?:by|with|to)|escort|sender|recipient"
    r"|requester|requestor|key[ \t]+worker|named[ \t]+nurse|contact[ \t]+(?:person|name)"
    r"|(?:patient|pt|client|resident)[ \t]+contact|message[ \t]+(?:from|for)|msg[ \t]+(?:from|for)"
    r"|kin|family[ \t]+contact|care[ \t]+coordinator|coordinator|navigator|doula|advocate)"
    r"[ \t]*:[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
_PATIENT_LABELS = re.compile(r"^(?:patient|pt|name|full|re)\b", re.IGNORECASE)
_LIST_LABELS = re.compile(r"^(?:cc|c\.c\.|cop(?:y|ies))", re.IGNORECASE)
_PHRASE = re.compile(
    r"\b(?:(?:seen|examined|evaluated|assessed|interviewed|referred|dictated|transcribed|signed"
    r"|reviewed|verified|interpreted|read|reported|approved|performed|prepared|ordered|requested"
    r"|accompanied|covered|staffed)(?:[ \t]+and[ \t]+\w+)?[ \t]+by"
    r"|(?:discussed|spoke|talked|met)[ \t]+(?:with|to)"
    r"|consulted|paged|called|notified|informed|care[ \t]+of|c/o|under[ \t]+the[ \t]+care[ \t]+of"
    r"|(?:submitted|confirmed|assisted|accompanied|supervised|witnessed|co-?signed|signed[ \t]+off"
    r"|attended|contacted|phoned|visited|collected|brought[ \t]+in)[ \t]+by|d/w|f/u(?:[ \t]+with)?"
    r"|w/|per|assist|assisted|with[ \t]+(?:her|his|their)[ \t]+\w+|[Pp]atient|[Pp]t\.?"
    r"|(?:[Ss]on|[Dd]aughter|[Ww]ife|[Hh]usband|[Mm]other|[Ff]ather|[Bb]rother|[Ss]ister|[Pp]artner"
    r"|[Ss]pouse|[Ff]riend|[Cc]aregiver|[Cc]arer|[Nn]iece|[Nn]ephew|[Aa]unt|[Uu]ncle|[Cc]ousin"
    r"|[Gg]rand(?:son|daughter|mother|father|child)|[Nn]eighbou?r|[Gg]uardian|[Ff]ianc[eé]e?"
    r"|[Bb]oyfriend|[Gg]irlfriend|[Ss]tep(?:son|daughter|mother|father)|[Rr]oommate|[Ll]andlord"
    r"|[Ee]mployer|[Cc]olleague|[Mm]um|[Mm]om|[Dd]ad|[Cc]ontact|[Ii]nterpreter)"
    r"(?:[ \t]*\([^()\n]{1,20}\))?,?"
    r"|patient[ \t]+of|(?:thank[ \t]+you[ \t]+for[ \t]+)?referring"
    r"|(?:his|her|their|the[ \t]+patient's)[ \t]+(?:wife|husband|son|daughter"
    r"|mother|father|brother|sister|partner|spouse|friend|caregiver|niece|nephew|grandson"
    r"|granddaughter|neighbor|neighbour|guardian),?|Dear|Hi|Hello)[ \t]+(?=[^\W\d_a-z])"
)
_SIGNOFF = re.compile(
    r"\b(?:Sincerely|Regards|Best[ \t]+regards|Kind[ \t]+regards|Yours[ \t]+(?:truly|sincerely)"
    r"|Respectfully|Thank[ \t]+you),?[ \t]*\n+[ \t]*(?=[^\W\d_a-z])"
)
_FIRST_VERBS = re.compile(
    r"[ \t]+(?:was|is|has|had|reports|reported|states|stated|denies|denied|presents|presented"
    r"|returns|returned|says|said|notes|noted|complains|complained|feels|felt|lives|came|went"
    r"|arrived|called|agrees|agreed|understands|tolerated|underwent|declined|refused|wants"
    r"|wanted|would|asked|asks|needs|needed|phoned|rang|visited|confirmed|requested|prefers"
    r"|continues|remains|appears|looks|seems|seemed|does|did|didn't|doesn't|can't|cannot|isn't"
    r"|wasn't|will[ \t]+(?:be|call|come|bring|return|ring|phone|visit|stay|attend))\b"
)
_EPONYM_NOUN = re.compile(
    r"(?:['’]s?)?[ \t-]+(?:disease|syndrome|sign|signs|test|tests|maneuver|manoeuvre|catheter|drain"
    r"|tube|score|scale|criteria|classification|stage|staging|grade|fracture|lymphoma|sarcoma"
    r"|tumou?r|cyst|ulcer|esophagus|node|nodes|nodule|reflex|phenomenon|palsy|procedure|operation"
    r"|repair|incision|position|clamp|clamps|retractor|forceps|scissors|stain|cells?|bodies|body"
    r"|rosettes?|lines?|murmur|pupil|law|equation|formula|method|technique|approach|criterion"
    r"|index|triad|pentad|point|space|canal|pouch|ligament|duct|gland|glands|fascia|muscle|nerve"
    r"|plexus|artery|vein|valve|ring|loop|dressing|suture|needle|blade|mask|monitor|monitoring"
    r"|anomaly|aneurysm|deformity|contracture|dystrophy|ataxia|chorea|dementia|encephalopathy"
    r"|neuropathy|neuroma|hernia|diverticulum|erythema|purpura|thyroiditis|arteritis|hypothesis"
    r"|effect|sphincter|fibers|fibres|bundle|area|wave|waves|block|pattern|complex|curve|shunt"
    r"|filter|device|pump|balloon|stent|valve|prosthesis|implant|plate|screw|nail|splint|cast"
    r"|brace|collar|traction|frame|view|views|projection|angle|protein|proteins|units?|solution)\b",
    re.IGNORECASE,
)
#: Capitalised words that follow names in forms and headings and are never part of a name.
_STOP = frozenset(
    """
    md do phd rn np pa pa-c dds dmd mph mba msn bsn lpn cna crna facs facc facp frcp frcs
    mbbs mrcp dnp od pharmd dpm psyd lcsw ms ma bs ba jr sr ii iii iv date dob mrn age sex
    gender male female room bed unit admitted discharged admission discharge diagnosis
    history physician attending referring signed dictated transcribed reviewed
    electronically phone fax address service department clinic hospital center centre
    emergency internal medicine cardiology surgery pathology radiology neurology oncology
    urology orthopedics pediatrics obstetrics gynecology psychiatry dermatology nephrology
    hematology gastroenterology pulmonology endocrinology anesthesia anesthesiology icu ed
    er or pacu team staff nursing nurse doctor patient pt mother father son daughter wife
    husband family friend monday tuesday wednesday thursday friday saturday sunday today
    tomorrow yesterday the a an and or of in on at to for with by from his her their our
    this that these those he she they it we you i is was were has had have report note
    letter summary ecg ekg echo ct mri cxr labs plan assessment impression findings results
    exam examination procedure indication indications medications medication allergies
    vitals re subject dear sincerely regards thank thanks hello hi attn cc copy
    referrer referral callback adm hosp acc flowsheet circulator scrub triage triaged
    handover escort sender recipient requester kin nok contact interpreter coordinator
    """.split()  # noqa: SIM905
)


_GAP = re.compile(r"[ \t]+|,[ \t]*")
_BLANKS = re.compile(r"[ \t]+")
_LIST_SEPARATOR = re.compile(r"[ \t]*(?:,|;|/|&|\band\b)[ \t]*")


def _word_at(text: str, pos: int) -> re.Match[str] | None:
    return _NAME_WORD.match(text, pos)


@dataclass(slots=True)
class _NameRun:
    start: int
    end: int
    words: list[str]


def _name_run(text: str, pos: int, *, allow_comma: bool, max_words: int = 4) -> _NameRun | None:
    """The capitalised name words starting at ``pos`` ("John A. Smith", "SMITH, JOHN")."""
    words: list[str] = []
    start = end = pos
    comma_used = not allow_comma
    after_comma = False
    cursor = pos
    while len(words) < max_words:
        match = _word_at(text, cursor)
        if match is None:
            break
        word = match.group("word")
        if not word[0].isupper() or (words and text.startswith(":", match.end())):
            break  # "Caller: Ann Lee   Witness: ..." stops before the next label
        bare = re.sub(r"['’]s$", "", word)
        if len(bare) > 1 and bare.lower() in _STOP:
            break
        if 1 < len(bare) <= 3 and bare.isupper() and not _is_name(bare):
            break  # an acronym ("ECG", "MD"), not "LEE"
        if (
            len(bare) > 1
            and bare.isupper()
            and _is_word(bare)
            and not _is_name(bare)
            and not (after_comma and _kind(bare) == "weak")  # "SMITH, HOPE"
        ):
            break  # an all-capitals heading word ("HISTORY"), not "SMITH"
        if not words:
            start = match.start()
        words.append(bare)
        end = match.start("word") + len(bare)
        if match.group("initial"):
            if len(bare) > 1:
                break  # "Smith." ends a sentence
            end += 1
            after = _BLANKS.match(text, match.end())
            spaces = after.end() - after.start() if after is not None else 0
            following = _word_at(text, match.end() + spaces)
            if spaces != 1 or (
                following is not None
                and _is_word(following.group("word"))
                and not _is_name(following.group("word"))
            ):
                break  # "Dr. F.  Unfortunately", "Dr. X. All questions"
        cursor = match.end()
        gap = _GAP.match(text, cursor)
        if gap is None:
            break
        if gap.group().startswith(("  ", "\t")):
            break  # a column gap: what follows is the next field ("Ann Lee   Read by: ...")
        if gap.group().startswith(","):
            if comma_used:
                break
            following = _word_at(text, gap.end())
            if following is None or not (
                len(following.group("word")) == 1 or _name_like(following.group("word"))
            ):
                break  # "To: Mary Wood, Zosyn clinic": a drug is not a given name
            comma_used = True
        after_comma = gap.group().startswith(",")
        cursor = gap.end()
    if not words or all(len(w) == 1 for w in words):
        return None
    return _NameRun(start, end, words)


def _is_word(token: str) -> bool:
    return token.lower() in _lexicon().english


def _is_name(token: str) -> bool:
    lex, low = _lexicon(), token.lower()
    return (
        low in lex.first_strong
        or low in lex.last_strong
        or low in lex.first_common
        or (low in lex.last_common)
    )


def _name_evidence(words: list[str]) -> bool:
    """True when a run from a soft context looks like a name rather than ordinary words."""
    return any(_is_name(w) or _kind(w) != "vocab" for w in words if len(w) > 1)


#: Endings of medical words that are not names ("Brachytherapy", "Leukemic", "Cystopyelogram").
_MEDICAL_SUFFIX = re.compile(
    r"..(?:ectomy|ectomies|otomy|ostomy|plasty|scopy|scopic|graphy|graphic|grams?|itis|osis|emia"
    r"|aemia|pathy|therapy|ology|ological|ologist|algia|trophy|plegia|penia|uria|genic"
    r"|lytic|ectasis|megaly|neural|cardial|vascular|cellular|mural|emic|aemic|otic|tomy|pexy"
    r"|rrhea|rrhoea|rrhage|plasia|plastic|trophic|tropic|cyte|cytes|cytic|coccus|cocci|bacter"
    r"|mycin|cillin|azole|olol|pril|sartan|statin|dipine|tidine|prazole|zepam|oxacin|cycline"
    r"|mab|nib|vir|afil|parin|ase|ases|emic|aemic|etic|atic)$"
)


def _kind(word: str) -> str:
    """How a word reads: "name" (gazetteer, not a word), "weak" (a name that is also a word),
    "unknown" (neither a word, a medical term nor a name), "vocab" (a word or a medical term)."""
    lex = _lexicon()
    bare = re.sub(r"['’]s$", "", word)
    bare = re.sub(r"^[OoDd]['’](?=[^\W\d_]{2})", "", bare)
    parts = [p.lower() for p in bare.split("-") if len(p) > 2 or (len(p) == 2 and p[1].islower())]
    if not parts:
        return "vocab"
    kinds = []
    for low in parts:
        gazetteer = low in lex.first_strong or low in lex.last_strong
        if (
            low in lex.protected
            or low in lex.medical
            or low in _STOP
            or (not gazetteer and _MEDICAL_SUFFIX.search(low))
        ):
            return "vocab"
        if low in lex.first_strong or low in lex.last_strong:
            kinds.append("name")
        elif low in lex.first_weak or low in lex.last_weak:
            kinds.append("weak")
        elif low in lex.english:
            kinds.append("vocab")
        else:
            kinds.append("unknown")
    for kind in ("unknown", "name", "weak"):
        if kind in kinds:
            return kind  # "Smith-Okafor": one name part makes a hyphenated word a name
    return "vocab"


def _name_like(word: str) -> bool:
    return len(word) > 1 and _kind(word) != "vocab"


_WORD_TOKEN = re.compile(r"(?<![\w'’-])[^\W\d_]+(?:['’-][^\W\d_]+)*(?![\w])")
_INITIAL_NAME = re.compile(
    r"(?<![\w.'’-])(?P<initials>(?:[A-Z]\.[ ]?){1,2})(?P<word>[A-Z][^\W\d_]+(?:['’-][^\W\d_]+)*)"
    r"(?![\w])"
)
_NAME_PREFIX = re.compile(r"^(?:Mc|Mac|O['’]|D['’]|De|Di|Da|Du|La|Le|Van|Von|Al-|El-|Abu|Ben)")


def _style(word: str) -> str:
    """ "title" ("Okafor", "McNeil", "Al-Sayed"), "upper" ("OKAFOR"), "lower", or "other"."""
    if word.isupper():
        return "upper" if len(word) > 1 else "other"
    if word.islower():
        return "lower"
    capitals = sum(ch.isupper() for ch in word)
    capitals -= word.count("-") + (1 if _NAME_PREFIX.match(word) else 0)
    return "title" if word[0].isupper() and capitals <= 1 else "other"


def _free_names(text: str) -> list[_NameRun]:
    """Names with no title or label: capitalised words that are neither English words nor
    medical terms ("Okonkwo", "Nguyen Thi Lan"), with the name words around them; all-capital
    pairs ("OKAFOR, CHIDINMA"); lower-case given name + surname ("pt robert jackson")."""
    tokens = [(m.start(), m.end(), m.group()) for m in _WORD_TOKEN.finditer(text)]
    count = len(tokens)
    styles = [_style(w) for _, _, w in tokens]
    kinds: list[str | None] = [None] * count

    def kind(i: int) -> str:
        if kinds[i] is None:
            kinds[i] = _kind(tokens[i][2])
        return kinds[i] or "vocab"

    def linked(i: int) -> str | None:
        """How token i joins token i + 1: " ", ",", "." (after an initial) or None."""
        if i + 1 >= count:
            return None
        gap = text[tokens[i][1] : tokens[i + 1][0]]
        if gap == " ":
            return " "
        if gap in (", ", ","):
            return ","
        if gap in (". ", ".") and len(tokens[i][2]) == 1:
            return "."
        return None

    def name_word(i: int, style: str) -> bool:
        word = tokens[i][2]
        if len(word) == 1:
            return style == "title" and word.isupper() and text.startswith(".", tokens[i][1])
        return styles[i] == style and kind(i) != "vocab"

    runs: list[_NameRun] = []
    i = 0
    while i < count:
        start, end, word = tokens[i]
        style = styles[i]
        seed = False
        letters = len(word) - word.count("-") - word.count("'") - word.count("’")
        if style == "title" and letters >= 3 and kind(i) in ("unknown", "name"):
            joined = linked(i) in (" ", ",") and name_word(i + 1, "title")
            seed = not _sentence_start(text, start) or joined or bool(_FIRST_VERBS.match(text, end))
        elif style == "upper" and letters >= 3 and kind(i) in ("unknown", "name"):
            seed = (
                (letters >= 4 or kind(i) == "name")
                and linked(i) in (" ", ",")
                and styles[i + 1] == "upper"
                and len(tokens[i + 1][2]) > 2
                and kind(i + 1) != "vocab"
            ) or (
                i > 0
                and linked(i - 1) in (" ", ",")
                and styles[i - 1] == "upper"
                and kind(i - 1) in ("name", "weak", "unknown")
            )
        elif style == "upper" and letters >= 3 and kind(i) == "weak" and linked(i) == ",":
            # "WHITE, ROSE": two all-capital gazetteer names in the LAST, FIRST shape
            seed = styles[i + 1] == "upper" and kind(i + 1) in ("weak", "name")
        elif style == "lower" and kind(i) == "name":
            seed = linked(i) == " " and styles[i + 1] == "lower" and kind(i + 1) == "name"
        if not seed:
            i += 1
            continue
        first = last = i
        commas = 0
        while (
            first > 0
            and i - first < 3
            and linked(first - 1) in (" ", ".")
            and name_word(first - 1, style)
        ):
            first -= 1
        while last + 1 < count and last - first < 3:
            link = linked(last)
            if link is None or not name_word(last + 1, style):
                break
            if link == ",":
                if commas or last != first:
                    break
                commas += 1
            last += 1
        run = _NameRun(tokens[first][0], tokens[last][1], [t[2] for t in tokens[first : last + 1]])
        if not _protected(text, run):
            runs.append(run)
        i = last + 1
    for match in _INITIAL_NAME.finditer(text):
        word = match.group("word")
        if (_kind(word) != "vocab" or _is_name(word)) and not _EPONYM_NOUN.match(text, match.end()):
            runs.append(_NameRun(match.start(), match.end(), [word]))
    return runs


_CREDENTIAL = re.compile(
    r"(?<![\w'’.-])(?P<name>(?:[A-Z][^\W\d_]*(?:['’-][^\W\d_]+)*\.?[ ]){0,3}"
    r"[A-Z][^\W\d_]*(?:['’-][^\W\d_]+)*),[ ]?(?:RN|R\.N\.|MD|M\.D\.|NP|PA-C|PA|MBBS|MBChB"
    r"|DO|LPN|LVN|CNA|CRNA|APRN|FNP(?:-C)?|DNP|PhD|PharmD|RPh|DPT|PT|OTR(?:/L)?|OT|SLP|RD|RDN"
    r"|LCSW|MSW|BSN|MSN|RGN|RMN|RSCN|FRCS|FRCP|FRCPC|MRCP|MRCS|FRACP|DPM|RRT|EMT|CNM|ANP"
    r"|NNP|CPNP|ACNP|AGACNP|PMHNP|LMFT|LPC|PsyD|DDS|DMD|CMA|HCA|ODP|FY\d|SHO|SpR)"
    r"(?![\w/-])"
)


_TITLE_WORDS = frozenset(
    ("dr", "drs", "mr", "mrs", "ms", "miss", "mx", "prof", "professor", "rev", "sir", "madam")
)


def _credentialed_names(text: str) -> Iterator[_NameRun]:
    """Names followed by a professional credential ("QUANG VU, RN", "Megan Ilse Ward, PA-C")."""
    for match in _CREDENTIAL.finditer(text):
        start = match.start("name")
        words = match.group("name").split(" ")
        while words and (
            words[0].rstrip(".").lower() in _STOP | _TITLE_WORDS
            or (len(words[0]) > 1 and _is_word(words[0]) and not _is_name(words[0]))
        ):
            start += len(words[0]) + 1
            words.pop(0)
        named = [w for w in words if len(w.rstrip(".")) > 1]
        if not named or not any(
            _is_name(w) or _kind(w) in ("name", "unknown") or not _is_word(w) for w in named
        ):
            continue
        if named[-1].rstrip(".").lower() in _STOP:
            continue
        run = _NameRun(start, match.end("name"), [w.rstrip(".") for w in named])
        if not _protected(text, run):
            yield run


#: Lower-case tokens that are given names elsewhere but clinical shorthand here.
_LOWER_NOT_NAMES = frozenset(
    (
        "asa",
        "brady",
        "tachy",
        "vera",
        "pia",
        "concha",
        "porta",
        "alta",
        "neu",
        "pilon",
        "stacker",
        "primus",
        "evert",
        "gorin",
        "faux",
        "petit",
        "lacey",
        "palmer",
        "al",
        "ng",
        "au",
        "un",
        "im",
        "ana",
        "ama",
    )
)
_RELATIONS = (
    r"son|daughter|wife|husband|mother|father|brother|sister|partner|spouse|friend|caregiver|carer"
    r"|niece|nephew|aunt|uncle|cousin|grand(?:son|daughter|mother|father|child|ma|pa)|neighbou?r"
    r"|guardian|fianc[eé]e?|boyfriend|girlfriend|step(?:son|daughter|mother|father)|roommate"
    r"|flatmate|mum|mom|mam|mummy|mommy|dad|daddy|sibling|child|kid|baby|twin|colleague|landlord"
    r"|boss|nurse|carer|interpreter|translator|pharmacist|worker"
)
_LOWER_CONTEXT = re.compile(
    r"(?:^|(?<=[\s(\"'.,;:!?/]))(?:hi|hello|hey|dear|morning|evening|thanks|thank[ \t]+you|thx|ty"
    r"|cheers|regards|love|from|by|per|d/w|w/|to|with|cc|fao|attn|spoke[ \t]+(?:to|with)"
    r"|talked[ \t]+to"
    r"|called|rang|phoned|ask[ \t]+for|its|it['’]s|this[ \t]+is|i['’]m|i[ \t]+am|named|aka"
    r"|(?:his|her|their|my|your|pt['’]?s|patient['’]?s)?[ \t]*(?:"
    + _RELATIONS
    + r")(?:[ \t]*\([^()\n]{1,20}\))?)(?![\w'’/-])[ \t]*[,:-]?[ \t]*(?:\n[ \t]*)?(?=[^\W\d_])",
    re.IGNORECASE,
)
_LOWER_WORD = re.compile(r"[^\W\d_]+(?:['’-][^\W\d_]+)*(?![\w])")
_LINE_START_NAME = re.compile(
    r"(?m)(?:^[ \t]*(?:[-*•>][ \t]*)?|(?<=[.!?][ ]))(?P<word>[^\W\d_A-Z]{3,})(?=[ \t]*[,:]|"
    + _FIRST_VERBS.pattern
    + r"|[ \t]+(?:here|again|back|says|ok|okay)\b)"
)


def _lower_given(word: str) -> bool:
    """A lower-case token that can only be a given name or surname ("irina", "maría")."""
    lex, low = _lexicon(), word.lower()
    return (
        len(low) >= 3
        and (low in lex.first_strong or (low in lex.last_strong and len(low) >= 4))
        and low not in lex.english
        and low not in lex.medical
        and low not in lex.protected
        and low not in _STOP
        and low not in _LOWER_NOT_NAMES
        and not _MEDICAL_SUFFIX.search(low)
    )


def _lower_case_names(text: str) -> Iterator[_NameRun]:
    """Given names typed in lower case in a name position: after a greeting, "by", "per", a
    relation word, or starting a message line ("hi jutta", "triaged by irina", "his partner,
    maría", "irina called")."""
    starts = [m.end() for m in _LOWER_CONTEXT.finditer(text)]
    starts += [m.start("word") for m in _LINE_START_NAME.finditer(text)]
    for pos in starts:
        match = _LOWER_WORD.match(text, pos)
        if match is None or not match.group().islower() or not _lower_given(match.group()):
            continue
        end, words = match.end(), [match.group()]
        after = re.match(r"[ ]([^\W\d_]+)(?![\w'’-])", text[end : end + 40])
        if after is not None and after.group(1).islower() and _lower_given(after.group(1)):
            end += after.end()
            words.append(after.group(1))
        yield _NameRun(match.start(), end, words)


#: Given names that are also English words, taken as names before a verb or a possessive
#: ("Grace's appetite", "Hope reports"); other word-names ("Brain was") stay words.
_WORD_NAMES = frozenset(
    """
    grace hope joy faith charity patience mercy honor honour constance prudence felicity
    rose lily iris daisy ivy holly hazel heather violet jasmine ruby pearl amber crystal jade
    dawn autumn summer april june sky skye fox will bill ray mark grant dean frank rich jack
    guy drew chase hunter mason carter cooper piper willow robin wren sunny sandy dusty rusty
    destiny harmony melody liberty trinity serenity bliss blossom star stormy river ocean
    clay cliff glen gale bud buck chip earl penny candy ginger poppy primrose marigold tulip
    cherry rosemary august
    """.split()  # noqa: SIM905
)
_POSSESSIVE = re.compile(r"['’]s[ \t]+(?=[a-z])")


def _word_names(text: str) -> Iterator[_NameRun]:
    """Given names that are also words ("Grace", "Hope") or any given name, shown to be a name by
    what follows: a possessive ("Grace's appetite") or a verb ("Hope reports")."""
    lex = _lexicon()
    for match in _WORD_TOKEN.finditer(text):
        word = match.group()
        bare = re.sub(r"['’]s$", "", word)
        low = bare.lower()
        if len(bare) < 3 or not bare[0].isupper() or bare.isupper() or bare[1:] != bare[1:].lower():
            continue
        if low not in lex.first_strong and low not in _WORD_NAMES:
            continue
        if low in lex.protected or low in lex.medical or low in _STOP:
            continue
        end = match.start() + len(bare)
        possessive = bare != word and _POSSESSIVE.match(text, end) is not None
        verb = bare == word and _FIRST_VERBS.match(text, end) is not None
        if not (possessive or verb) or _EPONYM_NOUN.match(text, end):
            continue
        before = re.search(r"(\S+)[ \t]+$", text[max(0, match.start() - 40) : match.start()])
        if (
            before is not None
            and before.group(1)[0].isupper()
            and before.group(1)[-1] not in ".:,;!?"
            and _kind(before.group(1)) == "vocab"
            and before.group(1).lower() not in _STOP
        ):
            continue  # "Bard Parker was used": the end of a longer capitalised phrase
        yield _NameRun(match.start(), end, [bare])


_COMMA_NAME = re.compile(
    rf"(?<![\w'’.-])(?P<last>(?:{_PARTICLES}[ ])?[A-Z][^\W\d_]*(?:['’-][^\W\d_]+)*),[ ]?"
    r"(?P<given>[A-Z][^\W\d_]+(?:-[^\W\d_]+)?)(?:[ ](?P<middle>[A-Z][^\W\d_]+|[A-Z]\.?))?"
    r"(?![\w'’-])"
)


def _comma_names(text: str) -> Iterator[_NameRun]:
    """ "LAST, First M." written in any capitals ("BAKER, Grace", "van Dijk, Anouk E.")."""
    for match in _COMMA_NAME.finditer(text):
        last = match.group("last").split(" ")[-1]
        words = [last, match.group("given")]
        end = match.end("given")
        middle = match.group("middle")
        if middle is not None and (len(middle.rstrip(".")) == 1 or _kind(middle) != "vocab"):
            words.append(middle.rstrip("."))
            end = match.end("middle")
        if _last_first(words):
            run = _NameRun(match.start(), end, words)
            if not _protected(text, run):
                yield run


def _last_first(words: list[str]) -> bool:
    """True for a "LAST, First M." pair: a surname (hyphenated or with particles), then a
    given name; two word-names ("BAKER, Grace") need the capitals of a record header."""
    lex = _lexicon()
    last, given = words[0], words[1]
    if _style(last) not in ("title", "upper") or _style(given) not in ("title", "upper"):
        return False  # "NutriSystem, Jenny": a brand, not a surname
    if given.isupper() and not last.isupper():
        return False  # "Parkinson, TIA": an acronym after a word
    parts = [p.lower() for p in last.split("-") if p]
    given_low = given.lower()
    if len(given) < 2 or not parts:
        return False
    if (
        any(p in lex.medical or p in _STOP for p in [*parts, given_low])
        or given_low in lex.protected
    ):
        return False
    if all(p.removesuffix("'s").removesuffix("’s") in lex.protected for p in parts) and not (
        last.isupper() and not given.isupper()
    ):
        return False  # "Parkinson's, Tia": an eponym in a list
    last_kinds = [
        "strong"
        if p in lex.last_strong or p in lex.first_strong
        else "weak"
        if p in lex.last_weak or p in lex.first_weak
        else "unknown"
        if p not in lex.english and not _MEDICAL_SUFFIX.search(p)
        else "vocab"
        for p in parts
    ]
    if "vocab" in last_kinds:
        return False
    if given_low in lex.first_strong:
        given_kind = "strong"
    elif given_low in lex.first_weak:
        given_kind = "weak"
    elif given_low not in lex.english and _kind(given) == "unknown":
        given_kind = "unknown"
    else:
        return False
    if given_kind == "unknown" and "strong" not in last_kinds:
        return len(words) >= 3 and len(words[2]) == 1  # "Okonkwo-Eze, Chidera A"
    if given_kind == "weak" and all(k == "weak" for k in last_kinds):
        return (last.isupper() and not given.isupper()) or (len(words) >= 3 and len(words[2]) == 1)
    return True


def _protected(text: str, run: _NameRun) -> bool:
    """True for eponyms ("Parkinson disease", "Foley catheter", "Wolff-Parkinson-White")."""
    lex = _lexicon()
    if _EPONYM_NOUN.match(text, run.end):
        return True
    parts = [p.lower() for w in run.words if len(w) > 1 for p in w.split("-")]
    return bool(parts) and all(p in lex.protected for p in parts)


def _names(text: str, pseudonym: str | None) -> list[_Span]:
    lex = _lexicon()
    found: list[tuple[_NameRun, bool]] = []  # (run, is the patient)

    for match in _TITLE.finditer(text):
        run = _name_run(text, match.end(), allow_comma=False, max_words=3)
        if run is not None and not _EPONYM_NOUN.match(text, run.end):
            found.append((run, match.group("title").lower() in _PATIENT_TITLES))

    for match in _LABEL.finditer(text):
        label = match.group("label")
        is_list = bool(_LIST_LABELS.match(label))
        cursor = match.end()
        while True:
            title = _TITLE.match(text, cursor)
            if title is not None:
                cursor = title.end()
            run = _name_run(text, cursor, allow_comma=not is_list)
            if run is None or not (title or _name_evidence(run.words)) or _protected(text, run):
                break
            found.append((run, bool(_PATIENT_LABELS.match(label))))
            if not is_list:
                break
            sep = _LIST_SEPARATOR.match(text, run.end)
            if sep is None:
                break
            cursor = sep.end()
            while cursor < len(text) and text[cursor] in ",.":
                cursor += 1

    for pattern in (_PHRASE, _SIGNOFF):
        for match in pattern.finditer(text):
            if _TITLE.match(text, match.end()):
                continue
            run = _name_run(text, match.end(), allow_comma=False, max_words=3)
            if run is not None and _name_evidence(run.words) and not _protected(text, run):
                found.append((run, False))

    for match in re.finditer(r"(?<![\w.'’-])(?=[^\W\d_a-z])", text):
        run = _name_run(text, match.start(), allow_comma=True, max_words=4)
        if run is None or len(run.words) < 1:
            continue
        words = run.words
        first = words[0].lower()
        if len(words) >= 2 and "," in text[run.start : run.end]:
            # "Smith, John", "Smith-Jones, Megan E", "BAKER, Grace": surname, comma, given name
            if _last_first(words) and not _protected(text, run):
                found.append((run, False))
            continue
        if len(words) >= 2:
            last = words[-1]
            if first not in lex.first_strong and first not in lex.first_weak:
                continue
            last_low = last.lower()
            strong = first in lex.first_strong or first in lex.first_common
            if not strong and _sentence_start(text, run.start):
                continue  # "See Denver II", "Will Rogers" at a sentence start
            if len(last) == 1 or (last_low in lex.protected and not strong):
                continue  # "Austin Flint", "See Denver"
            if last_low in lex.protected and first in lex.protected:
                continue  # "Homer Wright", "Marcus Gunn"
            if len({w.isupper() for w in words if len(w) > 1}) > 1:
                continue  # "ASA Diazepam": an acronym next to a word
            if len(last) == 2 and last_low not in lex.last_strong:
                continue
            if any(len(w) == 2 for w in words[1:-1]):
                continue  # "Ta Nx Mx" (a TNM stage)
            if strong:
                good_last = (
                    last_low in lex.last_strong
                    or last_low in lex.last_weak
                    or last_low in lex.first_strong
                    or not _is_word(last_low)
                )
            else:
                good_last = last_low in lex.last_strong or last_low in lex.last_common
            if good_last and not _protected(text, run):
                found.append((run, False))
        elif first in lex.first_strong and _FIRST_VERBS.match(text, run.end):
            before = re.search(r"(\S+)[ \t]+$", text[max(0, run.start - 40) : run.start])
            if (
                before is not None
                and before.group(1)[0].isupper()
                and before.group(1)[-1] not in ".:"
            ):
                continue  # "Bard Parker was used": part of a longer capitalised phrase
            if not _protected(text, run) and not words[0].isupper():
                found.append((run, False))

    found += [(run, False) for run in _free_names(text)]
    found += [(run, False) for run in _credentialed_names(text)]
    found += [(run, False) for run in _lower_case_names(text)]
    found += [(run, False) for run in _word_names(text)]
    found += [(run, False) for run in _comma_names(text)]

    spans: list[_Span] = []
    patient_words: set[str] = set()
    other_words: set[str] = set()
    for run, is_patient in found:
        replacement = pseudonym if (is_patient and pseudonym) else "[NAME]"
        spans.append(_Span(run.start, run.end, "NAME", replacement))
        for word in run.words:
            if len(word) >= 3:
                (patient_words if is_patient else other_words).add(word)
    spans += _propagate(text, patient_words, pseudonym or "[NAME]")
    spans += _propagate(text, other_words - patient_words, "[NAME]")
    return spans


_NEXT_LOWER = re.compile(r"[ \t]+([a-z]+)\b")


def _propagate(text: str, words: set[str], replacement: str) -> Iterator[_Span]:
    """Other mentions of a name already found ("Mr. Okafor ... Okafor reports"). A name that is
    also a word ("Young", "Will") is only taken mid-sentence, where a capital marks a name."""
    if not words:
        return
    variants = sorted(
        {
            v
            for w in words
            for v in (w, w.upper(), w.capitalize(), w.lower() if _lower_given(w) else w)
        },
        key=len,
    )
    pattern = re.compile(
        r"(?<![\w'’-])(?:" + "|".join(map(re.escape, reversed(variants))) + r")(?![\w-])"
    )
    for match in pattern.finditer(text):
        if _EPONYM_NOUN.match(text, match.end()):
            continue
        if (
            _is_word(match.group())
            and _sentence_start(text, match.start())
            and not _FIRST_VERBS.match(text, match.end())
        ):
            continue
        following = _NEXT_LOWER.match(text, match.end())
        if (
            following is not None
            and _is_word(match.group())
            and _is_word(following.group(1))
            and not _FIRST_VERBS.match(text, match.end())
        ):
            continue  # "Mr. Brown ... Brown urine": a colour before a noun, not the name
        yield _Span(match.start(), match.end(), "NAME", replacement)


def _sentence_start(text: str, pos: int) -> bool:
    before = text[max(0, pos - 200) : pos].rstrip()
    return not before or before[-1] in ".!?:;\n\"'([-*#" or before.endswith("\n")


# -- the scrubber ------------------------------------------------------------------------------

_DETECTORS: tuple[Callable[[str], list[_Span]], ...] = (
    lambda t: _simple(_EMAIL, "EMAIL", t),
    lambda t: _simple(_URL, "URL", t),
    lambda t: _simple(_IPV4, "IP", t) + _simple(_IPV6, "IP", t),
    _ids,
    _phones,
    _ages,
    _addresses,
)


#: Whether ``scrub_text`` adds the learned tagger's NAME/ID spans (``ner.py``) to the rules'.
#: Without torch, transformers or the tagger's weights it falls back to rules alone and logs a
#: warning once.
USE_PHI_TAGGER = True
_TAGGER_STATE: dict[str, bool] = {"warned": False}


def _tagger_spans(text: str) -> list[ner.TaggedSpan]:
    """The learned tagger's spans, or none (with one logged warning) when it cannot run."""
    if not USE_PHI_TAGGER or not text.strip():
        return []
    try:
        return ner.tag(text, tagger_word_lists())
    except ner.TaggerUnavailable as exc:
        if not _TAGGER_STATE["warned"]:
            _TAGGER_STATE["warned"] = True
            _log.warning("Note scrubbing uses rules only: %s", exc)
        return []


@cache
def tagger_word_lists() -> ner.WordLists:
    """The scrubber's gazetteers in the shape the tagger's hand features read."""
    lex = _lexicon()
    return ner.WordLists(
        first=lex.first_strong | lex.first_weak,
        last=lex.last_strong | lex.last_weak,
        english=lex.english,
        medical=lex.medical,
        protected=lex.protected,
    )


def _tagger_filtered(text: str, tagged: list[ner.TaggedSpan]) -> list[ner.TaggedSpan]:
    """Never where the rules protect: a NAME span loses its words that are eponyms, protected or
    medical vocabulary, form words ("Ward", "Hosp") or short acronyms ("ASA") and is dropped
    before an eponym noun; an ID needs four digits and no terminology name before it."""
    lex = _lexicon()
    out: list[ner.TaggedSpan] = []
    for span in tagged:
        value = text[span.start : span.end]
        if span.category == "ID":
            if sum(c.isdigit() for c in value) >= 4 and not _clinical_code(text, span.start):
                out.append(span)
            continue
        if _EPONYM_NOUN.match(text, span.end):
            continue
        run: list[tuple[int, int]] = []
        for match in ner.WORD.finditer(text, span.start, span.end):
            word = match.group()
            low = word.lower()
            parts = low.split("-")
            bad = (
                any(p in lex.protected or p in lex.medical for p in parts)
                or low in _STOP
                or (word.isupper() and 1 < len(word) <= 3)
            )
            if not bad:
                run.append(match.span())
                continue
            if run:
                out.append(ner.TaggedSpan(run[0][0], run[-1][1], "NAME", span.probability))
            run = []
        if run:
            end = span.end if run[-1][1] >= span.end - 1 else run[-1][1]
            out.append(ner.TaggedSpan(run[0][0], end, "NAME", span.probability))
    return out


def _union(text: str, spans: list[_Span], tagged: list[ner.TaggedSpan]) -> list[_Span]:
    """Add the tagger's spans to the rules': one that overlaps rule spans of its own category
    joins them into one span (keeping the rule's replacement, e.g. a pseudonym); one that
    overlaps a span of another category gives way to the rules. Linear in the spans."""
    out = list(spans)
    tagged = _tagger_filtered(text, tagged)
    for category in ("NAME", "ID"):
        other = bytearray(len(text))  # characters the rules gave to another category
        for s in out:
            if s.category != category:
                other[s.start : s.end] = b"\x01" * (s.end - s.start)
        extra = [
            t for t in tagged if t.category == category and other.find(1, t.start, t.end) == -1
        ]
        if not extra:
            continue
        own = [s for s in out if s.category == category]
        rest = [s for s in out if s.category != category]
        merged = _merge_groups(own, extra, category)
        out = rest + merged
    return out


def _merge_groups(own: list[_Span], extra: list[ner.TaggedSpan], category: str) -> list[_Span]:
    """Rule spans of one category as they were, except where tagger spans overlap them: each
    overlapping group becomes one span with the first rule span's replacement."""
    items = sorted(
        [(s.start, s.end, s) for s in own] + [(t.start, t.end, None) for t in extra],
        key=lambda item: (item[0], -item[1]),
    )
    groups: list[list[tuple[int, int, _Span | None]]] = []
    group_end = -1
    for item in items:
        if groups and item[0] < group_end:
            groups[-1].append(item)
            group_end = max(group_end, item[1])
        else:
            groups.append([item])
            group_end = item[1]
    merged: list[_Span] = []
    for group in groups:
        rules = [rule for _a, _b, rule in group if rule is not None]
        if len(rules) == len(group):
            merged.extend(rules)
            continue
        replacement = rules[0].replacement if rules else _TAGS[category]
        first = min(a for a, _b, _r in group)
        last = max(b for _a, b, _r in group)
        merged.append(_Span(first, last, category, replacement))
    return merged


def scrub_text(
    text: str, *, date_shift_days: int, pseudonym: str | None = None
) -> tuple[str, tuple[PhiReplacement, ...]]:
    """Replace PHI in ``text``; return the new text and what was replaced, with offsets into the
    ORIGINAL text.

    Names become "[NAME]" (the patient's, when recognised by "Patient:" or Mr/Mrs/Ms, become
    ``pseudonym`` if given), dates are shifted by ``date_shift_days`` in their own format, ages
    over 89 become "90+", other PHI a category tag ("[ID]", "[PHONE]", "[ADDRESS]", "[EMAIL]",
    "[URL]", "[IP]"). The rules' spans are joined by the learned tagger's NAME and ID spans
    (``USE_PHI_TAGGER``)."""
    return scrub_with(text, date_shift_days, pseudonym, _tagger_spans(text))


#: What separates the texts ``scrub_texts`` tags in one run (a paragraph break: no name or
#: number runs across it).
_BATCH_SEPARATOR = "\n\n"


def scrub_texts(
    texts: list[str], *, date_shift_days: int, pseudonym: str | None = None
) -> list[tuple[str, tuple[PhiReplacement, ...]]]:
    """``scrub_text`` for many short texts (a file's metadata values) with ONE run of the learned
    tagger over all of them: a run costs about half a second whatever the length, so a DICOM
    header's dozens of free-text values took tens of seconds one by one. A tagged span is given
    back to the text it lies in; one that would cross into the next text is not a span of
    either (the rules still see each text whole)."""
    if not texts:
        return []
    tagged = _tagger_spans(_BATCH_SEPARATOR.join(texts))
    results = []
    offset = 0
    for text in texts:
        end = offset + len(text)
        own = [
            TaggedSpanAt(span, offset)
            for span in tagged
            if span.start >= offset and span.end <= end
        ]
        results.append(scrub_with(text, date_shift_days, pseudonym, [a.local() for a in own]))
        offset = end + len(_BATCH_SEPARATOR)
    return results


@dataclass(frozen=True, slots=True)
class TaggedSpanAt:
    """A tagger span of the joined texts and where its own text starts in them."""

    span: ner.TaggedSpan
    offset: int

    def local(self) -> ner.TaggedSpan:
        return ner.TaggedSpan(
            self.span.start - self.offset,
            self.span.end - self.offset,
            self.span.category,
            self.span.probability,
        )


def scrub_with(
    text: str, date_shift_days: int, pseudonym: str | None, tagged: list[ner.TaggedSpan]
) -> tuple[str, tuple[PhiReplacement, ...]]:
    """``scrub_text`` with the tagger's spans given (training picks its threshold with it)."""
    spans: list[_Span] = []
    for detect in _DETECTORS:
        spans += detect(text)
    spans += _dates(text, date_shift_days)
    taken = bytearray(len(text))  # unlabelled numbers give way to dates, phones, addresses
    for span in spans:
        taken[span.start : span.end] = b"\x01" * (span.end - span.start)
    spans += [s for s in _token_ids(text) if taken.find(1, s.start, s.end) == -1]
    spans += _names(text, pseudonym)
    if tagged:
        spans = _union(text, spans, tagged)
    chosen = _resolve(spans, len(text))
    pieces: list[str] = []
    cursor = 0
    for span in chosen:
        pieces.append(text[cursor : span.start])
        pieces.append(span.replacement)
        cursor = span.end
    pieces.append(text[cursor:])
    replacements = tuple(
        PhiReplacement(span.start, span.end, span.category, span.replacement) for span in chosen
    )
    return "".join(pieces), replacements
