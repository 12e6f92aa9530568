"""DICOM de-identification: the PS3.15 Annex E Basic Application Level Confidentiality Profile.

Every attribute of Table E.1-1 (:mod:`clinic_app.io.deid.annex_e`) gets its Basic Profile
action at every sequence nesting level; every private element, curve and overlay group is
removed; every instance UID anywhere (file meta and sequences included) is replaced by a keyed
HMAC mapping into ``2.25.<decimal>``, so references between files stay intact; Patient ID and
Patient's Name become a pseudonym from a keyed HMAC of the patient id, so one patient maps to
the same pseudonym across files and sessions. Pixel and waveform bytes are not touched, which
is why an object that declares burned-in annotation is refused unless the caller overrides.

Options (PS3.15 Table E.1-1 option columns):
- Retain Longitudinal Temporal Information with Full Dates (``keep_dates=True``, code 113106).
- Retain Longitudinal Temporal Information with Modified Dates (``shift_days=N``, code 113107):
  every date is moved by the same whole number of days per patient, times of day are kept.
Not implemented: Retain Safe Private (all private data is removed), Retain UIDs, Retain Device
Identity, Retain Institution Identity, Retain Patient Characteristics, the Clean options and
Clean Pixel Data (burned-in text is refused, not blanked).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import pydicom
from pydicom._uid_dict import UID_dictionary
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

from clinic_app.domain.errors import ConfigError, InputError
from clinic_app.io.deid.annex_e import DICOM_EDITION, basic_profile_action
from clinic_app.io.dicom_files import open_dataset
from clinic_app.io.limits import DEFAULT_LIMITS

PROFILE_VERSION: Final = "1.0"
#: Written to De-identification Method (0012,0063); LO, so at most 64 characters.
DEIDENTIFICATION_METHOD: Final = (
    f"ClinicFusion Basic Profile {PROFILE_VERSION} (PS3.15 {DICOM_EDITION} E.1-1)"
)
PSEUDONYM_PREFIX: Final = "CF-"
MIN_SECRET_BYTES: Final = 16

#: Codes for De-identification Method Code Sequence (CID 7050, scheme DCM).
BASIC_PROFILE_CODE: Final = ("113100", "Basic Application Confidentiality Profile")
FULL_DATES_CODE: Final = ("113106", "Retain Longitudinal Temporal Information Full Dates Option")
MODIFIED_DATES_CODE: Final = (
    "113107",
    "Retain Longitudinal Temporal Information Modified Dates Option",
)


class Action(StrEnum):
    """The action codes of PS3.15 Table E.1-1."""

    D = "D"  # replace with a non-zero-length dummy value of the same VR
    Z = "Z"  # replace with a zero-length value
    X = "X"  # remove
    K = "K"  # keep
    C = "C"  # clean: replace with values of similar meaning that identify no one
    U = "U"  # replace the UID with a consistent non-identifying one
    Z_D = "Z/D"
    X_Z = "X/Z"
    X_D = "X/D"
    X_Z_D = "X/Z/D"
    X_Z_U = "X/Z/U*"


#: SOP classes whose pixels usually carry burned-in text (screen captures, ultrasound, video):
#: when Burned In Annotation (0028,0301) is absent they are treated as if it said YES.
BURNED_IN_LIKELY_SOP_CLASSES: Final[dict[str, str]] = {
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.6": "Ultrasound (retired)",
    "1.2.840.10008.5.1.4.1.1.6.1": "Ultrasound",
    "1.2.840.10008.5.1.4.1.1.6.2": "Enhanced Ultrasound Volume",
    "1.2.840.10008.5.1.4.1.1.3": "Ultrasound Multi-frame (retired)",
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame",
    "1.2.840.10008.5.1.4.1.1.77.1.1.1": "Video Endoscopic",
    "1.2.840.10008.5.1.4.1.1.77.1.2.1": "Video Microscopic",
    "1.2.840.10008.5.1.4.1.1.77.1.4.1": "Video Photographic",
}
VL_WHOLE_SLIDE_MICROSCOPY: Final = "1.2.840.10008.5.1.4.1.1.77.1.6"

#: UI attributes that name a class, syntax or coding scheme, never an instance: always kept.
_CLASS_UID_TAGS: Final = frozenset(
    {
        0x00000002,  # Affected SOP Class UID
        0x00000003,  # Requested SOP Class UID
        0x00020002,  # Media Storage SOP Class UID
        0x00020010,  # Transfer Syntax UID
        0x00020012,  # Implementation Class UID
        0x00041510,  # Referenced SOP Class UID in File
        0x00041512,  # Referenced Transfer Syntax UID in File
        0x00080016,  # SOP Class UID
        0x0008001A,  # Related General SOP Class UID
        0x0008001B,  # Original Specialized SOP Class UID
        0x00080062,  # SOP Classes in Study
        0x0008010C,  # Coding Scheme UID
        0x00080117,  # Context UID
        0x00080118,  # Mapping Resource UID
        0x00081150,  # Referenced SOP Class UID
        0x04000510,  # Encrypted Content Transfer Syntax UID
    }
)
_DATE_VRS: Final = frozenset({"DA", "DT"})
#: Dates Table E.1-1 gives no longitudinal option: the birth date and time go whatever the option.
_NOT_LONGITUDINAL: Final = frozenset({0x00100030, 0x00100032})
_TEMPORAL_VRS: Final = frozenset({"DA", "DT", "TM"})
_TEXT_VRS: Final = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_BINARY_VRS: Final = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBER_VRS: Final = frozenset({"US", "SS", "UL", "SL", "UV", "SV", "FL", "FD"})
_DUMMY_TEXT: Final = "ANONYMIZED"
_DUMMY_DATE: Final = {"DA": "19000101", "DT": "19000101000000", "TM": "000000"}
_FILE_META_KEPT: Final = frozenset({0x00020001, 0x00020002, 0x00020010})
#: File meta elements written anew (group length, implementation class and version).
_FILE_META_REWRITTEN: Final = frozenset({0x00020000, 0x00020012, 0x00020013})


@dataclass(frozen=True, slots=True)
class DeidAction:
    """What was done to one attribute (never its value); ``count`` folds repeats in sequences."""

    path: str  # sequence path to the attribute, item indices dropped: "ContentSequence>UID"
    tag: str  # "(GGGG,EEEE)"
    keyword: str
    action: str  # the action applied: D, Z, X, K, C or U
    reason: str  # why: "table X/Z/D", "private", "overlay group", "pseudonym", ...
    count: int = 1


@dataclass(frozen=True, slots=True)
class DeidResult:
    """A de-identified dataset and what was done to produce it."""

    dataset: Dataset
    patient_pseudonym: str
    actions: tuple[DeidAction, ...]
    burned_in_annotation: bool
    date_shift_days: int | None


class DicomDeidentifier:
    """Applies the Basic Profile with keyed pseudonyms; one secret per installation.

    The secret keys every HMAC (pseudonyms, UIDs, date shifts): keep it outside the data
    directory and the database, and keep it stable, or the same patient gets a new pseudonym.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        keep_dates: bool = False,
        max_sequence_depth: int = DEFAULT_LIMITS.max_sequence_depth,
    ) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"The de-identification key has {len(secret)} bytes; it needs at least "
                f"{MIN_SECRET_BYTES} random bytes so pseudonyms cannot be guessed."
            )
        self._secret = bytes(secret)
        self.keep_dates = keep_dates
        self.max_sequence_depth = max_sequence_depth

    # -- keyed mappings -------------------------------------------------------------------

    def _mac(self, domain: str, text: str) -> bytes:
        message = domain.encode("ascii") + b"\x00" + text.encode("utf-8")
        return hmac.new(self._secret, message, hashlib.sha256).digest()

    def pseudonym(self, patient_key: str) -> str:
        """The stable pseudonym for a patient: "CF-" + base32 of 80 bits of HMAC-SHA256."""
        digest = self._mac("patient", patient_key.strip())[:10]
        return PSEUDONYM_PREFIX + base64.b32encode(digest).decode("ascii")

    def map_uid(self, uid: str) -> str:
        """The replacement for an instance UID: 2.25.<a UUIDv8 from the HMAC> (<= 44 chars)."""
        raw = bytearray(self._mac("uid", uid.strip().rstrip("\x00"))[:16])
        raw[6] = (raw[6] & 0x0F) | 0x80  # UUID version 8 (custom)
        raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
        return f"2.25.{int.from_bytes(raw, 'big')}"

    def date_shift_for(self, patient_key: str) -> int:
        """A per-patient shift of 30 to 3,679 days into the past, stable for one secret."""
        value = int.from_bytes(self._mac("date-shift", patient_key.strip())[:4], "big")
        return -(30 + value % 3650)

    # -- the profile ---------------------------------------------------------------------

    def deidentify(
        self,
        ds: Dataset,
        *,
        patient_key: str | None = None,
        shift_days: int | None = None,
        refuse_burned_in: bool = True,
        source_name: str | None = None,
        in_place: bool = False,
    ) -> DeidResult:
        """Return a de-identified copy of ``ds`` (``ds`` itself changes only with ``in_place``).

        ``patient_key`` identifies the patient for the pseudonym (default: the Patient ID in
        the file). ``shift_days`` moves dates instead of removing them. With
        ``refuse_burned_in=False`` an object with burned-in annotation is de-identified all the
        same (its pixels still show the text): only for images a person has checked.
        ``in_place=True`` changes ``ds`` itself instead of a copy (no second copy of the pixels).
        """
        if shift_days is not None and self.keep_dates:
            raise ValueError("keep_dates and shift_days are two different options; pick one")
        what = f"DICOM file {source_name}" if source_name else "This DICOM object"
        burned_in, why = burned_in_annotation(ds)
        if burned_in and refuse_burned_in:
            raise InputError(
                f"{what} {why} (text drawn into the pixels that may identify the patient): "
                "it cannot be imported without pixel cleaning.",
                hint="Import it with the burned-in override only after a person has checked "
                "that the image shows no identifying text.",
            )
        key = patient_key if patient_key is not None else _text(ds.get("PatientID"))
        if not key.strip():
            raise InputError(
                f"{what} has no Patient ID, so it cannot be given a stable pseudonym; "
                "choose the patient it belongs to when importing it."
            )
        out = ds if in_place else copy.deepcopy(ds)
        run = _Run(self, shift_days, what)
        run.clean(out, depth=0, path="")
        pseudonym = self.pseudonym(key)
        for tag, keyword in ((0x00100020, "PatientID"), (0x00100010, "PatientName")):
            run.record("", BaseTag(tag), "D", "pseudonym")
            setattr(out, keyword, pseudonym)
        self._mark(out, shift_days)
        run.rebuild_file_meta(out)
        return DeidResult(
            dataset=out,
            patient_pseudonym=pseudonym,
            actions=run.actions(),
            burned_in_annotation=burned_in,
            date_shift_days=shift_days,
        )

    def _mark(self, ds: Dataset, shift_days: int | None) -> None:
        """Record the de-identification in the dataset itself (PS3.15 E.1.1 and E.3)."""
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
        codes = [BASIC_PROFILE_CODE]
        if self.keep_dates:
            codes.append(FULL_DATES_CODE)
            ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
        elif shift_days is not None:
            codes.append(MODIFIED_DATES_CODE)
            ds.LongitudinalTemporalInformationModified = "MODIFIED"
        else:
            ds.LongitudinalTemporalInformationModified = "REMOVED"
        items = []
        for value, meaning in codes:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)


def burned_in_annotation(ds: Dataset) -> tuple[bool, str]:
    """Whether the pixels may show identifying text, and the phrase that says why.

    YES in Burned In Annotation counts; so does an absent flag for Secondary Capture,
    ultrasound and video, where screen text is the rule. A whole-slide label or overview
    image (or Specimen Label in Image = YES) shows the slide label. Other absent flags,
    including ordinary whole-slide tiles, count as NO.
    """
    flag = _text(ds.get("BurnedInAnnotation")).strip().upper()
    sop_class = _text(ds.get("SOPClassUID")).strip()
    if flag == "YES":
        return True, "declares burned-in annotation"
    if sop_class == VL_WHOLE_SLIDE_MICROSCOPY:
        image_type = [v.strip().upper() for v in _values(ds.get("ImageType"))]
        label = _text(ds.get("SpecimenLabelInImage")).strip().upper() == "YES"
        if label or (len(image_type) > 2 and image_type[2] in {"LABEL", "OVERVIEW"}):
            return True, "is a slide label or overview image that shows the slide label"
        return False, ""
    if not flag and sop_class in BURNED_IN_LIKELY_SOP_CLASSES:
        kind = BURNED_IN_LIKELY_SOP_CLASSES[sop_class]
        return True, (
            f"is a {kind} image that does not say whether it has burned-in annotation, "
            "and such images usually do"
        )
    return False, ""


def deidentify_file(
    src: Path, dst: Path, deidentifier: DicomDeidentifier, **opts: Any
) -> DeidResult:
    """De-identify the DICOM file ``src`` into ``dst`` (same transfer syntax, same pixel bytes).

    Works for any DICOM instance: images, ECG and other waveforms, whole-slide image instances.

    ``opts`` go to :meth:`DicomDeidentifier.deidentify`. ``dst`` is written atomically.
    """
    src, dst = Path(src), Path(dst)
    try:
        ds = open_dataset(src)
    except InvalidDicomError as exc:
        raise InputError(f"{src.name} is not a DICOM file (no DICM preamble).") from exc
    except FileNotFoundError as exc:
        raise InputError(f"{src.name} does not exist.") from exc
    except Exception as exc:  # pydicom raises many types for damaged files
        raise InputError(f"{src.name} cannot be read as DICOM: {exc}.") from exc
    opts.setdefault("source_name", src.name)
    opts["in_place"] = True  # the dataset was read here: no need to copy its pixel data
    try:
        result = deidentifier.deidentify(ds, **opts)
    except InputError:
        raise
    except Exception as exc:  # a damaged element surfaces only when its value is decoded
        raise InputError(f"{src.name} has an element that cannot be decoded: {exc}.") from exc
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".deid-", suffix=".dcm", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            pydicom.dcmwrite(fh, result.dataset, enforce_file_format=True)
        Path(tmp_name).replace(dst)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return result


class _Run:
    """The state of one de-identification: the options and the action log."""

    def __init__(self, owner: DicomDeidentifier, shift_days: int | None, what: str) -> None:
        self.owner = owner
        self.shift_days = shift_days
        self.what = what
        self._log: dict[tuple[str, str, str, str, str], int] = {}

    def record(self, path: str, elem: DataElement | BaseTag, action: str, reason: str) -> None:
        tag = elem if isinstance(elem, BaseTag) else elem.tag
        keyword = keyword_for_tag(tag) or ("private" if tag.is_private else "unknown")
        key = (path, f"({tag.group:04X},{tag.element:04X})", keyword, action, reason)
        self._log[key] = self._log.get(key, 0) + 1

    def actions(self) -> tuple[DeidAction, ...]:
        return tuple(DeidAction(*key, count=n) for key, n in self._log.items())

    def clean(self, ds: Dataset, *, depth: int, path: str) -> None:
        """Apply the profile to every element of ``ds`` and, recursively, of its items."""
        if depth > self.owner.max_sequence_depth:
            raise InputError(
                f"{self.what} nests sequences deeper than {self.owner.max_sequence_depth} "
                "levels, more than any real DICOM object needs."
            )
        for tag in list(ds.keys()):
            elem = ds[tag]
            self._clean_element(ds, elem, depth=depth, path=path)

    def _clean_element(self, ds: Dataset, elem: DataElement, *, depth: int, path: str) -> None:
        tag = elem.tag
        here = f"{path}>{elem.keyword}" if path else elem.keyword
        if tag.is_private:
            self.record(path, elem, "X", "private")
            del ds[tag]
            return
        if tag.element == 0x0000:  # group length: stale once anything changes
            del ds[tag]
            return
        if tag.group & 0xFF00 in (0x5000, 0x6000) and tag.group % 2 == 0:
            self.record(path, elem, "X", "curve or overlay group")
            del ds[tag]
            return
        code = basic_profile_action(int(tag))
        if code is None:
            self._clean_unlisted(ds, elem, depth=depth, path=path, here=here)
            return
        action = self._resolve(code, elem.VR, int(tag))
        reason = f"table {code}"
        if action == "X":
            self.record(path, elem, "X", reason)
            del ds[tag]
        elif action == "Z":
            self.record(path, elem, "Z", reason)
            elem.value = Sequence() if elem.VR == "SQ" else None
        elif action == "D":
            self.record(path, elem, "D", reason)
            elem.value = self._dummy(elem)
        elif action == "U":
            if elem.VR == "SQ":  # X/Z/U*: keep the references, with every UID replaced
                self.record(path, elem, "U", reason)
                self._clean_items(elem, depth=depth, path=here)
            else:
                self.record(path, elem, "U", reason)
                elem.value = self._map_uids(elem.value)
        elif action == "C":
            self.record(path, elem, "C", "date shifted")
            elem.value = self._shift(elem)
        else:  # K: a date option keeps it (a whole-day shift leaves times of day as they are)
            self.record(path, elem, "K", "date option")

    def _clean_unlisted(
        self, ds: Dataset, elem: DataElement, *, depth: int, path: str, here: str
    ) -> None:
        """Attributes Table E.1-1 does not list: UIDs and dates still cannot be kept as is."""
        if elem.VR == "SQ":
            self._clean_items(elem, depth=depth, path=here)
        elif elem.VR == "UI":
            if int(elem.tag) in _CLASS_UID_TAGS or elem.tag.group == 0x0002:
                return
            mapped = self._map_uids(elem.value)
            if mapped != elem.value:
                self.record(path, elem, "U", "instance UID outside the table")
                elem.value = mapped
        elif elem.VR in _DATE_VRS and not elem.is_empty:
            if self.owner.keep_dates:
                return
            if self.shift_days is not None:
                self.record(path, elem, "C", "date outside the table shifted")
                elem.value = self._shift(elem)
            else:
                self.record(path, elem, "Z", "date outside the table")
                elem.value = None

    def _clean_items(self, elem: DataElement, *, depth: int, path: str) -> None:
        for item in elem.value or ():
            self.clean(item, depth=depth + 1, path=path)

    def _resolve(self, code: str, vr: str, tag: int) -> str:
        """One action for a table code, given the VR and the options in force.

        The choices X/Z, X/D, Z/D and X/Z/D depend on whether the attribute is Type 1 or 2 in
        the object's IOD, which this module does not carry. We pick the member that keeps every
        IOD valid and discloses nothing: Z for X/Z; D (a dummy value) when D is offered. For
        sequences a dummy item would still need real content, so those are emptied (or removed
        for X/D); only X/Z/U* sequences are kept, with every UID inside replaced.
        """
        if vr in _TEMPORAL_VRS and code not in ("U", "K") and tag not in _NOT_LONGITUDINAL:
            if self.owner.keep_dates:
                return "K"
            if self.shift_days is not None:
                return "C" if vr in _DATE_VRS else "K"
        if code == "C":  # only reached through options; descriptions are dropped
            return "X"
        if code == "X/Z/U*":
            return "U" if vr in ("UI", "SQ") else "Z"
        if vr == "SQ":
            return {"D": "Z", "Z/D": "Z", "X/D": "X", "X/Z/D": "Z", "X/Z": "Z"}.get(code, code)
        if code == "X/Z":
            return "Z"
        if code in ("Z/D", "X/D", "X/Z/D"):
            return "D"
        if code == "U" and vr != "UI":
            return "D"
        return code

    def _dummy(self, elem: DataElement) -> Any:
        vr = elem.VR
        if vr == "UI":
            return self._map_uids(elem.value) if not elem.is_empty else "2.25.0"
        if vr in _TEMPORAL_VRS:
            return _DUMMY_DATE[vr]
        if vr in _TEXT_VRS:
            return _DUMMY_TEXT
        if vr in ("DS", "IS"):
            return "0"
        if vr == "AS":
            return "000D"
        if vr == "UR":
            return "urn:x-anonymized"
        if vr in _NUMBER_VRS or vr == "AT":
            return 0
        if vr in _BINARY_VRS:
            return b"\x00" * 8
        return None

    def _map_uids(self, value: Any) -> Any:
        """Map each instance UID in a UI value; well-known (registered) UIDs are kept."""

        def one(uid: Any) -> str:
            text = str(uid).strip().rstrip("\x00")
            if not text or text in UID_dictionary:
                return text
            return self.owner.map_uid(text)

        if value is None or value == "":
            return value
        if isinstance(value, str | UID):
            return one(value)
        return [one(v) for v in value]

    def _shift(self, elem: DataElement) -> Any:
        """Move DA/DT values by ``shift_days``; TM stays (whole days do not move a time)."""
        days = self.shift_days or 0
        if elem.VR == "TM" or elem.is_empty:
            return elem.value
        shifted = [_shift_one(str(v), elem.VR, days) for v in _values(elem.value)]
        return shifted[0] if len(shifted) == 1 else shifted

    def rebuild_file_meta(self, ds: Dataset) -> None:
        """File meta with only class, instance and transfer syntax; no AE titles, no private."""
        old = getattr(ds, "file_meta", None) or FileMetaDataset()
        meta = FileMetaDataset()
        for elem in old:
            if elem.tag in _FILE_META_KEPT:
                meta[elem.tag] = copy.deepcopy(elem)
            elif elem.tag == 0x00020003:
                self.record("FileMeta", elem, "U", "table U")
            elif elem.tag not in _FILE_META_REWRITTEN:
                self.record("FileMeta", elem, "X", "file meta")
        if "SOPClassUID" in ds:
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
        if "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = f"CLINICFUSION_{PROFILE_VERSION}"[:16]
        ds.file_meta = meta


def _shift_one(value: str, vr: str, days: int) -> str:
    """Shift one DA or DT string; a value that is not a full date becomes the dummy date."""
    text = value.strip()
    if vr == "DA" and len(text) == 10 and text[4] == "." and text[7] == ".":
        text = text.replace(".", "")  # ACR-NEMA "YYYY.MM.DD"
    if len(text) < 8 or not text[:8].isdigit():
        return _DUMMY_DATE[vr]
    try:
        day = dt.date(int(text[0:4]), int(text[4:6]), int(text[6:8]))
        moved = day + dt.timedelta(days=days)
    except (ValueError, OverflowError):
        return _DUMMY_DATE[vr]
    rest = text[8:] if vr == "DT" else ""
    return f"{moved.year:04d}{moved.month:02d}{moved.day:02d}{rest}"


def _values(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, DataElement):
        value = value.value
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return [value]
    return list(value)


def _text(value: Any) -> str:
    """A data element's (or value's) first value as text; "" when absent or empty."""
    values = _values(value)
    return "" if not values or values[0] is None else str(values[0])
